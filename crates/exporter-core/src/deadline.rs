//! The scrape deadline: `X-Prometheus-Scrape-Timeout-Seconds` minus `--timeout-offset`,
//! never more than `--scrape-timeout` (also used when the header is missing or garbage).

use std::time::Duration;

/// The header Prometheus sends on every scrape with its scrape timeout in seconds.
pub(crate) const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// How long a scrape may take, given the header's value (if any).
///
/// A header that is not a positive finite number is ignored (logged at debug level). When the
/// header is not larger than the offset, half of the header is used so that some work can
/// still be done and the answer still arrives in time.
pub(crate) fn scrape_budget(
    header: Option<&str>,
    offset: Duration,
    scrape_timeout: Duration,
) -> Duration {
    let Some(raw) = header else { return scrape_timeout };
    let secs = match raw.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => secs,
        _ => {
            log::debug!(header = raw; "ignoring invalid X-Prometheus-Scrape-Timeout-Seconds");
            return scrape_timeout;
        }
    };
    let Ok(header) = Duration::try_from_secs_f64(secs) else { return scrape_timeout };
    let budget = match header.checked_sub(offset) {
        Some(left) if !left.is_zero() => left,
        _ => header / 2,
    };
    budget.min(scrape_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF: Duration = Duration::from_millis(500);
    const TEN: Duration = Duration::from_secs(10);

    fn ms(header: Option<&str>) -> u128 {
        scrape_budget(header, HALF, TEN).as_millis()
    }

    #[test]
    fn header_minus_offset_capped_by_scrape_timeout() {
        assert_eq!(ms(None), 10_000);
        assert_eq!(ms(Some("1")), 500);
        assert_eq!(ms(Some("0.75")), 250);
        assert_eq!(ms(Some(" 4.5 ")), 4000);
        assert_eq!(ms(Some("30")), 10_000);
        assert_eq!(ms(Some("1e1")), 9500);
    }

    #[test]
    fn small_headers_get_a_floor() {
        assert_eq!(ms(Some("0.5")), 250);
        assert_eq!(ms(Some("0.2")), 100);
    }

    #[test]
    fn garbage_is_ignored() {
        for bad in ["", "abc", "0", "-1", "NaN", "inf", "1e400", "1s"] {
            assert_eq!(ms(Some(bad)), 10_000, "{bad:?}");
        }
    }
}
