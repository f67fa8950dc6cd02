//! Pure render functions: a gateway's registry entry and cached connection statistics in,
//! samples out. No I/O and no clock here; ages are computed by the caller.

use std::time::Duration;

use exporter_core::Scrape;

use crate::{
    api,
    cache::LastSeen,
    client::StatsReply,
    health::{BUCKETS, HealthSnapshot},
    wire::Timestamp,
};

/// The help text of a cached statistics series: `text`, then how long it is served. Help
/// texts are literals (no `format!`): a scrape passes them once per gateway.
macro_rules! cached {
    ($($text:expr),+) => {
        concat!(
            $($text),+,
            "; cached up to --stats-ttl and served at most --stats-max-stale longer while the API \
             cannot be reached or rate-limits (see ttn_gateway_stats_age_seconds), then absent."
        )
    };
}

/// The help text of a remembered time: `text`, then how it is kept.
macro_rules! remembered {
    ($text:literal) => {
        concat!(
            $text,
            "; the newest the exporter has seen, kept after the Gateway Server forgets it (404 \
             not_connected 48 h after a disconnect, and on reconnection) and across restarts \
             with --state-directory."
        )
    };
}

/// The unit of a timestamp series.
macro_rules! since_epoch {
    () => {
        ", in seconds since the Unix epoch"
    };
}

/// How the connection counters restart.
macro_rules! reset {
    () => {
        "The Gateway Server restarts the count at 0 on each reconnection"
    };
}

/// Everything the exporter knows about one gateway, borrowed for rendering.
#[derive(Debug, Clone, Copy)]
pub struct GatewayView<'a> {
    pub id: &'a str,
    /// The registry entry; `None` when the key may read statistics only.
    pub info: Option<&'a api::Gateway>,
    /// The host of the cluster its statistics come from.
    pub cluster: &'a str,
    pub stats: Option<StatsView<'a>>,
    /// The last-seen times the exporter remembers.
    pub last_seen: Option<&'a LastSeen>,
    /// Whether the antenna locations are exported (`--expose-location`).
    pub expose_location: bool,
}

/// The last good statistics answer of a gateway.
#[derive(Debug, Clone, Copy)]
pub struct StatsView<'a> {
    pub reply: &'a StatsReply,
    /// How long ago it was fetched.
    pub age: Duration,
    /// Whether the Gateway Server reports `tx_acknowledgment_count` (3.25.2 and later), so
    /// that an omitted count is a real 0.
    pub tx_ack_known: bool,
    /// Older than `--stats-ttl` plus `--stats-max-stale`: no longer served (only its age,
    /// the protocol on the info metric and the remembered times stay).
    pub expired: bool,
}

/// Writes all series of one gateway.
pub fn gateway(out: &mut Scrape, gw: &GatewayView<'_>) {
    let id = gw.id;
    let stats = match gw.stats.map(|s| s.reply) {
        Some(StatsReply::Stats(stats)) => Some(stats.as_ref()),
        _ => None,
    };
    info(out, gw, stats.and_then(|s| s.protocol.as_deref()));
    if let Some(info) = gw.info
        && gw.expose_location
    {
        antennas(out, id, info);
    }
    let served = gw.stats.filter(|v| !v.expired);
    let served_stats = served.and_then(|v| match v.reply {
        StatsReply::Stats(stats) => Some(stats.as_ref()),
        StatsReply::NotConnected => None,
    });
    last_seen(out, id, served_stats, gw.last_seen);
    let Some(view) = gw.stats else { return };
    out.gauge(
        "gateway_stats_age_seconds",
        "Seconds since the gateway's connection statistics were fetched. They are cached up to \
         --stats-ttl; while the API cannot be reached or rate-limits they are served up to \
         --stats-max-stale longer, then the gateway's statistics series are absent (this age \
         and ttn_gateway_info stay).",
    )
    .sample(&[("gateway_id", id)], view.age.as_secs_f64());
    if view.expired {
        return;
    }
    match view.reply {
        StatsReply::NotConnected => connected(out, id, false),
        StatsReply::Stats(stats) => connection(out, id, stats, view.tx_ack_known),
    }
}

/// The remembered last-status and last-uplink times: the newer of the served statistics
/// and the exporter's memory.
fn last_seen(
    out: &mut Scrape,
    id: &str,
    stats: Option<&api::ConnectionStats>,
    memory: Option<&LastSeen>,
) {
    let newest = |a: Option<Timestamp>, b: Option<Timestamp>| a.max(b);
    let status =
        newest(stats.and_then(|s| s.last_status_received_at), memory.and_then(|m| m.status));
    let uplink =
        newest(stats.and_then(|s| s.last_uplink_received_at), memory.and_then(|m| m.uplink));
    let labels = [("gateway_id", id)];
    out.gauge(
        "gateway_last_status_timestamp_seconds",
        remembered!("Time the last status message was received, in seconds since the Unix epoch"),
    )
    .sample_opt(&labels, status.map(Timestamp::as_secs_f64));
    out.gauge(
        "gateway_last_uplink_timestamp_seconds",
        remembered!("Time the last uplink message was received, in seconds since the Unix epoch"),
    )
    .sample_opt(&labels, uplink.map(Timestamp::as_secs_f64));
}

/// The exporter's accounting of its API calls (not device data: counted by this process).
pub fn api_health(out: &mut Scrape, h: &HealthSnapshot) {
    {
        let mut requests = out.counter(
            "api_requests_total",
            "API calls the exporter made since it started, by cluster (the host of --api-url or \
             of the gateways' gateway_server_address), endpoint (the API's method name) and \
             HTTP status code (error: no answer, e.g. refused or timed out).",
        );
        for ((cluster, endpoint, code), n) in &h.requests {
            let code = code.label();
            requests.sample(
                &[("cluster", cluster), ("endpoint", endpoint.label()), ("code", &code)],
                *n as f64,
            );
        }
    }
    let mut durations = out.histogram(
        "api_request_duration_seconds",
        "Duration of the API calls the exporter made since it started, by cluster and endpoint \
         (answered or not).",
    );
    for ((cluster, endpoint), hist) in &h.durations {
        let buckets: Vec<(f64, u64)> =
            BUCKETS.iter().copied().zip(hist.buckets.iter().copied()).collect();
        durations.sample(
            &[("cluster", cluster), ("endpoint", endpoint.label())],
            &buckets,
            hist.sum,
            hist.count,
        );
    }
    let rate = "on the last answer from the cluster that carried the header (absent while the \
                server sends none: its rate limiting is off)";
    for (cluster, r) in &h.rate_limits {
        let labels = [("cluster", cluster.as_str())];
        out.gauge(
            "api_rate_limit_remaining",
            &format!(
                "Requests the API's rate limiter still allows (X-Rate-Limit-Available) {rate}."
            ),
        )
        .sample_opt(&labels, r.available.map(|v| v as f64));
        out.gauge(
            "api_rate_limit_limit",
            &format!("Burst size of the API's rate limiter (X-Rate-Limit-Limit) {rate}."),
        )
        .sample_opt(&labels, r.limit.map(|v| v as f64));
        out.gauge(
            "api_rate_limit_reset_seconds",
            &format!(
                "Seconds until the API's rate limiter is full again (X-Rate-Limit-Reset) {rate}."
            ),
        )
        .sample_opt(&labels, r.reset.map(|v| v as f64));
    }
}

/// `ttn_gateway_list_age_seconds`.
pub fn list_age(out: &mut Scrape, age: Duration) {
    out.gauge(
        "gateway_list_age_seconds",
        "Seconds since the gateway list was read from the Identity Server (refreshed every \
         --gateways-refresh).",
    )
    .sample(&[], age.as_secs_f64());
}

fn info(out: &mut Scrape, gw: &GatewayView<'_>, protocol: Option<&str>) {
    let info = gw.info;
    let eui = info.and_then(|i| i.ids.eui.as_deref()).unwrap_or_default();
    let name = info.and_then(|i| i.name.as_deref()).unwrap_or_default();
    let plans = match info {
        Some(i) if !i.frequency_plan_ids.is_empty() => i.frequency_plan_ids.join(","),
        Some(i) => i.frequency_plan_id.clone().unwrap_or_default(),
        None => String::new(),
    };
    out.info(
        "gateway_info",
        "Gateway registry facts (frequency plans joined with commas) and the protocol of its \
         last connection; always 1.",
        &[
            ("gateway_id", gw.id),
            ("eui", eui),
            ("name", name),
            ("frequency_plan", &plans),
            ("protocol", protocol.unwrap_or_default()),
            ("cluster", gw.cluster),
        ],
    );
    if let Some(v) = info.and_then(|i| i.version_ids.as_ref()) {
        out.info(
            "gateway_model_info",
            "Brand, model and versions of the gateway from its registry entry; always 1.",
            &[
                ("gateway_id", gw.id),
                ("brand", v.brand_id.as_deref().unwrap_or_default()),
                ("model", v.model_id.as_deref().unwrap_or_default()),
                ("hardware_version", v.hardware_version.as_deref().unwrap_or_default()),
                ("firmware_version", v.firmware_version.as_deref().unwrap_or_default()),
            ],
        );
    }
}

fn antennas(out: &mut Scrape, id: &str, info: &api::Gateway) {
    for (index, antenna) in info.antennas.iter().enumerate() {
        let Some(location) = &antenna.location else { continue };
        let index = index.to_string();
        let labels = [("gateway_id", id), ("antenna", index.as_str())];
        // Inside a present location, an omitted coordinate is a real 0 (protobuf JSON).
        out.gauge(
            "gateway_antenna_latitude_degrees",
            "Registered latitude of the gateway's antenna (WGS84 degrees); only with \
             --expose-location.",
        )
        .sample(&labels, location.latitude.unwrap_or(0.0));
        out.gauge(
            "gateway_antenna_longitude_degrees",
            "Registered longitude of the gateway's antenna (WGS84 degrees); only with \
             --expose-location.",
        )
        .sample(&labels, location.longitude.unwrap_or(0.0));
        out.gauge(
            "gateway_antenna_altitude_meters",
            "Registered altitude of the gateway's antenna in metres; only with \
             --expose-location.",
        )
        .sample(&labels, location.altitude.unwrap_or(0.0));
    }
}

fn connected(out: &mut Scrape, id: &str, value: bool) {
    out.gauge(
        "gateway_connected",
        cached!(
            "1 while the gateway is connected to its Gateway Server (connected_at set, \
             disconnected_at not), 0 when disconnected or not connected to its cluster"
        ),
    )
    .sample(&[("gateway_id", id)], if value { 1.0 } else { 0.0 });
}

fn connection(out: &mut Scrape, id: &str, s: &api::ConnectionStats, tx_ack_known: bool) {
    let labels = [("gateway_id", id)];
    connected(out, id, s.connected());
    let stamps = [
        (
            "gateway_connected_timestamp_seconds",
            cached!("Time the current connection started", since_epoch!()),
            s.connected_at,
        ),
        (
            "gateway_disconnected_timestamp_seconds",
            cached!(
                "Time the last connection ended (kept by the Gateway Server for 48 h)",
                since_epoch!()
            ),
            s.disconnected_at,
        ),
        (
            "gateway_last_downlink_timestamp_seconds",
            cached!("Time the last downlink message was sent to the gateway", since_epoch!()),
            s.last_downlink_received_at,
        ),
        (
            "gateway_last_tx_acknowledgment_timestamp_seconds",
            cached!("Time the last transmission acknowledgment was received", since_epoch!()),
            s.last_tx_acknowledgment_received_at,
        ),
        (
            "gateway_boot_timestamp_seconds",
            cached!(
                "Boot time the gateway reported in its last status (absent when it reported none \
                 or a placeholder before 1971)",
                since_epoch!()
            ),
            s.last_status.as_ref().and_then(|st| st.boot_time).and_then(|t| t.plausible()),
        ),
    ];
    for (name, help, value) in stamps {
        out.gauge(name, help).sample_opt(&labels, value.map(|t| t.as_secs_f64()));
    }

    // A statistics body omits zero counts, so an omitted count is a real 0 here.
    out.counter(
        "gateway_uplinks_total",
        cached!("Uplink messages received from the gateway during the last connection. ", reset!()),
    )
    .sample(&labels, s.uplink_count.unwrap_or(0) as f64);
    out.counter(
        "gateway_downlinks_total",
        cached!("Downlink messages sent to the gateway during the last connection. ", reset!()),
    )
    .sample(&labels, s.downlink_count.unwrap_or(0) as f64);
    let tx_acks = match s.tx_acknowledgment_count {
        Some(n) => Some(n),
        None if tx_ack_known => Some(0),
        None => None,
    };
    out.counter(
        "gateway_tx_acknowledgments_total",
        cached!(
            "Transmission acknowledgments received from the gateway during the last connection \
             (absent on Gateway Servers older than 3.25.2). ",
            reset!()
        ),
    )
    .sample_opt(&labels, tx_acks.map(|n| n as f64));

    // Inside a present object, omitted fields are zeros (protobuf JSON).
    if let Some(rtt) = &s.round_trip_times {
        macro_rules! rtt_help {
            ($what:literal) => {
                cached!(
                    $what,
                    " round-trip time to the gateway over its last samples (at most 20 in 30 \
                     min), in seconds"
                )
            };
        }
        out.gauge("gateway_round_trip_min_seconds", rtt_help!("Shortest"))
            .sample(&labels, rtt.min.unwrap_or(0.0));
        out.gauge("gateway_round_trip_max_seconds", rtt_help!("Longest"))
            .sample(&labels, rtt.max.unwrap_or(0.0));
        out.gauge("gateway_round_trip_median_seconds", rtt_help!("Median"))
            .sample(&labels, rtt.median.unwrap_or(0.0));
        out.gauge(
            "gateway_round_trip_samples",
            cached!("Number of round-trip samples the min, max and median are taken over"),
        )
        .sample(&labels, f64::from(rtt.count.unwrap_or(0)));
    }

    for band in &s.sub_bands {
        let min = band.min_frequency.unwrap_or(0).to_string();
        let max = band.max_frequency.unwrap_or(0).to_string();
        let band_labels =
            [("gateway_id", id), ("min_frequency_hz", &min), ("max_frequency_hz", &max)];
        out.gauge(
            "gateway_sub_band_downlink_utilization_ratio",
            cached!(
                "Used fraction of the sub-band's available downlink duty cycle (0-1), per \
                 sub-band given by its frequency range in Hz"
            ),
        )
        .sample(&band_labels, band.downlink_utilization.unwrap_or(0.0));
        out.gauge(
            "gateway_sub_band_downlink_utilization_limit_ratio",
            cached!(
                "Downlink duty-cycle limit of the sub-band (0-1; 1 when duty cycle is not \
                 enforced), per sub-band given by its frequency range in Hz"
            ),
        )
        .sample(&band_labels, band.downlink_utilization_limit.unwrap_or(0.0));
    }

    if let Some(status) = &s.last_status {
        for (name, value) in status.metrics.iter() {
            // NaN and infinities are the gateway saying "no reading": absent, not a value.
            if value.0.is_finite() {
                out.gauge(
                    "gateway_status_metric",
                    cached!(
                        "Numeric values of the gateway's last status message as the packet \
                         forwarder reported them (per-interval counts such as rxin, rxok, txok; \
                         ackr in percent; temp in degrees Celsius)"
                    ),
                )
                .sample(&[("gateway_id", id), ("name", name)], value.0);
            }
        }
    }
}
