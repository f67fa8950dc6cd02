//! The web-config agreement table: every file in `tests/fixtures/web-config/` is judged by
//! `promtool check web-config` (the exporter-toolkit reference, promtool 2.42 from Debian
//! bookworm) and by our `WebConfig::load`, and both verdicts must be the ones recorded here.
//!
//! Where the two cannot agree, the case says why in `divergence` instead of being skipped:
//! promtool 2.42 bundles exporter-toolkit 0.8, which predates the inline `cert`/`key`/
//! `client_ca`, `client_allowed_sans` and `rate_limit` fields (newer toolkits accept them,
//! as we do), and rustls (ring) lacks some things Go's crypto/tls has (TLS 1.0/1.1, CBC
//! suites, P-521), which we reject instead of silently serving something else. If promtool
//! or our parser changes its mind on any file, this test fails.
//!
//! Needs `promtool` on `PATH` (Debian: `apt-get install prometheus`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

// `web_config` is private to exporter-core; the test compiles the module itself.
#[allow(dead_code)]
#[path = "../src/web_config.rs"]
mod web_config;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use web_config::WebConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Reject,
}
use Verdict::{Accept, Reject};

struct Case {
    file: &'static str,
    /// What `promtool check web-config` (2.42) says.
    promtool: Verdict,
    /// What `WebConfig::load` says.
    ours: Verdict,
    /// For a rejection: a piece of our error message, naming the field.
    error: &'static str,
    /// Why the verdicts differ; must be set exactly when they do.
    divergence: &'static str,
}

const fn ok(file: &'static str) -> Case {
    Case { file, promtool: Accept, ours: Accept, error: "", divergence: "" }
}

const fn bad(file: &'static str, error: &'static str) -> Case {
    Case { file, promtool: Reject, ours: Reject, error, divergence: "" }
}

const NEWER_TOOLKIT: &str =
    "promtool 2.42's exporter-toolkit predates this field; newer toolkits accept it";

const CASES: &[Case] = &[
    // --- accepted by both
    ok("empty.yml"),
    ok("comments-only.yml"),
    ok("tls-files.yml"),
    ok("tls-selfsigned.yml"),
    ok("tls-versions.yml"),
    ok("tls12-only.yml"),
    ok("tls13-only.yml"),
    ok("tls-settings-without-cert.yml"),
    ok("client-auth-require-and-verify.yml"),
    ok("client-auth-verify-if-given.yml"),
    ok("client-auth-request.yml"),
    ok("client-auth-require-any-alias.yml"),
    ok("client-auth-none.yml"),
    ok("cipher-suites.yml"),
    ok("cipher-suites-tls13-name.yml"),
    // CBC suite ignored with a warning, the GCM one is used.
    ok("cipher-suites-mixed.yml"),
    // TLS 1.2 is off, so the CBC-only list does not matter.
    ok("cbc-cipher-tls13-only.yml"),
    ok("prefer-server-cipher-suites.yml"),
    ok("curves.yml"),
    // CurveP521 ignored with a warning, X25519 is used.
    ok("curves-with-p521.yml"),
    ok("headers.yml"),
    ok("headers-blank.yml"),
    ok("http2-off.yml"),
    ok("http2-yes-no.yml"),
    // The effective minimum is TLS12 (rustls has no TLS 1.0), with a warning.
    ok("min-tls10.yml"),
    ok("basic-auth.yml"),
    ok("full.yml"),
    // --- rejected by both
    bad("unknown-top-key.yml", "unknown field `tls_config`"),
    bad("unknown-tls-key.yml", "tls_server_config: unknown field `cert_path`"),
    bad("cert-without-key.yml", "tls_server_config: missing one of"),
    bad("key-without-cert.yml", "tls_server_config: missing one of"),
    bad("cert-file-missing.yml", "tls_server_config.cert_file: cannot read"),
    bad("key-mismatch.yml", "tls_server_config.key_file: the private key does not match"),
    bad("cert-not-pem.yml", "tls_server_config.cert_file: no PEM CERTIFICATE block found"),
    bad("key-not-pem.yml", "tls_server_config.key_file: no PEM private key block found"),
    bad("bad-bcrypt-hash.yml", "basic_auth_users.alice: not a valid bcrypt hash"),
    bad("bad-bcrypt-cost.yml", "basic_auth_users.alice: bcrypt cost 99 is outside"),
    bad("user-without-hash.yml", "basic_auth_users.alice: empty password hash"),
    bad("duplicate-user.yml", "basic_auth_users: duplicate entry with key \"alice\""),
    bad("unknown-tls-version.yml", "tls_server_config.min_version: unknown TLS version \"TLS9\""),
    bad(
        "bad-header-name.yml",
        "http_server_config.headers: header \"X-Powered-By\" cannot be configured",
    ),
    bad("header-name-lowercase.yml", "header \"x-frame-options\" cannot be configured"),
    bad(
        "bad-header-frame-options.yml",
        "http_server_config.headers.X-Frame-Options: invalid value \"allow\"",
    ),
    bad(
        "bad-header-content-type-options.yml",
        "http_server_config.headers.X-Content-Type-Options: invalid value \"sniff\"",
    ),
    bad(
        "client-ca-without-auth-type.yml",
        "tls_server_config.client_ca_file: a client CA is set without a client_auth_type",
    ),
    bad("client-ca-file-missing.yml", "tls_server_config.client_ca_file: cannot read"),
    bad(
        "bad-client-auth-type.yml",
        "tls_server_config.client_auth_type: unknown client auth type \"Always\"",
    ),
    bad(
        "unknown-cipher.yml",
        "tls_server_config.cipher_suites: unknown cipher suite \"TLS_FANCY_WITH_ROT13\"",
    ),
    bad("unknown-curve.yml", "tls_server_config.curve_preferences: unknown curve \"CurveP999\""),
    bad("top-level-list.yml", "invalid type: sequence"),
    bad("wrong-type-http2.yml", "http_server_config.http2"),
    bad("users-not-a-map.yml", "basic_auth_users"),
    bad("yaml-syntax-error.yml", "invalid YAML"),
    bad("duplicate-key.yml", "tls_server_config: duplicate entry with key \"cert_file\""),
    // Both reject, for different reasons: promtool 2.42 does not know the inline field.
    bad("cert-and-cert-file.yml", "tls_server_config.cert: cert and cert_file cannot both be set"),
    // Both reject; promtool 2.42 does not know client_allowed_sans, newer toolkits reject
    // it without RequireAnyClientCert or RequireAndVerifyClientCert as we do.
    bad(
        "allowed-sans-without-require.yml",
        "tls_server_config.client_allowed_sans: needs client_auth_type",
    ),
    // Both reject; promtool 2.42 does not know rate_limit.
    bad("rate-limit-bad-interval.yml", "invalid duration \"soon\""),
    bad("rate-limit-zero-burst.yml", "rate_limit.burst: must be at least 1"),
    // --- documented divergences: fields newer than promtool 2.42's toolkit
    Case {
        file: "tls-inline.yml",
        promtool: Reject,
        ours: Accept,
        error: "",
        divergence: NEWER_TOOLKIT,
    },
    Case {
        file: "client-ca-inline.yml",
        promtool: Reject,
        ours: Accept,
        error: "",
        divergence: NEWER_TOOLKIT,
    },
    Case {
        file: "allowed-sans.yml",
        promtool: Reject,
        ours: Accept,
        error: "",
        divergence: NEWER_TOOLKIT,
    },
    Case {
        file: "allowed-sans-require-any.yml",
        promtool: Reject,
        ours: Accept,
        error: "",
        divergence: NEWER_TOOLKIT,
    },
    Case {
        file: "rate-limit.yml",
        promtool: Reject,
        ours: Accept,
        error: "",
        divergence: NEWER_TOOLKIT,
    },
    // --- documented divergences: what rustls cannot do, or Go only finds out later
    Case {
        file: "max-tls11.yml",
        promtool: Accept,
        ours: Reject,
        error: "tls_server_config.max_version: TLS11 is not supported",
        divergence: "rustls has no TLS 1.0/1.1, so no version would be left",
    },
    Case {
        file: "min-greater-than-max.yml",
        promtool: Accept,
        ours: Reject,
        error: "tls_server_config.min_version: TLS13 is above max_version TLS12",
        divergence: "Go accepts the file and fails every handshake; we say so at start",
    },
    Case {
        file: "cbc-cipher.yml",
        promtool: Accept,
        ours: Reject,
        error: "tls_server_config.cipher_suites: none of the listed TLS 1.2 cipher suites is implemented by rustls",
        divergence: "rustls has no CBC suites, so TLS 1.2 would have no cipher suite",
    },
    Case {
        file: "only-p521.yml",
        promtool: Accept,
        ours: Reject,
        error: "tls_server_config.curve_preferences: CurveP521 is not implemented",
        divergence: "ring has no P-521, so no key exchange group would be left",
    },
    Case {
        file: "verify-without-ca.yml",
        promtool: Accept,
        ours: Reject,
        error: "tls_server_config.client_ca_file: client_auth_type RequireAndVerifyClientCert needs client_ca_file",
        divergence: "Go verifies client certs against the system roots; we want an explicit CA",
    },
    Case {
        file: "client-ca-file-not-pem.yml",
        promtool: Accept,
        ours: Reject,
        error: "tls_server_config.client_ca_file: no PEM CERTIFICATE block found",
        divergence: "Go 0.8 ignores a CA file without certificates (newer toolkits reject it)",
    },
    Case {
        file: "bcrypt-bad-base64.yml",
        promtool: Accept,
        ours: Reject,
        error: "basic_auth_users.alice: not a valid bcrypt hash",
        divergence: "Go checks only a hash's prefix and cost at start; no password could ever match it",
    },
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/web-config")
}

fn promtool_verdict(path: &Path) -> (Verdict, String) {
    let out =
        Command::new("promtool").args(["check", "web-config"]).arg(path).output().unwrap_or_else(
            |e| {
                panic!("cannot run promtool ({e}); install it (Debian: apt-get install prometheus)")
            },
        );
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let verdict = match out.status.code() {
        Some(0) => Accept,
        Some(1) => Reject,
        other => panic!(
            "promtool check web-config {}: unexpected exit {other:?}: {text}",
            path.display()
        ),
    };
    (verdict, text.trim().to_owned())
}

#[test]
fn table_covers_every_fixture_once() {
    let mut files: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yml"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = CASES.iter().map(|c| c.file.to_owned()).collect();
    listed.sort();
    let before = listed.len();
    listed.dedup();
    assert_eq!(before, listed.len(), "a file is listed twice");
    assert_eq!(files, listed, "every fixture needs a row in CASES and vice versa");
    assert!(CASES.len() >= 25);
}

#[test]
fn promtool_and_web_config_agree() {
    let mut failures = Vec::new();
    let mut table = String::from("\nfile | promtool | ours | note\n");
    for case in CASES {
        let path = fixtures().join(case.file);
        let (promtool, promtool_says) = promtool_verdict(&path);
        let ours = WebConfig::load(&path);
        let ours_verdict = if ours.is_ok() { Accept } else { Reject };
        let our_error = ours.as_ref().err().map(|e| format!("{e:#}")).unwrap_or_default();
        table.push_str(&format!(
            "{} | {promtool:?} | {ours_verdict:?} | {}\n",
            case.file,
            if case.divergence.is_empty() { &our_error } else { case.divergence }
        ));

        if promtool != case.promtool {
            failures.push(format!(
                "{}: promtool says {promtool:?}, the table says {:?}: {promtool_says}",
                case.file, case.promtool
            ));
        }
        if ours_verdict != case.ours {
            failures.push(format!(
                "{}: WebConfig::load says {ours_verdict:?}, the table says {:?}: {our_error}",
                case.file, case.ours
            ));
        }
        if (case.promtool != case.ours) == case.divergence.is_empty() {
            failures.push(format!(
                "{}: a divergence note is needed exactly when the verdicts differ",
                case.file
            ));
        }
        match (&ours, case.error) {
            (Err(_), "") => failures.push(format!("{}: no expected error text", case.file)),
            (Err(_), want) if !our_error.contains(want) => failures
                .push(format!("{}: error {our_error:?} does not contain {want:?}", case.file)),
            (Err(_), _) => {
                // Every error names the file, and never quotes a password hash.
                assert!(our_error.contains(case.file), "{our_error}");
                assert!(!our_error.contains("$2"), "{our_error}");
            }
            (Ok(_), "") => {}
            (Ok(_), want) => {
                failures.push(format!("{}: accepted, but expected {want:?}", case.file))
            }
        }
    }
    println!("{table}");
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}

#[test]
fn accepted_files_build_what_they_say() {
    let load = |name: &str| WebConfig::load(&fixtures().join(name)).unwrap();
    assert!(load("empty.yml").tls.is_none());
    assert!(load("headers.yml").tls.is_none());
    assert!(load("tls-settings-without-cert.yml").tls.is_none(), "no cert: plain HTTP");
    assert!(load("tls-files.yml").tls.is_some());
    assert!(load("tls-inline.yml").tls.is_some());
    assert!(load("full.yml").tls.is_some());
    assert!(!load("http2-yes-no.yml").http2);
    assert!(load("tls-files.yml").http2);
    // Blank values are not sent; `X-XSS-Protection: 0` is the string "0", as in Go.
    let headers = load("headers-blank.yml").headers;
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0.as_str(), "x-xss-protection");
    assert_eq!(headers[0].1.to_str().unwrap(), "0");
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    // Cargo runs tests in the package directory, which has no certs/: the cert is found
    // next to the config file, whether the config path is relative or absolute.
    assert!(!Path::new("certs").exists());
    let relative = Path::new("tests/fixtures/web-config/tls-files.yml");
    assert!(WebConfig::load(relative).unwrap().tls.is_some());

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    for file in ["server.pem", "server.key"] {
        std::fs::copy(fixtures().join("certs").join(file), dir.join("keys").join(file)).unwrap();
    }
    let config = dir.join("web.yml");
    std::fs::write(
        &config,
        "tls_server_config:\n  cert_file: keys/server.pem\n  key_file: keys/server.key\n",
    )
    .unwrap();
    assert!(WebConfig::load(&config).unwrap().tls.is_some());
}
