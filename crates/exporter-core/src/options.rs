//! The common flags and their environment variables, validated into [`ServeOptions`].
//!
//! argh has no flatten and reads no environment, so [`parse_args`] splits argv between the
//! exporter's own flags and [`CommonFlags`] using both structs' argh flag tables, fills in
//! `<PREFIX>_<FLAG>` environment variables for flags not given on argv (the flag wins),
//! parses each struct with argh and then validates the common values (raw flags first,
//! validated options after: nothing downstream sees strings).

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use argh::{ArgsInfo, FlagInfo, FlagInfoKind, FromArgs, Optionality};

/// What the core needs to know about the binary it serves.
#[derive(Debug, Clone, Copy)]
pub struct ExporterInfo {
    /// The binary's name, e.g. `"linkhub-exporter"`.
    pub binary: &'static str,
    /// The environment-variable prefix without the underscore, e.g. `"LINKHUB"`.
    pub env_prefix: &'static str,
    /// The binary crate's version (`env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// The default port of `--listen-address`.
    pub default_port: u16,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// The common flags, defined once here and merged into every exporter's `--help`.
///
/// Values stay raw here (strings and options without defaults) so that [`parse_args`] knows
/// which ones were given and can name the flag or environment variable of a bad value.
#[derive(FromArgs, ArgsInfo, Debug, Default)]
/// common flags.
pub struct CommonFlags {
    /// address to listen on, host:port, [v6]:port or :port for all interfaces (repeatable;
    /// default :<the exporter's port>)
    #[argh(option, arg_name = "addr")]
    pub listen_address: Vec<String>,
    /// exporter-toolkit web config file (TLS, basic auth, response headers)
    #[argh(option, arg_name = "path")]
    pub web_config_file: Option<PathBuf>,
    /// YAML file with named targets and per-target settings (see docs/configuration.md);
    /// re-read on SIGHUP and POST /-/reload
    #[argh(option, arg_name = "path")]
    pub config_file: Option<PathBuf>,
    /// directory for state kept across restarts, never secrets (default $STATE_DIRECTORY,
    /// which systemd's StateDirectory= sets; none: state is kept in memory only)
    #[argh(option, arg_name = "dir")]
    pub state_directory: Option<PathBuf>,
    /// log level: debug, info, warn or error (default info)
    #[argh(option, arg_name = "level")]
    pub log_level: Option<String>,
    /// log format: logfmt or json (default logfmt)
    #[argh(option, arg_name = "format")]
    pub log_format: Option<String>,
    /// seconds subtracted from the scrape timeout Prometheus sends (default 0.5)
    #[argh(option, arg_name = "seconds")]
    pub timeout_offset: Option<String>,
    /// longest time one scrape may take, also used without the Prometheus header (default 10)
    #[argh(option, arg_name = "seconds")]
    pub scrape_timeout: Option<String>,
    /// most device scrapes in flight at once; beyond it 503 (default 32)
    #[argh(option, arg_name = "n")]
    pub max_concurrent_scrapes: Option<String>,
    /// check that the exporter on the first listen address answers /-/healthy, then exit
    /// 0 or 1 (for container health checks)
    #[argh(switch)]
    pub healthcheck: bool,
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
}

/// Validated server options, built by [`parse_cli`] (or [`ServeOptions::for_test`]).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub info: ExporterInfo,
    pub listen_addresses: Vec<String>,
    pub web_config_file: Option<PathBuf>,
    /// `--config-file`: the exporter reads it at start and on every reload.
    pub config_file: Option<PathBuf>,
    /// `--state-directory` (else `$STATE_DIRECTORY`): where state survives a restart.
    pub state_directory: Option<PathBuf>,
    pub timeout_offset: Duration,
    pub scrape_timeout: Duration,
    pub max_concurrent_scrapes: usize,
    pub log_level: log::LevelFilter,
    pub log_format: LogFormat,
    /// `(flag, value)` pairs shown on the landing page; secrets already shown as `<secret>`.
    /// Values carry their source: `… (flag)`, `… (env NAME)` or `… (default)`.
    pub effective_config: Vec<(String, String)>,
    /// `(flag, description)` for every flag, shown on the landing page.
    pub flag_docs: Vec<(String, String)>,
    /// `--healthcheck`: [`crate::run`] checks a running exporter instead of serving.
    pub healthcheck: bool,
    /// Long names of the flags given on argv or by their environment variable.
    pub set_flags: Vec<String>,
    /// What [`crate::run`] does: serve (the default), or `check` / `capture` and exit.
    pub command: Command,
}

/// The subcommand given as the first argument (`<binary> check …`, `<binary> capture …`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Command {
    /// Serve until a signal arrives.
    #[default]
    Serve,
    /// `check [--target T] [--json]`: scrape each target once, print a report, exit 0 when
    /// every target is up, else 1.
    Check {
        /// `--target` (a name, an address or an id), or `None` for every target.
        target: Option<String>,
        /// `--json`: one JSON object instead of the human report.
        json: bool,
    },
    /// `capture --out FILE [--target T] [--format yaml|json]`: record one scrape, redacted.
    Capture {
        target: Option<String>,
        /// `-` writes to stdout.
        out: PathBuf,
        format: crate::capture::CaptureFormat,
    },
}

impl ServeOptions {
    /// Options for tests: listen on `127.0.0.1:0`, defaults for everything else.
    pub fn for_test(info: ExporterInfo) -> ServeOptions {
        ServeOptions {
            info,
            listen_addresses: vec!["127.0.0.1:0".to_owned()],
            web_config_file: None,
            config_file: None,
            state_directory: None,
            timeout_offset: Duration::from_millis(500),
            scrape_timeout: Duration::from_secs(10),
            max_concurrent_scrapes: 32,
            log_level: log::LevelFilter::Info,
            log_format: LogFormat::Logfmt,
            effective_config: Vec::new(),
            flag_docs: Vec::new(),
            healthcheck: false,
            set_flags: Vec::new(),
            command: Command::Serve,
        }
    }

    /// Whether `flag` (e.g. `"--target"`) was given on the command line or by its
    /// environment variable, rather than left at its default: a flag given explicitly wins
    /// over the config file.
    pub fn is_set(&self, flag: &str) -> bool {
        self.set_flags.iter().any(|f| f == flag)
    }

    /// Adds (or replaces) one line of the effective configuration shown on the landing
    /// page, e.g. `add_config("password", "<secret> (from file /etc/x)")`. Never pass a
    /// secret's value here.
    pub fn add_config(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.effective_config.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.effective_config.push((key, value)),
        }
    }
}

/// The exporter's own flags plus the validated common options.
#[derive(Debug)]
pub struct Cli<D> {
    pub flags: D,
    pub serve: ServeOptions,
}

/// Why [`parse_args`] stopped instead of returning options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliExit {
    /// `--help`: the text to print on stdout, exit 0.
    Help(String),
    /// `--version`: the line to print on stdout, exit 0.
    Version(String),
    /// Invalid flags or environment: the message to print on stderr, exit 2.
    Error(String),
}

/// Parses argv and `<PREFIX>_<FLAG>` environment variables (the flag wins) into the common
/// options and the exporter's own flags `D`, and starts logging. On `--help`, `--version`
/// or invalid input it prints and returns the exit code to end the process with.
pub fn parse_cli<D: FromArgs + ArgsInfo>(info: ExporterInfo) -> Result<Cli<D>, ExitCode> {
    parse_cli_with_env(info, |_| Vec::new())
}

/// [`parse_cli`] with a hook that may rewrite the `<PREFIX>_*` environment before parsing
/// (e.g. to read an earlier exporter's variables) and returns deprecation warnings, which
/// are logged once logging has started.
pub fn parse_cli_with_env<D: FromArgs + ArgsInfo>(
    info: ExporterInfo,
    rewrite_env: impl FnOnce(&mut HashMap<String, String>) -> Vec<String>,
) -> Result<Cli<D>, ExitCode> {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("error: argument {arg:?} is not valid UTF-8");
                return Err(ExitCode::from(2));
            }
        }
    }
    let prefix = format!("{}_", info.env_prefix);
    let mut env = HashMap::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str().filter(|k| k.starts_with(&prefix)) else { continue };
        match value.into_string() {
            Ok(value) => {
                env.insert(key.to_owned(), value);
            }
            Err(_) => {
                eprintln!("error: environment variable {key} is not valid UTF-8");
                return Err(ExitCode::from(2));
            }
        }
    }
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").and_then(|d| d.into_string().ok()) {
        env.insert(STATE_DIRECTORY_ENV.to_owned(), dir);
    }
    let warnings = rewrite_env(&mut env);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match parse_args::<D>(info, &args, &env) {
        Ok(cli) => {
            crate::logging::init(cli.serve.log_level, cli.serve.log_format);
            for warning in warnings {
                log::warn!("{warning}");
            }
            Ok(cli)
        }
        Err(CliExit::Help(text) | CliExit::Version(text)) => {
            print!("{text}");
            Err(ExitCode::SUCCESS)
        }
        Err(CliExit::Error(msg)) => {
            eprintln!("error: {}", msg.trim_end());
            eprintln!("Run '{} --help' for the flags.", info.binary);
            Err(ExitCode::from(2))
        }
    }
}

/// The pure part of [`parse_cli`]: `args` without the program name, `env` the process
/// environment (only `<PREFIX>_*` entries matter). Exporters use it in their own tests.
pub fn parse_args<D: FromArgs + ArgsInfo>(
    info: ExporterInfo,
    args: &[&str],
    env: &HashMap<String, String>,
) -> Result<Cli<D>, CliExit> {
    let own_info = D::get_args_info();
    let common_info = CommonFlags::get_args_info();
    let own = FlagTable::new(own_info.flags);
    let common = FlagTable::new(common_info.flags);

    let (mut command, rest) = split_command(args, own.by_long("--target").is_some())?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let args = rest.as_slice();
    let split = split_args(args, &own, &common)?;
    if split.help {
        return Err(CliExit::Help(help_text::<D>(info, &common)));
    }

    // Environment variables for flags not given on argv.
    let mut own_tokens = split.own.clone();
    let mut common_tokens = split.common.clone();
    let mut env_used: BTreeMap<String, String> = BTreeMap::new(); // flag -> variable
    for (is_common, table, tokens) in
        [(false, &own, &mut own_tokens), (true, &common, &mut common_tokens)]
    {
        for flag in table.flags.iter() {
            if ENV_EXCLUDED.contains(&flag.long) || split.given.contains(&flag.long.to_owned()) {
                continue;
            }
            if is_common && own.by_long(flag.long).is_some() {
                continue; // shadowed (see `split_args`)
            }
            let var = env_var_name(info.env_prefix, flag.long);
            let Some(value) = env.get(&var) else { continue };
            if value.is_empty() {
                continue; // `X=` in an environment file means unset
            }
            match flag.kind {
                Kind::Switch => match value.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" => tokens.push(flag.long.to_owned()),
                    "0" | "false" | "no" => {}
                    _ => {
                        return Err(CliExit::Error(format!(
                            "environment variable {var}: invalid value {value:?} for switch {} \
                             (use true, false, 1 or 0)",
                            flag.long
                        )));
                    }
                },
                Kind::Option if flag.repeating => {
                    for item in value.split(',') {
                        let item = item.trim();
                        if item.is_empty() {
                            return Err(CliExit::Error(format!(
                                "environment variable {var}: empty item in the comma-separated \
                                 list {value:?}"
                            )));
                        }
                        tokens.push(flag.long.to_owned());
                        tokens.push(item.to_owned());
                    }
                }
                Kind::Option => {
                    tokens.push(flag.long.to_owned());
                    tokens.push(value.clone());
                }
            }
            env_used.insert(flag.long.to_owned(), var);
        }
    }

    let cmd = [info.binary];
    let own_refs: Vec<&str> = own_tokens.iter().map(String::as_str).collect();
    let flags = match D::from_args(&cmd, &own_refs) {
        Ok(flags) => flags,
        Err(exit) if exit.status.is_ok() => {
            return Err(CliExit::Help(help_text::<D>(info, &common)));
        }
        Err(exit) => return Err(CliExit::Error(name_env_sources(&exit.output, &env_used))),
    };
    let common_refs: Vec<&str> = common_tokens.iter().map(String::as_str).collect();
    let raw = match CommonFlags::from_args(&cmd, &common_refs) {
        Ok(raw) => raw,
        Err(exit) if exit.status.is_ok() => {
            return Err(CliExit::Help(help_text::<D>(info, &common)));
        }
        Err(exit) => return Err(CliExit::Error(name_env_sources(&exit.output, &env_used))),
    };
    if raw.version {
        return Err(CliExit::Version(version_line(info)));
    }

    let source = |flag: &str| -> Source {
        if split.given.iter().any(|g| g == flag) {
            Source::Flag
        } else if let Some(var) = env_used.get(flag) {
            Source::Env(var.clone())
        } else {
            Source::Default
        }
    };
    let mut serve = validate_common(info, &raw, &source).map_err(CliExit::Error)?;
    if serve.state_directory.is_none()
        && let Some(dir) = env.get(STATE_DIRECTORY_ENV).filter(|d| !d.is_empty())
    {
        // systemd may list several directories separated by colons: the first is ours.
        let first = dir.split(':').next().unwrap_or(dir);
        serve.state_directory = Some(PathBuf::from(first));
        serve.add_config("--state-directory", format!("{first} (env STATE_DIRECTORY)"));
    }
    serve.set_flags = own
        .flags
        .iter()
        .chain(common.flags.iter())
        .map(|f| f.long)
        .filter(|long| !matches!(source(long), Source::Default))
        .map(str::to_owned)
        .collect();
    // The exporter's own `--target` (the default target) also selects what to check.
    if let Some(flag) = own.by_long("--target")
        && !matches!(source("--target"), Source::Default)
        && let Some(value) = flag_values(&own_tokens, flag).pop()
    {
        match &mut command {
            Command::Check { target, .. } | Command::Capture { target, .. } => {
                *target = Some(value);
            }
            Command::Serve => {}
        }
    }
    if command != Command::Serve && !serve.set_flags.iter().any(|f| f == "--log-level") {
        // The report is the output; the log only says what went wrong badly.
        serve.log_level = log::LevelFilter::Error;
    }
    serve.command = command;

    // Effective configuration: the common flags (added by `validate_common`), then the
    // exporter's own.
    for flag in own.flags.iter() {
        let src = source(flag.long);
        let text = match &src {
            Source::Default => "(default)".to_owned(),
            _ => {
                let value = flag_values(&own_tokens, flag).join(", ");
                if value.is_empty() {
                    src.describe()
                } else if looks_secret(flag.long) {
                    format!("<secret> {}", src.describe())
                } else {
                    format!("{value} {}", src.describe())
                }
            }
        };
        serve.add_config(flag.long, text);
    }
    serve.flag_docs = common
        .flags
        .iter()
        .chain(own.flags.iter())
        .filter(|f| f.long != "--help")
        .map(|f| {
            let name = match f.kind {
                Kind::Switch => f.long.to_owned(),
                Kind::Option => format!("{} <{}>", f.long, f.arg_name),
            };
            (name, describe(info, f.description))
        })
        .collect();
    Ok(Cli { flags, serve })
}

/// Splits off a leading `check` or `capture` subcommand and its own flags; the rest are the
/// usual flags. `--target` stays with the rest when the exporter has its own `--target`.
fn split_command(args: &[&str], own_target: bool) -> Result<(Command, Vec<String>), CliExit> {
    let (word, rest) = match args.split_first() {
        Some((&word, rest)) if word == "check" || word == "capture" => (word, rest),
        _ => return Ok((Command::Serve, args.iter().map(|a| (*a).to_owned()).collect())),
    };
    let mut target = None;
    let mut json = false;
    let mut out = None;
    let mut format = crate::capture::CaptureFormat::Yaml;
    let mut remaining = Vec::new();
    let mut i = 0;
    while let Some(&arg) = rest.get(i) {
        i += 1;
        if arg == "--" {
            remaining.extend(rest.iter().skip(i - 1).map(|a| (*a).to_owned()));
            break;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg, None),
        };
        let ours = match (word, name) {
            ("check", "--json") => {
                if inline.is_some() {
                    return Err(CliExit::Error("switch --json takes no value".to_owned()));
                }
                json = true;
                continue;
            }
            ("capture", "--out" | "--format") => true,
            (_, "--target") => !own_target,
            _ => false,
        };
        if !ours {
            remaining.push(arg.to_owned());
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => {
                let Some(&value) = rest.get(i) else {
                    return Err(CliExit::Error(format!("no value provided for option '{name}'")));
                };
                i += 1;
                value.to_owned()
            }
        };
        match name {
            "--out" => out = Some(PathBuf::from(value)),
            "--format" => {
                format = match value.to_ascii_lowercase().as_str() {
                    "yaml" | "yml" => crate::capture::CaptureFormat::Yaml,
                    "json" => crate::capture::CaptureFormat::Json,
                    other => {
                        return Err(CliExit::Error(format!(
                            "capture: invalid --format {other:?} (use yaml or json)"
                        )));
                    }
                }
            }
            _ => target = Some(value),
        }
    }
    if target.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(CliExit::Error(format!("{word}: empty --target")));
    }
    let command = if word == "check" {
        Command::Check { target, json }
    } else {
        let Some(out) = out.filter(|o| !o.as_os_str().is_empty()) else {
            return Err(CliExit::Error(
                "capture needs --out FILE (the capture file to write; - for stdout)".to_owned(),
            ));
        };
        Command::Capture { target, out, format }
    };
    Ok((command, remaining))
}

/// `<PREFIX>_<FLAG_IN_UPPER_SNAKE_CASE>` for a long flag (`--api-key-file` → `TTN_API_KEY_FILE`).
pub fn env_var_name(prefix: &str, long: &str) -> String {
    format!("{prefix}_{}", long.trim_start_matches('-').replace('-', "_").to_ascii_uppercase())
}

/// `<binary> <version> (revision …, rustc …)`.
pub fn version_line(info: ExporterInfo) -> String {
    format!(
        "{} {} (revision {}, rustc {})\n",
        info.binary,
        info.version,
        crate::self_metrics::REVISION,
        crate::self_metrics::rustc_short()
    )
}

/// Parses one `--listen-address` value: `host:port`, `[v6]:port`, or `:port` for all
/// interfaces. Returns the host (`None` for all interfaces) and the port.
pub(crate) fn parse_listen_address(addr: &str) -> Result<(Option<String>, u16), String> {
    let bad = |why: &str| format!("invalid --listen-address {addr:?}: {why}");
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, port) =
            rest.split_once("]:").ok_or_else(|| bad("expected [v6-address]:port"))?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| bad("not an IPv6 address in brackets"))?;
        (Some(host.to_owned()), port)
    } else {
        let (host, port) =
            addr.rsplit_once(':').ok_or_else(|| bad("expected host:port or :port"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 address needs brackets, e.g. [::1]:9100"));
        }
        if !host.is_empty()
            && host.parse::<IpAddr>().is_err()
            && !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(bad("not a host name or IP address"));
        }
        ((!host.is_empty()).then(|| host.to_owned()), port)
    };
    let port = port.parse::<u16>().map_err(|_| bad("the port must be a number 0-65535"))?;
    Ok((host, port))
}

/// The socket addresses one listen address binds (`:port` → `[::]` and, where IPv6 is not
/// available, `0.0.0.0`).
pub(crate) async fn resolve_listen_address(addr: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let (host, port) = parse_listen_address(addr).map_err(anyhow::Error::msg)?;
    match host {
        None => Ok(vec![SocketAddr::from(([0u16; 8], port)), SocketAddr::from(([0u8; 4], port))]),
        Some(host) => {
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(vec![SocketAddr::new(ip, port)]);
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| anyhow::anyhow!("cannot resolve listen address {addr:?}: {e}"))?
                .collect();
            anyhow::ensure!(!addrs.is_empty(), "listen address {addr:?} resolves to nothing");
            Ok(addrs)
        }
    }
}

/// Where [`parse_cli_with_env`] passes systemd's `$STATE_DIRECTORY` to [`parse_args`] (a
/// name no `<PREFIX>_` variable can have).
const STATE_DIRECTORY_ENV: &str = "\0STATE_DIRECTORY";

/// Flags that are never read from the environment.
const ENV_EXCLUDED: &[&str] = &["--help", "--version", "--healthcheck"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Flag,
    Env(String),
    Default,
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Flag => "(flag)".to_owned(),
            Source::Env(var) => format!("(env {var})"),
            Source::Default => "(default)".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Switch,
    Option,
}

#[derive(Debug)]
struct Flag {
    long: &'static str,
    short: Option<char>,
    kind: Kind,
    repeating: bool,
    arg_name: &'static str,
    description: &'static str,
}

#[derive(Debug)]
struct FlagTable {
    flags: Vec<Flag>,
}

impl FlagTable {
    fn new(flags: &'static [FlagInfo<'static>]) -> FlagTable {
        let flags = flags
            .iter()
            .filter(|f| f.long != "--help")
            .map(|f| Flag {
                long: f.long,
                short: f.short,
                kind: match f.kind {
                    FlagInfoKind::Switch => Kind::Switch,
                    FlagInfoKind::Option { .. } => Kind::Option,
                },
                repeating: f.optionality == Optionality::Repeating,
                arg_name: match f.kind {
                    FlagInfoKind::Switch => "",
                    FlagInfoKind::Option { arg_name } => arg_name,
                },
                description: f.description,
            })
            .collect();
        FlagTable { flags }
    }

    fn by_long(&self, long: &str) -> Option<&Flag> {
        self.flags.iter().find(|f| f.long == long)
    }

    fn by_short(&self, short: char) -> Option<&Flag> {
        self.flags.iter().find(|f| f.short == Some(short))
    }

    fn lookup(&self, token: &str) -> Option<&Flag> {
        if token.starts_with("--") {
            self.by_long(token)
        } else {
            let mut chars = token.strip_prefix('-')?.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => self.by_short(c),
                _ => None,
            }
        }
    }
}

#[derive(Debug, Default)]
struct Split {
    own: Vec<String>,
    common: Vec<String>,
    /// Long names of the flags given on argv.
    given: Vec<String>,
    help: bool,
}

fn split_args(args: &[&str], own: &FlagTable, common: &FlagTable) -> Result<Split, CliExit> {
    let mut split = Split::default();
    let mut i = 0;
    while let Some(&arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            split.own.extend(args.iter().skip(i - 1).map(|s| (*s).to_owned()));
            break;
        }
        if arg == "--help" || arg == "-h" {
            split.help = true;
            continue;
        }
        if !arg.starts_with('-') || arg == "-" {
            split.own.push(arg.to_owned());
            continue;
        }
        // `--flag=value` is accepted too.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (arg, None),
        };
        // The exporter's own flags win over a common flag of the same name.
        let (flag, dest) = match (own.lookup(name), common.lookup(name)) {
            (Some(flag), _) => (flag, &mut split.own),
            (None, Some(flag)) => (flag, &mut split.common),
            (None, None) => {
                split.own.push(arg.to_owned());
                continue;
            }
        };
        split.given.push(flag.long.to_owned());
        match (flag.kind, inline) {
            (Kind::Switch, None) => dest.push(flag.long.to_owned()),
            (Kind::Switch, Some(_)) => {
                return Err(CliExit::Error(format!("switch {} takes no value", flag.long)));
            }
            (Kind::Option, Some(value)) => {
                dest.push(flag.long.to_owned());
                dest.push(value.to_owned());
            }
            (Kind::Option, None) => {
                let Some(&value) = args.get(i) else {
                    return Err(CliExit::Error(format!(
                        "no value provided for option '{}'",
                        flag.long
                    )));
                };
                i += 1;
                dest.push(flag.long.to_owned());
                dest.push(value.to_owned());
            }
        }
    }
    Ok(split)
}

/// The values a flag was given in a token list (`--flag v --flag w` → `[v, w]`).
fn flag_values(tokens: &[String], flag: &Flag) -> Vec<String> {
    match flag.kind {
        Kind::Switch => vec!["true".to_owned()],
        Kind::Option => tokens
            .windows(2)
            .filter(|w| w.first().is_some_and(|t| t == flag.long))
            .filter_map(|w| w.get(1).cloned())
            .collect(),
    }
}

/// Names the environment variable when argh rejects a value that came from it.
fn name_env_sources(output: &str, env_used: &BTreeMap<String, String>) -> String {
    let mut msg = output.trim_end().to_owned();
    for (flag, var) in env_used {
        if output.contains(&format!("'{flag}'")) {
            let _ = write!(msg, " (set by environment variable {var})");
        }
    }
    msg
}

fn looks_secret(long: &str) -> bool {
    !long.ends_with("-file")
        && ["password", "secret", "token", "key", "credential"].iter().any(|w| long.contains(w))
}

fn validate_common(
    info: ExporterInfo,
    raw: &CommonFlags,
    source: &dyn Fn(&str) -> Source,
) -> Result<ServeOptions, String> {
    let mut opts = ServeOptions::for_test(info);
    let origin = |flag: &str| match source(flag) {
        Source::Env(var) => format!("environment variable {var} ({flag})"),
        _ => flag.to_owned(),
    };

    opts.listen_addresses = if raw.listen_address.is_empty() {
        vec![format!(":{}", info.default_port)]
    } else {
        raw.listen_address.clone()
    };
    for addr in &opts.listen_addresses {
        parse_listen_address(addr)
            .map_err(|e| format!("{e}{}", env_suffix(&source("--listen-address"))))?;
    }
    opts.web_config_file = raw.web_config_file.clone();
    opts.config_file = raw.config_file.clone();
    opts.state_directory = raw.state_directory.clone();
    for (flag, path) in [
        ("--web-config-file", &opts.web_config_file),
        ("--config-file", &opts.config_file),
        ("--state-directory", &opts.state_directory),
    ] {
        if let Some(path) = path
            && path.as_os_str().is_empty()
        {
            return Err(format!("{}: empty path", origin(flag)));
        }
    }

    // Any case, and the Python names (`WARNING`, `CRITICAL`) earlier exporters used.
    let level = raw.log_level.as_deref().unwrap_or("info").trim().to_ascii_lowercase();
    opts.log_level = match level.as_str() {
        "debug" => log::LevelFilter::Debug,
        "info" => log::LevelFilter::Info,
        "warn" | "warning" => log::LevelFilter::Warn,
        "error" | "critical" => log::LevelFilter::Error,
        _ => {
            let other = raw.log_level.as_deref().unwrap_or_default();
            return Err(format!(
                "{}: invalid log level {other:?} (use debug, info, warn or error)",
                origin("--log-level")
            ));
        }
    };
    opts.log_format = match raw.log_format.as_deref().unwrap_or("logfmt") {
        "logfmt" => LogFormat::Logfmt,
        "json" => LogFormat::Json,
        other => {
            return Err(format!(
                "{}: invalid log format {other:?} (use logfmt or json)",
                origin("--log-format")
            ));
        }
    };
    opts.timeout_offset = match &raw.timeout_offset {
        None => Duration::from_millis(500),
        Some(v) => {
            parse_seconds(v, true).map_err(|e| format!("{}: {e}", origin("--timeout-offset")))?
        }
    };
    opts.scrape_timeout = match &raw.scrape_timeout {
        None => Duration::from_secs(10),
        Some(v) => {
            parse_seconds(v, false).map_err(|e| format!("{}: {e}", origin("--scrape-timeout")))?
        }
    };
    if opts.timeout_offset >= opts.scrape_timeout {
        return Err(format!(
            "--timeout-offset ({}s) must be smaller than --scrape-timeout ({}s)",
            opts.timeout_offset.as_secs_f64(),
            opts.scrape_timeout.as_secs_f64()
        ));
    }
    opts.max_concurrent_scrapes = match &raw.max_concurrent_scrapes {
        None => 32,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "{}: invalid value {v:?} (a whole number of at least 1)",
                    origin("--max-concurrent-scrapes")
                ));
            }
        },
    };
    opts.healthcheck = raw.healthcheck;

    let mut add = |flag: &str, value: String| {
        let src = source(flag);
        opts.effective_config.push((flag.to_owned(), format!("{value} {}", src.describe())));
    };
    add(
        "--listen-address",
        raw_or_default(&raw.listen_address, &format!(":{}", info.default_port)),
    );
    let path_or_none = |p: &Option<PathBuf>| {
        p.as_ref().map_or_else(|| "none".to_owned(), |p| p.display().to_string())
    };
    add("--web-config-file", path_or_none(&raw.web_config_file));
    add("--config-file", path_or_none(&raw.config_file));
    add("--state-directory", path_or_none(&raw.state_directory));
    add("--log-level", raw.log_level.clone().unwrap_or_else(|| "info".to_owned()));
    add("--log-format", raw.log_format.clone().unwrap_or_else(|| "logfmt".to_owned()));
    add("--timeout-offset", format!("{}s", opts.timeout_offset.as_secs_f64()));
    add("--scrape-timeout", format!("{}s", opts.scrape_timeout.as_secs_f64()));
    add("--max-concurrent-scrapes", opts.max_concurrent_scrapes.to_string());
    Ok(opts)
}

fn env_suffix(src: &Source) -> String {
    match src {
        Source::Env(var) => format!(" (set by environment variable {var})"),
        _ => String::new(),
    }
}

fn raw_or_default(values: &[String], default: &str) -> String {
    if values.is_empty() { default.to_owned() } else { values.join(", ") }
}

/// Seconds as a finite, non-negative decimal (`0` allowed only when `zero_ok`).
fn parse_seconds(value: &str, zero_ok: bool) -> Result<Duration, String> {
    let v = value.trim();
    let secs: f64 = v.parse().map_err(|_| format!("invalid number of seconds {value:?}"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "invalid number of seconds {value:?} (must be finite and not negative)"
        ));
    }
    if secs == 0.0 && !zero_ok {
        return Err(format!("invalid number of seconds {value:?} (must be more than 0)"));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("number of seconds {value:?} is too large"))
}

fn help_text<D: ArgsInfo + FromArgs>(info: ExporterInfo, common: &FlagTable) -> String {
    let own = match D::from_args(&[info.binary], &["--help"]) {
        Err(exit) => exit.output,
        Ok(_) => String::new(),
    };
    let mut out = own.trim_end().to_owned();
    out.push_str("\n\nCommon flags:\n");
    for flag in &common.flags {
        let name = match flag.kind {
            Kind::Switch => flag.long.to_owned(),
            Kind::Option => format!("{} <{}>", flag.long, flag.arg_name),
        };
        write_flag_help(&mut out, &name, &describe(info, flag.description));
    }
    out.push_str(
        "\nCommands (instead of serving; every flag above applies):\n  \
         check [--target T] [--json]\n                    scrape each target once (or the \
         one named) and print what worked;\n                    exit 0 when every target is \
         up, else 1\n  capture --out FILE [--target T] [--format yaml|json]\n                    \
         record one scrape's requests and responses, redacted, to\n                    FILE \
         (- for stdout) to attach to a bug report\n",
    );
    let _ = write!(
        out,
        "\nEvery flag can also be set by the environment variable {p}_<FLAG>, the flag\n\
         name in upper snake case (e.g. {p}_LISTEN_ADDRESS); a flag on the command line\n\
         wins. Switches take true/false/1/0, repeatable flags a comma-separated list.\n\
         Secrets are read from files (--*-file) or systemd credentials, never from the\n\
         command line.\n",
        p = info.env_prefix
    );
    out
}

/// A flag's description on one line, with the exporter's default port filled in.
fn describe(info: ExporterInfo, description: &str) -> String {
    description
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("<the exporter's port>", &info.default_port.to_string())
}

/// One flag in argh's help layout: the name, the description from column 20, wrapped at 80.
fn write_flag_help(out: &mut String, name: &str, description: &str) {
    const COLUMN: usize = 20;
    const WIDTH: usize = 80;
    let mut line = format!("  {name}");
    if line.len() + 2 > COLUMN {
        out.push_str(&line);
        out.push('\n');
        line.clear();
    }
    line.push_str(&" ".repeat(COLUMN - line.len()));
    let mut empty = true;
    for word in description.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(COLUMN);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Flags of a pretend exporter.
    #[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
    /// Prometheus exporter for a pretend device.
    struct Own {
        /// device URL
        #[argh(option, default = "String::from(\"http://192.168.1.1\")")]
        target: String,
        /// file holding the API key
        #[argh(option)]
        api_key_file: Option<PathBuf>,
        /// be verbose about the device
        #[argh(switch)]
        chatty: bool,
        /// extra label (repeatable)
        #[argh(option)]
        label: Vec<String>,
        /// how many retries
        #[argh(option)]
        retries: Option<u32>,
    }

    const INFO: ExporterInfo = ExporterInfo {
        binary: "pretend-exporter",
        env_prefix: "PRETEND",
        version: "1.2.3",
        default_port: 9999,
    };

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Cli<Own>, CliExit> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        parse_args::<Own>(INFO, args, &env)
    }

    fn err(args: &[&str], env: &[(&str, &str)]) -> String {
        match parse(args, env) {
            Err(CliExit::Error(msg)) => msg,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn config(cli: &Cli<Own>, key: &str) -> String {
        cli.serve.effective_config.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap()
    }

    #[test]
    fn defaults() {
        let cli = parse(&[], &[]).unwrap();
        assert_eq!(cli.serve.listen_addresses, vec![":9999"]);
        assert_eq!(cli.serve.timeout_offset, Duration::from_millis(500));
        assert_eq!(cli.serve.scrape_timeout, Duration::from_secs(10));
        assert_eq!(cli.serve.max_concurrent_scrapes, 32);
        assert_eq!(cli.serve.log_level, log::LevelFilter::Info);
        assert_eq!(cli.serve.log_format, LogFormat::Logfmt);
        assert_eq!(cli.flags.target, "http://192.168.1.1");
        assert!(!cli.flags.chatty);
        assert_eq!(config(&cli, "--listen-address"), ":9999 (default)");
        assert_eq!(config(&cli, "--target"), "(default)");
    }

    #[test]
    fn flags_of_both_structs_mix_in_any_order() {
        let cli = parse(
            &[
                "--chatty",
                "--listen-address",
                "127.0.0.1:1",
                "--target",
                "http://x",
                "--listen-address=[::1]:2",
                "--scrape-timeout",
                "3.5",
                "--label",
                "a",
                "--label",
                "b",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(cli.serve.listen_addresses, vec!["127.0.0.1:1", "[::1]:2"]);
        assert_eq!(cli.serve.scrape_timeout, Duration::from_millis(3500));
        assert_eq!(cli.flags.target, "http://x");
        assert!(cli.flags.chatty);
        assert_eq!(cli.flags.label, vec!["a", "b"]);
        assert_eq!(config(&cli, "--target"), "http://x (flag)");
        assert_eq!(config(&cli, "--label"), "a, b (flag)");
    }

    #[test]
    fn environment_fills_in_and_the_flag_wins() {
        let env = [
            ("PRETEND_TARGET", "http://env"),
            ("PRETEND_LISTEN_ADDRESS", "127.0.0.1:1,[::1]:2"),
            ("PRETEND_API_KEY_FILE", "/run/key"),
            ("PRETEND_CHATTY", "true"),
            ("PRETEND_LABEL", "x, y"),
            ("PRETEND_LOG_LEVEL", "debug"),
            ("PRETEND_MAX_CONCURRENT_SCRAPES", "4"),
            ("OTHER_TARGET", "ignored"),
        ];
        let cli = parse(&["--log-level", "warn"], &env).unwrap();
        assert_eq!(cli.flags.target, "http://env");
        assert_eq!(cli.flags.api_key_file, Some(PathBuf::from("/run/key")));
        assert!(cli.flags.chatty);
        assert_eq!(cli.flags.label, vec!["x", "y"]);
        assert_eq!(cli.serve.listen_addresses, vec!["127.0.0.1:1", "[::1]:2"]);
        assert_eq!(cli.serve.log_level, log::LevelFilter::Warn, "the flag wins over the env");
        assert_eq!(cli.serve.max_concurrent_scrapes, 4);
        assert_eq!(config(&cli, "--target"), "http://env (env PRETEND_TARGET)");
        assert_eq!(config(&cli, "--log-level"), "warn (flag)");
        assert_eq!(
            config(&cli, "--max-concurrent-scrapes"),
            "4 (env PRETEND_MAX_CONCURRENT_SCRAPES)"
        );

        let cli = parse(&["--target", "http://flag"], &env).unwrap();
        assert_eq!(cli.flags.target, "http://flag");
        let cli = parse(&[], &[("PRETEND_CHATTY", "0")]).unwrap();
        assert!(!cli.flags.chatty);
        let cli = parse(&[], &[("PRETEND_TARGET", "")]).unwrap();
        assert_eq!(cli.flags.target, "http://192.168.1.1", "an empty variable is unset");
    }

    #[test]
    fn invalid_environment_values_name_the_variable() {
        let msg = err(&[], &[("PRETEND_CHATTY", "maybe")]);
        assert!(msg.contains("PRETEND_CHATTY"), "{msg}");
        let msg = err(&[], &[("PRETEND_SCRAPE_TIMEOUT", "soon")]);
        assert!(msg.contains("PRETEND_SCRAPE_TIMEOUT"), "{msg}");
        let msg = err(&[], &[("PRETEND_LISTEN_ADDRESS", "nowhere")]);
        assert!(msg.contains("PRETEND_LISTEN_ADDRESS"), "{msg}");
        let msg = err(&[], &[("PRETEND_LABEL", "a,,b")]);
        assert!(msg.contains("PRETEND_LABEL"), "{msg}");
        let msg = err(&[], &[("PRETEND_RETRIES", "many")]);
        assert!(msg.contains("PRETEND_RETRIES") && msg.contains("--retries"), "{msg}");
        let msg = err(&["--retries", "many"], &[]);
        assert!(msg.contains("--retries") && !msg.contains("PRETEND_"), "{msg}");
        let msg = err(&[], &[("PRETEND_LOG_FORMAT", "xml")]);
        assert!(msg.contains("PRETEND_LOG_FORMAT"), "{msg}");
    }

    #[test]
    fn invalid_values_stop_with_the_flag_named() {
        for (args, needle) in [
            (&["--timeout-offset", "-1"][..], "--timeout-offset"),
            (&["--timeout-offset", "NaN"], "--timeout-offset"),
            (&["--scrape-timeout", "0"], "--scrape-timeout"),
            (&["--scrape-timeout", "inf"], "--scrape-timeout"),
            (&["--timeout-offset", "2", "--scrape-timeout", "2"], "--timeout-offset"),
            (&["--max-concurrent-scrapes", "0"], "--max-concurrent-scrapes"),
            (&["--max-concurrent-scrapes", "-3"], "--max-concurrent-scrapes"),
            (&["--listen-address", "9100"], "--listen-address"),
            (&["--listen-address", "::1:9100"], "--listen-address"),
            (&["--listen-address", ":99999"], "--listen-address"),
            (&["--log-level", "loud"], "--log-level"),
            (&["--log-format", "xml"], "--log-format"),
            (&["--no-such-flag"], "--no-such-flag"),
            (&["--target"], "--target"),
            (&["--chatty=yes"], "--chatty"),
        ] {
            let msg = err(args, &[]);
            assert!(msg.contains(needle), "{args:?}: {msg}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_address(":9100"), Ok((None, 9100)));
        assert_eq!(parse_listen_address("127.0.0.1:1"), Ok((Some("127.0.0.1".to_owned()), 1)));
        assert_eq!(parse_listen_address("[::1]:2"), Ok((Some("::1".to_owned()), 2)));
        assert_eq!(parse_listen_address("localhost:3"), Ok((Some("localhost".to_owned()), 3)));
        assert!(parse_listen_address("[nope]:2").is_err());
        assert!(parse_listen_address("a b:2").is_err());
        assert!(parse_listen_address("host:").is_err());
    }

    #[test]
    fn help_lists_both_flag_sets_and_the_env_rule() {
        let Err(CliExit::Help(text)) = parse(&["--help"], &[]) else { panic!("no help") };
        for needle in [
            "--api-key-file",
            "file holding the API key",
            "--listen-address",
            "--scrape-timeout",
            "PRETEND_LISTEN_ADDRESS",
            "Common flags",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        let Err(CliExit::Version(line)) = parse(&["--version"], &[("PRETEND_TARGET", "x")]) else {
            panic!("no version")
        };
        assert!(line.starts_with("pretend-exporter 1.2.3 (revision "), "{line}");
        assert!(line.contains("rustc "), "{line}");
        // --version is never taken from the environment.
        assert!(parse(&[], &[("PRETEND_VERSION", "1")]).is_ok());
    }

    #[test]
    fn flag_docs_and_secrets() {
        let cli = parse(&["--api-key-file", "/k"], &[]).unwrap();
        let docs: Vec<&str> = cli.serve.flag_docs.iter().map(|(k, _)| k.as_str()).collect();
        assert!(docs.contains(&"--api-key-file <api-key-file>"), "{docs:?}");
        assert!(docs.contains(&"--listen-address <addr>"), "{docs:?}");
        assert!(docs.contains(&"--chatty"), "{docs:?}");
        assert_eq!(config(&cli, "--api-key-file"), "/k (flag)", "file names are not secrets");
        assert!(looks_secret("--api-key"));
        assert!(!looks_secret("--api-key-file"));
        let mut serve = cli.serve;
        serve.add_config("password", "<secret> (from file /p)");
        serve.add_config("password", "<secret> (from file /q)");
        assert_eq!(serve.effective_config.iter().filter(|(k, _)| k == "password").count(), 1);
    }
}
