//! A fake ModemManager served with zbus on a (private) bus.
//!
//! It answers D-Bus messages by hand instead of through zbus's object server, so tests control
//! everything the real daemon varies in: which objects `GetManagedObjects` lists (only
//! `Modem/N`, with index gaps), which interfaces and properties exist, values of any type
//! (including wrong ones), `InterfacesAdded`/`InterfacesRemoved` at run time, slow replies,
//! and `Unauthorized` errors from `Signal.Setup` and `Location.GetLocation`.
//!
//! Objects are plain maps: path → interface → property → value.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use anyhow::Context as _;

use crate::busy::Busy;
use zbus::{
    Connection, MessageStream, ObjectPath, OwnedObjectPath, OwnedVariant, Structure, Variant,
    message::{Message, Type},
};

/// The daemon's well-known name.
pub const SERVICE: &str = "org.freedesktop.ModemManager1";
/// The manager object.
pub const MANAGER_PATH: &str = "/org/freedesktop/ModemManager1";
/// ModemManager's polkit refusal.
pub const UNAUTHORIZED: &str = "org.freedesktop.ModemManager1.Error.Core.Unauthorized";

/// Interface names.
pub mod iface {
    pub const MANAGER: &str = "org.freedesktop.ModemManager1";
    pub const MODEM: &str = "org.freedesktop.ModemManager1.Modem";
    pub const MODEM_3GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
    pub const SIGNAL: &str = "org.freedesktop.ModemManager1.Modem.Signal";
    pub const SIMPLE: &str = "org.freedesktop.ModemManager1.Modem.Simple";
    pub const LOCATION: &str = "org.freedesktop.ModemManager1.Modem.Location";
    pub const MESSAGING: &str = "org.freedesktop.ModemManager1.Modem.Messaging";
    pub const TIME: &str = "org.freedesktop.ModemManager1.Modem.Time";
    pub const BEARER: &str = "org.freedesktop.ModemManager1.Bearer";
    pub const SIM: &str = "org.freedesktop.ModemManager1.Sim";
    pub const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
    pub const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";
}

/// Properties of one interface.
pub type Props = BTreeMap<String, OwnedVariant>;
/// Interfaces of one object.
pub type Interfaces = BTreeMap<String, Props>;

/// Any value as an [`OwnedVariant`] (for [`FakeModemManager::set_property`] and builders).
///
/// # Panics
/// Only for file descriptors, which no ModemManager property holds.
#[allow(clippy::expect_used)]
pub fn value<'a>(v: impl Into<Variant<'a>>) -> OwnedVariant {
    OwnedVariant::try_from(v.into()).expect("a value without file descriptors")
}

/// An `a{sv}` dictionary.
pub fn dict(entries: &[(&str, OwnedVariant)]) -> OwnedVariant {
    let map: BTreeMap<String, OwnedVariant> =
        entries.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    value(map)
}

/// An object path value (`o`).
pub fn path_value(path: &str) -> OwnedVariant {
    match ObjectPath::try_from(path.to_owned()) {
        Ok(p) => value(p),
        Err(_) => value(ObjectPath::from_static_str_unchecked("/")),
    }
}

/// An `ao` value.
pub fn paths_value(paths: &[String]) -> OwnedVariant {
    let list: Vec<OwnedObjectPath> =
        paths.iter().filter_map(|p| OwnedObjectPath::try_from(p.clone()).ok()).collect();
    value(list)
}

/// A modem to add with [`FakeModemManager::add_modem`]: its interfaces plus the bearers and
/// SIMs it points to (their paths are filled in when it is added).
#[derive(Debug, Clone, Default)]
pub struct FakeModem {
    /// `Modem/N`; the next free index when `None`.
    pub index: Option<u32>,
    pub interfaces: Interfaces,
    /// Bearer objects' `Bearer` interface properties.
    pub bearers: Vec<Props>,
    /// SIM objects' `Sim` properties, one per slot; `None` is an empty slot.
    pub sims: Vec<Option<Props>>,
    /// Whether `SimSlots` lists the SIMs (a multi-slot modem, 1.16+).
    pub sim_slots: bool,
    /// What `Location.GetLocation()` answers (`a{uv}`); `None` = the `Location` property.
    pub get_location: Option<OwnedVariant>,
}

impl FakeModem {
    /// A registered LTE/5G NSA modem with every interface ModemManager 1.20 exports, one
    /// connected bearer with stats and one SIM.
    pub fn lte(device_id: &str) -> FakeModem {
        let mut m = FakeModem::default();
        m.set(iface::MODEM, "DeviceIdentifier", value(device_id));
        m.set(iface::MODEM, "Manufacturer", value("FakeVendor"));
        m.set(iface::MODEM, "Model", value("FakeModem 4G"));
        m.set(iface::MODEM, "Revision", value("FW-1.2.3"));
        m.set(iface::MODEM, "HardwareRevision", value("HW-A"));
        m.set(iface::MODEM, "CarrierConfiguration", value("default"));
        m.set(iface::MODEM, "Plugin", value("generic"));
        m.set(iface::MODEM, "Drivers", value(vec!["qmi_wwan".to_owned(), "option".to_owned()]));
        m.set(iface::MODEM, "PrimaryPort", value("cdc-wdm0"));
        m.set(
            iface::MODEM,
            "Ports",
            value(vec![
                ("cdc-wdm0".to_owned(), 6u32),
                ("ttyUSB2".to_owned(), 3u32),
                ("wwan0".to_owned(), 2u32),
            ]),
        );
        m.set(iface::MODEM, "Device", value("/sys/devices/fake/usb1/1-1"));
        m.set(iface::MODEM, "EquipmentIdentifier", value("356938035643809"));
        m.set(iface::MODEM, "OwnNumbers", value(vec!["+15555550100".to_owned()]));
        m.set(iface::MODEM, "State", value(8i32));
        m.set(iface::MODEM, "StateFailedReason", value(0u32));
        m.set(iface::MODEM, "PowerState", value(3u32));
        m.set(iface::MODEM, "AccessTechnologies", value(16384u32 | 32768u32));
        m.set(iface::MODEM, "SignalQuality", value(Structure::from((71u32, true))));
        m.set(iface::MODEM, "UnlockRequired", value(1u32));
        m.set(iface::MODEM, "UnlockRetries", value(HashMap::from([(2u32, 3u32), (4u32, 10u32)])));
        m.set(iface::MODEM, "MaxBearers", value(1u32));
        m.set(iface::MODEM, "MaxActiveBearers", value(1u32));
        m.set(iface::MODEM, "MaxActiveMultiplexedBearers", value(0u32));
        m.set(iface::MODEM, "PrimarySimSlot", value(0u32));
        m.set(iface::MODEM, "CurrentCapabilities", value(12u32));
        m.set(iface::MODEM, "SupportedIpFamilies", value(7u32));
        m.set(iface::MODEM_3GPP, "Imei", value("356938035643809"));
        m.set(iface::MODEM_3GPP, "RegistrationState", value(1u32));
        m.set(iface::MODEM_3GPP, "OperatorCode", value("00101"));
        m.set(iface::MODEM_3GPP, "OperatorName", value("FakeNet"));
        m.set(iface::MODEM_3GPP, "PacketServiceState", value(2u32));
        m.set(iface::MODEM_3GPP, "EnabledFacilityLocks", value(0u32));
        m.set(iface::SIGNAL, "Rate", value(0u32));
        m.set(iface::SIGNAL, "RssiThreshold", value(0u32));
        m.set(iface::SIGNAL, "ErrorRateThreshold", value(false));
        for tech in ["Cdma", "Evdo", "Gsm", "Umts"] {
            m.set(iface::SIGNAL, tech, dict(&[]));
        }
        m.set(
            iface::SIGNAL,
            "Lte",
            dict(&[
                ("rssi", value(-65.0f64)),
                ("rsrq", value(-9.5f64)),
                ("rsrp", value(-95.0f64)),
                ("snr", value(12.5f64)),
                ("error-rate", value(1.5f64)),
            ]),
        );
        m.set(
            iface::SIGNAL,
            "Nr5g",
            dict(&[("rsrq", value(-11.0f64)), ("rsrp", value(-88.25f64)), ("snr", value(20.0f64))]),
        );
        m.set(iface::LOCATION, "Capabilities", value(7u32));
        m.set(iface::LOCATION, "Enabled", value(1u32));
        m.set(iface::LOCATION, "SignalsLocation", value(false));
        m.set(iface::LOCATION, "Location", value(HashMap::<u32, OwnedVariant>::new()));
        m.set(iface::LOCATION, "GpsRefreshRate", value(30u32));
        m.get_location = Some(value(HashMap::from([
            (1u32, value("001,01,0,83F7CD,31C5")),
            (
                2u32,
                dict(&[
                    ("utc-time", value("120000.00")),
                    ("latitude", value(52.5)),
                    ("longitude", value(13.25)),
                    ("altitude", value(34.0)),
                ]),
            ),
        ])));
        m.set(iface::MESSAGING, "SupportedStorages", value(vec![1u32, 2u32]));
        m.set(iface::MESSAGING, "DefaultStorage", value(2u32));
        m.set(
            iface::TIME,
            "NetworkTimezone",
            dict(&[("offset", value(120i32)), ("dst-offset", value(60i32))]),
        );
        m.interfaces.entry(iface::SIMPLE.to_owned()).or_default();
        m.bearers.push(bearer_props("internet", 1, true));
        m.sims.push(Some(sim_props()));
        m
    }

    /// A modem as ModemManager 1.12 shows it: no `PacketServiceState`, no `Nr5g`, no
    /// `SimSlots`/`MaxActiveMultiplexedBearers`, Bearer `Stats` with only rx/tx/duration,
    /// SIM without `Active`.
    pub fn old_daemon(device_id: &str) -> FakeModem {
        let mut m = FakeModem::lte(device_id);
        m.remove(iface::MODEM_3GPP, "PacketServiceState");
        m.remove(iface::SIGNAL, "Nr5g");
        m.remove(iface::SIGNAL, "RssiThreshold");
        m.remove(iface::SIGNAL, "ErrorRateThreshold");
        m.remove(iface::MODEM, "MaxActiveMultiplexedBearers");
        m.remove(iface::MODEM, "PrimarySimSlot");
        m.remove(iface::MODEM, "HardwareRevision");
        m.set(
            iface::SIGNAL,
            "Lte",
            dict(&[
                ("rssi", value(-70.0f64)),
                ("rsrq", value(-10.0f64)),
                ("rsrp", value(-100.0f64)),
                ("snr", value(8.0f64)),
            ]),
        );
        for b in &mut m.bearers {
            b.insert(
                "Stats".to_owned(),
                dict(&[
                    ("rx-bytes", value(1000u64)),
                    ("tx-bytes", value(2000u64)),
                    ("duration", value(60u32)),
                ]),
            );
            b.remove("ReloadStatsSupported");
            b.remove("Multiplexed");
        }
        for s in m.sims.iter_mut().flatten() {
            s.remove("Active");
            s.remove("Eid");
        }
        m
    }

    /// A modem in the failed state because its SIM is missing: no Signal, Modem3gpp, Location
    /// or Time interface, no SIM, no bearers.
    pub fn sim_missing(device_id: &str) -> FakeModem {
        let mut m = FakeModem::lte(device_id);
        for i in [
            iface::SIGNAL,
            iface::MODEM_3GPP,
            iface::LOCATION,
            iface::TIME,
            iface::MESSAGING,
            iface::SIMPLE,
        ] {
            m.interfaces.remove(i);
        }
        m.set(iface::MODEM, "State", value(-1i32));
        m.set(iface::MODEM, "StateFailedReason", value(2u32));
        m.set(iface::MODEM, "AccessTechnologies", value(0u32));
        m.set(iface::MODEM, "SignalQuality", value(Structure::from((0u32, false))));
        m.bearers.clear();
        m.sims.clear();
        m.get_location = None;
        m
    }

    /// At path `Modem/index`.
    pub fn at_index(mut self, index: u32) -> FakeModem {
        self.index = Some(index);
        self
    }

    /// Without `interface`.
    pub fn without_interface(mut self, interface: &str) -> FakeModem {
        self.interfaces.remove(interface);
        self
    }

    /// Without `interface`.`property`.
    pub fn without_property(mut self, interface: &str, property: &str) -> FakeModem {
        self.remove(interface, property);
        self
    }

    /// With `interface`.`property` = `v` (of any type, also a wrong one).
    pub fn with_property(mut self, interface: &str, property: &str, v: OwnedVariant) -> FakeModem {
        self.set(interface, property, v);
        self
    }

    /// Sets `interface`.`property`.
    pub fn set(&mut self, interface: &str, property: &str, v: OwnedVariant) {
        self.interfaces.entry(interface.to_owned()).or_default().insert(property.to_owned(), v);
    }

    /// Removes `interface`.`property`.
    pub fn remove(&mut self, interface: &str, property: &str) {
        if let Some(props) = self.interfaces.get_mut(interface) {
            props.remove(property);
        }
    }
}

/// The `Bearer` properties of a bearer on `apn` (MMBearerIpFamily `ip_type`), with stats.
pub fn bearer_props(apn: &str, ip_type: u32, connected: bool) -> Props {
    let mut p = Props::new();
    let mut put = |k: &str, v: OwnedVariant| {
        p.insert(k.to_owned(), v);
    };
    put("Interface", value(if connected { "wwan0" } else { "" }));
    put("Connected", value(connected));
    put("Suspended", value(false));
    put("Multiplexed", value(false));
    put("ConnectionError", value(Structure::from((String::new(), String::new()))));
    put(
        "Ip4Config",
        dict(&[("method", value(3u32)), ("address", value("10.0.0.2")), ("prefix", value(30u32))]),
    );
    put("Ip6Config", dict(&[("method", value(0u32))]));
    put(
        "Stats",
        dict(&[
            ("rx-bytes", value(123_456_789u64)),
            ("tx-bytes", value(9_876_543u64)),
            ("duration", value(3600u32)),
            ("start-date", value(1_700_000_000u64)),
            ("attempts", value(3u32)),
            ("failed-attempts", value(1u32)),
            ("total-rx-bytes", value(5_000_000_000u64)),
            ("total-tx-bytes", value(700_000_000u64)),
            ("total-duration", value(86_400u32)),
            ("uplink-speed", value(50_000_000u64)),
            ("downlink-speed", value(150_000_000u64)),
        ]),
    );
    put("ReloadStatsSupported", value(true));
    put("IpTimeout", value(20u32));
    put("BearerType", value(1u32));
    put("ProfileId", value(-1i32));
    put(
        "Properties",
        dict(&[("apn", value(apn)), ("ip-type", value(ip_type)), ("allow-roaming", value(true))]),
    );
    p
}

/// The `Sim` properties of an active test SIM (test-network identifiers only).
pub fn sim_props() -> Props {
    let mut p = Props::new();
    let mut put = |k: &str, v: OwnedVariant| {
        p.insert(k.to_owned(), v);
    };
    put("Active", value(true));
    put("SimIdentifier", value("8900100000000000001"));
    put("Imsi", value("001010000000001"));
    put("Eid", value(""));
    put("OperatorIdentifier", value("00101"));
    put("OperatorName", value("FakeSIM"));
    put("EmergencyNumbers", value(vec!["112".to_owned()]));
    put("SimType", value(1u32));
    p
}

/// What [`FakeModemManager::monitor`] hands out: call counts, busy time and the delay knob.
#[derive(Debug, Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

impl Monitor {
    /// Every member called so far and how often.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared.state().calls.clone()
    }

    /// How long at least one call was being answered (delays included), see [`Busy`].
    pub fn busy(&self) -> &Busy {
        &self.shared.busy
    }

    /// Sets every call count and the busy time back to 0.
    pub fn reset(&self) {
        self.shared.state().calls.clear();
        self.shared.busy.reset();
    }

    /// Delays every reply by `delay` (as [`FakeModemManager::set_delay`]).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.state().delay = delay;
    }
}

/// The fake daemon; dropping it (or [`FakeModemManager::stop`]) leaves the bus.
#[derive(Debug)]
pub struct FakeModemManager {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    conn: Connection,
    state: Mutex<State>,
    busy: Busy,
}

#[derive(Debug, Default)]
struct State {
    version: Option<String>,
    /// Every object: modems, bearers, SIMs and extra managed objects.
    objects: BTreeMap<String, Interfaces>,
    /// Objects `GetManagedObjects` lists.
    managed: Vec<String>,
    /// `Modem/N` → its bearer and SIM paths.
    children: BTreeMap<String, Vec<String>>,
    get_location: BTreeMap<String, OwnedVariant>,
    delay: Duration,
    /// Extra delay per member name (e.g. `GetAll`).
    method_delay: BTreeMap<String, Duration>,
    setup_error: Option<String>,
    location_error: Option<String>,
    calls: BTreeMap<String, u64>,
    next_modem: u32,
    next_bearer: u32,
    next_sim: u32,
}

impl FakeModemManager {
    /// Connects to the bus at `address`, takes the name `org.freedesktop.ModemManager1` and
    /// answers calls until dropped. Starts with no modems and `Version` "1.20.4".
    pub async fn start(address: &str) -> anyhow::Result<FakeModemManager> {
        let conn = zbus::connection::Builder::address(address)
            .build()
            .await
            .with_context(|| format!("connect to {address}"))?;
        let stream = MessageStream::from(&conn);
        let shared = Arc::new(Shared {
            conn: conn.clone(),
            state: Mutex::new(State { version: Some("1.20.4".to_owned()), ..State::default() }),
            busy: Busy::default(),
        });
        let task = tokio::spawn(serve(Arc::clone(&shared), stream));
        conn.request_name(SERVICE).await.context("request org.freedesktop.ModemManager1")?;
        Ok(FakeModemManager { shared, task })
    }

    /// Adds `modem` (emitting `InterfacesAdded`) and returns its object path.
    pub async fn add_modem(&self, modem: FakeModem) -> anyhow::Result<String> {
        let (path, interfaces) = {
            let mut st = self.state();
            let index = modem.index.unwrap_or(st.next_modem);
            st.next_modem = st.next_modem.max(index + 1);
            let path = format!("{MANAGER_PATH}/Modem/{index}");
            let mut interfaces = modem.interfaces;
            let mut children = Vec::new();
            let mut bearer_paths = Vec::new();
            for b in modem.bearers {
                let bp = format!("{MANAGER_PATH}/Bearer/{}", st.next_bearer);
                st.next_bearer += 1;
                st.objects.insert(bp.clone(), BTreeMap::from([(iface::BEARER.to_owned(), b)]));
                bearer_paths.push(bp.clone());
                children.push(bp);
            }
            let mut slot_paths = Vec::new();
            for s in modem.sims {
                match s {
                    Some(s) => {
                        let sp = format!("{MANAGER_PATH}/SIM/{}", st.next_sim);
                        st.next_sim += 1;
                        st.objects.insert(sp.clone(), BTreeMap::from([(iface::SIM.to_owned(), s)]));
                        slot_paths.push(sp.clone());
                        children.push(sp);
                    }
                    None => slot_paths.push("/".to_owned()),
                }
            }
            if let Some(props) = interfaces.get_mut(iface::MODEM) {
                props.insert("Bearers".to_owned(), paths_value(&bearer_paths));
                let primary = slot_paths
                    .iter()
                    .find(|p| *p != "/")
                    .cloned()
                    .unwrap_or_else(|| "/".to_owned());
                props.insert("Sim".to_owned(), path_value(&primary));
                if modem.sim_slots {
                    props.insert("SimSlots".to_owned(), paths_value(&slot_paths));
                } else if !props.contains_key("SimSlots") && props.contains_key("PrimarySimSlot") {
                    props.insert("SimSlots".to_owned(), paths_value(&[]));
                }
            }
            if let Some(props) = interfaces.get_mut(iface::MESSAGING) {
                props.entry("Messages".to_owned()).or_insert_with(|| paths_value(&[]));
            }
            if let Some(loc) = modem.get_location {
                st.get_location.insert(path.clone(), loc);
            }
            st.children.insert(path.clone(), children);
            st.objects.insert(path.clone(), interfaces.clone());
            st.managed.retain(|p| p != &path);
            st.managed.push(path.clone());
            (path, interfaces)
        };
        self.emit_added(&path, &interfaces).await?;
        Ok(path)
    }

    /// Lists an arbitrary object in `GetManagedObjects` (e.g. one without the Modem
    /// interface, as zbus's own ObjectManager lists intermediate nodes).
    pub async fn add_managed_object(
        &self,
        path: &str,
        interfaces: Interfaces,
    ) -> anyhow::Result<()> {
        {
            let mut st = self.state();
            st.objects.insert(path.to_owned(), interfaces.clone());
            st.managed.push(path.to_owned());
        }
        self.emit_added(path, &interfaces).await
    }

    /// Removes the modem at `path` and its bearers and SIMs (emitting `InterfacesRemoved`).
    pub async fn remove_modem(&self, path: &str) -> anyhow::Result<()> {
        let interfaces: Vec<String> = {
            let mut st = self.state();
            st.managed.retain(|p| p != path);
            for child in st.children.remove(path).unwrap_or_default() {
                st.objects.remove(&child);
            }
            st.get_location.remove(path);
            st.objects.remove(path).map(|i| i.into_keys().collect()).unwrap_or_default()
        };
        let path = ObjectPath::try_from(path.to_owned())?;
        self.shared
            .conn
            .emit_signal(
                None::<&str>,
                MANAGER_PATH,
                iface::OBJECT_MANAGER,
                "InterfacesRemoved",
                &(path, interfaces),
            )
            .await?;
        Ok(())
    }

    /// Adds `interface` with `props` to an existing object (emitting `InterfacesAdded`).
    pub async fn add_interface(
        &self,
        path: &str,
        interface: &str,
        props: Props,
    ) -> anyhow::Result<()> {
        {
            let mut st = self.state();
            let Some(obj) = st.objects.get_mut(path) else { anyhow::bail!("no object {path}") };
            obj.insert(interface.to_owned(), props.clone());
        }
        self.emit_added(path, &BTreeMap::from([(interface.to_owned(), props)])).await
    }

    /// Removes `interface` from an object (emitting `InterfacesRemoved`).
    pub async fn remove_interface(&self, path: &str, interface: &str) -> anyhow::Result<()> {
        {
            let mut st = self.state();
            if let Some(obj) = st.objects.get_mut(path) {
                obj.remove(interface);
            }
        }
        let p = ObjectPath::try_from(path.to_owned())?;
        self.shared
            .conn
            .emit_signal(
                None::<&str>,
                MANAGER_PATH,
                iface::OBJECT_MANAGER,
                "InterfacesRemoved",
                &(p, vec![interface.to_owned()]),
            )
            .await?;
        Ok(())
    }

    /// Sets `interface`.`property` of the object at `path` (any type).
    pub fn set_property(&self, path: &str, interface: &str, property: &str, v: OwnedVariant) {
        let mut st = self.state();
        if let Some(props) = st.objects.get_mut(path).and_then(|o| o.get_mut(interface)) {
            props.insert(property.to_owned(), v);
        }
    }

    /// Removes `interface`.`property` of the object at `path`.
    pub fn remove_property(&self, path: &str, interface: &str, property: &str) {
        let mut st = self.state();
        if let Some(props) = st.objects.get_mut(path).and_then(|o| o.get_mut(interface)) {
            props.remove(property);
        }
    }

    /// The current value of `interface`.`property` at `path`.
    pub fn property(&self, path: &str, interface: &str, property: &str) -> Option<OwnedVariant> {
        let st = self.state();
        st.objects.get(path)?.get(interface)?.get(property).cloned()
    }

    /// Replaces the `Signal.<technology>` dictionary (`Lte`, `Nr5g`, …) of a modem.
    pub fn set_signal(&self, path: &str, technology: &str, values: &[(&str, f64)]) {
        let entries: Vec<(&str, OwnedVariant)> =
            values.iter().map(|(k, v)| (*k, value(*v))).collect();
        self.set_property(path, iface::SIGNAL, technology, dict(&entries));
    }

    /// The bearer paths of the modem at `path`.
    pub fn bearers(&self, path: &str) -> Vec<String> {
        let st = self.state();
        st.children
            .get(path)
            .map(|c| c.iter().filter(|p| p.contains("/Bearer/")).cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces the `Stats` of the bearer at `bearer_path` (`u64` values as `t`, except the
    /// keys ModemManager sends as `u`).
    pub fn set_bearer_stats(&self, bearer_path: &str, stats: &[(&str, u64)]) {
        let entries: Vec<(&str, OwnedVariant)> = stats
            .iter()
            .map(|(k, v)| {
                let as_u32 =
                    matches!(*k, "duration" | "attempts" | "failed-attempts" | "total-duration");
                let v =
                    if as_u32 { value(u32::try_from(*v).unwrap_or(u32::MAX)) } else { value(*v) };
                (*k, v)
            })
            .collect();
        self.set_property(bearer_path, iface::BEARER, "Stats", dict(&entries));
    }

    /// The manager's `Version`; `None` removes the property.
    pub fn set_version(&self, version: Option<&str>) {
        self.state().version = version.map(str::to_owned);
    }

    /// Delays every reply by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Delays replies to `member` (e.g. `GetAll`) by `delay`, on top of [`Self::set_delay`].
    pub fn set_method_delay(&self, member: &str, delay: Duration) {
        self.state().method_delay.insert(member.to_owned(), delay);
    }

    /// Makes `Signal.Setup` fail with the D-Bus error `name` (e.g. [`UNAUTHORIZED`]).
    pub fn set_setup_error(&self, name: Option<&str>) {
        self.state().setup_error = name.map(str::to_owned);
    }

    /// Makes `Location.GetLocation` fail with the D-Bus error `name`.
    pub fn set_location_error(&self, name: Option<&str>) {
        self.state().location_error = name.map(str::to_owned);
    }

    /// How often `member` (e.g. `Setup`, `GetManagedObjects`, `GetAll`) was called.
    pub fn calls(&self, member: &str) -> u64 {
        self.state().calls.get(member).copied().unwrap_or(0)
    }

    /// A handle for counting calls, measuring busy time and setting the delay, e.g. from a
    /// control server, that stays usable while the fake runs.
    pub fn monitor(&self) -> Monitor {
        Monitor { shared: Arc::clone(&self.shared) }
    }

    /// Leaves the bus, as a stopping daemon does (the name loses its owner).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.shared.conn.release_name(SERVICE).await;
        let conn = self.shared.conn.clone();
        drop(self);
        let _ = conn.close().await;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    async fn emit_added(&self, path: &str, interfaces: &Interfaces) -> anyhow::Result<()> {
        let p = ObjectPath::try_from(path.to_owned())?;
        self.shared
            .conn
            .emit_signal(
                None::<&str>,
                MANAGER_PATH,
                iface::OBJECT_MANAGER,
                "InterfacesAdded",
                &(p, interfaces),
            )
            .await?;
        Ok(())
    }
}

impl Drop for FakeModemManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge every later call.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn serve(shared: Arc<Shared>, mut stream: MessageStream) {
    while let Some(msg) = next(&mut stream).await {
        let Ok(msg) = msg else { continue };
        if msg.message_type() != Type::MethodCall {
            continue;
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _busy = shared.busy.enter();
            let member = msg.header().member().map(|m| m.as_str().to_owned()).unwrap_or_default();
            let delay = {
                let st = shared.state();
                st.delay + st.method_delay.get(&member).copied().unwrap_or_default()
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let _ = handle(&shared, &msg).await;
        });
    }
}

/// An error reply: D-Bus error name and message.
type Failure = (String, String);

fn fail(name: &str, message: impl Into<String>) -> Failure {
    (name.to_owned(), message.into())
}

async fn handle(shared: &Shared, msg: &Message) -> zbus::Result<()> {
    let header = msg.header();
    let path = header.path().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let interface = header.interface().map(|i| i.as_str().to_owned()).unwrap_or_default();
    let member = header.member().map(|m| m.as_str().to_owned()).unwrap_or_default();
    {
        let mut st = shared.state();
        *st.calls.entry(member.clone()).or_default() += 1;
    }
    let conn = &shared.conn;
    let result: Result<Reply, Failure> = dispatch(shared, msg, &path, &interface, &member);
    match result {
        Ok(Reply::Empty) => conn.reply(&header, &()).await,
        Ok(Reply::Value(v)) => conn.reply(&header, &v).await,
        Ok(Reply::Map(m)) => conn.reply(&header, &m).await,
        Ok(Reply::Objects(o)) => conn.reply(&header, &o).await,
        Ok(Reply::Location(l)) => conn.reply(&header, &l).await,
        Ok(Reply::Text(t)) => conn.reply(&header, &t).await,
        Err((name, message)) => conn.reply_error(&header, name.as_str(), &message).await,
    }
}

enum Reply {
    Empty,
    Value(OwnedVariant),
    Map(HashMap<String, OwnedVariant>),
    Objects(HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedVariant>>>),
    Location(HashMap<u32, OwnedVariant>),
    Text(String),
}

const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";

fn dispatch(
    shared: &Shared,
    msg: &Message,
    path: &str,
    interface: &str,
    member: &str,
) -> Result<Reply, Failure> {
    let body = msg.body();
    let mut st = shared.state();
    let exists = path == MANAGER_PATH || st.objects.contains_key(path);
    match (interface, member) {
        ("org.freedesktop.DBus.Peer", "Ping") => return Ok(Reply::Empty),
        ("org.freedesktop.DBus.Introspectable", "Introspect") => {
            return Ok(Reply::Text(introspect(&st, path)));
        }
        _ => {}
    }
    if !exists {
        return Err(fail(UNKNOWN_OBJECT, format!("No such object path '{path}'")));
    }
    match (interface, member) {
        (iface::PROPERTIES, "Get") => {
            let (iface_name, prop): (String, String) =
                body.deserialize().map_err(|e| fail(INVALID_ARGS, e.to_string()))?;
            let props = interface_props(&st, path, &iface_name)?;
            props
                .get(&prop)
                .cloned()
                .map(Reply::Value)
                .ok_or_else(|| fail(INVALID_ARGS, format!("No such property '{prop}'")))
        }
        (iface::PROPERTIES, "GetAll") => {
            let (iface_name,): (String,) =
                body.deserialize().map_err(|e| fail(INVALID_ARGS, e.to_string()))?;
            Ok(Reply::Map(interface_props(&st, path, &iface_name)?))
        }
        (iface::PROPERTIES, "Set") => {
            Err(fail("org.freedesktop.DBus.Error.PropertyReadOnly", "read-only in the fake"))
        }
        (iface::OBJECT_MANAGER, "GetManagedObjects") if path == MANAGER_PATH => {
            let mut out = HashMap::new();
            for p in &st.managed {
                let (Some(obj), Ok(op)) = (st.objects.get(p), OwnedObjectPath::try_from(p.clone()))
                else {
                    continue;
                };
                let ifaces = obj.iter().map(|(i, props)| (i.clone(), to_hash(props))).collect();
                out.insert(op, ifaces);
            }
            Ok(Reply::Objects(out))
        }
        (iface::SIGNAL, "Setup") if has(&st, path, iface::SIGNAL) => {
            let (rate,): (u32,) =
                body.deserialize().map_err(|e| fail(INVALID_ARGS, e.to_string()))?;
            if let Some(name) = &st.setup_error {
                return Err(fail(
                    name,
                    "not authorized for 'org.freedesktop.ModemManager1.Device.Control'",
                ));
            }
            if let Some(props) = st.objects.get_mut(path).and_then(|o| o.get_mut(iface::SIGNAL)) {
                props.insert("Rate".to_owned(), value(rate));
            }
            Ok(Reply::Empty)
        }
        (iface::LOCATION, "GetLocation") if has(&st, path, iface::LOCATION) => {
            if let Some(name) = &st.location_error {
                return Err(fail(
                    name,
                    "not authorized for 'org.freedesktop.ModemManager1.Location'",
                ));
            }
            let raw = match st.get_location.get(path) {
                Some(v) => Some(v.clone()),
                None => st
                    .objects
                    .get(path)
                    .and_then(|o| o.get(iface::LOCATION))
                    .and_then(|p| p.get("Location"))
                    .cloned(),
            };
            let map: HashMap<u32, OwnedVariant> = raw
                .and_then(|v| HashMap::<u32, OwnedVariant>::try_from(v).ok())
                .unwrap_or_default();
            Ok(Reply::Location(map))
        }
        _ => Err(fail(
            UNKNOWN_METHOD,
            format!("No such method '{member}' on interface '{interface}' at '{path}'"),
        )),
    }
}

fn has(st: &State, path: &str, interface: &str) -> bool {
    st.objects.get(path).is_some_and(|o| o.contains_key(interface))
}

fn interface_props(
    st: &State,
    path: &str,
    interface: &str,
) -> Result<HashMap<String, OwnedVariant>, Failure> {
    if path == MANAGER_PATH {
        if interface != iface::MANAGER {
            return Err(fail(INVALID_ARGS, format!("No such interface '{interface}'")));
        }
        let mut out = HashMap::new();
        if let Some(v) = &st.version {
            out.insert("Version".to_owned(), value(v.as_str()));
        }
        return Ok(out);
    }
    st.objects
        .get(path)
        .and_then(|o| o.get(interface))
        .map(to_hash)
        .ok_or_else(|| fail(INVALID_ARGS, format!("No such interface '{interface}' on '{path}'")))
}

fn to_hash(props: &Props) -> HashMap<String, OwnedVariant> {
    props.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn introspect(st: &State, path: &str) -> String {
    let mut xml = String::from(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n",
    );
    if let Some(obj) = st.objects.get(path) {
        for i in obj.keys() {
            xml.push_str(&format!("  <interface name=\"{i}\"/>\n"));
        }
    }
    xml.push_str("</node>\n");
    xml
}

/// The next item of a stream.
async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}
