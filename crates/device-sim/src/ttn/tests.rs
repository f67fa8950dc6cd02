//! The The Things Stack simulator: routes, field masks, paging, keys, every error body, the
//! connection state machine, batch and older-server modes, rate limits and counters.

use std::{cell::RefCell, collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::*;

fn opts(gateways: usize) -> SimOptions {
    SimOptions { gateways, ..SimOptions::default() }
}

fn server(role: Role, o: &SimOptions) -> TtnServer {
    let world = Arc::new(World::new(o.gateways, &o.clusters, o.disconnect_window));
    TtnServer::new(world, role, o)
}

fn cluster_of(identity: &TtnServer, index: usize, o: &SimOptions) -> TtnServer {
    TtnServer::new(Arc::clone(&identity.world), Role::Cluster(index), o)
}

fn request(method: &str, target: &str, key: Option<&str>, body: &str) -> Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    if let Some(key) = key {
        let value = if key.contains(' ') { key.to_owned() } else { format!("Bearer {key}") };
        headers.push(("authorization".to_owned(), value));
    }
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// Answers a request; returns (status, headers, body) and the method names counted.
fn call(
    s: &TtnServer,
    method: &str,
    target: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, Response, Value) {
    let counted = RefCell::new(Vec::<String>::new());
    let resp =
        s.answer(&request(method, target, key, body), &|k| counted.borrow_mut().push(k.to_owned()));
    let value: Value = serde_json::from_slice(&resp.body).unwrap();
    (resp.status, resp, value)
}

fn get(s: &TtnServer, target: &str, key: Option<&str>) -> (u16, Value) {
    let (status, _, body) = call(s, "GET", target, key, "");
    (status, body)
}

fn error_name(body: &Value) -> String {
    let d = &body["details"][0];
    format!("{}:{}", d["namespace"].as_str().unwrap_or(""), d["name"].as_str().unwrap_or(""))
}

fn ids(body: &Value) -> Vec<String> {
    body["gateways"]
        .as_array()
        .map(|a| a.iter().map(|g| g["ids"]["gateway_id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn list_without_field_mask_has_only_ids_and_times() {
    let s = server(Role::Identity, &opts(3));
    let (status, body) = get(&s, "/api/v3/gateways", Some(USER_KEY));
    assert_eq!(status, 200);
    let first = body["gateways"][0].as_object().unwrap();
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(keys, ["created_at", "ids", "updated_at"]);

    let (_, body) = get(
        &s,
        "/api/v3/gateways?field_mask=name,gateway_server_address,antennas,frequency_plan_ids",
        Some(USER_KEY),
    );
    let first = &body["gateways"][0];
    assert_eq!(first["name"], "Simulated gateway 1");
    assert_eq!(first["gateway_server_address"], "eu1.cloud.thethings.network");
    assert_eq!(first["frequency_plan_ids"], json!(["EU_863_870_TTN"]));
    assert!(first.get("description").is_none(), "not asked for");
    assert_eq!(body["gateways"][1]["gateway_server_address"], "nam1.cloud.thethings.network");

    let (status, body) = get(&s, "/api/v3/gateways?field_mask=name,secret_sauce", Some(USER_KEY));
    assert_eq!(status, 400);
    assert_eq!(error_name(&body), "pkg/rpcmiddleware/validator:field_mask_paths");
    assert_eq!(body["details"][0]["attributes"]["forbidden_paths"], json!(["secret_sauce"]));
}

#[test]
fn pagination_total_count_and_limits() {
    let s = server(Role::Identity, &opts(25));
    let mut all = Vec::new();
    for page in 1..=3 {
        let (status, resp, body) =
            call(&s, "GET", &format!("/api/v3/gateways?limit=10&page={page}"), Some(USER_KEY), "");
        assert_eq!(status, 200);
        assert_eq!(resp.header("x-total-count"), Some("25"));
        all.extend(ids(&body));
    }
    assert_eq!(all.len(), 25);
    assert_eq!(all.first().map(String::as_str), Some("gw-0001"));
    assert_eq!(get(&s, "/api/v3/gateways?limit=10&page=4", Some(USER_KEY)).1, json!({}));
    assert_eq!(ids(&get(&s, "/api/v3/gateways?limit=10&page=0", Some(USER_KEY)).1).len(), 10);
    assert_eq!(ids(&get(&s, "/api/v3/gateways?limit=1000", Some(USER_KEY)).1).len(), 25);
    let (status, body) = get(&s, "/api/v3/gateways?limit=1001", Some(USER_KEY));
    assert_eq!((status, error_name(&body)), (400, "pkg/ttnpb:validation".to_owned()));
    // The default page size is 100; a server cap applies whatever the limit.
    let big = server(Role::Identity, &opts(150));
    assert_eq!(ids(&get(&big, "/api/v3/gateways", Some(USER_KEY)).1).len(), 100);
    let capped = server(
        Role::Identity,
        &SimOptions { gateways: 150, page_cap: 40, ..SimOptions::default() },
    );
    assert_eq!(ids(&get(&capped, "/api/v3/gateways?limit=1000", Some(USER_KEY)).1).len(), 40);
}

#[test]
fn key_kinds_see_their_gateways() {
    let s = server(Role::Identity, &opts(8));
    assert_eq!(ids(&get(&s, "/api/v3/gateways", Some(USER_KEY)).1).len(), 8);
    assert_eq!(ids(&get(&s, "/api/v3/gateways", Some(ORG_KEY)).1), ["gw-0004", "gw-0008"]);
    assert_eq!(
        ids(&get(&s, &format!("/api/v3/organizations/{ORG_ID}/gateways"), Some(USER_KEY)).1),
        ["gw-0004", "gw-0008"]
    );
    assert_eq!(
        ids(&get(&s, &format!("/api/v3/users/{USER_ID}/gateways"), Some(USER_KEY)).1).len(),
        6
    );
    // A gateway key and no key at all: 200 {}.
    assert_eq!(get(&s, "/api/v3/gateways", Some(GATEWAY_KEY)), (200, json!({})));
    assert_eq!(get(&s, "/api/v3/gateways", None), (200, json!({})));
    let (status, body) = get(&s, "/api/v3/users/someone-else/gateways", Some(USER_KEY));
    assert_eq!((status, error_name(&body)), (403, "pkg/auth/rights:no_user_rights".to_owned()));
    let (status, body) = get(&s, "/api/v3/organizations/other-org/gateways", Some(ORG_KEY));
    assert_eq!(
        (status, error_name(&body)),
        (403, "pkg/auth/rights:no_organization_rights".to_owned())
    );
    let (status, body) = get(&s, "/api/v3/gateways", Some(NO_LIST_KEY));
    assert_eq!(
        (status, error_name(&body)),
        (403, "pkg/auth/rights:insufficient_user_rights".to_owned())
    );
    // auth_info tells what a key belongs to.
    assert_eq!(
        get(&s, "/api/v3/auth_info", Some(GATEWAY_KEY)).1["api_key"]["entity_ids"]["gateway_ids"]["gateway_id"],
        "gw-0001"
    );
    assert_eq!(
        get(&s, "/api/v3/auth_info", Some(USER_KEY)).1["api_key"]["entity_ids"]["user_ids"]["user_id"],
        USER_ID
    );
    // One gateway: the full entry with the info right, the public-safe subset without.
    let (status, full) =
        get(&s, "/api/v3/gateways/gw-0001?field_mask=name,version_ids", Some(GATEWAY_KEY));
    assert_eq!(status, 200);
    assert!(full.get("version_ids").is_some());
    let (status, public) = get(
        &s,
        "/api/v3/gateways/gw-0001?field_mask=name,version_ids",
        Some(GATEWAY_STATUS_ONLY_KEY),
    );
    assert_eq!(status, 200);
    assert!(public.get("version_ids").is_none() && public.get("name").is_some());
    let (status, body) = get(&s, "/api/v3/gateways/gw-0002", Some(GATEWAY_KEY));
    assert_eq!((status, error_name(&body)), (403, "pkg/auth/rights:no_gateway_rights".to_owned()));
}

#[test]
fn refused_keys_get_the_spec_error_bodies() {
    let s = server(Role::Identity, &opts(2));
    let cases = [
        ("NOT-A-KEY", 400, 3, "pkg/auth:token"),
        (
            "NNSXS.UNKNOWNAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.SECRET",
            401,
            16,
            "pkg/identityserver:api_key_not_found",
        ),
        (
            "NNSXS.SIMUSERKEYAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.WRONGSECRET",
            401,
            16,
            "pkg/identityserver:invalid_authorization",
        ),
        ("Basic dXNlcjpwdw==", 401, 16, "pkg/identityserver:unsupported_authorization"),
        (EXPIRED_KEY, 401, 16, "pkg/identityserver:api_key_expired"),
    ];
    for (key, status, code, name) in cases {
        let (got, resp, body) = call(&s, "GET", "/api/v3/gateways", Some(key), "");
        assert_eq!(got, status, "{key}");
        assert_eq!(body["code"], code, "{key}");
        assert_eq!(error_name(&body), name, "{key}");
        assert!(
            body["message"].as_str().unwrap().starts_with(&format!("error:{name} (")),
            "{body}"
        );
        assert_eq!(body["details"][0]["@type"], "type.googleapis.com/ttn.lorawan.v3.ErrorDetails");
        assert_eq!(body["details"][0]["correlation_id"].as_str().unwrap().len(), 32);
        if status == 401 {
            assert!(
                resp.header("www-authenticate").unwrap().starts_with("error:pkg/identityserver:")
            );
        }
    }
    // Identity routes are not on the clusters, nor statistics on the Identity Server.
    let o = opts(2);
    let eu1 = cluster_of(&s, 0, &o);
    assert_eq!(
        get(&eu1, "/api/v3/gateways", Some(USER_KEY)),
        (404, json!({"code": 5, "message": "Not Found", "details": []}))
    );
    assert_eq!(get(&s, "/api/v3/gs/gateways/gw-0001/connection/stats", Some(USER_KEY)).0, 404);
    assert_eq!(call(&s, "POST", "/api/v3/gateways", Some(USER_KEY), "").0, 405);
}

#[test]
fn connection_states_and_counters() {
    let o = opts(10);
    let is = server(Role::Identity, &o);
    let eu1 = cluster_of(&is, 0, &o);
    let nam1 = cluster_of(&is, 1, &o);
    let stats = |s: &TtnServer, id: &str| {
        get(s, &format!("/api/v3/gs/gateways/{id}/connection/stats"), Some(USER_KEY))
    };

    // gw-0001 (index 0, eu1): connected UDP gateway with everything.
    let (status, s) = stats(&eu1, "gw-0001");
    assert_eq!(status, 200, "{s}");
    assert!(s["connected_at"].is_string() && s.get("disconnected_at").is_none());
    assert!(s["uplink_count"].is_string(), "64-bit counts are strings: {s}");
    assert_eq!(s["protocol"], "udp");
    assert_eq!(s["last_status"]["boot_time"], "0001-01-01T00:00:00Z");
    assert!(s["round_trip_times"]["median"].as_str().unwrap().ends_with('s'));
    assert_eq!(s["sub_bands"].as_array().unwrap().len(), 6);
    // Its statistics live on eu1 only.
    let (status, body) = stats(&nam1, "gw-0001");
    assert_eq!((status, error_name(&body)), (404, "pkg/gatewayserver:not_connected".to_owned()));
    assert_eq!(body["details"][0]["cause"]["name"], "not_found");

    // gw-0008 (index 7, nam1): just connected, every zero omitted.
    let (_, s) = stats(&nam1, "gw-0008");
    assert!(s.get("uplink_count").is_none() && s.get("round_trip_times").is_none(), "{s}");
    assert!(s["connected_at"].is_string());

    // gw-0009 (index 8, au1): disconnected, within the window; gw-0010: never connected.
    let au1 = cluster_of(&is, 2, &o);
    let (status, s) = stats(&au1, "gw-0009");
    assert_eq!(status, 200);
    assert!(s.get("connected_at").is_none() && s["disconnected_at"].is_string(), "{s}");
    let frozen = s["uplink_count"].clone();
    assert!(frozen.is_string());
    is.world.advance(Duration::from_secs(3600));
    assert_eq!(stats(&au1, "gw-0009").1["uplink_count"], frozen, "counters are frozen");
    assert_eq!(stats(&eu1, "gw-0010").0, 404);
    is.world.advance(Duration::from_secs(48 * 3600));
    assert_eq!(stats(&au1, "gw-0009").0, 404, "gone after the 48 h window");

    // Disconnect and reconnect: the counters restart at 0 (omitted).
    let before = stats(&eu1, "gw-0001").1;
    assert!(before["uplink_count"].is_string());
    is.control("disconnect", "gw-0001").unwrap();
    let after = stats(&eu1, "gw-0001").1;
    assert!(after.get("connected_at").is_none() && after["disconnected_at"].is_string());
    is.control("reconnect", "gw-0001").unwrap();
    let fresh = stats(&eu1, "gw-0001").1;
    assert!(fresh.get("uplink_count").is_none(), "{fresh}");
    is.control("advance", "600").unwrap();
    let grown = stats(&eu1, "gw-0001").1;
    assert_eq!(grown["uplink_count"], "10", "1 uplink a minute for gw-0001: {grown}");

    // Rights on the statistics call.
    let (status, body) =
        get(&eu1, "/api/v3/gs/gateways/gw-0004/connection/stats", Some(NO_STATUS_KEY));
    assert_eq!(
        (status, error_name(&body)),
        (403, "pkg/auth/rights:insufficient_gateway_rights".to_owned())
    );
    assert_eq!(body["details"][0]["attributes"]["missing"], json!(["RIGHT_GATEWAY_STATUS_READ"]));
    let (status, body) = get(&nam1, "/api/v3/gs/gateways/gw-0002/connection/stats", None);
    assert_eq!((status, error_name(&body)), (403, "pkg/auth/rights:no_gateway_rights".to_owned()));
    assert_eq!(get(&eu1, "/api/v3/gs/gateways/gw-0001/connection/stats", Some(GATEWAY_KEY)).0, 200);
    assert_eq!(
        get(&nam1, "/api/v3/gs/gateways/gw-0002/connection/stats", Some(GATEWAY_KEY)).0,
        403
    );
}

#[test]
fn batch_statistics_and_older_servers() {
    let o = opts(12);
    let is = server(Role::Identity, &o);
    let eu1 = cluster_of(&is, 0, &o);
    let path = "/api/v3/gs/gateways/connection/stats";
    let body = |ids: &[&str]| {
        json!({"gateway_ids": ids.iter().map(|i| json!({"gateway_id": i})).collect::<Vec<_>>()})
            .to_string()
    };
    // eu1 holds gw-0001, gw-0004, gw-0007, gw-0010 (never connected); gw-0002 is on nam1.
    let (status, _, reply) = call(
        &eu1,
        "POST",
        path,
        Some(USER_KEY),
        &body(&["gw-0001", "gw-0004", "gw-0010", "gw-0002"]),
    );
    assert_eq!(status, 200);
    let entries: Vec<&String> = reply["entries"].as_object().unwrap().keys().collect();
    assert_eq!(entries, ["gw-0001", "gw-0004"]);
    // A field mask as an object or a string.
    let masked =
        json!({"gateway_ids": [{"gateway_id": "gw-0001"}], "field_mask": {"paths": ["protocol"]}})
            .to_string();
    assert_eq!(
        call(&eu1, "POST", path, Some(USER_KEY), &masked).2,
        json!({"entries": {"gw-0001": {"protocol": "udp"}}})
    );
    let masked =
        json!({"gateway_ids": [{"gateway_id": "gw-0001"}], "field_mask": "protocol"}).to_string();
    assert_eq!(
        call(&eu1, "POST", path, Some(USER_KEY), &masked).2["entries"]["gw-0001"],
        json!({"protocol": "udp"})
    );
    assert_eq!(call(&eu1, "POST", path, Some(USER_KEY), &body(&["gw-0010"])).2, json!({}));

    let cases: [(&str, String, u16, &str); 5] = [
        (GATEWAY_KEY, body(&["gw-0001"]), 403, "pkg/identityserver:neither_user_nor_organization"),
        (ORG_KEY, body(&["gw-0001", "gw-0004"]), 403, "pkg/identityserver:insufficient_rights"),
        (NO_STATUS_KEY, body(&["gw-0001"]), 403, "pkg/identityserver:insufficient_rights"),
        (
            USER_KEY,
            body(&["gw-0001", "gw-9999"]),
            404,
            "pkg/identityserver:some_gateways_not_found",
        ),
        (USER_KEY, body(&[]), 400, "pkg/ttnpb:validation"),
    ];
    for (key, request, status, name) in cases {
        let (got, _, reply) = call(&eu1, "POST", path, Some(key), &request);
        assert_eq!((got, error_name(&reply).as_str()), (status, name), "{request}");
    }
    let many: Vec<String> = (0..101).map(|i| format!("gw-{i:04}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(call(&eu1, "POST", path, Some(USER_KEY), &body(&many)).0, 400);
    assert_eq!(call(&eu1, "GET", path, Some(USER_KEY), "").0, 405);

    // An older Gateway Server: the route does not exist.
    eu1.control("batch", "off").unwrap();
    let (status, _, reply) = call(&eu1, "POST", path, Some(USER_KEY), &body(&["gw-0001"]));
    assert_eq!((status, reply), (404, json!({"code": 5, "message": "Not Found", "details": []})));
    assert_eq!(get(&eu1, "/api/v3/gs/gateways/gw-0001/connection/stats", Some(USER_KEY)).0, 200);
}

#[test]
fn rate_limits_and_server_errors() {
    let o = opts(3);
    let is = server(Role::Identity, &o);
    let eu1 = cluster_of(&is, 0, &o);
    eu1.control("rate_limit", "0").unwrap();
    let (status, resp, body) =
        call(&eu1, "GET", "/api/v3/gs/gateways/gw-0001/connection/stats", Some(USER_KEY), "");
    assert_eq!((status, error_name(&body).as_str()), (429, "pkg/ratelimit:rate_limit_exceeded"));
    assert_eq!(body["code"], 8);
    assert_eq!(resp.header("x-rate-limit-retry"), Some("0"));
    assert_eq!(resp.header("x-rate-limit-limit"), Some("60"));
    eu1.control("rate_limit_alt", "7").unwrap();
    let (_, resp, _) =
        call(&eu1, "GET", "/api/v3/gs/gateways/gw-0001/connection/stats", Some(USER_KEY), "");
    assert_eq!(
        (resp.header("x-ratelimit-retry"), resp.header("x-rate-limit-retry")),
        (Some("7"), None)
    );
    eu1.control("rate_limit", "off").unwrap();
    eu1.control("error", "503").unwrap();
    let (status, body) = get(&eu1, "/api/v3/gs/gateways/gw-0001/connection/stats", Some(USER_KEY));
    assert_eq!((status, body["code"].clone()), (503, json!(14)));
    eu1.control("error", "off").unwrap();
    assert_eq!(get(&eu1, "/api/v3/gs/gateways/gw-0001/connection/stats", Some(USER_KEY)).0, 200);
    assert!(eu1.control("error", "404").is_err());
    assert!(eu1.control("disconnect", "gw-9999").is_err());
    assert!(eu1.control("nonsense", "1").is_err());
}

#[test]
fn timestamps_have_0_3_or_9_fraction_digits() {
    assert_eq!(world::timestamp(0, 0), "1970-01-01T00:00:00Z");
    assert_eq!(world::timestamp(1_730_099_564_318_204_117, 9), "2024-10-28T07:12:44.318204117Z");
    assert_eq!(world::timestamp(1_730_099_564_318_204_117, 3), "2024-10-28T07:12:44.318Z");
    let o = opts(2);
    let is = server(Role::Identity, &o);
    let nam1 = cluster_of(&is, 1, &o);
    // gw-0002 (index 1) uses milliseconds.
    let s = get(&nam1, "/api/v3/gs/gateways/gw-0002/connection/stats", Some(USER_KEY)).1;
    let connected = s["connected_at"].as_str().unwrap();
    assert_eq!(connected.len(), "2024-10-28T07:12:44.318Z".len(), "{connected}");
}

/// One raw HTTP/1.1 request over a socket; returns (status, body).
async fn http(url: &str, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_owned())
}

#[tokio::test]
async fn servers_on_separate_ports_count_per_endpoint_and_cluster() {
    let sim = TtnSim::start(opts(6)).await.unwrap();
    let mut urls: Vec<String> = sim.clusters.iter().map(|c| c.server.url()).collect();
    urls.push(sim.identity_url());
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 4, "one port per server");
    assert_eq!(
        sim.cluster_url_flags().first().map(|f| f.split('=').next().unwrap().to_owned()),
        Some("eu1.cloud.thethings.network".to_owned())
    );
    let (status, body) = http(
        &sim.identity_url(),
        "GET",
        "/api/v3/gateways?field_mask=name&limit=2&page=2",
        USER_KEY,
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let eu1 = sim.cluster("eu1").unwrap();
    let nam1 = sim.cluster("nam1").unwrap();
    let (status, _) = http(
        &eu1.server.url(),
        "GET",
        "/api/v3/gs/gateways/gw-0001/connection/stats",
        USER_KEY,
        "",
    )
    .await;
    assert_eq!(status, 200);
    let batch = json!({"gateway_ids": [{"gateway_id": "gw-0002"}]}).to_string();
    let (status, body) =
        http(&nam1.server.url(), "POST", "/api/v3/gs/gateways/connection/stats", USER_KEY, &batch)
            .await;
    assert_eq!(status, 200, "{body}");
    let counts = |s: &SimServer| -> BTreeMap<String, u64> { s.counters().snapshot() };
    assert_eq!(sim.identity.counters().get("ListGateways"), 1);
    assert_eq!(eu1.server.counters().get("GetGatewayConnectionStats"), 1);
    assert_eq!(
        eu1.server.counters().get("BatchGetGatewayConnectionStats"),
        0,
        "{:?}",
        counts(&eu1.server)
    );
    assert_eq!(nam1.server.counters().get("BatchGetGatewayConnectionStats"), 1);
    assert_eq!(sim.cluster_count("BatchGetGatewayConnectionStats"), 1);
    assert_eq!(sim.identity.counters().get("/api/v3/gateways"), 1);
}

#[test]
fn rate_profile_headers_on_every_answer_and_429_when_used_up() {
    let o = SimOptions { rate_limit_per_min: Some(3), ..opts(3) };
    let is = server(Role::Identity, &o);
    let eu1 = cluster_of(&is, 0, &o);
    let path = "/api/v3/gs/gateways/gw-0001/connection/stats";
    let mut available = Vec::new();
    for _ in 0..3 {
        let (status, resp, _) = call(&eu1, "GET", path, Some(USER_KEY), "");
        assert_eq!(status, 200);
        assert_eq!(resp.header("x-rate-limit-limit"), Some("3"));
        assert_eq!(resp.header("x-rate-limit-retry"), Some("0"));
        available.push(resp.header("x-rate-limit-available").unwrap().to_owned());
    }
    assert_eq!(available, ["2", "1", "0"]);
    let (status, resp, body) = call(&eu1, "GET", path, Some(USER_KEY), "");
    assert_eq!((status, error_name(&body).as_str()), (429, "pkg/ratelimit:rate_limit_exceeded"));
    assert_eq!(resp.header("x-rate-limit-available"), Some("0"));
    let retry: u64 = resp.header("x-rate-limit-retry").unwrap().parse().unwrap();
    assert!(retry <= 20, "{retry}");
    // Every server has its own bucket; the knob turns it off.
    assert_eq!(get(&is, "/api/v3/gateways", Some(USER_KEY)).0, 200);
    eu1.control("rate_profile", "off").unwrap();
    let (status, resp, _) = call(&eu1, "GET", path, Some(USER_KEY), "");
    assert_eq!((status, resp.header("x-rate-limit-limit")), (200, None));
    assert!(eu1.control("rate_profile", "0").is_err());
}

#[test]
fn batch_refusals_and_registry_changes() {
    let o = opts(6);
    let is = server(Role::Identity, &o);
    let eu1 = cluster_of(&is, 0, &o);
    let path = "/api/v3/gs/gateways/connection/stats";
    let body = |ids: &[&str]| {
        json!({"gateway_ids": ids.iter().map(|i| json!({"gateway_id": i})).collect::<Vec<_>>()})
            .to_string()
    };
    for (status, name) in [
        ("400", "pkg/ttnpb:validation"),
        ("403", "pkg/identityserver:insufficient_rights"),
        ("404", "pkg/identityserver:some_gateways_not_found"),
    ] {
        eu1.control("batch_refuse", &format!("gw-0004:{status}")).unwrap();
        let (got, _, reply) =
            call(&eu1, "POST", path, Some(USER_KEY), &body(&["gw-0001", "gw-0004"]));
        assert_eq!((got.to_string(), error_name(&reply)), (status.to_owned(), name.to_owned()));
        let (got, _, _) = call(&eu1, "POST", path, Some(USER_KEY), &body(&["gw-0001"]));
        assert_eq!(got, 200, "a batch without the gateway is answered");
    }
    eu1.control("batch_refuse", "off").unwrap();
    assert!(eu1.control("batch_refuse", "gw-0004:500").is_err());

    // A gateway added to eu1 is listed and connected; a removed one is gone.
    eu1.control("add", "eu1").unwrap();
    let (_, list) = get(&is, "/api/v3/gateways", Some(USER_KEY));
    assert_eq!(ids(&list).last().map(String::as_str), Some("gw-0007"));
    let (status, stats) = get(&eu1, "/api/v3/gs/gateways/gw-0007/connection/stats", Some(USER_KEY));
    assert_eq!(status, 200);
    assert!(stats["connected_at"].is_string(), "{stats}");
    eu1.control("remove", "gw-0004").unwrap();
    let (_, list) = get(&is, "/api/v3/gateways", Some(USER_KEY));
    assert!(!ids(&list).contains(&"gw-0004".to_owned()));
    let (status, _, reply) =
        call(&eu1, "POST", path, Some(USER_KEY), &body(&["gw-0001", "gw-0004"]));
    assert_eq!(
        (status, error_name(&reply).as_str()),
        (404, "pkg/identityserver:some_gateways_not_found")
    );
    assert!(eu1.control("remove", "gw-0004").is_err());
    assert!(eu1.control("add", "mars1").is_err());
}
