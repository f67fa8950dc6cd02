//! The LinkHub simulator over a real socket: formats, login, token expiry, lockout, the
//! single admin session, encrypted mode and the per-method counters.

use std::{net::SocketAddr, sync::Arc};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{Linkhub, MAX_LOGIN_FAILURES, Model, VERIFICATION_KEY, crypto::obfuscate};
use crate::http::SimServer;

async fn start(device: Linkhub) -> SimServer {
    SimServer::start(Arc::new(device), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// One raw HTTP/1.1 POST; returns (status, body).
async fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST /jrd/webapi HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// A JSON-RPC call with the web UI's headers (and a token header when given).
async fn call(addr: SocketAddr, method: &str, params: Value, token: Option<&str>) -> Value {
    let referer = format!("http://{addr}/index.html");
    let mut headers =
        vec![("_TclRequestVerificationKey", VERIFICATION_KEY), ("Referer", referer.as_str())];
    if let Some(t) = token {
        headers.push(("_TclRequestVerificationToken", t));
    }
    let body =
        json!({"jsonrpc": "2.0", "method": method, "params": params, "id": "9.9"}).to_string();
    let (status, body) = post(addr, &headers, &body).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn login(addr: SocketAddr, password: &str) -> Value {
    let params = json!({"UserName": obfuscate("admin"), "Password": obfuscate(password)});
    call(addr, "Login", params, None).await
}

fn code(reply: &Value) -> Value {
    reply["error"]["code"].clone()
}

#[tokio::test]
async fn answers_with_the_spec_formats_and_counts_methods() {
    let sim = start(Linkhub::new(Model::Hh41)).await;
    let net = call(sim.addr(), "GetNetworkInfo", json!({}), None).await;
    assert_eq!(net["id"], "9.9");
    let r = &net["result"];
    assert_eq!(
        (r["SINR"].as_str(), r["RSRP"].as_str(), r["CellId"].as_str()),
        (Some("17"), Some("-90"), Some("80820492"))
    );
    assert_eq!(r["DL_channel"], "reserved");
    assert_eq!(r["Roaming"], 1, "1 = not roaming (inverted)");
    let status = call(sim.addr(), "GetSystemStatus", json!({}), None).await;
    assert_eq!(status["result"]["TotalConnNum"], 3);
    let battery = call(sim.addr(), "GetBatteryState", json!({}), None).await;
    assert_eq!(code(&battery), -32601);
    assert_eq!(sim.counters().get("GetNetworkInfo"), 1);
    assert_eq!(sim.counters().get("GetSystemStatus"), 1);
    assert_eq!(sim.counters().get("/jrd/webapi"), 3);

    // No key or no Referer: authentication failure.
    let (_, body) =
        post(sim.addr(), &[], r#"{"jsonrpc":"2.0","method":"GetSystemStatus","id":"1"}"#).await;
    assert_eq!(code(&serde_json::from_str(&body).unwrap()), -32699);
    // Not JSON: parse error.
    let (_, body) = post(sim.addr(), &[], "<html>").await;
    assert_eq!(code(&serde_json::from_str(&body).unwrap()), -32700);
}

#[tokio::test]
async fn no_service_model_sends_the_invalid_markers() {
    let sim = start(Linkhub::new(Model::NoService)).await;
    let r = call(sim.addr(), "GetNetworkInfo", json!({}), None).await["result"].clone();
    assert_eq!(
        (r["SINR"].as_str(), r["RSRP"].as_str(), r["RSSI"].as_str()),
        (Some("FF"), Some("-1"), Some(""))
    );
    assert_eq!(r["CellId"], "0");
    let s = call(sim.addr(), "GetSystemStatus", json!({}), None).await["result"].clone();
    assert_eq!((s["NetworkType"].as_i64(), s["SignalStrength"].as_i64()), (Some(0), Some(0)));
}

#[tokio::test]
async fn login_token_expiry_and_logout() {
    let device = Arc::new(Linkhub::new(Model::Hh41));
    let sim = SimServer::start(device.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = sim.addr();
    assert_eq!(code(&call(addr, "GetConnectionState", json!({}), None).await), -32699);
    let state = call(addr, "GetLoginState", json!({}), None).await;
    assert_eq!(
        state["result"],
        json!({"State":0,"LoginRemainingTimes":5,"LockedRemainingTime":0,"PwEncrypt":1})
    );
    let reply = login(addr, "admin").await;
    assert_eq!(reply["result"]["token"], 45_487_484);
    let token = obfuscate("45487484");
    assert_eq!(token, "af06`gdo6261P[]Z");
    let cs = call(addr, "GetConnectionState", json!({}), Some(&token)).await;
    assert_eq!(cs["result"]["ConnectionStatus"], 2);
    // The single admin session: a second login is refused while the first is alive.
    assert_eq!(code(&login(addr, "admin").await), "010102");
    assert_eq!(call(addr, "GetLoginState", json!({}), None).await["result"]["State"], 1);
    // Token expiry.
    crate::http::HttpDevice::control(&*device, "expire_token", "1").unwrap();
    assert_eq!(code(&call(addr, "GetConnectionState", json!({}), Some(&token)).await), -32699);
    assert_eq!(code(&call(addr, "HeartBeat", json!({}), Some(&token)).await), -32698);
    let reply = login(addr, "admin").await;
    let token = obfuscate(&reply["result"]["token"].to_string());
    assert_eq!(call(addr, "Logout", json!({}), Some(&token)).await["result"], json!({}));
    assert_eq!(call(addr, "GetLoginState", json!({}), None).await["result"]["State"], 0);
    assert_eq!(sim.counters().get("login_attempt"), 3);
}

#[tokio::test]
async fn knobs_expire_tokens_and_string_codes() {
    let device = Arc::new(Linkhub::new(Model::Hh41).with("string_codes", "true"));
    let sim = SimServer::start(device.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = sim.addr();
    let reply = login(addr, "admin").await;
    let token = obfuscate(&reply["result"]["token"].to_string());
    assert!(call(addr, "GetConnectionState", json!({}), Some(&token)).await["result"].is_object());
    crate::http::HttpDevice::control(&*device, "expire_token", "1").unwrap();
    assert_eq!(code(&call(addr, "GetConnectionState", json!({}), Some(&token)).await), "-32699");
}

#[tokio::test]
async fn wrong_passwords_lock_until_reboot() {
    let device = Arc::new(Linkhub::new(Model::Hh41));
    let sim = SimServer::start(device.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = sim.addr();
    for n in 1..=MAX_LOGIN_FAILURES {
        assert_eq!(code(&login(addr, "wrong").await), "010101");
        let state = call(addr, "GetLoginState", json!({}), None).await;
        assert_eq!(state["result"]["LoginRemainingTimes"], MAX_LOGIN_FAILURES - n);
    }
    assert_eq!(code(&login(addr, "admin").await), "010103", "locked even with the right password");
    assert_eq!(call(addr, "GetLoginState", json!({}), None).await["result"]["State"], 2);
    crate::http::HttpDevice::control(&*device, "reboot", "1").unwrap();
    assert!(login(addr, "admin").await["result"]["token"].is_number());
    assert_eq!(sim.counters().get("login_attempt"), u64::from(MAX_LOGIN_FAILURES) + 2);
}

#[tokio::test]
async fn other_admin_and_encrypted_modes() {
    let device = Arc::new(Linkhub::new(Model::Hh41).with("other_admin", "true"));
    let sim = SimServer::start(device.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_eq!(code(&login(sim.addr(), "admin").await), "010102");
    crate::http::HttpDevice::control(&*device, "encrypted", "true").unwrap();
    let reply = call(sim.addr(), "GetSystemInfo", json!({}), None).await;
    assert!(reply["result"].as_str().unwrap().starts_with("U2FsdGVkX1"));
}

#[tokio::test]
async fn hotspot_model_needs_the_aes_token() {
    let sim = start(Linkhub::new(Model::Hh72)).await;
    let addr = sim.addr();
    let reply = login(addr, "admin").await;
    let r = &reply["result"];
    assert_eq!(
        (r["param0"].as_str(), r["param1"].as_str()),
        (Some("1234567890123456"), Some("6543210987654321"))
    );
    let plain = obfuscate(r["token"].as_str().unwrap());
    assert_eq!(code(&call(addr, "GetNetworkInfo", json!({}), Some(&plain)).await), -32699);
    let aes =
        super::crypto::aes_cbc_base64(b"1234567890123456", b"6543210987654321", plain.as_bytes())
            .unwrap();
    assert!(call(addr, "GetNetworkInfo", json!({}), Some(&aes)).await["result"].is_object());
}

#[tokio::test]
async fn mifi_has_a_battery_and_overrides_and_cells_work() {
    let device = Arc::new(Linkhub::new(Model::Mifi));
    let sim = SimServer::start(device.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = sim.addr();
    let b = call(addr, "GetBatteryState", json!({}), None).await;
    assert_eq!(b["result"], json!({"chg_state":0,"BatteryLevel":64}));
    let s = call(addr, "GetSystemStatus", json!({}), None).await;
    assert_eq!(s["result"]["bat_cap"], 100);
    let d: &dyn crate::http::HttpDevice = &*device;
    d.control("GetSystemStatus.TotalConnNum", "0").unwrap();
    d.control("GetNetworkInfo.SINR", "N/A").unwrap();
    d.control("cell", "1").unwrap();
    assert_eq!(call(addr, "GetSystemStatus", json!({}), None).await["result"]["TotalConnNum"], 0);
    let net = call(addr, "GetNetworkInfo", json!({}), None).await;
    assert_eq!(
        (net["result"]["SINR"].as_str(), net["result"]["CellId"].as_str()),
        (Some("N/A"), Some("80820494"))
    );
    assert!(d.control("cell", "7").is_err());
    assert!(d.control("nonsense", "1").is_err());
    assert!(d.control("model", "hh99").is_err());
}

#[tokio::test]
async fn sms_store_and_clients_with_their_token_rules() {
    let device = Arc::new(Linkhub::new(Model::Hh41));
    let sim = SimServer::start(device.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = sim.addr();
    // HH41: the SMS store is public, the client list needs the token.
    let sms = call(addr, "GetSMSStorageState", json!({}), None).await;
    assert_eq!(
        sms["result"],
        json!({"UnreadReport":0,"LeftCount":97,"MaxCount":100,"TUseCount":3,"UnreadSMSCount":1})
    );
    assert_eq!(code(&call(addr, "GetConnectedDeviceList", json!({}), None).await), -32699);
    let token = obfuscate(&login(addr, "admin").await["result"]["token"].to_string());
    let list = call(addr, "GetConnectedDeviceList", json!({}), Some(&token)).await;
    let list = list["result"]["ConnectedList"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    assert_eq!(list[2]["ConnectMode"], 0);

    // A full store shows in both methods.
    let d: &dyn crate::http::HttpDevice = &*device;
    d.control("sms_stored", "100").unwrap();
    let sms = call(addr, "GetSMSStorageState", json!({}), None).await;
    assert_eq!(
        (sms["result"]["LeftCount"].as_u64(), sms["result"]["TUseCount"].as_u64()),
        (Some(0), Some(100))
    );
    let status = call(addr, "GetSystemStatus", json!({}), None).await;
    assert_eq!(status["result"]["SmsState"], 1);
    d.control("sms_stored", "0").unwrap();
    assert_eq!(call(addr, "GetSystemStatus", json!({}), None).await["result"]["SmsState"], 0);

    // Generated clients and guests; TotalConnNum follows.
    d.control("connected_devices", "300").unwrap();
    d.control("guest_devices", "2").unwrap();
    let list = call(addr, "GetConnectedDeviceList", json!({}), Some(&token)).await;
    let r = &list["result"];
    assert_eq!(r["ConnectedList"].as_array().unwrap().len(), 300);
    assert_eq!(r["ConnectedGuestList"].as_array().unwrap().len(), 2);
    let macs: std::collections::BTreeSet<_> = r["ConnectedList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["MacAddress"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(macs.len(), 300, "unique MAC addresses");
    assert_eq!(call(addr, "GetSystemStatus", json!({}), None).await["result"]["TotalConnNum"], 302);
    assert!(d.control("connected_devices", "many").is_err());

    // HH71 (EE firmware): the SMS store needs the token too.
    let sim71 = start(Linkhub::new(Model::Hh71)).await;
    assert_eq!(code(&call(sim71.addr(), "GetSMSStorageState", json!({}), None).await), -32699);
}
