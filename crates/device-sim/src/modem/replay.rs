//! Replaying an mm-exporter capture: a fake ModemManager on a private bus that answers the
//! recorded D-Bus calls.
//!
//! A call is answered by the recorded call with the same object path, interface, member and
//! arguments (the recorded JSON arguments converted back by the call's own signature and
//! compared); several such calls are served in recorded order, then the last one again. With
//! no call of the same arguments, one of the same path, interface and member is used. A
//! recorded error is answered as that D-Bus error. Calls the capture cannot hold are answered
//! as ModemManager would: `Signal.Setup` (made by the exporter's background task, outside the
//! recorded scrape) succeeds, `Peer.Ping` answers; anything else is `UnknownMethod` naming it.
//!
//! When the capture recorded that ModemManager was not on the bus (`ServiceUnknown`,
//! `NameHasNoOwner`), the replay does not take the name either, so the exporter sees the
//! same error from the bus itself.
//!
//! JSON values are converted back by their D-Bus signature ([`from_json`]) in the encoding
//! mm-exporter records: integers and doubles as numbers, booleans, strings, object paths and
//! signatures as strings, arrays as arrays, dicts as objects keyed by the key's text, structs
//! as arrays, variants as `{"type": "<signature>", "value": …}`.

use std::{
    str::FromStr as _,
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::Context as _;
use exporter_core::capture::{Capture, CapturedDbus, Exchange};
use serde_json::Value as Json;
use zbus::{
    Array, Connection, Dict, MessageStream, ObjectPath, Signature, Structure, Variant,
    message::{Message, Type},
};

use super::PrivateBus;

/// ModemManager's well-known bus name.
const SERVICE: &str = "org.freedesktop.ModemManager1";
/// Error names meaning "nobody owns the name".
const NOT_RUNNING: &[&str] =
    &["org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"];

/// A running replay of a D-Bus capture; dropping it leaves the bus (and stops the private bus
/// it started, if any).
#[derive(Debug)]
pub struct DbusReplay {
    address: String,
    conn: Connection,
    task: tokio::task::JoinHandle<()>,
    _bus: Option<PrivateBus>,
}

#[derive(Debug)]
struct Calls {
    recorded: Vec<CapturedDbus>,
    /// How many times each (path, interface, member, argument-match) group was served.
    served: Mutex<std::collections::HashMap<String, usize>>,
}

impl DbusReplay {
    /// Serves `capture`'s D-Bus calls as ModemManager on the bus at `bus_address`, or on a new
    /// private bus when `None`. Fails when the capture holds no D-Bus call.
    pub async fn start(capture: &Capture, bus_address: Option<&str>) -> anyhow::Result<DbusReplay> {
        let recorded: Vec<CapturedDbus> = capture
            .exchanges
            .iter()
            .filter_map(|e| match e {
                Exchange::Dbus(d) => Some(d.clone()),
                Exchange::Http(_) => None,
            })
            .collect();
        anyhow::ensure!(!recorded.is_empty(), "the capture holds no D-Bus call to replay");
        // Every recorded reply must convert back before anything is served.
        for call in &recorded {
            if let (Some(sig), Some(values)) = (&call.reply_signature, &call.reply) {
                reply_body(sig, values).with_context(|| {
                    format!("recorded reply of {} {}.{}", call.path, call.interface, call.member)
                })?;
            }
        }
        let daemon_missing = recorded.iter().any(|c| {
            c.error.as_deref().is_some_and(|e| NOT_RUNNING.iter().any(|n| e.starts_with(n)))
        });
        let bus = match bus_address {
            Some(_) => None,
            None => Some(PrivateBus::start()?),
        };
        let address = match (bus_address, &bus) {
            (Some(a), _) => a.to_owned(),
            (None, Some(b)) => b.address().to_owned(),
            (None, None) => anyhow::bail!("no bus"),
        };
        let conn = zbus::connection::Builder::address(address.as_str())
            .build()
            .await
            .with_context(|| format!("connect to {address}"))?;
        let stream = MessageStream::from(&conn);
        let calls = Arc::new(Calls { recorded, served: Mutex::default() });
        let task = tokio::spawn(serve(conn.clone(), calls, stream));
        if !daemon_missing {
            conn.request_name(SERVICE).await.with_context(|| format!("request {SERVICE}"))?;
        }
        Ok(DbusReplay { address, conn, task, _bus: bus })
    }

    /// The bus address to give mm-exporter as `--bus-address`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Leaves the bus.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.conn.release_name(SERVICE).await;
        let _ = self.conn.clone().close().await;
    }
}

impl Drop for DbusReplay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(conn: Connection, calls: Arc<Calls>, mut stream: MessageStream) {
    while let Some(msg) = next(&mut stream).await {
        let Ok(msg) = msg else { continue };
        if msg.message_type() != Type::MethodCall {
            continue;
        }
        let header = msg.header();
        let answer = calls.answer(&msg);
        let _ = match answer {
            Answer::Body(Some(body)) => conn.reply(&header, &body).await,
            Answer::Body(None) => conn.reply(&header, &()).await,
            Answer::Error(name, message) => {
                conn.reply_error(&header, name.as_str(), &message).await
            }
        };
    }
}

enum Answer {
    /// The reply body as one structure of its values (`None`: an empty body).
    Body(Option<Structure<'static>>),
    Error(String, String),
}

impl Calls {
    fn answer(&self, msg: &Message) -> Answer {
        let header = msg.header();
        let path = header.path().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let interface = header.interface().map(|i| i.as_str().to_owned()).unwrap_or_default();
        let member = header.member().map(|m| m.as_str().to_owned()).unwrap_or_default();
        let args = call_args(msg);
        let same =
            |c: &&CapturedDbus| c.path == path && c.interface == interface && c.member == member;
        let with_args: Vec<usize> = self
            .recorded
            .iter()
            .enumerate()
            .filter(|(_, c)| same(c) && args.as_ref().is_some_and(|a| args_match(&c.args, a)))
            .map(|(i, _)| i)
            .collect();
        let (group, key) = if with_args.is_empty() {
            let any: Vec<usize> =
                self.recorded.iter().enumerate().filter(|(_, c)| same(c)).map(|(i, _)| i).collect();
            (any, format!("{path} {interface} {member} *"))
        } else {
            (with_args, format!("{path} {interface} {member} {args:?}"))
        };
        let Some(&last) = group.last() else {
            return unrecorded(&path, &interface, &member);
        };
        let index = {
            let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
            let n = served.entry(key).or_insert(0);
            let index = group.get(*n).copied().unwrap_or(last);
            *n += 1;
            index
        };
        let Some(call) = self.recorded.get(index) else {
            return Answer::Error(
                FAILED.to_owned(),
                "replay: bug: no call at the index".to_owned(),
            );
        };
        if let Some(error) = &call.error {
            let (name, message) = error.split_once(": ").unwrap_or((error.as_str(), ""));
            let name = if zbus::names::ErrorName::try_from(name).is_ok() { name } else { FAILED };
            return Answer::Error(name.to_owned(), message.to_owned());
        }
        match (&call.reply_signature, &call.reply) {
            (Some(sig), Some(values)) => match reply_body(sig, values) {
                Ok(body) => Answer::Body(body),
                Err(e) => Answer::Error(FAILED.to_owned(), format!("replay: {e:#}")),
            },
            _ => Answer::Body(None),
        }
    }
}

const FAILED: &str = "org.freedesktop.DBus.Error.Failed";

/// The answer to a call the capture does not hold.
fn unrecorded(path: &str, interface: &str, member: &str) -> Answer {
    match (interface, member) {
        ("org.freedesktop.ModemManager1.Modem.Signal", "Setup")
        | ("org.freedesktop.DBus.Peer", "Ping") => Answer::Body(None),
        _ => Answer::Error(
            "org.freedesktop.DBus.Error.UnknownMethod".to_owned(),
            format!("replay: the capture has no call of {interface}.{member} on {path}"),
        ),
    }
}

/// The arguments of an incoming call, one value each (`None` when undecodable).
fn call_args(msg: &Message) -> Option<Vec<Variant<'static>>> {
    let body = msg.body();
    if *body.signature() == Signature::Unit {
        return Some(Vec::new());
    }
    // A body of any signature reads as one structure of its values.
    let s: Structure<'_> = body.deserialize().ok()?;
    s.fields().iter().map(|f| f.try_to_owned().ok().map(Variant::from)).collect()
}

/// Whether the recorded JSON arguments, read by the incoming values' signatures, equal them.
fn args_match(recorded: &[Json], incoming: &[Variant<'static>]) -> bool {
    recorded.len() == incoming.len()
        && recorded
            .iter()
            .zip(incoming)
            .all(|(j, v)| from_json(v.value_signature(), j).is_ok_and(|r| r == *v))
}

/// The reply body for a recorded signature and values: `None` for an empty body, else one
/// structure whose fields are the body's values (sent without the outer parentheses).
pub fn reply_body(signature: &str, values: &[Json]) -> anyhow::Result<Option<Structure<'static>>> {
    if signature.is_empty() {
        anyhow::ensure!(values.is_empty(), "values recorded for an empty reply signature");
        return Ok(None);
    }
    let sig = Signature::from_str(signature)
        .map_err(|e| anyhow::anyhow!("invalid reply signature {signature:?}: {e}"))?;
    let fields: Vec<Signature> = match &sig {
        Signature::Structure(f) if values.len() != 1 || !signature.starts_with('(') => {
            f.iter().cloned().collect()
        }
        other => vec![other.clone()],
    };
    anyhow::ensure!(
        fields.len() == values.len(),
        "reply signature {signature:?} has {} values, the capture {}",
        fields.len(),
        values.len()
    );
    let mut builder = Structure::builder();
    for (s, v) in fields.iter().zip(values) {
        builder = builder.append_field(from_json(s, v)?);
    }
    Ok(Some(builder.build()?))
}

/// One JSON value read back as the D-Bus value of signature `sig`.
pub fn from_json(sig: &Signature, j: &Json) -> anyhow::Result<Variant<'static>> {
    fn int<T: TryFrom<i64> + TryFrom<u64>>(j: &Json, what: &str) -> anyhow::Result<T> {
        let v = match (j.as_u64(), j.as_i64()) {
            (Some(u), _) => T::try_from(u).ok(),
            (None, Some(i)) => T::try_from(i).ok(),
            _ => None,
        };
        v.ok_or_else(|| anyhow::anyhow!("expected {what}, found {j}"))
    }
    let text = || {
        j.as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("expected a string, found {j}"))
    };
    Ok(match sig {
        Signature::U8 => Variant::U8(int(j, "a byte")?),
        Signature::Bool => Variant::Bool(
            j.as_bool().ok_or_else(|| anyhow::anyhow!("expected a boolean, found {j}"))?,
        ),
        Signature::I16 => Variant::I16(int(j, "an int16")?),
        Signature::U16 => Variant::U16(int(j, "a uint16")?),
        Signature::I32 => Variant::I32(int(j, "an int32")?),
        Signature::U32 => Variant::U32(int(j, "a uint32")?),
        Signature::I64 => Variant::I64(int(j, "an int64")?),
        Signature::U64 => Variant::U64(int(j, "a uint64")?),
        Signature::F64 => {
            Variant::F64(j.as_f64().ok_or_else(|| anyhow::anyhow!("expected a double, found {j}"))?)
        }
        Signature::Str => Variant::from(text()?),
        Signature::Signature => Variant::Signature(
            Signature::from_str(&text()?).map_err(|e| anyhow::anyhow!("invalid signature: {e}"))?,
        ),
        Signature::ObjectPath => Variant::ObjectPath(
            ObjectPath::try_from(text()?)
                .map_err(|e| anyhow::anyhow!("invalid object path: {e}"))?,
        ),
        Signature::Variant => {
            let t = j
                .get("type")
                .and_then(Json::as_str)
                .ok_or_else(|| anyhow::anyhow!("expected {{\"type\", \"value\"}}, found {j}"))?;
            let inner =
                Signature::from_str(t).map_err(|e| anyhow::anyhow!("invalid type {t:?}: {e}"))?;
            let value = j.get("value").unwrap_or(&Json::Null);
            Variant::Variant(Box::new(from_json(&inner, value)?))
        }
        Signature::Array(child) => {
            let items =
                j.as_array().ok_or_else(|| anyhow::anyhow!("expected an array, found {j}"))?;
            let mut a = Array::new(child);
            for item in items {
                a.append(from_json(child, item)?)?;
            }
            Variant::Array(a)
        }
        Signature::Dict { key, value } => {
            let entries =
                j.as_object().ok_or_else(|| anyhow::anyhow!("expected an object, found {j}"))?;
            let mut d = Dict::new(key, value);
            for (k, v) in entries {
                let k = match &**key {
                    Signature::Str | Signature::ObjectPath | Signature::Signature => {
                        from_json(key, &Json::from(k.as_str()))?
                    }
                    _ => {
                        let parsed: Json = serde_json::from_str(k)
                            .with_context(|| format!("dict key {k:?} of type {}", &**key))?;
                        from_json(key, &parsed)?
                    }
                };
                d.append(k, from_json(value, v)?)?;
            }
            Variant::Dict(d)
        }
        Signature::Structure(fields) => {
            let items =
                j.as_array().ok_or_else(|| anyhow::anyhow!("expected an array, found {j}"))?;
            anyhow::ensure!(
                items.len() == fields.iter().count(),
                "structure {sig} needs {} fields, found {}",
                fields.iter().count(),
                items.len()
            );
            let mut b = Structure::builder();
            for (f, item) in fields.iter().zip(items) {
                b = b.append_field(from_json(f, item)?);
            }
            Variant::Structure(b.build()?)
        }
        other => anyhow::bail!("values of type {other} cannot be replayed"),
    })
}

/// `device-sim replay FILE` for a D-Bus capture: serves it on a new private bus, prints
/// `bus address ADDRESS` (for mm-exporter's `--bus-address`) and runs until interrupted.
pub async fn run_cli(capture: &Capture) -> anyhow::Result<()> {
    let replay = DbusReplay::start(capture, None).await?;
    println!("bus address {}", replay.address());
    super::flush();
    super::wait_for_stop().await?;
    replay.stop().await;
    Ok(())
}

/// The next item of a stream.
async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sig(s: &str) -> Signature {
        Signature::from_str(s).unwrap()
    }

    #[test]
    fn json_reads_back_by_signature() {
        let v = from_json(
            &sig("a{sv}"),
            &json!({"State": {"type": "i", "value": 8}, "Quality": {"type": "(ub)", "value": [42, true]},
                    "Sim": {"type": "o", "value": "/org/x/SIM/0"}, "Bytes": {"type": "ay", "value": [1, 2]}}),
        )
        .unwrap();
        let Variant::Dict(d) = &v else { panic!("not a dict: {v:?}") };
        let state = d.iter().find(|(k, _)| **k == Variant::from("State")).unwrap().1;
        assert_eq!(*state, Variant::Variant(Box::new(Variant::I32(8))));
        assert_eq!(v.value_signature().to_string(), "a{sv}");
        let loc = from_json(&sig("a{uv}"), &json!({"1": {"type": "u", "value": 5}})).unwrap();
        assert_eq!(loc.value_signature().to_string(), "a{uv}");
        assert!(from_json(&sig("u"), &json!(-1)).is_err(), "out of range");
        assert!(from_json(&sig("s"), &json!(1)).is_err(), "wrong type");
        assert!(from_json(&sig("(ub)"), &json!([1])).is_err(), "missing field");
        let body = reply_body("a{oa{sa{sv}}}", &[json!({})]).unwrap().unwrap();
        assert_eq!(body.fields().len(), 1);
        assert!(reply_body("", &[]).unwrap().is_none());
        assert!(reply_body("s", &[]).is_err());
    }
}
