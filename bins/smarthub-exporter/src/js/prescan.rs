//! The pre-scan: decodes a hub script that is only data statements, or cuts it down to the
//! statements that assign the globals we read.
//!
//! Most of a device list page is statements the exporter never reads (about 480
//! `addCfg("i_Mac1",35323905,'');` lines, spec §6.1), and parsing them in QuickJS was most of
//! the scrape's CPU. [`decode`] and [`reduce`] first check that the *whole* script is a
//! sequence of plain data statements:
//! - `var NAME = LITERAL;` (or `var NAME;`),
//! - `addCfg(LITERAL, …);` or `setCfg(LITERAL, …);` (the page's functions, no-op stubs in the
//!   sandbox),
//! - empty statements, whitespace and `//` or `/* */` comments,
//!
//! where a literal is a string without backslashes or line breaks, `null`, `true`, `false`, a
//! decimal number, or an array or object of literals, nested at most [`MAX_DEPTH`] deep. The
//! `;` may only be left out after the last statement.
//!
//! [`decode`] then reads the lists themselves, when each read global is assigned a plain list
//! (`null` and entry objects), into the records QuickJS would give: the last property of each
//! field name, a string's text (without escapes it is the string), a decimal number of at most
//! [`MAX_NUMBER_DIGITS`] digits as the sandbox writes numbers, nothing for any other value.
//! No JavaScript runs at all then.
//!
//! [`reduce`] returns instead the `var` statements of the read globals, in order, for QuickJS
//! to evaluate in place of the whole script; in each, the objects directly inside the global's
//! array (the list entries) keep only the properties read from them (`Extract::fields`, all
//! occurrences, in order).
//!
//! Any other text (a function, a loop, an expression, a template or escape sequence, a
//! reserved word as a name, non-ASCII outside strings, a truncated statement) makes both
//! return `None`, and the caller evaluates the whole script. The grammar is a subset of
//! strict-mode JavaScript in which statements have no effect but to define globals; the
//! statements and properties left out are nothing anybody reads, so decoding the rest, or
//! evaluating it, yields the same values as evaluating everything, only faster (the heap it
//! needs is smaller too). The statements [`reduce`] keeps are still run by QuickJS under the
//! sandbox's limits.

use super::{Extract, MAX_ENTRIES, Record, bounded, number_text};

/// How deep arrays and objects may nest; deeper text is left to QuickJS (whose parser then
/// reports its stack limit).
pub const MAX_DEPTH: usize = 64;

/// The functions the sandbox defines as no-op stubs: the only calls a data statement makes.
const STUBS: &[&str] = &["addCfg", "setCfg"];

/// Names a data statement may not declare: reserved words (strict mode), names strict mode
/// forbids as bindings, the read-only globals (assigning them throws in strict mode), and the
/// stubs (a later call would then throw).
const FORBIDDEN_NAMES: &[&str] = &[
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "let",
    "static",
    "implements",
    "interface",
    "package",
    "private",
    "protected",
    "public",
    "arguments",
    "eval",
    "undefined",
    "NaN",
    "Infinity",
    "addCfg",
    "setCfg",
];

/// The lists the `extracts` read, decoded in Rust, when `source` consists only of data
/// statements (see the module doc) and assigns each of those globals a plain list: an array
/// literal whose elements are `null` or objects, with at most [`MAX_ENTRIES`] elements.
///
/// Each entry object gives one [`Record`]: per field, the last property of that name (as a
/// JavaScript object literal keeps it), its text when it is a string, its number written as
/// [`number_text`] writes it when it is a decimal number of at most [`MAX_NUMBER_DIGITS`]
/// digits, `None` when it is `null`, `true`, `false`, an array or an object, or missing. Any
/// other list or value (and a global declared but never assigned) gives `None`, and the caller
/// evaluates the script instead, so that QuickJS reports what is wrong with it.
pub fn decode(source: &str, extracts: &[Extract]) -> Option<Vec<Vec<Record>>> {
    let mut lists: Vec<Option<Vec<Record>>> = vec![None; extracts.len()];
    statements(source, extracts, |scan, i, _| {
        scan.trivia()?;
        if scan.peek() == Some(b'=') {
            scan.pos += 1;
            let list = scan.list(extracts.get(i)?.fields)?;
            *lists.get_mut(i)? = Some(list);
        }
        scan.end_of_statement()
    })?;
    lists.into_iter().collect()
}

/// The `var` statements of `source` that declare one of the `extracts`' globals, joined by
/// newlines, when `source` consists only of data statements (see the module doc) and declares
/// every one of those globals; `None` otherwise.
///
/// In a global's value that is an array, the objects directly inside it keep only the
/// properties read from them (their `fields`), in their order: the others are never read.
pub fn reduce(source: &str, extracts: &[Extract]) -> Option<String> {
    let mut kept = String::new();
    let mut found = vec![false; extracts.len()];
    statements(source, extracts, |scan, i, start| {
        let mut filter = Filter::new(extracts.get(i)?.fields, start);
        scan.initializer(Some(&mut filter))?;
        scan.end_of_statement()?;
        kept.push_str(&filter.text);
        kept.push_str(source.get(filter.copied..scan.pos)?);
        kept.push('\n');
        *found.get_mut(i)? = true;
        Some(())
    })?;
    found.iter().all(|f| *f).then_some(kept)
}

/// Walks the statements of `source` when it consists only of data statements. A `var` of one
/// of the `extracts`' globals is handed to `read` (with the index of the extract and where the
/// statement starts), after its name, to take its initializer and the end of the statement;
/// any other statement is checked and skipped. `None` when `source` is anything else.
fn statements<'a>(
    source: &'a str,
    extracts: &[Extract],
    mut read: impl FnMut(&mut Scanner<'a>, usize, usize) -> Option<()>,
) -> Option<()> {
    let mut scan = Scanner { text: source, src: source.as_bytes(), pos: 0 };
    loop {
        scan.trivia()?;
        let start = scan.pos;
        let Some(first) = scan.peek() else { return Some(()) };
        if first == b';' {
            scan.pos += 1;
            continue;
        }
        let word = scan.identifier()?;
        if STUBS.iter().any(|stub| same(stub, word)) {
            scan.call_arguments()?;
            scan.end_of_statement()?;
            continue;
        }
        if word != "var" {
            return None;
        }
        let name = scan.var_name()?;
        match extracts.iter().position(|ex| same(ex.global, name)) {
            Some(i) => read(&mut scan, i, start)?,
            None => {
                scan.initializer(None)?;
                scan.end_of_statement()?;
            }
        }
    }
}

/// Leaves out the unread properties of the objects directly inside a kept global's array:
/// the text of the statement so far, and the state of the object being read.
struct Filter<'f> {
    fields: &'f [&'f str],
    /// The reduced text up to `copied`, from where the source is taken as it is.
    text: String,
    copied: usize,
    /// Where the `{` of the current entry object is.
    object: usize,
    /// The spans of its properties kept so far.
    props: Vec<(usize, usize)>,
    /// The property being read: where its key starts, and whether it is kept.
    pending: Option<(usize, bool)>,
}

impl<'f> Filter<'f> {
    fn new(fields: &'f [&'f str], start: usize) -> Filter<'f> {
        Filter {
            fields,
            text: String::new(),
            copied: start,
            object: start,
            props: Vec::new(),
            pending: None,
        }
    }
}

/// Whether the brackets `open` are those of an entry object: directly inside the global's
/// array.
fn at_entry(open: &[u8]) -> bool {
    matches!(open, [b']', b'}'])
}

/// A cursor over the script's bytes. Every method returns `None` on text outside the grammar.
struct Scanner<'a> {
    text: &'a str,
    src: &'a [u8],
    pos: usize,
}

/// A property value of an entry object, as [`Scanner::scalar`] found it.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    /// A string literal's text (it has no escapes, so the text is the string).
    Text(&'a str),
    /// A number as [`Scanner::number`] takes it.
    Number(&'a str),
    /// `null`, `true`, `false`, an array or an object: no value to read.
    Other,
}

/// Most digits (all of them counted) of a number decoded in Rust. Such a number is an integer
/// below 10^15 (exact as a double) divided by a power of ten up to 10^14 (exact too), so
/// converting it rounds once and every correct conversion (Rust's, QuickJS's) gives the same
/// double; longer ones are left to QuickJS.
pub const MAX_NUMBER_DIGITS: usize = 15;

/// `a == b`, cheaper for the short names compared here: most differ in length or first byte.
#[inline(always)]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// A number [`Scanner::number`] took, as [`number_text`] writes its value; `None` beyond
/// [`MAX_NUMBER_DIGITS`] digits.
fn decimal(text: &str) -> Option<String> {
    if text.bytes().filter(u8::is_ascii_digit).count() > MAX_NUMBER_DIGITS {
        return None;
    }
    text.parse::<f64>().ok().map(number_text)
}

/// Byte classes, for [`CLASS`].
const NAME_START: u8 = 1;
const NAME: u8 = 2;
const SPACE: u8 = 4;
/// A quote, or a byte a string may not hold (or that may start U+2028 or U+2029).
const STRING_STOP: u8 = 8;

/// The class bits of each byte.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphabetic() || b == b'_' || b == b'$' {
            t[c] |= NAME_START | NAME;
        }
        if b.is_ascii_digit() {
            t[c] |= NAME;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            t[c] |= SPACE;
        }
        if matches!(b, b'\'' | b'"' | b'\\' | b'\n' | b'\r' | 0 | 0xe2) {
            t[c] |= STRING_STOP;
        }
        c += 1;
    }
    t
};

fn is(c: u8, class: u8) -> bool {
    CLASS[c as usize] & class != 0
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    /// The source from `start` to `end`.
    fn slice(&self, start: usize, end: usize) -> Option<&'a str> {
        let text: &'a str = self.text;
        text.get(start..end)
    }

    /// Skips whitespace and comments (ASCII only, so that no Unicode line or space separator
    /// can end a comment early without our noticing).
    #[inline(always)]
    fn trivia(&mut self) -> Option<()> {
        match self.peek() {
            Some(c) if is(c, SPACE) || c == b'/' => self.more_trivia(),
            _ => Some(()),
        }
    }

    fn more_trivia(&mut self) -> Option<()> {
        while let Some(c) = self.peek() {
            match c {
                _ if is(c, SPACE) => self.pos += 1,
                b'/' if self.peek_at(1) == Some(b'/') => {
                    self.pos += 2;
                    let rest = self.src.get(self.pos..)?;
                    let end = rest
                        .iter()
                        .position(|c| !(0x01..0x80).contains(c) || *c == b'\n' || *c == b'\r');
                    self.pos += end.unwrap_or(rest.len());
                    if !matches!(self.peek(), None | Some(b'\n' | b'\r')) {
                        return None;
                    }
                }
                b'/' if self.peek_at(1) == Some(b'*') => {
                    self.pos += 2;
                    let rest = self.src.get(self.pos..)?;
                    let end = rest.windows(2).position(|w| w == b"*/")?;
                    if !rest.get(..end)?.iter().all(|c| (0x01..0x80).contains(c)) {
                        return None;
                    }
                    self.pos += end + 2;
                }
                _ => return Some(()),
            }
        }
        Some(())
    }

    /// An ASCII identifier (`[A-Za-z_$][A-Za-z0-9_$]*`), without escapes.
    fn identifier(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if !is(self.peek()?, NAME_START) {
            return None;
        }
        let rest = self.src.get(start..)?;
        self.pos += rest.iter().position(|c| !is(*c, NAME)).unwrap_or(rest.len());
        self.slice(start, self.pos)
    }

    /// After `var`: the name it declares.
    fn var_name(&mut self) -> Option<&'a str> {
        let before = self.pos;
        self.trivia()?;
        if self.pos == before {
            // `var` must be followed by a space, as in `varx` it would be another name.
            return None;
        }
        let name = self.identifier()?;
        (!FORBIDDEN_NAMES.iter().any(|n| same(n, name))).then_some(name)
    }

    /// After the name of a `var`: nothing, or `= LITERAL`.
    fn initializer(&mut self, filter: Option<&mut Filter>) -> Option<()> {
        self.trivia()?;
        if self.peek() == Some(b'=') {
            self.pos += 1;
            self.literal(filter, 0)?;
        }
        Some(())
    }

    /// `( LITERAL, … )` after a stub's name.
    fn call_arguments(&mut self) -> Option<()> {
        self.trivia()?;
        self.expect(b'(')?;
        self.trivia()?;
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.literal(None, 0)?;
            self.trivia()?;
            match self.peek()? {
                b',' => self.pos += 1,
                b')' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `;`, or the end of the script (the only place where the hub leaves it out).
    fn end_of_statement(&mut self) -> Option<()> {
        self.trivia()?;
        match self.peek() {
            None => Some(()),
            Some(b';') => {
                self.pos += 1;
                Some(())
            }
            Some(_) => None,
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.pos += 1)
    }

    /// One literal value, arrays and objects included, inside `outer` arrays and objects
    /// already open. With a `filter`, the unread properties of entry objects are left out of
    /// its text.
    fn literal(&mut self, filter: Option<&mut Filter>, outer: usize) -> Option<()> {
        self.trivia()?;
        match self.peek()? {
            b'[' | b'{' => self.compound(filter, outer),
            b'\'' | b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            _ => match self.identifier()? {
                "null" | "true" | "false" => Some(()),
                _ => None,
            },
        }
    }

    /// An array or object literal (iteratively, so that deep nesting cannot overflow our
    /// stack), as [`Scanner::literal`] takes it.
    fn compound(&mut self, mut filter: Option<&mut Filter>, outer: usize) -> Option<()> {
        // The closing bracket of each open array or object.
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value is expected here.
            self.trivia()?;
            let mut done = true;
            match self.peek()? {
                c @ (b'[' | b'{') => {
                    let at = self.pos;
                    self.pos += 1;
                    if outer + open.len() >= MAX_DEPTH {
                        return None;
                    }
                    let close = if c == b'[' { b']' } else { b'}' };
                    open.push(close);
                    self.trivia()?;
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        open.pop();
                    } else {
                        if close == b'}' {
                            if let Some(f) = filter.as_deref_mut().filter(|_| at_entry(&open)) {
                                f.object = at;
                                f.props.clear();
                            }
                            self.key(&open, filter.as_deref_mut())?;
                        }
                        done = false;
                    }
                }
                b'\'' | b'"' => self.string()?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => match self.identifier()? {
                    "null" | "true" | "false" => {}
                    _ => return None,
                },
            }
            if !done {
                continue;
            }
            // A value ended: close brackets, or go on after a comma.
            loop {
                if let Some(f) = filter.as_deref_mut()
                    && at_entry(&open)
                    && let Some((start, keep)) = f.pending.take()
                    && keep
                {
                    f.props.push((start, self.pos));
                }
                let Some(&close) = open.last() else { return Some(()) };
                self.trivia()?;
                let c = self.peek()?;
                if c == b',' {
                    self.pos += 1;
                    self.trivia()?;
                    if self.peek() != Some(close) {
                        if close == b'}' {
                            self.key(&open, filter.as_deref_mut())?;
                        }
                        break;
                    }
                    // A trailing comma, then the close.
                } else if c != close {
                    return None;
                }
                self.pos += 1;
                if let Some(f) = filter.as_deref_mut()
                    && at_entry(&open)
                {
                    self.rewrite_entry(f)?;
                }
                open.pop();
            }
        }
    }

    /// At the `}` (consumed) of an entry object: its text with only the kept properties.
    fn rewrite_entry(&self, f: &mut Filter) -> Option<()> {
        f.text.push_str(self.slice(f.copied, f.object)?);
        f.text.push('{');
        for (i, (from, to)) in f.props.iter().enumerate() {
            if i > 0 {
                f.text.push(',');
            }
            f.text.push_str(self.slice(*from, *to)?);
        }
        f.text.push('}');
        f.copied = self.pos;
        Some(())
    }

    /// `KEY :` in an object: an identifier or a string, never `__proto__` (which sets the
    /// prototype, and twice is a syntax error). In an entry object, notes in `filter` whether
    /// the property is kept.
    fn key(&mut self, open: &[u8], filter: Option<&mut Filter>) -> Option<()> {
        self.trivia()?;
        let start = self.pos;
        let name = self.key_name()?;
        if let Some(f) = filter.filter(|_| at_entry(open)) {
            f.pending = Some((start, f.fields.contains(&name)));
        }
        Some(())
    }

    /// `KEY :` as [`Scanner::key`] takes it (the cursor on its first byte): the property name.
    fn key_name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let name = match self.peek()? {
            b'\'' | b'"' => {
                self.string()?;
                self.slice(start + 1, self.pos - 1)?
            }
            _ => self.identifier()?,
        };
        if name == "__proto__" {
            return None;
        }
        self.trivia()?;
        self.expect(b':')?;
        Some(name)
    }

    /// The value of a read global, decoded (see [`decode`]): `[`, elements that are `null` or
    /// entry objects, `]`.
    fn list(&mut self, fields: &[&str]) -> Option<Vec<Record>> {
        self.trivia()?;
        self.expect(b'[')?;
        let mut out = Vec::new();
        let mut len = 0;
        self.trivia()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Some(out);
        }
        loop {
            len += 1;
            if len > MAX_ENTRIES {
                return None;
            }
            if self.peek()? == b'{' {
                out.push(self.entry(fields)?);
            } else if self.identifier()? != "null" {
                return None;
            }
            if self.closed(b']')? {
                return Some(out);
            }
        }
    }

    /// An entry object of a decoded list (the cursor on its `{`): its `fields`.
    fn entry(&mut self, fields: &[&str]) -> Option<Record> {
        self.expect(b'{')?;
        let mut record: Record = vec![None; fields.len()];
        self.trivia()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Some(record);
        }
        loop {
            let name = self.key_name()?;
            let value = self.scalar()?;
            for (field, slot) in fields.iter().zip(record.iter_mut()) {
                if same(field, name) {
                    // A later property of the same name replaces an earlier one.
                    *slot = match value {
                        Scalar::Text(text) => Some(bounded(text)),
                        Scalar::Number(text) => Some(decimal(text)?),
                        Scalar::Other => None,
                    };
                }
            }
            if self.closed(b'}')? {
                return Some(record);
            }
        }
    }

    /// After an element of a decoded list or entry object: `,` (then perhaps the closing
    /// bracket, as JavaScript allows a trailing comma) or the closing bracket `close`.
    /// `Some(true)` when the bracket closed it.
    fn closed(&mut self, close: u8) -> Option<bool> {
        self.trivia()?;
        if self.peek()? == b',' {
            self.pos += 1;
            self.trivia()?;
        } else if self.peek()? != close {
            return None;
        }
        Some(self.expect(close).is_some())
    }

    /// A property value in an entry object of a decoded list.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        self.trivia()?;
        let start = self.pos;
        match self.peek()? {
            b'\'' | b'"' => {
                self.string()?;
                self.slice(start + 1, self.pos - 1).map(Scalar::Text)
            }
            b'-' | b'0'..=b'9' => {
                self.number()?;
                self.slice(start, self.pos).map(Scalar::Number)
            }
            // Inside the list and the entry object.
            b'[' | b'{' => self.literal(None, 2).map(|()| Scalar::Other),
            _ => match self.identifier()? {
                "null" | "true" | "false" => Some(Scalar::Other),
                _ => None,
            },
        }
    }

    /// `'…'` or `"…"` without backslashes, line breaks (U+2028 and U+2029 included) or NUL.
    fn string(&mut self) -> Option<()> {
        let quote = self.peek()?;
        self.pos += 1;
        loop {
            let rest = self.src.get(self.pos..)?;
            let at = rest.iter().position(|c| is(*c, STRING_STOP))?;
            self.pos += at + 1;
            match *rest.get(at)? {
                c if c == quote => return Some(()),
                b'\'' | b'"' => {}
                0xe2 => {
                    if self.peek() == Some(0x80) && matches!(self.peek_at(1), Some(0xa8 | 0xa9)) {
                        return None;
                    }
                }
                _ => return None,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, not followed by a name character or another dot.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return None;
            }
            self.digits();
        }
        match self.peek() {
            Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'.' => None,
            _ => Some(()),
        }
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const READ: &[Extract] = &[
        Extract { global: "list", fields: &["a", "b", "quoted key", "$k"] },
        Extract { global: "rate", fields: &["m"] },
    ];

    fn kept(src: &str) -> Option<String> {
        reduce(src, READ)
    }

    #[test]
    fn keeps_only_the_read_globals() {
        let src = "var list=[{a:'1',b:2},\n{a:'x'},\nnull];\nvar rate = [null];\n\
                   addCfg(\"dhcpreserve1\",68681729,'');\n\nvar usb_device_list=[null];\n\
                   //NAT Info\nvar MAX_NAT_RULES = 160;\naddCfg(\"i_Mac1\",35323905,'');\n\
                   /* block\n comment */ setCfg();\n;;\n// internet\nvar wan_suuport_eth = '1'\n";
        assert_eq!(
            kept(src).unwrap(),
            "var list=[{a:'1',b:2},\n{a:'x'},\nnull];\nvar rate = [null];\n"
        );
    }

    #[test]
    fn strings_with_semicolons_var_and_comment_marks_stay_strings() {
        let src = "addCfg(\"x;var list=[1];\",1,'a;b');\nvar rate=[{m:'// not a comment'}];\n\
                   var other='/* nor this */ var list=2;';\nvar list=[{a:\"it's; var rate\"}];";
        assert_eq!(
            kept(src).unwrap(),
            "var rate=[{m:'// not a comment'}];\nvar list=[{a:\"it's; var rate\"}];\n"
        );
    }

    #[test]
    fn comments_and_nesting() {
        let src = "/* var list=[0]; */ var list = [ // first\n [[{a:{b:[null,true,false]}}], \
                   {'quoted key':-1.5, $k: 0,},], ] /* tail */ ;\n// var rate=[];\nvar rate=[]";
        assert_eq!(
            kept(src).unwrap(),
            "var list = [ // first\n [[{a:{b:[null,true,false]}}], {'quoted key':-1.5, $k: 0,},], ] /* tail */ ;\nvar rate=[]\n"
        );
    }

    #[test]
    fn a_global_assigned_twice_keeps_both_in_order() {
        let src = "var list=[{a:'1'}];\nvar rate=[];\nvar list=[{a:'2'}];\n";
        assert_eq!(kept(src).unwrap(), "var list=[{a:'1'}];\nvar rate=[];\nvar list=[{a:'2'}];\n");
    }

    #[test]
    fn anything_but_data_statements_falls_back() {
        let fall_back = [
            // Code, not data.
            "var list=[];while(true){}",
            "var list=[];var rate=[];\nfunction f(){}",
            "var list=f(0);var rate=[];",
            "var list=[];var rate=[];\nlist.push(1);",
            "var list=[];var rate=[];\nlist=[1];",
            "var list=[], rate=[];",
            "var list=[];var rate=[];\nfoo(1);",
            "var list=[];var rate=[];\nvar x = parseInt(\"0\") && parseInt(\"1\");",
            "var list=[];var rate=[];\nvar x = 1 + 2;",
            "var list=[a];var rate=[];",
            "var list=[undefined];var rate=[];",
            // Names that would change what the kept statements or stubs do.
            "var list=[];var rate=[];\nvar addCfg = 1;\naddCfg('x');",
            "var list=[];var rate=[];\nvar undefined = 1;",
            "var list=[];var rate=[];\nvar eval = 1;",
            "var list=[{__proto__:[]}];var rate=[];",
            "var list=[{'__proto__':1}];var rate=[];",
            "varlist=[];var rate=[];",
            // Syntax the scanner does not take (escapes, templates, octal, exponents).
            "var list=['a\\'b'];var rate=[];",
            "var list=[`x`];var rate=[];",
            "var list=[01];var rate=[];",
            "var list=[1e5];var rate=[];",
            "var list=[0x1f];var rate=[];",
            "var list=[1.];var rate=[];",
            "var list=[,1];var rate=[];",
            "var list=[{a:1 b:2}];var rate=[];",
            "var list=['a\nb'];var rate=[];",
            "var list=['\u{2028}'];var rate=[];",
            // Truncated or not a script at all.
            "var list=[{a:'x'},",
            "var list=[];var rate=[{a:'x'}",
            "var list=[];var rate=[];addCfg('x',1",
            "var list=[];var rate=[];/* unterminated",
            "var list=[];var rate=[];'unterminated",
            "<html><body>Forbidden</body></html>",
            "\u{feff}var list=[];var rate=[];",
            "var list=[];var rate=[];// caf\u{e9}\n",
            // A missing `;` between statements (ASI is left to QuickJS).
            "var list=[]\nvar rate=[];",
            // A read global never declared.
            "var list=[];",
            "",
        ];
        for src in fall_back {
            assert_eq!(kept(src), None, "{src:?}");
        }
    }

    #[test]
    fn deep_nesting_falls_back_without_recursion() {
        let ok =
            format!("var list={}{};var rate=[];", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(kept(&ok).is_some());
        let deep = format!("var list=[{}];var rate=[];", "[".repeat(100_000));
        assert_eq!(kept(&deep), None);
    }

    #[test]
    fn non_ascii_inside_strings_is_kept() {
        let src = "var list=[{a:'Zo\u{eb}'}];var rate=['\u{1f600}'];";
        assert_eq!(kept(src).unwrap(), "var list=[{a:'Zo\u{eb}'}];\nvar rate=['\u{1f600}'];\n");
    }

    #[test]
    fn entry_objects_keep_only_the_read_properties() {
        let src = "var list=[{a:'1', x:[1,{y:2}], b:2, a:'again', c:'%3B'},\n\
                   {x:'only unread'},\n{}, {'b' : null /* b */ , 'x':1,},\n\
                   [{x:1}], 'text', null];\nvar rate={m:1, n:2};";
        assert_eq!(
            kept(src).unwrap(),
            "var list=[{a:'1',b:2,a:'again'},\n{},\n{}, {'b' : null},\n[{x:1}], 'text', null];\n\
             var rate={m:1, n:2};\n"
        );
    }
}
