//! The Smart Hub simulator: Referer rule, profiles, encoding, growing counters, devices that
//! leave, login modes, hostile scripts, knobs and per-path counters over a real socket.
#![allow(clippy::unwrap_used)]

use super::*;

fn get(path: &str, referer: bool) -> Request {
    let mut headers = Vec::new();
    if referer {
        headers
            .push(("referer".to_owned(), "http://192.168.1.254/basic_-_my_devices.htm".to_owned()));
    }
    Request {
        method: "GET".to_owned(),
        path: path.to_owned(),
        query: String::new(),
        headers,
        body: Vec::new(),
    }
}

fn body(hub: &SmartHub, path: &str) -> String {
    let resp = hub.respond(&get(path, true));
    assert_eq!(resp.status, 200, "{path}");
    String::from_utf8(resp.body).unwrap()
}

#[test]
fn cgi_pages_need_a_referer_and_the_xml_does_not_by_default() {
    let hub = SmartHub::default();
    assert_eq!(hub.respond(&get(DEVICES_PATH, false)).status, 403);
    assert_eq!(hub.respond(&get(OWL_PATH, false)).status, 403);
    assert_eq!(hub.respond(&get(WAN_PATH, false)).status, 200);
    assert_eq!(hub.respond(&get(DEVICES_PATH, true)).status, 200);
    hub.control("referer", "all").unwrap();
    assert_eq!(hub.respond(&get(WAN_PATH, false)).status, 403);
    hub.control("referer", "off").unwrap();
    assert_eq!(hub.respond(&get(DEVICES_PATH, false)).status, 200);
    assert_eq!(hub.respond(&get("/nope", true)).status, 404);
    hub.control("referer", "refuse").unwrap();
    assert_eq!(hub.respond(&get(DEVICES_PATH, true)).status, 403, "whatever the Referer");
    assert_eq!(hub.respond(&get(STATUS_PATH, true)).status, 403);
    assert_eq!(hub.respond(&get(WAN_PATH, true)).status, 200);
    hub.control("referer", "refuse-page").unwrap();
    let page = hub.respond(&get(OWL_PATH, true));
    assert_eq!(page.status, 200);
    assert!(String::from_utf8(page.body).unwrap().starts_with("<!DOCTYPE html>"));
    assert!(hub.control("referer", "sometimes").is_err());
}

#[test]
fn profiles_put_the_live_link_on_their_slot() {
    let hub = SmartHub::new(Profile::Fttp);
    let xml = body(&hub, WAN_PATH);
    assert!(xml.contains("<wan_active_idx value=\"0\" />"), "{xml}");
    assert!(
        xml.contains("value=\"[['connected%3B58%3Bpass'],\n['disconnected%3B0%3Bpass']"),
        "{xml}"
    );
    assert!(xml.contains("1000000000%3B1000000000%3B0%3B0"), "{xml}");
    hub.control("profile", "vdsl").unwrap();
    let xml = body(&hub, WAN_PATH);
    assert!(xml.contains("<wan_active_idx value=\"1\" />"), "{xml}");
    assert!(xml.contains("['disconnected%3B0%3Bpass'],\n['connected%3B96%3Bpass']"), "{xml}");
    assert!(xml.contains("'UP','VDSL2','Profile%2017a','62'"), "{xml}");
    assert!(xml.contains("<link_status value=\"connected%3Bvdsl%3B71\" />"), "{xml}");
    hub.control("profile", "down").unwrap();
    let xml = body(&hub, WAN_PATH);
    assert!(!xml.contains("'connected%3B"), "{xml}");
    assert!(
        xml.contains("<sysuptime value=\"212\" />") || xml.contains("<sysuptime value=\"213\" />"),
        "{xml}"
    );
    assert!(hub.control("profile", "adsl").is_err());
}

#[test]
fn wan_counters_grow_per_request() {
    let hub = SmartHub::new(Profile::Vdsl);
    let rx = |xml: &str| -> u64 {
        let start = xml.find("['0%3B0%3B0'],\n['").unwrap() + "['0%3B0%3B0'],\n['".len();
        let slot = &xml[start..];
        let fields: Vec<&str> = slot.split("%3B").collect();
        fields[1].parse().unwrap()
    };
    let a = rx(&body(&hub, WAN_PATH));
    let b = rx(&body(&hub, WAN_PATH));
    assert!(b > a, "{a} then {b}");
}

#[test]
fn names_are_encoded_like_the_hub_and_leaving_devices_vanish() {
    let hub = SmartHub::default();
    let js = body(&hub, DEVICES_PATH);
    assert!(js.starts_with("var known_device_list=[{mac:'AA%3ABB%3ACC%3A00%3A00%3A01'"), "{js}");
    assert!(js.contains("hostname:'Tom%27s%20iPhone'"), "{js}");
    assert!(js.contains("name:'Kids%20%22Den%22%20TV%5C1'"), "{js}");
    assert!(js.contains("hostname:'Zo%C3%AB%2Dlaptop'"), "{js}");
    assert!(js.contains("hostname:'android%25thingy'"), "{js}");
    assert!(
        js.contains("mac:'aa%3Abb%3Acc%3A00%3A00%3A01',tx:'"),
        "rate MACs are lower case: {js}"
    );
    assert!(js.ends_with("var wan_suuport_eth = '1'\n"), "no trailing semicolon, as the hub");
    assert_eq!(js.matches("addCfg(\"i_Mac").count(), 160);
    for line in js.lines().filter(|l| l.contains("hostname:'")) {
        assert!(!line.contains('"') && !line.contains('\\'), "a raw quote or backslash in {line}");
    }
    hub.control("leave", "aa:bb:cc:00:00:02").unwrap();
    let js = body(&hub, DEVICES_PATH);
    assert!(!js.contains("00%3A02"), "{js}");
    let owl = body(&hub, OWL_PATH);
    assert!(!owl.contains("00%3A00%3A02"), "{owl}");
    assert!(hub.control("leave", "aa:bb:cc:00:00:02").is_err());
    hub.control("devices", "empty").unwrap();
    let js = body(&hub, DEVICES_PATH);
    assert!(js.starts_with("var known_device_list=[null];\nvar rate = [null];"), "{js}");
}

#[test]
fn device_counters_grow_per_request() {
    let hub = SmartHub::default();
    let tx = |js: &str| -> u64 {
        let needle = "mac:'aa%3Abb%3Acc%3A00%3A00%3A01',tx:'";
        let at = js.find(needle).unwrap() + needle.len();
        js[at..].split('\'').next().unwrap().parse().unwrap()
    };
    let a = tx(&body(&hub, DEVICES_PATH));
    let b = tx(&body(&hub, DEVICES_PATH));
    assert!(b > a, "{a} then {b}");
}

#[test]
fn owl_lists_the_hub_the_disc_and_stations() {
    let hub = SmartHub::default();
    let owl = body(&hub, OWL_PATH);
    assert!(owl.starts_with("var owl_tplg=[{ordering:'1'"), "{owl}");
    assert_eq!(owl.matches("{ordering:").count(), 2);
    assert_eq!(owl.matches("{station_mac:").count(), 4);
    assert!(owl.contains("station_name:'Tom%27s%20iPhone'"), "{owl}");
    assert!(owl.contains("connect_rssi:'%2D61'"), "{owl}");
    assert_eq!(owl.matches("essid_2g:'BT%2DABC123'").count(), 2, "{owl}");
    assert!(owl.contains("sn:'%2B068341%2BNQ00000000'"), "{owl}");
}

#[test]
fn login_modes() {
    let hub = SmartHub::default();
    hub.control("login", "page").unwrap();
    let resp = hub.respond(&get(WAN_PATH, true));
    assert_eq!(resp.status, 200);
    assert!(String::from_utf8(resp.body).unwrap().contains("type=\"password\""));
    hub.control("login", "redirect").unwrap();
    let resp = hub.respond(&get(DEVICES_PATH, true));
    assert_eq!((resp.status, resp.header("location")), (302, Some(LOGIN_PATH)));
    assert_eq!(hub.respond(&get(LOGIN_PATH, false)).status, 200);
    hub.control("login", "off").unwrap();
    assert!(body(&hub, WAN_PATH).starts_with("<status>"));
}

#[test]
fn hostile_modes_serve_hostile_bodies_on_both_scripts() {
    let hub = SmartHub::default();
    for mode in HOSTILE_MODES {
        hub.control("lan", mode).unwrap();
        for path in [DEVICES_PATH, OWL_PATH] {
            let b = body(&hub, path);
            match *mode {
                "loop" => assert!(b.contains("while(true){}"), "{b}"),
                "memory" => assert!(b.contains("a.push("), "{b}"),
                "recursion" => assert!(b.contains("return f(n+1)"), "{b}"),
                "syntax" => assert!(!b.trim_end().ends_with('\'') && !b.is_empty(), "{b}"),
                "html" => assert!(b.starts_with("<!DOCTYPE html>"), "{b}"),
                "exception" => assert!(b.contains("throw new Error"), "{b}"),
                "missing" => {
                    assert!(!b.contains("known_device_list") && !b.contains("owl_tplg"), "{b}")
                }
                other => panic!("untested mode {other}"),
            }
        }
        assert!(body(&hub, WAN_PATH).starts_with("<status>"), "the WAN page stays fine in {mode}");
    }
    hub.control("lan", "ok").unwrap();
    assert!(body(&hub, DEVICES_PATH).starts_with("var known_device_list"));
    assert!(hub.control("lan", "nuke").is_err());
    assert!(hub.control("colour", "blue").is_err());
}

#[test]
fn hub_encoding_matches_the_spec() {
    assert_eq!(hub_encode("192.168.1.64"), "192%2E168%2E1%2E64");
    assert_eq!(hub_encode("Tom's iPhone"), "Tom%27s%20iPhone");
    assert_eq!(hub_encode("Zoë"), "Zo%C3%AB");
    assert_eq!(hub_encode("a_b-c:d/e;f"), "a%5Fb%2Dc%3Ad%2Fe%3Bf");
}

/// A plain HTTP/1.1 GET over TCP: (status, body).
async fn http_get(addr: std::net::SocketAddr, path: &str, referer: bool) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let referer = if referer {
        format!("Referer: http://{addr}/basic_-_my_devices.htm\r\n")
    } else {
        String::new()
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{referer}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn serves_over_http_and_counts_per_path() {
    let hub = Arc::new(SmartHub::default());
    let server =
        crate::http::SimServer::start(hub.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_eq!(http_get(server.addr(), DEVICES_PATH, false).await.0, 403);
    assert_eq!(http_get(server.addr(), DEVICES_PATH, true).await.0, 200);
    let (status, xml) = http_get(server.addr(), WAN_PATH, false).await;
    assert_eq!(status, 200);
    assert!(xml.contains("<status>"), "{xml}");
    hub.control("lan", "html").unwrap();
    assert!(http_get(server.addr(), OWL_PATH, true).await.1.contains("<!DOCTYPE html>"));
    assert_eq!(server.counters().get(DEVICES_PATH), 2);
    assert_eq!(server.counters().get(WAN_PATH), 1);
    assert_eq!(server.counters().get(OWL_PATH), 1);
}

#[test]
fn status_page_is_the_spec_fixture_with_the_live_uptime() {
    let hub = SmartHub::new(Profile::Vdsl);
    let js = body(&hub, STATUS_PATH);
    let spec = include_str!("status_vdsl.js");
    let uptime_line =
        |t: &str| t.lines().find(|l| l.starts_with("var sysuptime")).unwrap().to_owned();
    let got_uptime: u64 = uptime_line(&js)
        .trim_start_matches("var sysuptime = '")
        .trim_end_matches("';")
        .parse()
        .unwrap();
    assert!((1_209_733..1_209_733 + 5).contains(&got_uptime), "{js}");
    assert_eq!(js.replace(&uptime_line(&js), &uptime_line(spec)), spec);
}

#[test]
fn status_page_knobs_reboot_firmware_and_failures() {
    let hub = SmartHub::new(Profile::Fttp);
    assert_eq!(hub.respond(&get(STATUS_PATH, false)).status, 403, "a /cgi/ page needs a Referer");
    let js = body(&hub, STATUS_PATH);
    assert!(js.contains("var sysuptime = '6048"), "{js}");
    assert!(js.contains("[['203%2E0%2E113%2E45%3B"), "{js}");
    assert!(js.contains("['DOWN', 'ADSL', 'G%2EDMT', '0'"), "{js}");
    hub.control("firmware", "v0.38.01 (new)").unwrap();
    hub.control("reboot", "").unwrap();
    let js = body(&hub, STATUS_PATH);
    assert!(js.contains("var fw_ver = \"v0%2E38%2E01%20%28new%29\";"), "{js}");
    assert!(js.contains("var sysuptime = '120';") || js.contains("var sysuptime = '121';"), "{js}");
    let xml = body(&hub, WAN_PATH);
    assert!(
        xml.contains("<sysuptime value=\"120\" />") || xml.contains("<sysuptime value=\"121\" />"),
        "the WAN page shares the uptime clock: {xml}"
    );
    assert!(hub.control("firmware", "").is_err());
    hub.control("status", "missing").unwrap();
    assert_eq!(hub.respond(&get(STATUS_PATH, true)).status, 404);
    hub.control("status", "html").unwrap();
    assert!(body(&hub, STATUS_PATH).starts_with("<!DOCTYPE html>"));
    assert!(hub.control("status", "maybe").is_err());
}

#[test]
fn many_devices_model_a_busy_network() {
    let hub = SmartHub::default();
    hub.control("devices", "many:300").unwrap();
    let devices = hub.devices();
    assert_eq!(devices.len(), 300);
    assert_eq!(devices.iter().filter(|d| d.active).count(), 30);
    assert!(devices[299].last_active > devices[0].last_active);
    let js = body(&hub, DEVICES_PATH);
    assert_eq!(js.matches("{mac:'02%3A00").count(), 300);
    assert!(js.contains("time_last_active:'2024%2F01%2F01%2004%3A59%3A00'"), "host-299");
    assert!(hub.control("devices", "many:x").is_err());
    assert!(hub.control("devices", "many:5000").is_err());
}
