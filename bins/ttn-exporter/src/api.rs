//! Serde types mirroring the The Things Stack v3 HTTP API responses the exporter reads
//! (spec §1.4, §1.6, §1.8): gateways from the Identity Server, connection statistics from
//! the Gateway Servers, and the error body.
//!
//! Protobuf JSON omits zero values, so every field is optional here; the render step decides
//! where an omitted field means 0 (a counter inside a statistics body) and where it means
//! "never reported" (a timestamp, the round-trip times, the sub-bands).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::wire::{Float, SmallMap, Timestamp, de_opt};

/// `GET /api/v3/gateways` (and the user/organization variants): one page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GatewaysPage<'a> {
    /// Raw entries, decoded one by one so that one odd gateway does not hide the others.
    /// They stay slices of the answer until then: a page of 1000 gateways parsed into
    /// `serde_json::Value`s first would cost about 4 MB more.
    #[serde(borrow)]
    pub gateways: Vec<&'a serde_json::value::RawValue>,
}

/// One gateway of the registry, as far as the exporter's field mask asks for it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Gateway {
    pub ids: GatewayIds,
    pub name: Option<String>,
    pub description: Option<String>,
    pub version_ids: Option<VersionIds>,
    pub gateway_server_address: Option<String>,
    /// Deprecated single plan (the first of `frequency_plan_ids`).
    pub frequency_plan_id: Option<String>,
    pub frequency_plan_ids: Vec<String>,
    pub antennas: Vec<Antenna>,
}

/// `ids` of a gateway.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GatewayIds {
    pub gateway_id: String,
    pub eui: Option<String>,
}

/// `version_ids` of a gateway (brand and model from the device repository).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct VersionIds {
    pub brand_id: Option<String>,
    pub model_id: Option<String>,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    pub runtime_version: Option<String>,
}

/// One registered antenna.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Antenna {
    #[serde(deserialize_with = "de_opt::float")]
    pub gain: Option<f64>,
    pub location: Option<Location>,
}

/// A location; inside a present object, omitted coordinates are real zeros.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Location {
    #[serde(deserialize_with = "de_opt::float")]
    pub latitude: Option<f64>,
    #[serde(deserialize_with = "de_opt::float")]
    pub longitude: Option<f64>,
    /// Metres; an int32 on the wire.
    #[serde(deserialize_with = "de_opt::float")]
    pub altitude: Option<f64>,
}

/// `GatewayConnectionStats` (spec §1.6), from the single or the batch call.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConnectionStats {
    #[serde(deserialize_with = "de_opt::timestamp")]
    pub connected_at: Option<Timestamp>,
    #[serde(deserialize_with = "de_opt::timestamp")]
    pub disconnected_at: Option<Timestamp>,
    pub protocol: Option<String>,
    #[serde(deserialize_with = "de_opt::timestamp")]
    pub last_status_received_at: Option<Timestamp>,
    pub last_status: Option<GatewayStatus>,
    #[serde(deserialize_with = "de_opt::timestamp")]
    pub last_uplink_received_at: Option<Timestamp>,
    #[serde(deserialize_with = "de_opt::u64")]
    pub uplink_count: Option<u64>,
    #[serde(deserialize_with = "de_opt::timestamp")]
    pub last_downlink_received_at: Option<Timestamp>,
    #[serde(deserialize_with = "de_opt::u64")]
    pub downlink_count: Option<u64>,
    #[serde(deserialize_with = "de_opt::timestamp")]
    pub last_tx_acknowledgment_received_at: Option<Timestamp>,
    #[serde(deserialize_with = "de_opt::u64")]
    pub tx_acknowledgment_count: Option<u64>,
    pub round_trip_times: Option<RoundTripTimes>,
    pub sub_bands: Vec<SubBand>,
}

impl ConnectionStats {
    /// Connected only while `connected_at` is set and `disconnected_at` is not.
    pub fn connected(&self) -> bool {
        self.connected_at.is_some() && self.disconnected_at.is_none()
    }
}

/// `last_status` of the connection statistics.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GatewayStatus {
    #[serde(deserialize_with = "de_opt::timestamp")]
    pub time: Option<Timestamp>,
    #[serde(deserialize_with = "de_opt::timestamp")]
    pub boot_time: Option<Timestamp>,
    pub versions: SmallMap<String>,
    pub metrics: SmallMap<Float>,
}

/// `round_trip_times`: present only with at least one sample in the last 30 minutes.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct RoundTripTimes {
    #[serde(deserialize_with = "de_opt::duration")]
    pub min: Option<f64>,
    #[serde(deserialize_with = "de_opt::duration")]
    pub max: Option<f64>,
    #[serde(deserialize_with = "de_opt::duration")]
    pub median: Option<f64>,
    pub count: Option<u32>,
}

/// One duty-cycle sub-band (frequencies in Hz; `max_frequency` may be u64::MAX).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SubBand {
    #[serde(deserialize_with = "de_opt::u64")]
    pub min_frequency: Option<u64>,
    #[serde(deserialize_with = "de_opt::u64")]
    pub max_frequency: Option<u64>,
    #[serde(deserialize_with = "de_opt::float")]
    pub downlink_utilization_limit: Option<f64>,
    #[serde(deserialize_with = "de_opt::float")]
    pub downlink_utilization: Option<f64>,
}

/// `POST /api/v3/gs/gateways/connection/stats`: entries by gateway id; gateways without
/// stored statistics on this cluster are absent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BatchStats {
    /// Raw entries, decoded one by one (see [`GatewaysPage::gateways`]).
    pub entries: BTreeMap<String, serde_json::Value>,
}

/// `GET /api/v3/auth_info`: what the API key belongs to (used only to explain an empty
/// gateway list).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthInfo {
    pub api_key: Option<ApiKeyAccess>,
}

/// `auth_info.api_key`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApiKeyAccess {
    pub entity_ids: EntityIds,
}

/// The entity an API key belongs to (one of the fields is set).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EntityIds {
    pub gateway_ids: Option<GatewayIds>,
    pub user_ids: Option<serde_json::Value>,
    pub organization_ids: Option<serde_json::Value>,
}

/// The error body every endpoint answers with (spec §1.8).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    pub code: Option<i64>,
    pub message: Option<String>,
    pub details: Vec<ErrorDetails>,
}

/// `details[]` of an error body; match on `namespace` + `name`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetails {
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Decodes one gateway (`GET /api/v3/gateways/{id}`).
pub fn gateway(value: serde_json::Value) -> Result<Gateway, String> {
    with_id(serde_json::from_value(value).map_err(|e| e.to_string())?)
}

/// Decodes one entry of a list page.
pub fn gateway_entry(entry: &serde_json::value::RawValue) -> Result<Gateway, String> {
    with_id(serde_json::from_str(entry.get()).map_err(|e| e.to_string())?)
}

fn with_id(mut gateway: Gateway) -> Result<Gateway, String> {
    if gateway.ids.gateway_id.is_empty() {
        return Err("gateway without ids.gateway_id".to_owned());
    }
    // Decoded lists keep room for four entries; a gateway is kept for hours, 10,000 of them
    // at once.
    gateway.antennas.shrink_to_fit();
    gateway.frequency_plan_ids.shrink_to_fit();
    Ok(gateway)
}

/// Decodes one connection statistics object.
pub fn connection_stats(value: serde_json::Value) -> Result<ConnectionStats, String> {
    let mut stats: ConnectionStats = serde_json::from_value(value).map_err(|e| e.to_string())?;
    // Kept until the next refresh, for every gateway (see `with_id`).
    stats.sub_bands.shrink_to_fit();
    Ok(stats)
}
