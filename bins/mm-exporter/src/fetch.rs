//! The D-Bus calls of one scrape: `GetManagedObjects` for every modem-level property, then
//! `Properties.GetAll` for each bearer and SIM the modems point to.
//!
//! Each function returns typed data from [`crate::decode`]; [`crate::metrics`] renders it.

use std::collections::HashMap;

use anyhow::Context as _;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};

use crate::{
    capture,
    dbus::{self, MANAGER_PATH, SERVICE, iface},
    decode::{self, Props},
    model::{Bearer, Location, Modem, Sim},
    statics::Statics,
};

/// Every managed object: path → interface → properties.
pub type Objects = HashMap<String, HashMap<String, Props>>;

/// The standard properties interface.
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// What `GetManagedObjects` returned, and who answered it.
#[derive(Debug, Default)]
pub struct Managed {
    pub objects: Objects,
    /// The unique bus name of the ModemManager that answered (`:1.23`): a new one means the
    /// daemon restarted, so everything cached from the old one is stale.
    pub owner: Option<String>,
}

/// `ObjectManager.GetManagedObjects` on the manager object. A daemon that is not running
/// gets an error saying so in plain words.
pub async fn managed_objects(conn: &Connection) -> anyhow::Result<Managed> {
    let reply = capture::call(
        conn,
        MANAGER_PATH,
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
        &(),
        Vec::new,
    )
    .await;
    let msg = match reply {
        Ok(msg) => msg,
        Err(err) if dbus::is_service_unknown(&err) => {
            anyhow::bail!(
                "GetManagedObjects: ModemManager is not running (nobody owns {SERVICE} on the \
                 bus; start it with `systemctl start ModemManager`); the bus answered {}",
                capture::error_text(&err)
            );
        }
        Err(err) => return Err(anyhow::Error::new(err).context("GetManagedObjects")),
    };
    let owner = msg.header().sender().map(|s| s.as_str().to_owned());
    let objects: HashMap<OwnedObjectPath, HashMap<String, Props>> =
        msg.body().deserialize().context("GetManagedObjects: unexpected reply")?;
    let objects =
        objects.into_iter().map(|(path, ifaces)| (path.as_str().to_owned(), ifaces)).collect();
    Ok(Managed { objects, owner })
}

/// Decodes the modems among `objects`, ordered by path index, with duplicate device ids made
/// unique (`<id>-2`, `<id>-3`, … in index order) so two identical modems never share series.
pub fn modems(objects: &Objects, notes: &mut Vec<String>) -> Vec<Modem> {
    let mut paths: Vec<&String> = objects.keys().collect();
    paths.sort_by_key(|p| (path_index(p), (*p).clone()));
    let mut modems: Vec<Modem> = Vec::new();
    for path in paths {
        let Some(ifaces) = objects.get(path) else { continue };
        let Some(mut modem) = decode::modem(path, ifaces, notes) else { continue };
        let base = modem.device_id.clone();
        let mut n = 1;
        while modems.iter().any(|m| m.device_id == modem.device_id) {
            n += 1;
            modem.device_id = format!("{base}-{n}");
        }
        if n > 1 {
            notes.push(format!("{path}: device id {base} is shared; labelled {}", modem.device_id));
        }
        modems.push(modem);
    }
    modems
}

/// The manager's `Version` property; `None` on daemons without it.
pub async fn daemon_version(conn: &Connection) -> anyhow::Result<Option<String>> {
    let props = get_all(conn, MANAGER_PATH, iface::MANAGER).await.context("GetAll Manager")?;
    let mut notes = Vec::new();
    Ok(props.and_then(|p| decode::manager_version(&p, &mut notes)))
}

/// `Properties.GetAll(interface)` on `path`; `None` when the object or interface is gone.
pub async fn get_all(
    conn: &Connection,
    path: &str,
    interface: &str,
) -> anyhow::Result<Option<Props>> {
    let reply = capture::call(conn, path, PROPERTIES, "GetAll", &(interface,), || {
        vec![serde_json::Value::from(interface)]
    })
    .await;
    match reply {
        Ok(msg) => Ok(Some(msg.body().deserialize::<Props>()?)),
        Err(err) if dbus::is_gone(&err) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The bearers of `modem`. Bearers that vanished meanwhile are skipped; the first other error
/// is returned alongside what was read.
pub async fn bearers(
    conn: &Connection,
    modem: &Modem,
    notes: &mut Vec<String>,
) -> (Vec<Bearer>, Option<anyhow::Error>) {
    let calls = modem
        .bearer_paths
        .iter()
        .map(|path| async move { (path, get_all(conn, path, iface::BEARER).await) });
    let mut out = Vec::new();
    let mut first_err = None;
    for (path, result) in join_all(calls).await {
        match result {
            Ok(Some(props)) => out.push(decode::bearer(path, &props, notes)),
            Ok(None) => notes.push(format!("{path}: bearer vanished during the scrape")),
            Err(err) => {
                first_err.get_or_insert(err.context(format!("GetAll Bearer {path}")));
            }
        }
    }
    (out, first_err)
}

/// What [`sims`] returned for one modem.
#[derive(Debug, Default)]
pub struct Sims {
    pub sims: Vec<Sim>,
    /// The first error (the SIMs read before or after it are kept).
    pub err: Option<anyhow::Error>,
    /// How many SIMs were read from ModemManager in this scrape.
    pub read: usize,
    /// The age of each SIM taken from the cache, by path.
    pub cached: Vec<(String, std::time::Duration)>,
}

/// The SIMs of `modem`: every filled slot of `SimSlots` (slot = 1-based index), or the `Sim`
/// property (slot 0) on modems without multi-slot support. Each SIM's properties come from
/// `cache` when it holds them for the daemon `owner`, else from `Properties.GetAll`.
pub async fn sims(
    conn: &Connection,
    modem: &Modem,
    cache: &Statics,
    owner: Option<&str>,
    notes: &mut Vec<String>,
) -> Sims {
    let mut out = Sims::default();
    let mut wanted: Vec<(u32, &str)> = Vec::new();
    for (slot, path) in sim_paths(modem) {
        match owner.and_then(|o| cache.sim(o, path)) {
            Some((props, age)) => {
                out.sims.push(decode::sim(path, slot, &props, notes));
                out.cached.push((path.to_owned(), age));
            }
            None => wanted.push((slot, path)),
        }
    }
    let calls = wanted
        .into_iter()
        .map(|(slot, path)| async move { (slot, path, get_all(conn, path, iface::SIM).await) });
    for (slot, path, result) in join_all(calls).await {
        match result {
            Ok(Some(props)) => {
                out.read += 1;
                if let Some(o) = owner {
                    cache.store_sim(o, path, &props);
                }
                out.sims.push(decode::sim(path, slot, &props, notes));
            }
            Ok(None) => notes.push(format!("{path}: SIM vanished during the scrape")),
            Err(err) => {
                out.err.get_or_insert(err.context(format!("GetAll Sim {path}")));
            }
        }
    }
    out.sims.sort_by_key(|s| s.slot);
    out
}

/// The SIM object paths of `modem` with their slot numbers (see [`sims`]).
pub fn sim_paths(modem: &Modem) -> Vec<(u32, &str)> {
    let mut wanted: Vec<(u32, &str)> = Vec::new();
    if let Some(slots) = modem.sim_slots.as_ref().filter(|s| !s.is_empty()) {
        for (i, slot) in slots.iter().enumerate() {
            if let (Some(path), Ok(n)) = (slot, u32::try_from(i + 1)) {
                wanted.push((n, path.as_str()));
            }
        }
    } else if let Some(path) = &modem.sim_path {
        wanted.push((0, path.as_str()));
    }
    wanted
}

/// The result of [`location`].
#[derive(Debug)]
pub enum LocationFetch {
    /// The `Location` property already had it, or no 3GPP source is enabled.
    NotNeeded,
    /// The modem's location with the 3GPP part from `GetLocation()`.
    Got(Location),
    /// polkit refused `GetLocation`.
    Unauthorized,
}

/// Reads the 3GPP location of `modem` with `Location.GetLocation()` when the `Location`
/// property (published only when someone enabled location signals) did not have it.
pub async fn location(
    conn: &Connection,
    modem: &Modem,
    notes: &mut Vec<String>,
) -> anyhow::Result<LocationFetch> {
    let Some(loc) = &modem.location else { return Ok(LocationFetch::NotNeeded) };
    let enabled = loc.enabled.unwrap_or(0);
    if loc.cell.is_some() || enabled & decode::LOCATION_3GPP_LAC_CI == 0 {
        return Ok(LocationFetch::NotNeeded);
    }
    let path = modem.path.as_str();
    let reply = capture::call(conn, path, iface::LOCATION, "GetLocation", &(), Vec::new).await;
    let map = reply.and_then(|msg| msg.body().deserialize::<HashMap<u32, OwnedVariant>>());
    match map {
        Ok(map) => {
            let keys: Vec<zbus::Variant<'static>> =
                map.keys().map(|k| zbus::Variant::from(*k)).collect();
            let entries: Vec<(&zbus::Variant<'_>, &zbus::Variant<'_>)> =
                keys.iter().zip(map.values().map(|v| &**v)).collect();
            let mut fresh = loc.clone();
            let gps_before = fresh.gps.take();
            decode::apply_location(&mut fresh, &entries, path, notes);
            if fresh.gps.is_none() {
                fresh.gps = gps_before;
            }
            Ok(LocationFetch::Got(fresh))
        }
        Err(err) if dbus::is_unauthorized(&err) => Ok(LocationFetch::Unauthorized),
        Err(err) if dbus::is_gone(&err) => Ok(LocationFetch::NotNeeded),
        Err(err) => Err(anyhow::Error::new(err).context(format!("GetLocation {path}"))),
    }
}

/// Runs futures concurrently and returns their outputs in order.
pub async fn join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = handles.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The N of `/org/freedesktop/ModemManager1/Modem/N`, for ordering only.
fn path_index(path: &str) -> u64 {
    path.rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}
