//! Reading the hub's scripts: decoded in Rust when they are plain data, otherwise evaluated
//! in the JavaScript sandbox (rquickjs), and chosen globals read out.
//!
//! The hub's pages are nothing but data statements. [`decode`] reads such a page without
//! running it ([`prescan`] checks that the whole page is data statements and decodes the lists
//! read), yielding exactly what QuickJS would read from it; any page or value it does not
//! decode exactly as JavaScript does (code, escapes, other number forms, a list that is not a
//! plain list of entry objects) gives `None`, and the caller [`evaluate`]s the page instead.
//!
//! Every evaluation gets a fresh `Context`, dropped afterwards, in a `Runtime` whose limits
//! are set anew for it:
//! - a memory limit (`--js-memory-limit`), enforced by QuickJS's own allocator accounting;
//! - a time limit: an interrupt handler that stops the script at `min(--js-timeout, the
//!   scrape deadline)`, with an exception the script cannot catch;
//! - a stack limit, so deep recursion (in the script or in the parser) throws instead of
//!   overflowing the thread's stack;
//! - no host I/O: the context has only the base objects plus `eval` and `Promise` (no
//!   `console`, no modules or loader, no `JSON`, no timers), and the page's own functions
//!   (`addCfg`, `setCfg`) defined as no-op stubs. `Promise` is there because QuickJS leaks,
//!   and then aborts the process in `JS_FreeRuntime`, when a script uses `async` functions or
//!   `import()` in a context without it; pending promise jobs are never run.
//!
//! The runtime is new, or the one the same thread's previous evaluation left as its spare:
//! only an evaluation that succeeded, left no promise job pending and whose garbage a
//! collection freed (the heap back to about a new runtime's) leaves one; any other drops its
//! runtime. Creating a runtime and freeing it was a sizeable part of a scrape.
//!
//! Most of a hub page is statements never read. When the page is only data statements,
//! [`prescan`] cuts it down to the statements assigning the globals read (their entry objects
//! to the properties read), and only those are evaluated, in a context without the page's
//! functions or `Promise` (they call nothing); should that fail, the whole page is evaluated
//! as it came, so results and errors are the whole page's. Any other page is evaluated whole.
//!
//! Values are read out through the rquickjs API into plain Rust records, bounded in count and
//! length, so a hostile script cannot make the Rust side allocate without limit either.
//! Evaluation is synchronous: callers run it with [`run_blocking`] on tokio's blocking
//! pool, never on the async workers. Decoding needs no limits (it runs no code, and its work
//! and records are bounded by the body, [`MAX_ENTRIES`] and [`MAX_RAW_CHARS`]).

use std::{
    cell::RefCell,
    fmt,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use rquickjs::{
    Array, Atom, CaughtError, Context, Ctx, Object, Runtime, Value, context::intrinsic,
};

mod prescan;

/// One list entry read out of the script: the raw (still %-encoded) string of each requested
/// field, `None` where the field is missing, null or not a string or number.
pub type Record = Vec<Option<String>>;

/// Most entries read from one global list (the hub remembers every device ever seen, but a
/// list longer than this is not a home network).
pub const MAX_ENTRIES: usize = 4096;
/// Longest raw string read from the script; longer values are cut.
pub const MAX_RAW_CHARS: usize = 1024;
/// The engine's stack limit.
pub const MAX_STACK_BYTES: usize = 256 * 1024;

/// Defines the functions the hub's pages call (spec §6.1); they do nothing.
const PRELUDE: &str = "function addCfg() {}\nfunction setCfg() {}\n";

/// Limits of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsLimits {
    pub memory: ByteSize,
    pub timeout: Duration,
}

impl Default for JsLimits {
    fn default() -> Self {
        JsLimits { memory: ByteSize(16 << 20), timeout: Duration::from_secs(1) }
    }
}

/// A global list to read, and the fields to read from each of its objects.
#[derive(Debug, Clone, Copy)]
pub struct Extract {
    pub global: &'static str,
    pub fields: &'static [&'static str],
}

/// The lists `extracts` read from `source`, decoded in Rust without QuickJS, when the script is
/// only data statements assigning each global a plain list of entry objects whose read values
/// are literals decoded exactly as JavaScript does ([`prescan::decode`]). `None` for any other
/// script: [`evaluate`] it instead.
///
/// It runs no code, so it needs none of the sandbox's limits: its work is linear in `source`,
/// and it keeps at most [`MAX_ENTRIES`] entries per list and [`MAX_RAW_CHARS`] characters per
/// value.
pub fn decode(source: &str, extracts: &[Extract]) -> Option<Vec<Vec<Record>>> {
    prescan::decode(source, extracts)
}

/// Evaluates `source` in a fresh sandbox and reads each of `extracts`.
///
/// Fails when the script does not compile, throws, hits a limit, or does not define one of
/// the globals as an array: never an empty list in place of an error. The script stops at
/// `min(now + limits.timeout, deadline)`.
///
/// When the script is only data statements, just the statements that assign the globals
/// read are evaluated ([`prescan`]); should that fail, the whole script is evaluated (within
/// the same time limit), so errors are those of the whole script.
pub fn evaluate(
    source: &str,
    extracts: &[Extract],
    limits: JsLimits,
    deadline: Instant,
) -> anyhow::Result<Vec<Vec<Record>>> {
    let clock = Clock::new(limits.timeout, deadline);
    if let Some(reduced) = prescan::reduce(source, extracts)
        && let Ok(lists) = evaluate_once(Script::Data(&reduced), extracts, limits, &clock)
    {
        return Ok(lists);
    }
    evaluate_once(Script::Whole(source), extracts, limits, &clock)
}

/// What [`evaluate_once`] runs.
#[derive(Debug, Clone, Copy)]
enum Script<'s> {
    /// A page as the hub served it: its context gets the page's functions and `Promise`.
    Whole(&'s str),
    /// The data statements [`prescan::reduce`] kept: they call nothing, so the base objects
    /// and `eval` do.
    Data(&'s str),
}

/// When an evaluation started and when it must stop.
struct Clock {
    start: Instant,
    /// `start + --js-timeout`.
    own: Instant,
    deadline: Instant,
}

impl Clock {
    fn new(timeout: Duration, deadline: Instant) -> Clock {
        let start = Instant::now();
        Clock { start, own: start + timeout, deadline }
    }

    fn until(&self) -> Instant {
        self.own.min(self.deadline)
    }

    /// `what`, with the limit that stopped the script if one did.
    fn explain(&self, what: &str) -> String {
        if Instant::now() >= self.until() {
            let which =
                if self.own <= self.deadline { "--js-timeout" } else { "the scrape deadline" };
            format!("{what}: stopped after {:.3}s ({which})", self.start.elapsed().as_secs_f64())
        } else {
            what.to_owned()
        }
    }
}

thread_local! {
    /// The runtime of this thread's last evaluation, kept for the next one when that
    /// evaluation succeeded and left nothing behind (see [`evaluate_once`]).
    static SPARE: RefCell<Option<Spare>> = const { RefCell::new(None) };
}

/// A runtime between evaluations, and its heap size when it was new.
struct Spare {
    rt: Runtime,
    fresh_bytes: i64,
}

/// How much more heap than a new runtime a runtime may keep and still be used again.
const SPARE_SLACK_BYTES: i64 = 64 << 10;

/// One evaluation in a fresh context. The runtime is this thread's spare one if there is
/// one, with its limits set anew; it is kept for the next evaluation only when this one
/// succeeded, no promise job is pending and a garbage collection brought its heap back to
/// about what a new runtime has. Anything else drops it.
fn evaluate_once(
    script: Script,
    extracts: &[Extract],
    limits: JsLimits,
    clock: &Clock,
) -> anyhow::Result<Vec<Vec<Record>>> {
    let spare = SPARE.with(|s| s.borrow_mut().take());
    let Spare { rt, fresh_bytes } = match spare {
        Some(spare) => spare,
        None => {
            let rt = Runtime::new().context("create the javascript runtime")?;
            let fresh_bytes = rt.memory_usage().malloc_size;
            Spare { rt, fresh_bytes }
        }
    };
    rt.set_memory_limit(limits.memory.0);
    rt.set_max_stack_size(MAX_STACK_BYTES);
    let until = clock.until();
    rt.set_interrupt_handler(Some(Box::new(move || Instant::now() >= until)));
    let (ctx, source) = match script {
        Script::Whole(source) => {
            (Context::custom::<(intrinsic::Eval, intrinsic::Promise)>(&rt), source)
        }
        Script::Data(source) => (Context::custom::<(intrinsic::Eval,)>(&rt), source),
    };
    let ctx = ctx.context("create the javascript context (is --js-memory-limit too small?)")?;
    let result = ctx.with(|ctx| -> anyhow::Result<Vec<Vec<Record>>> {
        if let Script::Whole(_) = script {
            ctx.eval::<(), _>(PRELUDE)
                .map_err(|e| js_error(&ctx, e, limits))
                .context("define the page's functions")?;
        }
        ctx.eval::<Value, _>(source.as_bytes().to_vec())
            .map(drop)
            .map_err(|e| js_error(&ctx, e, limits))
            .map_err(|e| anyhow!(clock.explain(&format!("{e:#}"))))
            .context("evaluate the script")?;
        let globals = ctx.globals();
        let mut out = Vec::with_capacity(extracts.len());
        for ex in extracts {
            let list = read_list(&ctx, &globals, *ex, limits)
                .map_err(|e| anyhow!(clock.explain(&format!("{e:#}"))))?;
            out.push(list);
        }
        Ok(out)
    });
    // Values are gone with the closure; the context goes before the runtime.
    drop(ctx);
    if result.is_ok() && !rt.is_job_pending() {
        rt.set_interrupt_handler(None);
        rt.run_gc();
        if rt.memory_usage().malloc_size <= fresh_bytes + SPARE_SLACK_BYTES {
            SPARE.with(|s| *s.borrow_mut() = Some(Spare { rt, fresh_bytes }));
            return result;
        }
    }
    drop(rt);
    result
}

/// Runs `work` (an [`evaluate`] and what reads its result) on tokio's blocking pool, holding
/// `permit` until it really ended (even when the caller gave up at the deadline), so that
/// evaluations never pile up.
pub async fn run_blocking<T: Send + 'static>(
    permit: tokio::sync::OwnedSemaphorePermit,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let task = tokio::task::spawn_blocking(move || {
        let result = work();
        drop(permit);
        result
    });
    task.await.map_err(|e| anyhow!("javascript evaluation task failed: {e}"))?
}

/// One permit per evaluation: the exporter evaluates one script at a time, which bounds the
/// memory all sandboxes together can take to one `--js-memory-limit`.
pub fn new_gate() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(1))
}

fn read_list<'js>(
    ctx: &Ctx<'js>,
    globals: &Object<'js>,
    ex: Extract,
    limits: JsLimits,
) -> anyhow::Result<Vec<Record>> {
    let value: Value = globals.get(ex.global).map_err(|e| js_error(ctx, e, limits))?;
    if value.is_undefined() {
        bail!("the script defines no {}", ex.global);
    }
    let Some(array) = value.as_array() else {
        bail!("{} is not an array but {}", ex.global, value.type_name());
    };
    let len = array.len();
    if len > MAX_ENTRIES {
        bail!("{} has {len} entries, more than the {MAX_ENTRIES} accepted", ex.global);
    }
    // The field names as atoms once, not once per entry.
    let fields = ex
        .fields
        .iter()
        .map(|f| Atom::from_str(ctx.clone(), f))
        .collect::<rquickjs::Result<Vec<Atom>>>()
        .map_err(|e| js_error(ctx, e, limits))?;
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let item: Value = get_index(ctx, array, i, limits)?;
        if item.is_null() || item.is_undefined() {
            // Every list ends with a null sentinel; `[null]` is the empty list.
            continue;
        }
        let Some(obj) = item.as_object().filter(|_| !item.is_array() && !item.is_function()) else {
            bail!("{}[{i}] is not an object but {}", ex.global, item.type_name());
        };
        let mut rec = Vec::with_capacity(ex.fields.len());
        for field in &fields {
            let v: Value = obj.get(field.clone()).map_err(|e| js_error(ctx, e, limits))?;
            rec.push(scalar(&v).map_err(|e| js_error(ctx, e, limits))?);
        }
        out.push(rec);
    }
    Ok(out)
}

fn get_index<'js>(
    ctx: &Ctx<'js>,
    array: &Array<'js>,
    i: usize,
    limits: JsLimits,
) -> anyhow::Result<Value<'js>> {
    array.get(i).map_err(|e| js_error(ctx, e, limits))
}

/// A string or number as text; anything else is `None`.
fn scalar(v: &Value) -> rquickjs::Result<Option<String>> {
    if let Some(s) = v.as_string() {
        return Ok(Some(bounded(&s.to_string()?)));
    }
    if let Some(i) = v.as_int() {
        return Ok(Some(i.to_string()));
    }
    if let Some(f) = v.as_float() {
        return Ok(Some(number_text(f)));
    }
    Ok(None)
}

/// A string read out, cut to [`MAX_RAW_CHARS`] characters.
fn bounded(s: &str) -> String {
    if s.len() > MAX_RAW_CHARS && s.chars().count() > MAX_RAW_CHARS {
        s.chars().take(MAX_RAW_CHARS).collect()
    } else {
        s.to_owned()
    }
}

/// A number read out as text: an integral value below 10^18 without a fraction (as an
/// integer QuickJS keeps as one is written), any other as Rust writes an `f64`.
fn number_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e18 {
        (f as i64).to_string()
    } else {
        f.to_string()
    }
}

/// A clear, bounded message for an engine error.
fn js_error(ctx: &Ctx<'_>, err: rquickjs::Error, limits: JsLimits) -> anyhow::Error {
    let text = match CaughtError::from_error(ctx, err) {
        CaughtError::Exception(ex) => {
            let name: Option<String> = ex.as_object().get("name").ok();
            let message = ex.message().unwrap_or_default();
            let line: Option<i32> = ex.as_object().get("lineNumber").ok();
            let mut t = format!("{}: {message}", name.unwrap_or_else(|| "Error".to_owned()));
            if let Some(line) = line.filter(|l| *l > 0) {
                t.push_str(&format!(" (line {line})"));
            }
            t
        }
        CaughtError::Value(v) => match v.as_string().and_then(|s| s.to_string().ok()) {
            Some(s) => format!("the script threw {s:?}"),
            None if v.is_null() || v.is_undefined() => {
                // QuickJS throws null when it cannot even allocate its "out of memory" error.
                return anyhow!(
                    "the script threw null, as QuickJS does when it runs out of memory \
                     (limit {}, --js-memory-limit)",
                    limits.memory
                );
            }
            None => format!("the script threw a {}", v.type_name()),
        },
        CaughtError::Error(e) => e.to_string(),
    };
    let text: String = text.chars().take(300).collect();
    let lower = text.to_ascii_lowercase();
    if lower.contains("out of memory") || lower.contains("allocation") {
        anyhow!("{text}: the script hit the memory limit of {} (--js-memory-limit)", limits.memory)
    } else if lower.contains("stack size exceeded") || lower.contains("stack overflow") {
        anyhow!(
            "{text}: the script hit the stack limit of {MAX_STACK_BYTES} bytes (deep recursion)"
        )
    } else if lower.contains("syntaxerror") {
        anyhow!("{text}: the body is not valid javascript (truncated, or not a hub script)")
    } else {
        anyhow!(text)
    }
}

/// A byte count given as `16MiB`, `512KiB`, `1GiB`, `16MB`, `1024` (bytes) …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<ByteSize> {
        let t = s.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(digits);
        let n: usize = num.parse().with_context(|| format!("invalid size {s:?} (e.g. 16MiB)"))?;
        let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "kb" => 1_000,
            "m" | "mib" => 1 << 20,
            "mb" => 1_000_000,
            "g" | "gib" => 1 << 30,
            "gb" => 1_000_000_000,
            other => {
                bail!("invalid size unit {other:?} in {s:?} (use B, KiB, MiB, GiB, KB, MB, GB)")
            }
        };
        let bytes = n.checked_mul(scale).with_context(|| format!("size {s:?} is too large"))?;
        if bytes < 1 << 20 {
            bail!("size {s:?} is below the 1MiB the javascript engine needs");
        }
        if bytes > 1 << 30 {
            bail!("size {s:?} is above 1GiB");
        }
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", self.0 >> 20)
        } else if self.0.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", self.0 >> 10)
        } else {
            write!(f, "{}B", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LIST: Extract = Extract { global: "list", fields: &["a", "b"] };

    fn run(src: &str) -> anyhow::Result<Vec<Vec<Record>>> {
        evaluate(src, &[LIST], JsLimits::default(), Instant::now() + Duration::from_secs(10))
    }

    fn err(src: &str) -> String {
        format!("{:#}", run(src).unwrap_err())
    }

    #[test]
    fn reads_lists_skipping_null_and_keeping_raw_strings() {
        let out =
            run("var list=[{a:'x%27y',b:7},\n{a:null},\nnull];\naddCfg(\"k\",1,'');").unwrap();
        assert_eq!(
            out,
            vec![vec![vec![Some("x%27y".to_owned()), Some("7".to_owned())], vec![None, None]]]
        );
        assert_eq!(run("var list=[null];").unwrap(), vec![Vec::<Record>::new()]);
    }

    #[test]
    fn missing_or_wrong_globals_are_errors_not_empty_lists() {
        assert!(err("var other=[];").contains("defines no list"), "{}", err("var other=[];"));
        assert!(err("var list='x';").contains("not an array"));
        assert!(err("var list=[1];").contains("not an object"));
    }

    #[test]
    fn no_host_io_is_reachable() {
        let out = run(
            "var list=[{a: typeof console + ',' + typeof require + ',' + typeof fetch + ',' + \
             typeof std + ',' + typeof os + ',' + typeof JSON + ',' + typeof setTimeout + ',' + typeof queueMicrotask + ',' + typeof Date}];",
        )
        .unwrap();
        let a = out[0][0][0].clone().unwrap();
        assert_eq!(
            a,
            "undefined,undefined,undefined,undefined,undefined,undefined,undefined,function,undefined"
        );
        // Without a loader, import() only makes a rejected promise whose job never runs; with
        // async functions it once made QuickJS abort at JS_FreeRuntime (see the module doc).
        run("import('x'); var list=[];").unwrap();
        run("async function f(){ await 1; while(true){} } f(); var list=[];").unwrap();
    }

    #[test]
    fn hostile_scripts_fail_with_clear_messages() {
        let e = err("var list=[];while(true){}");
        assert!(e.contains("interrupted") && e.contains("--js-timeout"), "{e}");
        let e = err("var list=[];try{while(true){}}catch(e){}");
        assert!(e.contains("interrupted"), "{e}");
        let e = err("var a=[];for(;;){a.push({x:a.length,y:'pad'+a.length})}");
        assert!(e.contains("--js-memory-limit"), "{e}");
        let e = err("var list=[]; var s = 'x'.repeat(64 * 1024 * 1024);");
        assert!(e.contains("out of memory") && e.contains("--js-memory-limit"), "{e}");
        let e = err("function f(n){return f(n+1)+1}; var list=f(0);");
        assert!(e.contains("stack limit"), "{e}");
        let e = err("var list=[{a:'x'},");
        assert!(e.contains("SyntaxError") && e.contains("not valid javascript"), "{e}");
        let e = err("<html><body>Forbidden</body></html>");
        assert!(e.contains("SyntaxError"), "{e}");
        let e = err("throw new Error('boom')");
        assert!(e.contains("boom"), "{e}");
        let e = err("throw 'plain'");
        assert!(e.contains("plain"), "{e}");
        let e = err(&format!("var list=[{}];", "[".repeat(100_000)));
        assert!(!e.is_empty());
    }

    #[test]
    fn the_scrape_deadline_wins_over_the_js_timeout() {
        let start = Instant::now();
        let e = evaluate(
            "while(true){}",
            &[LIST],
            JsLimits { timeout: Duration::from_secs(30), ..JsLimits::default() },
            start + Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(format!("{e:#}").contains("scrape deadline"), "{e:#}");
    }

    #[test]
    fn long_lists_and_strings_are_bounded() {
        let e = err("var list=[]; list.length=5000;");
        assert!(e.contains("more than"), "{e}");
        let out = run("var s='x'; for (var i=0;i<12;i++) s=s+s; var list=[{a:s}];").unwrap();
        assert_eq!(out[0][0][0].as_ref().unwrap().len(), MAX_RAW_CHARS);
    }

    #[test]
    fn byte_sizes_parse_and_are_validated() {
        assert_eq!("16MiB".parse::<ByteSize>().unwrap(), ByteSize(16 << 20));
        assert_eq!("16 MiB".parse::<ByteSize>().unwrap(), ByteSize(16 << 20));
        assert_eq!("2097152".parse::<ByteSize>().unwrap(), ByteSize(2 << 20));
        assert_eq!("4MB".parse::<ByteSize>().unwrap(), ByteSize(4_000_000));
        assert!("12".parse::<ByteSize>().is_err());
        assert!("16parsecs".parse::<ByteSize>().is_err());
        assert!("99999999999999999999".parse::<ByteSize>().is_err());
        assert!("2GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(16 << 20).to_string(), "16MiB");
    }

    /// Every hub page of the fixtures and the capture corpus is decoded in Rust and takes the
    /// reduced path, and both give exactly what evaluating the whole page in QuickJS gives.
    #[test]
    fn decoded_and_reduced_scripts_read_the_same_as_whole_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let mut pages: Vec<(String, String)> = Vec::new();
        for name in ["cgi_basicMyDevice.js", "cgi_basicMyDevice_empty.js", "cgi_owl.js"] {
            let body = std::fs::read_to_string(dir.join("fixtures").join(name)).unwrap();
            pages.push((name.to_owned(), body));
        }
        for entry in std::fs::read_dir(dir.join("captures")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|x| x != "yml") {
                continue;
            }
            let capture =
                exporter_core::capture::Capture::from_slice(&std::fs::read(&path).unwrap())
                    .unwrap();
            for exchange in capture.exchanges {
                let exporter_core::capture::Exchange::Http(http) = exchange else { continue };
                let page =
                    [crate::DEVICES_PATH, crate::MESH_PATH].iter().any(|p| http.url.ends_with(p));
                if let Some(body) = http.response_body.filter(|b| page && b.starts_with("var ")) {
                    pages.push((format!("{} {}", path.display(), http.url), body));
                }
            }
        }
        // The simulator's pages: its tricky device list, none, and a long list.
        let lists = [
            ("tricky", device_sim::smarthub::tricky_devices()),
            ("empty", Vec::new()),
            ("many:500", device_sim::smarthub::many_devices(500)),
        ];
        for (what, devices) in lists {
            let hub = device_sim::smarthub::SmartHub::default();
            hub.set_devices(devices);
            for path in [crate::DEVICES_PATH, crate::MESH_PATH] {
                let req = device_sim::http::Request {
                    method: "GET".to_owned(),
                    path: path.to_owned(),
                    query: String::new(),
                    headers: vec![("referer".to_owned(), "http://hub/".to_owned())],
                    body: Vec::new(),
                };
                let answer = hub.respond(&req);
                assert_eq!(answer.status, 200, "device-sim {what} {path}");
                let body = String::from_utf8(answer.body).unwrap();
                pages.push((format!("device-sim {what} {path}"), body));
            }
        }
        let mut seen = [0, 0];
        for (name, body) in pages {
            let (extracts, n) = match body.contains("known_device_list") {
                true => (crate::DEVICE_EXTRACTS, 0),
                false => (crate::MESH_EXTRACTS, 1),
            };
            let reduced =
                prescan::reduce(&body, extracts).unwrap_or_else(|| panic!("{name}: not reduced"));
            assert!(reduced.len() < body.len(), "{name}");
            let clock =
                Clock::new(Duration::from_secs(10), Instant::now() + Duration::from_secs(10));
            let limits = JsLimits::default();
            let whole = evaluate_once(Script::Whole(&body), extracts, limits, &clock).unwrap();
            let part = evaluate_once(Script::Data(&reduced), extracts, limits, &clock).unwrap();
            assert_eq!(part, whole, "{name}");
            let decoded = decode(&body, extracts).unwrap_or_else(|| panic!("{name}: not decoded"));
            assert_eq!(decoded, whole, "{name}");
            if !whole[0].is_empty() {
                seen[n] += 1;
            }
        }
        assert!(seen[0] >= 4 && seen[1] >= 4, "pages with entries: {seen:?}");
    }

    /// Reads `list` (fields `a`, `b`, `constructor`) from `src` by evaluating it whole in
    /// QuickJS.
    fn whole(src: &str) -> anyhow::Result<Vec<Vec<Record>>> {
        let clock = Clock::new(Duration::from_secs(10), Instant::now() + Duration::from_secs(10));
        evaluate_once(Script::Whole(src), &[PROBE], JsLimits::default(), &clock)
    }

    const PROBE: Extract = Extract { global: "list", fields: &["a", "b", "constructor"] };

    /// `src` is decoded in Rust, to exactly what QuickJS reads from it.
    #[track_caller]
    fn decodes_as_quickjs(src: &str) {
        let decoded = decode(src, &[PROBE]).unwrap_or_else(|| panic!("not decoded: {src:?}"));
        assert_eq!(decoded, whole(src).unwrap(), "{src:?}");
    }

    #[test]
    fn literals_decode_exactly_as_quickjs_reads_them() {
        let values = [
            // Strings, as the hub writes them and otherwise.
            "'x%27y'",
            "\"it's\"",
            "'say \"hi\"'",
            "''",
            "'a;b // c /* d */'",
            "'tab\there'",
            "'Zo\u{eb} \u{4e2d}\u{6587} \u{1f600}'",
            "'\u{feff}\u{1}'",
            "'NULL'",
            // Numbers.
            "0",
            "7",
            "-1",
            "-0",
            "0.0",
            "-0.0",
            "1.5",
            "-1.5",
            "0.1",
            "100.0",
            "0.000001",
            "2147483647",
            "2147483648",
            "-2147483648",
            "-2147483649",
            "4294967295",
            "123456789012345",
            "999999999999999",
            "-99999999999999.9",
            "0.12345678901234",
            "0.00000000000001",
            // Values with nothing to read.
            "null",
            "true",
            "false",
            "[]",
            "{}",
            "[1, 'x', [null, {a: 'deep'}]]",
            "{a: 'inner', b: 2}",
        ];
        for v in values {
            decodes_as_quickjs(&format!("var list=[{{a:{v}, b:{v}}},null];"));
        }
        // Values longer than MAX_RAW_CHARS are cut the same way, by characters.
        decodes_as_quickjs(&format!("var list=[{{a:'{}'}}];", "\u{e9}x".repeat(MAX_RAW_CHARS)));
        decodes_as_quickjs(&format!("var list=[{{a:'{}'}}];", "y".repeat(MAX_RAW_CHARS + 1)));
    }

    #[test]
    fn lists_and_statements_decode_exactly_as_quickjs_reads_them() {
        let scripts = [
            "var list=[];",
            "var list=[null];",
            "var list=[null,null,];",
            "var list=[{}];",
            "var list=[{},{a:'1'},null,{b:2,},];",
            // Missing fields, a property of Object.prototype, and one the entry sets.
            "var list=[{x:'1'}];",
            "var list=[{constructor:'mine'}];",
            // Keys: quoted, reserved words, `$`, duplicates (the last one counts).
            "var list=[{'a':'1',\"b\":'2'}];",
            "var list=[{if:1, null:2, $x:3, _y:4, a:5}];",
            "var list=[{a:'1', b:'x', a:'2'}];",
            "var list=[{a:'1', a:null}];",
            "var list=[{a:'1', a:{}}];",
            // Comments and whitespace everywhere.
            "/* c */ var list /* c */ = /* c */ [ // c\n { a : 'x' , // c\n b : 1 } /* c */ , \
             null ] // c\n ;",
            "\n\t\x0b\x0c var list=[{a:'x'}]\n",
            // Several statements: the last assignment counts, a bare `var` changes nothing.
            "var list=[{a:'1'}];\nvar list=[{a:'2'}];",
            "var list=[{a:'1'}];\nvar list;",
            "var list;\nvar list=[{a:'1'}];",
            "addCfg(\"i_Mac1\",35323905,'');\nvar list=[{a:'1'}];\nsetCfg();;\nvar other=[1,{x:2}];",
            "var other = 'var list=[{a:1}];';\nvar list=[{a:'real'}];",
        ];
        for src in scripts {
            decodes_as_quickjs(src);
        }
        // The deepest nesting the pre-scan takes, inside an entry.
        let depth = prescan::MAX_DEPTH - 2;
        decodes_as_quickjs(&format!(
            "var list=[{{a:{}{}}}];",
            "[".repeat(depth),
            "]".repeat(depth)
        ));
        let entries = format!("var list=[{}null];", "{a:'x'},".repeat(MAX_ENTRIES - 1));
        decodes_as_quickjs(&entries);
    }

    #[test]
    fn anything_not_decoded_exactly_falls_back_to_quickjs() {
        let fall_back = [
            // Escapes and line continuations.
            "var list=[{a:'a\\'b'}];",
            "var list=[{a:'\\x41'}];",
            "var list=[{a:'\\u0041'}];",
            "var list=[{a:'\\u{41}'}];",
            "var list=[{a:'\\101'}];",
            "var list=[{a:'\\n'}];",
            "var list=[{a:'a\\\nb'}];",
            "var list=[{a:`x`}];",
            // Number forms not decoded.
            "var list=[{a:1e5}];",
            "var list=[{a:1E-5}];",
            "var list=[{a:0x1f}];",
            "var list=[{a:0o17}];",
            "var list=[{a:0b11}];",
            "var list=[{a:017}];",
            "var list=[{a:.5}];",
            "var list=[{a:1.}];",
            "var list=[{a:1_000}];",
            "var list=[{a:12n}];",
            "var list=[{a:1234567890123456}];",
            "var list=[{a:0.1234567890123456}];",
            "var list=[{a:- 1}];",
            "var list=[{a:+1}];",
            // Values that are not literals.
            "var list=[{a:undefined}];",
            "var list=[{a:NaN}];",
            "var list=[{a:Infinity}];",
            "var list=[{a:x}];",
            "var list=[{a:'a'+'b'}];",
            "var list=[{a:f()}];",
            "var list=[{a:parseInt(\"0\") && parseInt(\"1\")}];",
            "var list=[{a:(1)}];",
            "var list=[{a:[,1]}];",
            "var list=[{a}];",
            "var list=[{a(){}}];",
            "var list=[{get a(){return 1}}];",
            "var list=[{[a]:1}];",
            "var list=[{1:'x'}];",
            "var list=[{...x}];",
            "var list=[{__proto__:{a:1}}];",
            // Lists that are not plain: holes, other elements, another value.
            "var list=[,{a:1}];",
            "var list=[{a:1},,];",
            "var list=[undefined];",
            "var list=['x'];",
            "var list=[1];",
            "var list=[true];",
            "var list=[[{a:1}]];",
            "var list={};",
            "var list='x';",
            "var list=null;",
            "var list=[{a:1}].concat([]);",
            // The global never assigned, or assigned by code.
            "var list;",
            "var other=[];",
            "",
            "var list=[];list.push({a:1});",
            "var list=[], other=[];",
            "list=[{a:1}];",
            "var list=[{a:1}];\nfunction f(){}",
            "var list=[{a:1}];\nwhile(false){}",
            "var list=[{a:1}]\nvar other=1;",
            // Not a script of data statements at all.
            "var list=[{a:'x'},",
            "<html><body>Forbidden</body></html>",
            "\u{feff}var list=[];",
        ];
        for src in fall_back {
            assert_eq!(decode(src, &[PROBE]), None, "{src:?}");
        }
        // Too many entries or too deep: QuickJS gives the error or the value.
        let long = format!("var list=[{}];", "null,".repeat(MAX_ENTRIES + 1));
        assert_eq!(decode(&long, &[PROBE]), None);
        assert!(format!("{:#}", whole(&long).unwrap_err()).contains("more than"));
        let depth = prescan::MAX_DEPTH - 1;
        let deep = format!("var list=[{{a:{}{}}}];", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(decode(&deep, &[PROBE]), None);
        // Whatever falls back is still read, by QuickJS, as before.
        assert_eq!(
            run("var list=[{a:'\\x41',b:0x1f}];").unwrap(),
            vec![vec![vec![Some("A".to_owned()), Some("31".to_owned())]]]
        );
    }

    /// Scripts put together from the literal forms above (and some that fall back), decoded
    /// whenever the decoder takes them: each decoded one reads exactly as QuickJS reads it.
    #[test]
    fn generated_scripts_decode_exactly_as_quickjs_reads_them() {
        const KEYS: &[&str] = &["a", "b", "'a'", "\"b\"", "constructor", "x", "if", "$"];
        const VALUES: &[&str] = &[
            "'v%20w'",
            "\"q'\"",
            "''",
            "'\u{e9}\u{1f600}'",
            "0",
            "-0",
            "12",
            "-7.25",
            "0.5",
            "4294967296",
            "1e3",
            "0x10",
            "null",
            "true",
            "false",
            "[]",
            "{}",
            "[1,{a:'n'}]",
            "'\\x41'",
            "undefined",
            "x",
            "'a'+'b'",
            ".5",
        ];
        const GAPS: &[&str] = &["", " ", "\n", "/* c */", "// c\n", "\t"];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut decoded = 0;
        for _ in 0..400 {
            let mut src = String::new();
            for _ in 0..1 + next(3) {
                let gap = GAPS[next(GAPS.len())];
                match next(4) {
                    0 => {
                        src.push_str(&format!("addCfg('k',{}){gap};\n", VALUES[next(VALUES.len())]))
                    }
                    1 => src.push_str(&format!("var other={gap}{};\n", VALUES[next(VALUES.len())])),
                    _ => {
                        src.push_str("var list=[");
                        for _ in 0..next(4) {
                            if next(5) == 0 {
                                src.push_str("null,");
                                continue;
                            }
                            src.push('{');
                            for _ in 0..next(5) {
                                let (k, v) = (KEYS[next(KEYS.len())], VALUES[next(VALUES.len())]);
                                src.push_str(&format!("{gap}{k}{gap}:{gap}{v}{gap},"));
                            }
                            src.push_str("},");
                        }
                        src.push_str("null];\n");
                    }
                }
            }
            if let Some(lists) = decode(&src, &[PROBE]) {
                assert_eq!(lists, whole(&src).unwrap(), "{src:?}");
                decoded += 1;
            }
        }
        assert!(decoded > 50, "only {decoded} scripts decoded");
    }

    #[test]
    fn a_runtime_is_used_again_only_after_a_clean_evaluation() {
        let spare = || SPARE.with(|s| s.borrow().is_some());
        SPARE.with(|s| s.borrow_mut().take());
        run("var list=[{a:'1'}];").unwrap();
        assert!(spare(), "a clean evaluation keeps its runtime");
        assert!(run("var list=[];while(true){}").is_err());
        assert!(!spare(), "a failed evaluation drops its runtime");
        run("var list=[{a:'2'}];").unwrap();
        run("async function f(){ await 1; } f(); var list=[];").unwrap();
        assert!(!spare(), "a pending promise job drops the runtime");
        // A spare runtime gets the limits of each evaluation anew.
        run("var list=[null];").unwrap();
        assert!(spare());
        let e = err("var list=[]; var s = 'x'.repeat(64 * 1024 * 1024);");
        assert!(e.contains("--js-memory-limit"), "{e}");
        run("var list=[null];").unwrap();
        let e = err("function f(n){return f(n+1)+1}; var list=f(0);");
        assert!(e.contains("stack limit"), "{e}");
        run("var list=[null];").unwrap();
        let e = err("var list=[];while(true){}");
        assert!(e.contains("interrupted") && e.contains("--js-timeout"), "{e}");
        assert_eq!(run("var list=[{a:'x%27y',b:7}];").unwrap()[0][0][0].as_deref(), Some("x%27y"));
    }
}
