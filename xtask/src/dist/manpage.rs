//! Man pages (section 1, roff) generated from an exporter's `--help` text.
//!
//! The help layout is the one exporter-core prints: a `Usage:` line, a description, then
//! sections (`Options:`, `Common flags:`) of flags whose descriptions start in column 20, and
//! a closing paragraph about environment variables. [`render`] is a pure function of that text
//! and the facts in [`Exporter`], so it is unit-tested without a binary.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::Exporter;

/// One flag as `--help` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flag {
    /// `--target`
    long: String,
    /// `target` for options, `None` for switches.
    arg: Option<String>,
    description: String,
}

/// One `Name:` section of the help (e.g. `Options`, `Common flags`).
#[derive(Debug)]
struct Section {
    title: String,
    flags: Vec<Flag>,
}

/// The parts of a `--help` text.
#[derive(Debug)]
struct Help {
    description: String,
    sections: Vec<Section>,
    /// The paragraph after the last section (how flags map to environment variables).
    epilogue: String,
}

/// Flags that have no environment variable (see exporter-core's options.rs).
const NO_ENV: [&str; 3] = ["--help", "--version", "--healthcheck"];

/// The column where flag descriptions start in the help layout.
const DESCRIPTION_COLUMN: usize = 20;

fn parse(help: &str) -> anyhow::Result<Help> {
    let mut lines = help.lines().peekable();
    let usage = lines
        .next()
        .and_then(|l| l.strip_prefix("Usage: "))
        .context("the help text does not start with `Usage: `")?
        .trim()
        .to_owned();
    let mut description = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut epilogue = Vec::new();
    for line in lines {
        let is_header = !line.starts_with(' ') && line.ends_with(':') && !line.contains(". ");
        if is_header {
            let title = line.trim_end_matches(':').to_owned();
            sections.push(Section { title, flags: Vec::new() });
            epilogue.clear();
            continue;
        }
        let Some(section) = sections.last_mut() else {
            description.push(line);
            continue;
        };
        if line.trim().is_empty() {
            if !section.flags.is_empty() || !epilogue.is_empty() {
                epilogue.push(line);
            }
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if !epilogue.is_empty() || indent == 0 {
            // Text after the flags: the closing paragraph.
            epilogue.push(line);
        } else if indent >= DESCRIPTION_COLUMN {
            let flag = section
                .flags
                .last_mut()
                .with_context(|| format!("description line before any flag: {line:?}"))?;
            if !flag.description.is_empty() {
                flag.description.push(' ');
            }
            flag.description.push_str(line.trim());
        } else if section.title.starts_with("Commands") {
            // `  check [--target T] [--json]`: a subcommand and its synopsis.
            let synopsis = line.trim();
            let (synopsis, description) = match synopsis.find("  ") {
                Some(at) => (&synopsis[..at], synopsis[at..].trim()),
                None => (synopsis, ""),
            };
            section.flags.push(Flag {
                long: synopsis.to_owned(),
                arg: None,
                description: description.to_owned(),
            });
        } else {
            section.flags.push(parse_flag_line(line)?);
        }
    }
    if sections.is_empty() {
        anyhow::bail!("the help text has no `Options:` section");
    }
    let usage_args = usage_args(&usage);
    for flag in sections.iter_mut().flat_map(|s| s.flags.iter_mut()) {
        if flag.arg.is_none()
            && let Some((_, Some(arg))) = usage_args.iter().find(|(long, _)| *long == flag.long)
        {
            flag.arg = Some(arg.clone());
        }
    }
    Ok(Help { description: paragraphs(&description), sections, epilogue: paragraphs(&epilogue) })
}

/// Whether a help section lists subcommands (`Commands (…):`) rather than flags.
fn is_commands(section: &Section) -> bool {
    section.title.starts_with("Commands")
}

/// `  --name <arg>   description` or `  --help, help   description`.
fn parse_flag_line(line: &str) -> anyhow::Result<Flag> {
    let trimmed = line.trim_start();
    let (name, description) = match trimmed.find("  ") {
        Some(at) => (&trimmed[..at], trimmed[at..].trim()),
        None => (trimmed.trim_end(), ""),
    };
    let name = name.split(',').next().unwrap_or(name).trim();
    let mut parts = name.split_whitespace();
    let long = parts.next().context("empty flag line")?;
    if !long.starts_with("--") {
        anyhow::bail!("flag line does not start with --: {line:?}");
    }
    let arg = parts.next().map(|a| a.trim_start_matches('<').trim_end_matches('>').to_owned());
    Ok(Flag { long: long.to_owned(), arg, description: description.to_owned() })
}

/// `(--flag, Some(arg))` for every `[--flag <arg>]` / `[--flag]` of the usage line.
fn usage_args(usage: &str) -> Vec<(String, Option<String>)> {
    usage
        .split('[')
        .skip(1)
        .filter_map(|group| {
            let group = group.split(']').next()?;
            let mut words = group.split_whitespace();
            let long = words.next()?.to_owned();
            let arg =
                words.next().map(|a| a.trim_start_matches('<').trim_end_matches('>').to_owned());
            Some((long, arg))
        })
        .collect()
}

/// Joins wrapped lines into paragraphs separated by blank lines.
fn paragraphs(lines: &[&str]) -> String {
    let text: Vec<String> = lines
        .split(|l| l.trim().is_empty())
        .filter(|p| !p.is_empty())
        .map(|p| p.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "))
        .collect();
    text.join("\n\n")
}

/// Escapes text for roff: backslashes, and dashes of flag-like words (`--x`, `PREFIX_X-Y`
/// stays); a line never starts with a control character.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e");
    let words: Vec<String> = text
        .split(' ')
        .map(|w| {
            let bare = w.trim_start_matches(['(', '"', '\'']);
            if bare.starts_with('-') { w.replace('-', "\\-") } else { w.to_owned() }
        })
        .collect();
    let out = words.join(" ");
    if out.starts_with('.') || out.starts_with('\'') { format!("\\&{out}") } else { out }
}

/// A name or flag in roff, with every dash escaped.
fn literal(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// The environment variable of a flag: `--listen-address` -> `LINKHUB_LISTEN_ADDRESS`.
pub fn env_var(prefix: &str, long: &str) -> String {
    format!("{prefix}_{}", long.trim_start_matches('-').replace('-', "_").to_uppercase())
}

/// The man page of `exporter` from its `--help` text, `version` and a `YYYY-MM-DD` date.
pub fn render(
    exporter: &Exporter,
    help: &str,
    version: &str,
    date: &str,
) -> anyhow::Result<String> {
    let help = parse(help).context("parse the --help text")?;
    let name = exporter.name;
    let mut out = String::new();
    let _ =
        writeln!(out, ".\\\" Generated by `cargo xtask dist` from `{name} --help`; do not edit.");
    let _ = writeln!(
        out,
        ".TH {} 1 \"{date}\" \"{} {version}\" \"User Commands\"",
        literal(&name.to_uppercase()),
        literal(name)
    );
    out.push_str(".SH NAME\n");
    let _ = writeln!(out, "{} \\- {}", literal(name), escape(exporter.summary));

    out.push_str(".SH SYNOPSIS\n");
    let _ = writeln!(out, ".B {}", literal(name));
    out.push_str("[\\fIOPTIONS\\fR]\n");

    out.push_str(".SH DESCRIPTION\n");
    for (i, para) in help.description.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str(".PP\n");
        }
        let _ = writeln!(out, "{}", escape(para));
    }
    let _ = writeln!(
        out,
        ".PP\nIt serves \\fB/metrics\\fR (the configured target), \\fB/probe?target=\\fR \
         (a named or any other target), \\fB/sd\\fR (Prometheus HTTP service discovery), \
         \\fB/\\-/reload\\fR (POST; also SIGHUP), \\fB/\\-/healthy\\fR and \\fB/\\-/ready\\fR on \
         port {} by default.",
        exporter.port
    );

    for section in help.sections.iter().filter(|s| is_commands(s)) {
        out.push_str(".SH COMMANDS\n");
        let _ = writeln!(out, "{}", escape(&section.title));
        for command in &section.flags {
            let _ = writeln!(
                out,
                ".TP\n\\fB{}\\fR\n{}",
                literal(&command.long),
                escape(&command.description)
            );
        }
    }

    out.push_str(".SH OPTIONS\n");
    for section in help.sections.iter().filter(|s| !is_commands(s)) {
        if section.title != "Options" {
            let _ = writeln!(out, ".SS {}", escape(&section.title));
        }
        for flag in &section.flags {
            out.push_str(".TP\n");
            match &flag.arg {
                Some(arg) => {
                    let _ =
                        writeln!(out, "\\fB{}\\fR \\fI{}\\fR", literal(&flag.long), literal(arg));
                }
                None => {
                    let _ = writeln!(out, "\\fB{}\\fR", literal(&flag.long));
                }
            }
            let _ = writeln!(out, "{}", escape(&flag.description));
        }
    }

    out.push_str(".SH ENVIRONMENT\n");
    if !help.epilogue.is_empty() {
        let _ = writeln!(out, "{}", escape(&help.epilogue));
    }
    for flag in help.sections.iter().filter(|s| !is_commands(s)).flat_map(|s| &s.flags) {
        if NO_ENV.contains(&flag.long.as_str()) {
            continue;
        }
        let _ = writeln!(
            out,
            ".TP\n.B {}\nas \\fB{}\\fR",
            literal(&env_var(exporter.env_prefix, &flag.long)),
            literal(&flag.long)
        );
    }
    for (var, what) in exporter.extra_env {
        let _ = writeln!(out, ".TP\n.B {}\n{}", literal(var), escape(what));
    }
    if let Some(credential) = &exporter.credential {
        let _ = writeln!(
            out,
            ".TP\n.B CREDENTIALS_DIRECTORY\nset by systemd for \\fBLoadCredential=\\fR; the \
             credential \\fB{}\\fR in it is read as the {}.",
            literal(credential.name),
            escape(credential.what)
        );
    }

    out.push_str(".SH FILES\n");
    let _ = writeln!(
        out,
        ".TP\n.I /etc/default/{}\noptions for the systemd unit: \\fB{}_*\\fR variables and \
         extra flags in \\fBARGS\\fR",
        literal(name),
        literal(exporter.env_prefix)
    );
    let _ = writeln!(
        out,
        ".TP\n.I /usr/lib/systemd/system/{}.service\nthe hardened systemd unit",
        literal(name)
    );
    if let Some(credential) = &exporter.credential {
        let _ = writeln!(
            out,
            ".TP\n.I {}\nthe {} (mode 0600, owned by root), loaded as the systemd credential \\fB{}\\fR",
            literal(credential.path),
            escape(credential.what),
            literal(credential.name)
        );
    }
    for (path, what) in exporter.extra_files {
        let _ = writeln!(out, ".TP\n.I {}\n{}", literal(path), escape(what));
    }

    out.push_str(".SH SEE ALSO\n");
    let mut see_also: Vec<String> = exporter
        .see_also
        .iter()
        .chain(["systemd.exec(5)", "systemd-creds(1)"].iter())
        .map(|r| match r.split_once('(') {
            Some((page, section)) => format!(".BR {} ({}", literal(page), section),
            None => format!(".B {}", literal(r)),
        })
        .collect();
    let last = see_also.len().saturating_sub(1);
    for (i, line) in see_also.iter_mut().enumerate() {
        if i != last {
            line.push(',');
        }
    }
    let _ = writeln!(out, "{}", see_also.join("\n"));
    let _ = writeln!(
        out,
        ".PP\nThe deployment guide (packages, containers, Kubernetes) is docs/deploy.md in the \
         source."
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HELP: &str = "\
Usage: demo-exporter [--target <target>] [--gateway <gateway...>] [--expose-identifiers]

Prometheus exporter for demo devices.

Options:
  --target          the device, e.g. http://192.168.1.1 (default); see
                    --gateway too
  --gateway         watch this gateway (repeatable)
  --expose-identifiers
                    add identifiers as labels
  --help, help      display usage information

Common flags:
  --listen-address <addr>
                    address to listen on (default :9999)
  --healthcheck     check a running exporter, then exit 0 or 1
  --version         print the version and exit

Commands (instead of serving; every flag above applies):
  check [--target T] [--json]
                    scrape each target once and print what worked
  capture --out FILE [--target T]
                    record one scrape, redacted

Every flag can also be set by the environment variable DEMO_<FLAG>, the flag
name in upper snake case.
";

    fn demo() -> Exporter {
        Exporter {
            name: "demo-exporter",
            env_prefix: "DEMO",
            port: 9999,
            ..super::super::EXPORTERS[0]
        }
    }

    #[test]
    fn parses_sections_flags_and_arguments() {
        let help = parse(HELP).unwrap();
        assert_eq!(help.description, "Prometheus exporter for demo devices.");
        let titles: Vec<&str> = help.sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            ["Options", "Common flags", "Commands (instead of serving; every flag above applies)"]
        );
        let own = &help.sections[0].flags;
        assert_eq!(own.len(), 4);
        assert_eq!(own[0].long, "--target");
        assert_eq!(own[0].arg.as_deref(), Some("target"));
        assert_eq!(
            own[0].description,
            "the device, e.g. http://192.168.1.1 (default); see --gateway too"
        );
        assert_eq!(own[1].arg.as_deref(), Some("gateway..."));
        assert_eq!(own[2].long, "--expose-identifiers");
        assert_eq!(own[2].arg, None);
        assert_eq!(own[2].description, "add identifiers as labels");
        assert_eq!(own[3].long, "--help");
        let common = &help.sections[1].flags;
        assert_eq!(common[0].arg.as_deref(), Some("addr"));
        assert!(help.epilogue.starts_with("Every flag can also be set"), "{}", help.epilogue);
    }

    #[test]
    fn renders_every_section_with_escaped_dashes() {
        let page = render(&demo(), HELP, "1.2.3", "2026-11-21").unwrap();
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "COMMANDS",
            "OPTIONS",
            "ENVIRONMENT",
            "FILES",
            "SEE ALSO",
        ] {
            assert!(page.contains(&format!(".SH {section}\n")), "no {section} in:\n{page}");
        }
        assert!(page.contains(".TH DEMO\\-EXPORTER 1 \"2026-11-21\" \"demo\\-exporter 1.2.3\""));
        assert!(page.contains("\\fB\\-\\-target\\fR \\fItarget\\fR\n"));
        assert!(page.contains(".B DEMO_LISTEN_ADDRESS\nas \\fB\\-\\-listen\\-address\\fR"));
        assert!(page.contains("see \\-\\-gateway too"));
        assert!(!page.contains("DEMO_HELP") && !page.contains("DEMO_VERSION"));
        assert!(!page.contains("DEMO_HEALTHCHECK"));
        assert!(
            page.contains(".TP\n\\fBcheck [\\-\\-target T] [\\-\\-json]\\fR\nscrape each target"),
            "{page}"
        );
        assert!(!page.contains("DEMO_CHECK"), "commands have no environment variable");
        assert!(page.contains(".I /etc/default/demo\\-exporter"));
        // No line may start with a stray control character or contain a raw backslash escape
        // other than the ones written on purpose.
        for line in page.lines() {
            assert!(!line.starts_with('\''), "{line}");
        }
    }

    #[test]
    fn rejects_text_that_is_not_help() {
        assert!(render(&demo(), "hello\nworld\n", "1", "2026-01-01").is_err());
        assert!(render(&demo(), "Usage: x\n\njust text\n", "1", "2026-01-01").is_err());
        let orphan = "Usage: x\n\nOptions:\n                    description without flag\n";
        assert!(render(&demo(), orphan, "1", "2026-01-01").is_err());
    }

    #[test]
    fn escapes_roff_control_characters() {
        assert_eq!(escape(".starts with a dot"), "\\&.starts with a dot");
        assert_eq!(escape("a \\ b"), "a \\e b");
        assert_eq!(escape("use --x-y or (--z)"), "use \\-\\-x\\-y or (\\-\\-z)");
        assert_eq!(escape("exporter-core stays"), "exporter-core stays");
        assert_eq!(env_var("TTN", "--api-key-file"), "TTN_API_KEY_FILE");
    }
}
