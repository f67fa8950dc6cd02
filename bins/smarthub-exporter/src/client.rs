//! Fetching the hub's pages: a Referer on every request, status checks, bounded bodies and
//! the scrape deadline on every call.

use std::{
    fmt,
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use exporter_core::capture::{self, CapturedHttp};

use crate::record::Pending;

/// Bodies larger than this are refused (the device list of a busy hub is a few hundred KiB).
pub const BODY_LIMIT: usize = 2 << 20;

/// The page every request names as its Referer: firmware since August 2022 answers 403 on
/// `/cgi/*.js` without one (spec §2.1).
pub const REFERER_PAGE: &str = "/basic_-_my_devices.htm";

/// The hub's base URL, e.g. `http://192.168.1.254` (a bare host or IP means `http://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl(String);

impl HubUrl {
    /// The base URL without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host part (a name, an IPv4 address or an IPv6 address in brackets).
    pub fn host(&self) -> &str {
        let rest = self.0.split_once("://").map_or(self.0.as_str(), |(_, r)| r);
        if let Some(end) = rest.find(']') {
            return rest.get(..=end).unwrap_or(rest);
        }
        rest.split(':').next().unwrap_or(rest)
    }

    /// The Referer sent with every request.
    pub fn referer(&self) -> String {
        format!("{}{REFERER_PAGE}", self.0)
    }
}

impl FromStr for HubUrl {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<HubUrl> {
        let t = s.trim();
        if t.is_empty() {
            bail!("empty hub address");
        }
        let with_scheme = if t.contains("://") { t.to_owned() } else { format!("http://{t}") };
        let url = reqwest::Url::parse(&with_scheme).with_context(|| {
            format!("invalid hub address {t:?} (expected e.g. http://192.168.1.254)")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("hub address {t:?} must use http or https");
        }
        let Some(host) = url.host_str() else {
            bail!("hub address {t:?} has no host");
        };
        if !url.username().is_empty() || url.password().is_some() {
            bail!("hub address {t:?} must not contain credentials");
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            bail!("hub address {t:?} must be a base URL without a path, e.g. http://192.168.1.254");
        }
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(HubUrl(format!("{}://{host}{port}", url.scheme())))
    }
}

impl fmt::Display for HubUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hub's pages over HTTP.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
}

impl HubClient {
    pub fn new(http: reqwest::Client) -> HubClient {
        HubClient { http }
    }

    /// `GET {hub}{path}` with the Referer, bounded by `deadline`; the body as text.
    ///
    /// Fails on any status but 200, on a redirect (a login), on an HTML page where data was
    /// expected (a login or error page) and on a body over [`BODY_LIMIT`]. While a capture
    /// is taken, a failed exchange is recorded here and a successful one is handed back in
    /// [`Page::pending`], to be recorded once the body was parsed.
    pub async fn get(&self, hub: &HubUrl, path: &str, deadline: Instant) -> anyhow::Result<Page> {
        let referer = hub.referer();
        let url = format!("{hub}{path}");
        let exchange = |status: Option<u16>, headers: Vec<(String, String)>, body: Option<&str>| {
            CapturedHttp {
                method: "GET".to_owned(),
                url: url.clone(),
                request_headers: vec![("referer".to_owned(), referer.clone())],
                status,
                response_headers: headers,
                response_body: body.map(str::to_owned),
                ..CapturedHttp::default()
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        // The request's own timeout ends a little before the scrape deadline, so that a hung
        // hub is reported as this request timing out rather than as the deadline passing.
        let left = left.saturating_sub((left / 20).min(Duration::from_millis(50)));
        if left.is_zero() {
            bail!("no time left before the scrape deadline");
        }
        let resp = match self
            .http
            .get(&url)
            .header(reqwest::header::REFERER, &referer)
            .timeout(left)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                let err = anyhow::anyhow!("request failed: {}", error_chain(&e));
                capture::record_http(|| CapturedHttp {
                    error: Some(format!("{err:#}")),
                    ..exchange(None, Vec::new(), None)
                });
                return Err(err);
            }
        };
        let status = resp.status();
        let headers = capture::active().then(|| capture::header_pairs(resp.headers()));
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nowhere")
            .chars()
            .take(200)
            .collect::<String>();
        let read = exporter_core::client::read_body_limited(resp, BODY_LIMIT).await;
        let (text, read) = match read {
            Ok(bytes) => (Some(utf8_lossy(bytes)), Ok(())),
            Err(e) => (None, Err(e)),
        };
        let record_now = |error: Option<String>| {
            capture::record_http(|| CapturedHttp {
                error,
                ..exchange(
                    Some(status.as_u16()),
                    headers.clone().unwrap_or_default(),
                    text.as_deref(),
                )
            });
        };
        let failure = if status == reqwest::StatusCode::FORBIDDEN {
            Some(anyhow::Error::new(Forbidden { referer: referer.clone() }))
        } else if status.is_redirection() {
            Some(anyhow::anyhow!(
                "HTTP {status}: the hub redirected to {location:?}, a login page instead of data"
            ))
        } else if status != reqwest::StatusCode::OK {
            Some(anyhow::anyhow!("HTTP {status}"))
        } else {
            None
        };
        if let Some(err) = failure {
            record_now(None);
            return Err(err);
        }
        if let Err(e) = read {
            let err = e.context("read the body");
            record_now(Some(format!("{err:#}")));
            return Err(err);
        }
        if let Some(kind) = text.as_deref().and_then(html_kind) {
            record_now(None);
            if kind == "an HTML page" && path.starts_with("/cgi/") {
                bail!(
                    "the hub answered with an HTML page instead of data; some firmware answers \
                     an error page, or 403, when the Referer header is missing or not a hub page \
                     (sent Referer: {referer})"
                );
            }
            bail!("the hub answered with {kind} instead of data");
        }
        let body = text.unwrap_or_default();
        let pending =
            Pending::new(headers.map(|h| exchange(Some(status.as_u16()), h, Some(body.as_str()))));
        Ok(Page { body, pending })
    }
}

/// A page the hub answered with 200.
#[derive(Debug)]
pub struct Page {
    pub body: String,
    /// The exchange to record once the body was parsed (only while capturing).
    pub pending: Pending,
}

/// The hub's 403: firmware since 2022 refuses `/cgi/*.js` without a Referer naming a hub page.
#[derive(Debug, Clone)]
pub struct Forbidden {
    /// The Referer sent.
    pub referer: String,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP 403: the hub refused the page; firmware since 2022 answers 403 when the \
             Referer header is missing or not a hub page (sent Referer: {})",
            self.referer
        )
    }
}

impl std::error::Error for Forbidden {}

/// Whether `err` is the hub's 403.
pub fn is_forbidden(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<Forbidden>().is_some())
}

/// `Some("a login page")` / `Some("an HTML page")` when `body` is HTML.
pub fn html_kind(body: &str) -> Option<&'static str> {
    let head: String = body.trim_start().chars().take(512).collect::<String>().to_ascii_lowercase();
    let html = head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || head.starts_with("<head")
        || head.starts_with("<body");
    if !html {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    if lower.contains("login") || lower.contains("password") || lower.contains("type=\"password\"")
    {
        Some("a login page")
    } else {
        Some("an HTML page")
    }
}

fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

/// The body as text: taken as it is when it is UTF-8 (the usual case, checked quickly),
/// with invalid sequences replaced otherwise.
fn utf8_lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hub_urls_normalise_and_reject_nonsense() {
        let u: HubUrl = "192.168.1.254".parse().unwrap();
        assert_eq!(u.to_string(), "http://192.168.1.254");
        assert_eq!(u.referer(), "http://192.168.1.254/basic_-_my_devices.htm");
        assert_eq!(
            "http://127.0.0.1:8080/".parse::<HubUrl>().unwrap().as_str(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            "https://bthomehub.home".parse::<HubUrl>().unwrap().as_str(),
            "https://bthomehub.home"
        );
        assert_eq!("http://[::1]:80".parse::<HubUrl>().unwrap().as_str(), "http://[::1]");
        assert_eq!("http://[::1]:8080".parse::<HubUrl>().unwrap().host(), "[::1]");
        assert_eq!("http://127.0.0.1:8080".parse::<HubUrl>().unwrap().host(), "127.0.0.1");
        assert_eq!("bthomehub.home".parse::<HubUrl>().unwrap().host(), "bthomehub.home");
        for bad in ["", "ftp://x", "http://x/path", "http://u:p@x", "http://x?q=1", "http://"] {
            assert!(bad.parse::<HubUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn html_bodies_are_recognised() {
        assert_eq!(
            html_kind("<html><form><input type=\"password\"></form></html>"),
            Some("a login page")
        );
        assert_eq!(html_kind("  <!DOCTYPE html><html>Forbidden</html>"), Some("an HTML page"));
        assert_eq!(html_kind("var known_device_list=[null];"), None);
        assert_eq!(html_kind("<status><sysuptime value=\"1\"/></status>"), None);
    }
}
