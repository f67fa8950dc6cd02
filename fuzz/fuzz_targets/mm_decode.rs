//! ModemManager property decoding: fuzz bytes drive a generator of D-Bus values
//! (`GetManagedObjects`' `a{oa{sa{sv}}}` and bearer/SIM `GetAll` maps) that mixes the real
//! property and dictionary key names with values of every D-Bus type (right and wrong, nested
//! variants, NaN and infinities), then `fetch::modems`, `decode::bearer`, `decode::sim`,
//! `decode::manager_version` and the full render. No seeds: the generator knows the names.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use mm_exporter::{
    dbus::{MANAGER_PATH, iface},
    decode::{self, Props},
    fetch::{self, Objects},
    metrics::{self, RenderOptions},
    model::Snapshot,
};
use uplink_fuzz::{check_exposition, scrape};
use zbus::{ObjectPath, OwnedObjectPath, OwnedVariant, Signature, Variant};

const INTERFACES: &[&str] = &[
    iface::MODEM,
    iface::MODEM_3GPP,
    iface::SIGNAL,
    iface::LOCATION,
    iface::MESSAGING,
    iface::TIME,
    iface::BEARER,
    iface::SIM,
    iface::MANAGER,
];

const PROPERTIES: &[&str] = &[
    "DeviceIdentifier",
    "Manufacturer",
    "Model",
    "Revision",
    "HardwareRevision",
    "CarrierConfiguration",
    "Plugin",
    "Drivers",
    "PrimaryPort",
    "Ports",
    "EquipmentIdentifier",
    "OwnNumbers",
    "State",
    "StateFailedReason",
    "PowerState",
    "AccessTechnologies",
    "SignalQuality",
    "UnlockRequired",
    "UnlockRetries",
    "MaxBearers",
    "MaxActiveBearers",
    "MaxActiveMultiplexedBearers",
    "Sim",
    "SimSlots",
    "PrimarySimSlot",
    "Bearers",
    "Imei",
    "RegistrationState",
    "OperatorCode",
    "OperatorName",
    "PacketServiceState",
    "Rate",
    "Gsm",
    "Umts",
    "Lte",
    "Nr5g",
    "Cdma",
    "Evdo",
    "Enabled",
    "Location",
    "Messages",
    "NetworkTimezone",
    "Properties",
    "Stats",
    "Ip4Config",
    "Ip6Config",
    "Interface",
    "Connected",
    "Suspended",
    "BearerType",
    "ConnectionError",
    "Active",
    "OperatorIdentifier",
    "SimIdentifier",
    "Imsi",
    "Eid",
    "Version",
];

const DICT_KEYS: &[&str] = &[
    "rssi",
    "rsrq",
    "rsrp",
    "snr",
    "error-rate",
    "rscp",
    "ecio",
    "sinr",
    "io",
    "offset",
    "dst-offset",
    "latitude",
    "longitude",
    "altitude",
    "apn",
    "ip-type",
    "method",
    "rx-bytes",
    "tx-bytes",
    "duration",
    "start-date",
    "attempts",
    "failed-attempts",
    "total-rx-bytes",
    "total-tx-bytes",
    "total-duration",
    "uplink-speed",
    "downlink-speed",
    "bogus",
];

const STRINGS: &[&str] = &[
    "",
    "0123456789abcdef0123456789abcdef01234567",
    "262,01,1a2b,0001c3d4,00ff",
    "262,01",
    "x,y,z",
    "310,260,FFFFFFFF,FFFFFFFFFFFFFFFF,zz",
    "\"quoted\"\n\\",
    "1.20.4",
    "internet",
];

struct Gen<'a> {
    data: &'a [u8],
}

impl Gen<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        for b in &mut out {
            *b = self.byte();
        }
        out
    }

    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from.get(usize::from(self.byte()) % from.len()).copied().unwrap_or("")
    }

    fn string(&mut self) -> String {
        let n = usize::from(self.byte());
        if n < 200 {
            return self.pick(STRINGS).to_owned();
        }
        let len = n - 200;
        let raw: Vec<u8> = (0..len).map(|_| self.byte()).collect();
        String::from_utf8_lossy(&raw).into_owned()
    }

    fn path(&mut self) -> OwnedObjectPath {
        let kind = ["Modem", "Bearer", "SIM"][usize::from(self.byte() % 3)];
        let index = self.byte() % 4;
        let text = if self.byte() < 16 {
            "/".to_owned()
        } else {
            format!("{MANAGER_PATH}/{kind}/{index}")
        };
        OwnedObjectPath::try_from(text)
            .unwrap_or_else(|_| OwnedObjectPath::from(ObjectPath::from_static_str_unchecked("/")))
    }

    fn float(&mut self) -> f64 {
        match self.byte() % 8 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => f64::from(i8::from_le_bytes(self.bytes())),
            _ => f64::from_le_bytes(self.bytes()),
        }
    }

    fn dict_sv(&mut self, depth: u8) -> HashMap<String, OwnedVariant> {
        let n = self.byte() % 8;
        (0..n)
            .map(|_| {
                let key =
                    if self.byte() < 240 { self.pick(DICT_KEYS).to_owned() } else { self.string() };
                (key, self.value(depth))
            })
            .collect()
    }

    fn value(&mut self, depth: u8) -> OwnedVariant {
        let deep = depth > 0;
        let v: Variant<'static> = match self.byte() % if deep { 22 } else { 16 } {
            0 => Variant::from(self.byte()),
            1 => Variant::from(self.byte() & 1 == 1),
            2 => Variant::from(i16::from_le_bytes(self.bytes())),
            3 => Variant::from(u16::from_le_bytes(self.bytes())),
            4 => Variant::from(i32::from_le_bytes(self.bytes())),
            5 => Variant::from(u32::from_le_bytes(self.bytes())),
            6 => Variant::from(i64::from_le_bytes(self.bytes())),
            7 => Variant::from(u64::from_le_bytes(self.bytes())),
            8 => Variant::from(self.float()),
            9 => Variant::from(self.string()),
            10 => Variant::from(ObjectPath::from(self.path())),
            11 => Variant::Signature(Signature::U32),
            12 => Variant::from((self.byte() as u32, self.byte() & 1 == 1)),
            13 => Variant::from((self.string(), self.string())),
            14 => {
                let n = self.byte() % 4;
                Variant::from((0..n).map(|_| self.string()).collect::<Vec<String>>())
            }
            15 => {
                let n = self.byte() % 4;
                Variant::from((0..n).map(|_| self.path()).collect::<Vec<OwnedObjectPath>>())
            }
            16 => {
                let n = self.byte() % 4;
                Variant::from(
                    (0..n).map(|_| (self.string(), u32::from(self.byte()))).collect::<Vec<_>>(),
                )
            }
            17 => {
                let n = self.byte() % 4;
                Variant::from(
                    (0..n)
                        .map(|_| (u32::from(self.byte()), u32::from(self.byte())))
                        .collect::<HashMap<u32, u32>>(),
                )
            }
            18 => Variant::from(self.dict_sv(depth - 1)),
            19 => {
                let n = self.byte() % 4;
                Variant::from(
                    (0..n)
                        .map(|_| (u32::from(self.byte() % 8), self.value(depth - 1)))
                        .collect::<HashMap<u32, OwnedVariant>>(),
                )
            }
            20 => Variant::Variant(Box::new(self.value(depth - 1).into())),
            _ => {
                let n = self.byte() % 4;
                Variant::from((0..n).map(|_| self.float()).collect::<Vec<f64>>())
            }
        };
        OwnedVariant::try_from(v).unwrap_or_else(|_| OwnedVariant::from(0u8))
    }

    fn props(&mut self) -> Props {
        let n = self.byte() % 24;
        (0..n)
            .map(|_| {
                let name = if self.byte() < 250 {
                    self.pick(PROPERTIES).to_owned()
                } else {
                    self.string()
                };
                (name, self.value(3))
            })
            .collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut g = Gen { data };
    let mut objects: Objects = HashMap::new();
    for _ in 0..g.byte() % 4 {
        let path = g.path().as_str().to_owned();
        let mut interfaces = HashMap::new();
        for _ in 0..g.byte() % 6 {
            let name = if g.byte() < 250 { g.pick(INTERFACES).to_owned() } else { g.string() };
            interfaces.insert(name, g.props());
        }
        objects.insert(path, interfaces);
    }
    let mut notes = Vec::new();
    let manager = g.props();
    let daemon_version = decode::manager_version(&manager, &mut notes);
    let mut modems = fetch::modems(&objects, &mut notes);
    for m in &mut modems {
        for i in 0..g.byte() % 3 {
            let props = g.props();
            m.bearers.push(decode::bearer(&format!("/b/{i}"), &props, &mut notes));
        }
        for slot in 0..u32::from(g.byte() % 3) {
            let props = g.props();
            m.sims.push(decode::sim(&format!("/s/{slot}"), slot + 1, &props, &mut notes));
        }
    }
    let snap = Snapshot { daemon_version, modems };
    for (expose_identifiers, expose_location) in [(false, false), (true, true)] {
        let mut out = scrape("modemmanager");
        metrics::render(&mut out, &snap, RenderOptions { expose_identifiers, expose_location });
        check_exposition(&out);
    }
});
