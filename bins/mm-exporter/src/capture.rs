//! Recording the D-Bus calls of a scrape for `mm-exporter capture`.
//!
//! Every method call of a scrape goes through [`call`], which records it with
//! `exporter_core::capture::record_dbus` while a capture is being taken (otherwise the
//! recording costs one task-local lookup). Values are written as JSON in the encoding
//! `device-sim replay` reads back by signature: integers and doubles as numbers, booleans,
//! strings, object paths and signatures as strings, arrays (also byte arrays) as arrays, dicts
//! as objects keyed by the key's text, structs as arrays, variants as
//! `{"type": "<signature>", "value": …}`; errors as `"<error name>: <message>"`.

use exporter_core::capture::{self, CapturedDbus};
use serde_json::{Map, Value as Json};
use zbus::{Connection, Signature, Structure, Variant, message::Message};

use crate::dbus::SERVICE;

/// Calls `interface`.`member` on `path` of ModemManager with `body`, recording the call
/// (with `args`, the body as JSON) when a capture is active.
pub async fn call<B>(
    conn: &Connection,
    path: &str,
    interface: &str,
    member: &str,
    body: &B,
    args: impl FnOnce() -> Vec<Json>,
) -> zbus::Result<Message>
where
    B: serde::Serialize + zbus::wire::DynamicType,
{
    let result = conn.call_method(Some(SERVICE), path, Some(interface), member, body).await;
    if capture::active() {
        let (reply_signature, reply, error) = match &result {
            Ok(msg) => match reply_json(msg) {
                Ok((sig, values)) => (Some(sig), Some(values), None),
                Err(e) => (None, None, Some(format!("undecodable reply: {e}"))),
            },
            Err(err) => (None, None, Some(error_text(err))),
        };
        let args = args();
        capture::record_dbus(|| CapturedDbus {
            destination: SERVICE.to_owned(),
            path: path.to_owned(),
            interface: interface.to_owned(),
            member: member.to_owned(),
            args,
            reply_signature,
            reply,
            error,
        });
    }
    result
}

/// A failed call as `"<error name>: <message>"` (or zbus's text for errors without a name).
pub fn error_text(err: &zbus::Error) -> String {
    match err {
        zbus::Error::MethodError(name, message, _) => {
            format!("{}: {}", name.as_str(), message.as_deref().unwrap_or_default())
        }
        zbus::Error::FDO(fdo) => {
            let e: &zbus::fdo::Error = fdo;
            format!(
                "{}: {}",
                zbus::DBusError::name(e).as_str(),
                zbus::DBusError::description(e).unwrap_or_default()
            )
        }
        other => other.to_string(),
    }
}

/// The reply body's signature (without the outer parentheses of several values) and its
/// values as JSON, one per body item.
pub fn reply_json(msg: &Message) -> zbus::Result<(String, Vec<Json>)> {
    let body = msg.body();
    let signature = body.signature().clone();
    if signature == Signature::Unit {
        return Ok((String::new(), Vec::new()));
    }
    // A body of any signature reads as one structure of its values.
    let s: Structure<'_> = body.deserialize()?;
    Ok((signature.to_string_no_parens(), s.fields().iter().map(to_json).collect()))
}

/// One D-Bus value as JSON (see the module documentation for the encoding).
pub fn to_json(v: &Variant<'_>) -> Json {
    match v {
        Variant::U8(n) => Json::from(*n),
        Variant::Bool(b) => Json::from(*b),
        Variant::I16(n) => Json::from(*n),
        Variant::U16(n) => Json::from(*n),
        Variant::I32(n) => Json::from(*n),
        Variant::U32(n) => Json::from(*n),
        Variant::I64(n) => Json::from(*n),
        Variant::U64(n) => Json::from(*n),
        // JSON has no NaN or infinity: those become null (the replay refuses them).
        Variant::F64(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
        Variant::Str(s) => Json::from(s.as_str()),
        Variant::Signature(s) => Json::from(s.to_string()),
        Variant::ObjectPath(p) => Json::from(p.as_str()),
        Variant::Variant(inner) => {
            let mut m = Map::new();
            m.insert("type".to_owned(), Json::from(inner.value_signature().to_string()));
            m.insert("value".to_owned(), to_json(inner));
            Json::Object(m)
        }
        Variant::Array(a) => Json::Array(a.inner().iter().map(to_json).collect()),
        Variant::Dict(d) => {
            let mut m = Map::new();
            for (k, v) in d.iter() {
                m.insert(key_text(k), to_json(v));
            }
            Json::Object(m)
        }
        Variant::Structure(s) => Json::Array(s.fields().iter().map(to_json).collect()),
        #[cfg(unix)]
        Variant::Fd(_) => Json::Null,
    }
}

/// A dict key as text: strings and paths as they are, numbers and booleans as written.
fn key_text(k: &Variant<'_>) -> String {
    match to_json(k) {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use zbus::{ObjectPath, OwnedVariant};

    use super::*;

    #[test]
    fn values_follow_the_replay_encoding() {
        let mut props: HashMap<String, OwnedVariant> = HashMap::new();
        props.insert("State".into(), OwnedVariant::from(8i32));
        props.insert(
            "Quality".into(),
            OwnedVariant::try_from(Variant::from((42u32, true))).unwrap(),
        );
        props.insert("Rssi".into(), OwnedVariant::from(-71.5f64));
        props.insert("Model".into(), OwnedVariant::try_from(Variant::from("EM7455")).unwrap());
        props.insert(
            "Sim".into(),
            OwnedVariant::try_from(Variant::from(ObjectPath::try_from("/org/x/SIM/0").unwrap()))
                .unwrap(),
        );
        props.insert("Bytes".into(), OwnedVariant::try_from(Variant::from(vec![1u8, 2])).unwrap());
        let v = Variant::from(props);
        let j = to_json(&v);
        assert_eq!(j["State"], serde_json::json!({"type": "i", "value": 8}));
        assert_eq!(j["Quality"], serde_json::json!({"type": "(ub)", "value": [42, true]}));
        assert_eq!(j["Rssi"], serde_json::json!({"type": "d", "value": -71.5}));
        assert_eq!(j["Model"], serde_json::json!({"type": "s", "value": "EM7455"}));
        assert_eq!(j["Sim"], serde_json::json!({"type": "o", "value": "/org/x/SIM/0"}));
        assert_eq!(j["Bytes"], serde_json::json!({"type": "ay", "value": [1, 2]}));
        let locs: HashMap<u32, OwnedVariant> = HashMap::from([(1, OwnedVariant::from(5u32))]);
        assert_eq!(
            to_json(&Variant::from(locs)),
            serde_json::json!({"1": {"type": "u", "value": 5}})
        );
        assert_eq!(to_json(&Variant::from(f64::NAN)), Json::Null);
    }
}
