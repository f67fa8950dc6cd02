//! ModemManager's enumerations (`ModemManager-enums.h`, identical in 1.20 and 1.26 unless
//! noted): code → the lowercase name used in `state` / `technology` labels.
//!
//! A code missing from a table is shown as `unknown-<code>` by [`name_or_code`], so a newer
//! daemon's value is visible instead of hidden or mislabelled.

/// `MMModemState` (signed; `failed` = -1).
pub const MODEM_STATE: &[(i64, &str)] = &[
    (-1, "failed"),
    (0, "unknown"),
    (1, "initializing"),
    (2, "locked"),
    (3, "disabled"),
    (4, "disabling"),
    (5, "enabling"),
    (6, "enabled"),
    (7, "searching"),
    (8, "registered"),
    (9, "disconnecting"),
    (10, "connecting"),
    (11, "connected"),
];

/// `MMModemStateFailedReason`.
pub const FAILED_REASON: &[(i64, &str)] = &[
    (0, "none"),
    (1, "unknown"),
    (2, "sim-missing"),
    (3, "sim-error"),
    (4, "unknown-capabilities"),
    (5, "esim-without-profiles"),
];

/// `MMModemPowerState`.
pub const POWER_STATE: &[(i64, &str)] = &[(0, "unknown"), (1, "off"), (2, "low"), (3, "on")];

/// `MMModemLock` (1 is `none`, 0 is `unknown`).
pub const MODEM_LOCK: &[(i64, &str)] = &[
    (0, "unknown"),
    (1, "none"),
    (2, "sim-pin"),
    (3, "sim-pin2"),
    (4, "sim-puk"),
    (5, "sim-puk2"),
    (6, "ph-sp-pin"),
    (7, "ph-sp-puk"),
    (8, "ph-net-pin"),
    (9, "ph-net-puk"),
    (10, "ph-sim-pin"),
    (11, "ph-corp-pin"),
    (12, "ph-corp-puk"),
    (13, "ph-fsim-pin"),
    (14, "ph-fsim-puk"),
    (15, "ph-netsub-pin"),
    (16, "ph-netsub-puk"),
];

/// `MMModem3gppRegistrationState`.
pub const REGISTRATION_STATE: &[(i64, &str)] = &[
    (0, "idle"),
    (1, "home"),
    (2, "searching"),
    (3, "denied"),
    (4, "unknown"),
    (5, "roaming"),
    (6, "home-sms-only"),
    (7, "roaming-sms-only"),
    (8, "emergency-only"),
    (9, "home-csfb-not-preferred"),
    (10, "roaming-csfb-not-preferred"),
    (11, "attached-rlos"),
];

/// `MMModem3gppPacketServiceState` (1.20).
pub const PACKET_SERVICE_STATE: &[(i64, &str)] =
    &[(0, "unknown"), (1, "detached"), (2, "attached")];

/// `MMModemAccessTechnology` bits (a bitmask; 0 = unknown).
pub const ACCESS_TECHNOLOGY_BITS: &[(u32, &str)] = &[
    (1 << 0, "pots"),
    (1 << 1, "gsm"),
    (1 << 2, "gsm-compact"),
    (1 << 3, "gprs"),
    (1 << 4, "edge"),
    (1 << 5, "umts"),
    (1 << 6, "hsdpa"),
    (1 << 7, "hsupa"),
    (1 << 8, "hspa"),
    (1 << 9, "hspa-plus"),
    (1 << 10, "1xrtt"),
    (1 << 11, "evdo0"),
    (1 << 12, "evdoa"),
    (1 << 13, "evdob"),
    (1 << 14, "lte"),
    (1 << 15, "5gnr"),
    (1 << 16, "lte-cat-m"),
    (1 << 17, "lte-nb-iot"),
];

/// `MMBearerIpFamily` (the bearer's `ip-type` setting).
pub const IP_FAMILY: &[(i64, &str)] =
    &[(0, "none"), (1, "ipv4"), (2, "ipv6"), (4, "ipv4v6"), (8, "non-ip"), (0xFFFF_FFFF, "any")];

/// `MMBearerIpMethod`.
pub const IP_METHOD: &[(i64, &str)] = &[(0, "unknown"), (1, "ppp"), (2, "static"), (3, "dhcp")];

/// `MMBearerType`.
pub const BEARER_TYPE: &[(i64, &str)] =
    &[(0, "unknown"), (1, "default"), (2, "default-attach"), (3, "dedicated")];

/// `MMModemPortType` (starts at 1).
pub const PORT_TYPE_NET: u32 = 2;

/// The names of a table, in code order (for one-hot state sets).
pub fn names(table: &[(i64, &'static str)]) -> Vec<&'static str> {
    table.iter().map(|(_, n)| *n).collect()
}

/// The name of `code`, or `unknown-<code>` for a code the table does not have.
pub fn name_or_code(table: &[(i64, &'static str)], code: i64) -> String {
    match table.iter().find(|(c, _)| *c == code) {
        Some((_, name)) => (*name).to_owned(),
        None => format!("unknown-{code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_are_named_by_number() {
        assert_eq!(name_or_code(MODEM_STATE, -1), "failed");
        assert_eq!(name_or_code(MODEM_STATE, 42), "unknown-42");
        assert_eq!(name_or_code(IP_FAMILY, 0xFFFF_FFFF), "any");
    }

    #[test]
    fn access_technology_bits_are_distinct() {
        let mut all = 0u32;
        for (bit, _) in ACCESS_TECHNOLOGY_BITS {
            assert_eq!(all & bit, 0);
            all |= bit;
        }
    }
}
