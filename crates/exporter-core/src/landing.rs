//! The HTML landing page at `/`: name, version, description, links, a probe form, the
//! effective configuration (secrets already shown as `<secret>`) and the flags.
//!
//! Self-contained (inline CSS, no scripts, no external assets); everything is escaped.

use std::fmt::Write as _;

use crate::{ServeOptions, TargetInfo};

/// Renders the page at start and after each successful reload. `default_target` is what
/// `/metrics` scrapes besides the exporter's own metrics; `targets` are the named targets.
pub(crate) fn render(
    namespace: &str,
    description: &str,
    opts: &ServeOptions,
    default_target: Option<&str>,
    targets: &[TargetInfo],
) -> String {
    let info = opts.info;
    let metrics_note = match default_target {
        Some(target) => format!("the exporter's own metrics and those of {}", escape(target)),
        None => "the exporter's own metrics".to_owned(),
    };
    let mut html = String::with_capacity(8192);
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{binary}</title>
<style>
body {{ font-family: sans-serif; margin: 0; color: #222; }}
header {{ background: #e6522c; color: #fff; padding: 0.6em 1em; }}
header h1 {{ margin: 0; font-size: 1.5em; }}
main {{ padding: 0 1em 1em; max-width: 60em; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
code {{ font-family: monospace; }}
form input[type=text] {{ width: 24em; }}
</style>
</head>
<body>
<header><h1>{binary}</h1></header>
<main>
<p>{description}</p>
<p>Version <code>{version}</code> (revision <code>{revision}</code>, rustc <code>{rustc}</code>), metric prefix <code>{namespace}_</code>.</p>
<ul>
<li><a href="metrics">Metrics</a> ({metrics_note})</li>
<li><a href="sd">Service discovery</a> (Prometheus <code>http_sd_configs</code>: one target per device, scraped through <code>/probe</code>)</li>
<li><a href="-/healthy">Health</a></li>
<li><code>POST /-/reload</code> (or SIGHUP) re-reads <code>--config-file</code> and the secret files it names</li>
</ul>
<h2>Probe a target</h2>
<form action="probe" method="get">
<label for="target">Target</label>
<input type="text" id="target" name="target" placeholder="target" required>
<label><input type="checkbox" name="debug" value="true"> debug trace</label>
<input type="submit" value="Probe">
</form>
{targets_html}<h2>Configuration</h2>
<table>
<tr><th>Setting</th><th>Value</th></tr>
"#,
        binary = escape(info.binary),
        description = escape(description),
        version = escape(info.version),
        revision = escape(crate::self_metrics::REVISION),
        rustc = escape(crate::self_metrics::rustc_short()),
        namespace = escape(namespace),
        metrics_note = metrics_note,
        targets_html = targets_table(targets),
    );
    for (key, value) in &opts.effective_config {
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            escape(key),
            escape(value)
        );
    }
    html.push_str(
        "</table>\n<h2>Flags</h2>\n<table>\n<tr><th>Flag</th><th>Description</th></tr>\n",
    );
    for (flag, doc) in &opts.flag_docs {
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            escape(flag),
            escape(doc)
        );
    }
    let _ = write!(
        html,
        "</table>\n<p>Every flag can also be set by the environment variable <code>{}_&lt;FLAG&gt;</code> \
         (upper snake case); a flag on the command line wins.</p>\n</main>\n</body>\n</html>\n",
        escape(info.env_prefix)
    );
    html
}

/// The named targets: name, settings (secrets already `<secret>`) and labels.
fn targets_table(targets: &[TargetInfo]) -> String {
    if targets.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<h2>Named targets</h2>\n<table>\n<tr><th>Target</th><th>Settings</th><th>Labels</th></tr>\n",
    );
    for t in targets {
        let settings: Vec<String> = t
            .settings
            .iter()
            .map(|(k, v)| format!("<code>{}</code>: {}", escape(k), escape(v)))
            .collect();
        let labels: Vec<String> =
            t.labels.iter().map(|(k, v)| format!("{}=\"{}\"", escape(k), escape(v))).collect();
        let _ = writeln!(
            html,
            "<tr><td><a href=\"probe?target={}\"><code>{}</code></a></td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&query_escape(&t.name)),
            escape(&t.name),
            settings.join("<br>"),
            labels.join(", ")
        );
    }
    html.push_str("</table>\n");
    html
}

/// Percent-encodes a query parameter value.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExporterInfo;

    #[test]
    fn page_has_everything_escaped() {
        let info = ExporterInfo {
            binary: "demo-exporter",
            env_prefix: "DEMO",
            version: "1.0.0",
            default_port: 1,
        };
        let mut opts = ServeOptions::for_test(info);
        opts.add_config("password", "<secret> (from file /p)");
        opts.add_config("--target", "http://a/?x=<script>alert(1)</script> (flag)");
        opts.flag_docs.push(("--target <url>".to_owned(), "device URL & more".to_owned()));
        let targets = vec![TargetInfo {
            name: "home <1>".to_owned(),
            settings: vec![
                ("address".to_owned(), "http://192.168.1.1".to_owned()),
                ("password".to_owned(), "<secret>".to_owned()),
            ],
            labels: [("site".to_owned(), "attic".to_owned())].into(),
        }];
        let html =
            render("demo", "Exporter for <demo> devices", &opts, Some("http://b/<x>"), &targets);
        assert!(html.contains("<h2>Named targets</h2>"), "{html}");
        assert!(html.contains(r#"href="probe?target=home%20%3C1%3E""#), "{html}");
        assert!(html.contains("<code>password</code>: &lt;secret&gt;"), "{html}");
        assert!(html.contains(r#"site="attic""#), "{html}");
        assert!(html.contains("<h1>demo-exporter</h1>"), "{html}");
        assert!(html.contains("own metrics and those of http://b/&lt;x&gt;"), "{html}");
        let plain = render("demo", "d", &opts, None, &[]);
        assert!(!plain.contains("Named targets"), "{plain}");
        assert!(plain.contains("(the exporter's own metrics)</li>"), "{plain}");
        assert!(html.contains("Exporter for &lt;demo&gt; devices"), "{html}");
        assert!(html.contains("&lt;secret&gt; (from file /p)"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("<code>--target &lt;url&gt;</code></td><td>device URL &amp; more"),
            "{html}"
        );
        assert!(html.contains(r#"<form action="probe" method="get">"#), "{html}");
        assert!(html.contains(r#"name="target""#) && html.contains(r#"name="debug""#), "{html}");
        assert!(
            html.contains(r#"href="metrics""#) && html.contains(r#"href="-/healthy""#),
            "{html}"
        );
    }
}
