//! The agent's HTTP/websocket front in-process, with a real websocket client: snapshot on
//! connect, diffs in order, token / Origin / Host checks, client limits, slow clients dropped
//! without hurting the others. Every wait is bounded by a timeout.

#[allow(dead_code)]
#[path = "../src/agent/mod.rs"]
mod agent;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent::hub::Hub;
use agent::server::{self, Config, check_listen};
use agent::snapshot::{Collected, Part};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

const WAIT: Duration = Duration::from_secs(10);

fn parts(tag: &str, blob_len: usize) -> Collected {
    let mut c = Collected::new();
    c.insert(
        "iptables",
        Part::new(
            &json!({ "v4": { "text": format!("{tag}{}", "x".repeat(blob_len)) } }),
            tag.to_string(),
        ),
    );
    c.insert("errors", Part::new(&json!({}), "{}".into()));
    c
}

async fn start(cfg: impl FnOnce(&mut Config)) -> (SocketAddr, Arc<Hub>) {
    let hub = Hub::new(json!({"name": "test-node"}), parts("r1", 0));
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut c = Config::new(listen, None);
    cfg(&mut c);
    let (addr, fut) = server::bind(listen, hub.clone(), c).await.unwrap();
    tokio::spawn(fut);
    (addr, hub)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: String, headers: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            tungstenite::http::HeaderValue::from_str(v).unwrap(),
        );
    }
    timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
        .map(|(ws, _)| ws)
}

fn refused_status(r: Result<Ws, tungstenite::Error>) -> u16 {
    match r {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a websocket"),
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match timeout(WAIT, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match timeout(WAIT, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return t.as_str().to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// A raw HTTP/1.1 GET so the Host header is exactly what the test says.
async fn http_get(addr: SocketAddr, path: &str, host: &str, extra: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[tokio::test]
async fn snapshot_on_connect_then_diffs_in_order() {
    let (addr, hub) = start(|_| {}).await;
    let mut ws = connect(format!("ws://{addr}/ws"), &[]).await.unwrap();
    let snap = next_json(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["revision"], 1);
    assert_eq!(snap["node"]["name"], "test-node");
    assert_eq!(snap["iptables"]["v4"]["text"], "r1");

    let (status, body) = http_get(addr, "/snapshot", &format!("{addr}"), "").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), snap);

    assert_eq!(hub.apply(parts("r2", 0)), Some(2));
    assert_eq!(hub.apply(parts("r2", 0)), None);
    assert_eq!(hub.apply(parts("r3", 0)), Some(3));
    let d2 = next_json(&mut ws).await;
    let d3 = next_json(&mut ws).await;
    assert_eq!(
        (
            d2["type"].as_str(),
            d2["base"].as_u64(),
            d2["revision"].as_u64()
        ),
        (Some("diff"), Some(1), Some(2))
    );
    assert_eq!(d2["changed"], json!({"iptables": {"v4": {"text": "r2"}}}));
    assert_eq!(
        (d3["base"].as_u64(), d3["revision"].as_u64()),
        (Some(2), Some(3))
    );

    let (s, b) = http_get(addr, "/healthz", "localhost", "").await;
    assert_eq!((s, b.as_str()), (200, "ok\n"));
    let (s, b) = http_get(addr, "/version", "localhost", "").await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["snapshot_version"],
        1
    );
}

/// A message larger than a fragment goes out as several, each at most [`agent::wire::FRAGMENT`]
/// bytes (this client refuses any bigger frame), and reassembles byte-identical to what
/// `GET /snapshot` serves: the snapshot on connect and a diff. The text is non-ASCII and varied,
/// so fragment cuts fall where characters would split if cut by byte count.
#[tokio::test]
async fn big_messages_arrive_in_bounded_fragments_byte_identical_to_the_snapshot() {
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    let (addr, hub) = start(|_| {}).await;
    let text = |tag: &str| -> String {
        (0..100_000)
            .map(|i| {
                format!("-A KUBE-SVC-{i:x} -m comment --comment \"{tag}/é€😀{i}\" -j ACCEPT\n")
            })
            .collect()
    };
    let big = |tag: &str| {
        let mut c = Collected::new();
        c.insert(
            "iptables.v4",
            Part::new(&json!({ "text": text(tag) }), tag.to_string()),
        );
        c
    };
    assert_eq!(hub.apply(big("a")), Some(2));
    let config = WebSocketConfig::default()
        .max_frame_size(Some(agent::wire::FRAGMENT))
        .max_message_size(None);
    let (mut ws, _) = timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(
            format!("ws://{addr}/ws"),
            Some(config),
            false,
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let snap = next_text(&mut ws).await;
    assert!(
        snap.len() > 4 * agent::wire::FRAGMENT,
        "{} bytes",
        snap.len()
    );
    let (status, body) = http_get(addr, "/snapshot", "localhost", "").await;
    assert_eq!(status, 200);
    assert!(snap == body, "websocket and /snapshot texts differ");
    let v: Value = serde_json::from_str(&snap).unwrap();
    assert!(v["iptables"]["v4"]["text"] == text("a"));

    assert_eq!(hub.apply(big("b")), Some(3));
    let diff: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(diff["revision"], 3);
    assert!(diff["changed"]["iptables.v4"]["text"] == text("b"));
    let now: Value =
        serde_json::from_str(&http_get(addr, "/snapshot", "localhost", "").await.1).unwrap();
    assert!(now["iptables"]["v4"] == diff["changed"]["iptables.v4"]);
}

#[tokio::test]
async fn token_is_required_and_checked() {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (addr, _hub) = start(|c| *c = Config::new(listen, Some("s3cret-token"))).await;
    let url = format!("ws://{addr}/ws");
    assert_eq!(refused_status(connect(url.clone(), &[]).await), 401);
    assert_eq!(
        refused_status(connect(url.clone(), &[("authorization", "Bearer s3cret-tokem")]).await),
        401
    );
    assert_eq!(
        refused_status(connect(format!("{url}?token=s3cret"), &[]).await),
        401
    );
    let mut ws = connect(url.clone(), &[("authorization", "Bearer s3cret-token")])
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["revision"], 1);
    let mut ws = connect(format!("{url}?token=s3cret-token"), &[])
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["revision"], 1);

    let host = addr.to_string();
    assert_eq!(http_get(addr, "/snapshot", &host, "").await.0, 401);
    assert_eq!(
        http_get(addr, "/snapshot", &host, "Authorization: Bearer nope\r\n")
            .await
            .0,
        401
    );
    assert_eq!(
        http_get(
            addr,
            "/snapshot",
            &host,
            "Authorization: Bearer s3cret-token\r\n"
        )
        .await
        .0,
        200
    );
    // Liveness probes carry no node data and need no token.
    assert_eq!(http_get(addr, "/healthz", &host, "").await.0, 200);
}

#[tokio::test]
async fn browsers_from_other_origins_and_rebound_hosts_are_refused() {
    let (addr, _hub) = start(|c| c.allowed_origins = vec!["https://ui.example".into()]).await;
    let url = format!("ws://{addr}/ws");
    assert_eq!(
        refused_status(connect(url.clone(), &[("origin", "https://evil.example")]).await),
        403
    );
    // A look-alike of an allowed origin is not it.
    assert_eq!(
        refused_status(connect(url.clone(), &[("origin", "https://ui.example.evil")]).await),
        403
    );
    for ok in [
        "https://ui.example",
        "http://localhost:8080",
        "http://127.0.0.1:8080",
        "http://[::1]:3000",
    ] {
        let mut ws = connect(url.clone(), &[("origin", ok)]).await.unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "snapshot", "{ok}");
    }
    // DNS rebinding: evil.example resolved to 127.0.0.1 makes the browser send Host: evil.example.
    let (s, body) = http_get(addr, "/snapshot", "evil.example:9180", "").await;
    assert_eq!((s, body.as_str()), (403, "Host must be a loopback name\n"));
    assert_eq!(
        http_get(addr, "/snapshot", "localhost:9180", "").await.0,
        200
    );
    assert_eq!(http_get(addr, "/snapshot", "[::1]:9180", "").await.0, 200);
}

#[tokio::test]
async fn twenty_clients_all_get_every_diff() {
    let (addr, hub) = start(|_| {}).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(format!("ws://{addr}/ws"), &[]).await.unwrap());
    }
    for ws in &mut clients {
        assert_eq!(next_json(ws).await["revision"], 1);
    }
    assert_eq!(hub.apply(parts("r2", 0)), Some(2));
    let all = futures_util::future::join_all(clients.iter_mut().map(next_json)).await;
    for d in all {
        assert_eq!(
            (d["base"].as_u64(), d["revision"].as_u64()),
            (Some(1), Some(2))
        );
    }
}

#[tokio::test]
async fn client_limit_is_a_503() {
    let (addr, _hub) = start(|c| c.max_clients = 2).await;
    let url = format!("ws://{addr}/ws");
    let mut a = connect(url.clone(), &[]).await.unwrap();
    let _b = connect(url.clone(), &[]).await.unwrap();
    assert_eq!(refused_status(connect(url.clone(), &[]).await), 503);
    // A slot frees when a client leaves.
    next_json(&mut a).await;
    a.close(None).await.unwrap();
    drop(a);
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(ws) = connect(url.clone(), &[]).await {
            ok = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok.is_some(), "slot not freed within 2.5 s");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_the_others_carry_on() {
    let (addr, hub) = start(|c| c.send_timeout = Duration::from_millis(500)).await;
    let url = format!("ws://{addr}/ws");
    let mut fast = connect(url.clone(), &[]).await.unwrap();
    let mut slow = connect(url.clone(), &[]).await.unwrap();
    next_json(&mut fast).await;
    // 48 diffs of 1 MB: far more than the socket buffers between the agent and a client that
    // never reads, and more than the per-client backlog.
    const N: u64 = 48;
    for i in 2..=N + 1 {
        assert_eq!(hub.apply(parts(&format!("r{i}"), 1 << 20)), Some(i));
        let d = next_json(&mut fast).await;
        assert_eq!(d["revision"], i);
    }
    // The slow client now reads what was buffered: its stream ends before the last revision.
    let mut last = 0;
    let ended = timeout(WAIT, async {
        while let Some(m) = slow.next().await {
            match m {
                Ok(Message::Text(t)) => {
                    last = serde_json::from_str::<Value>(t.as_str()).unwrap()["revision"]
                        .as_u64()
                        .unwrap();
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "slow client was never dropped");
    assert!(
        last < N + 1,
        "slow client got everything (last revision {last})"
    );
    // And the fast one is still served.
    assert_eq!(hub.apply(parts("final", 0)), Some(N + 2));
    assert_eq!(next_json(&mut fast).await["revision"], N + 2);
}

#[test]
fn listen_rules() {
    let lo: SocketAddr = "127.0.0.1:9180".parse().unwrap();
    let lo6: SocketAddr = "[::1]:9180".parse().unwrap();
    let any: SocketAddr = "0.0.0.0:9180".parse().unwrap();
    // (listen, token, tls, insecure)
    assert!(check_listen(lo, false, false, false).is_ok());
    assert!(check_listen(lo6, false, false, false).is_ok());
    let e = check_listen(any, false, false, true).unwrap_err();
    assert!(e.contains("--token-file"), "{e}");
    // TLS does not replace the token: anyone could still read the node.
    let e = check_listen(any, false, true, false).unwrap_err();
    assert!(e.contains("--token-file"), "{e}");
    let e = check_listen(any, true, false, false).unwrap_err();
    assert!(e.contains("--tls-cert") && e.contains("--insecure"), "{e}");
    assert!(check_listen(any, true, true, false).is_ok());
    assert!(check_listen(any, true, false, true).is_ok());
}

/// What a client does with a diff: replace each named part (`a.b` is field b of object a).
fn apply_diff(snap: &mut Value, diff: &Value) {
    assert_eq!(diff["type"], "diff");
    assert_eq!(snap["revision"], diff["base"], "diff out of order");
    for (k, v) in diff["changed"].as_object().unwrap() {
        match k.split_once('.') {
            Some((a, b)) => snap[a][b] = v.clone(),
            None => snap[k.as_str()] = v.clone(),
        }
    }
    snap["revision"] = diff["revision"].clone();
}

async fn snapshot_now(addr: SocketAddr) -> Value {
    let (s, body) = http_get(addr, "/snapshot", "localhost", "").await;
    assert_eq!(s, 200);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_client_back_with_a_held_revision_gets_exactly_what_it_missed() {
    let (addr, hub) = start(|_| {}).await;
    let mut ws = connect(format!("ws://{addr}/ws"), &[]).await.unwrap();
    let mut seen = next_json(&mut ws).await;
    let instance = seen["instance"].as_str().unwrap().to_string();
    assert_eq!(instance.len(), 16, "{instance}");
    assert!(seen.get("resync").is_none());
    drop(ws);

    assert_eq!(hub.apply(parts("r2", 0)), Some(2));
    assert_eq!(hub.apply(parts("r3", 0)), Some(3));
    let url = format!("ws://{addr}/ws?since=1&instance={instance}");
    let mut ws = connect(url, &[]).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(
        (
            hello["type"].as_str(),
            hello["base"].as_u64(),
            hello["revision"].as_u64()
        ),
        (Some("resume"), Some(1), Some(3))
    );
    assert_eq!(hello["instance"], instance.as_str());
    for _ in 2..=3 {
        let d = next_json(&mut ws).await;
        assert_eq!(d["instance"], instance.as_str());
        apply_diff(&mut seen, &d);
    }
    // Old snapshot + missed diffs = the agent's current snapshot, field for field.
    assert_eq!(seen, snapshot_now(addr).await);
    // And the stream carries on live.
    assert_eq!(hub.apply(parts("r4", 0)), Some(4));
    let d = next_json(&mut ws).await;
    apply_diff(&mut seen, &d);
    assert_eq!(seen["iptables"]["v4"]["text"], "r4");

    // Up to date already: a resume with nothing in it.
    let url = format!("ws://{addr}/ws?since=4&instance={instance}");
    let mut ws = connect(url, &[]).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(
        (hello["type"].as_str(), hello["revision"].as_u64()),
        (Some("resume"), Some(4))
    );
    assert_eq!(hub.apply(parts("r5", 0)), Some(5));
    assert_eq!(next_json(&mut ws).await["base"], 4);
}

#[tokio::test]
async fn a_client_that_cannot_resume_gets_the_snapshot_marked_resync() {
    let (addr, hub) = start(|_| {}).await;
    let mut ws = connect(format!("ws://{addr}/ws"), &[]).await.unwrap();
    let instance = next_json(&mut ws).await["instance"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(hub.apply(parts("r2", 0)), Some(2));
    let now = snapshot_now(addr).await;

    let resync = async |query: String| {
        let mut ws = connect(format!("ws://{addr}/ws?{query}"), &[])
            .await
            .unwrap();
        let mut s = next_json(&mut ws).await;
        assert_eq!(s["type"], "snapshot", "{query}");
        let why = s.as_object_mut().unwrap().remove("resync");
        (why.and_then(|w| w.as_str().map(str::to_string)), s)
    };
    // Another agent process numbered revision 1 (a restart), or the client did not say which.
    let (why, s) = resync("since=1&instance=0123456789abcdef".into()).await;
    assert_eq!(why.as_deref(), Some("instance"));
    assert_eq!(s, now, "the resync snapshot is the current one");
    let (why, _) = resync("since=1".into()).await;
    assert_eq!(why.as_deref(), Some("instance"));
    // A revision this agent never made.
    let (why, _) = resync(format!("since=9&instance={instance}")).await;
    assert_eq!(why.as_deref(), Some("ahead"));
    // No `since`: a plain snapshot, no resync mark.
    assert_eq!(resync(String::new()).await.0, None);

    // More changes than the history holds: revision 1 is gone, the recent ones are not.
    let n = agent::hub::HISTORY_DIFFS as u64 + 2;
    for i in 3..=n + 2 {
        assert_eq!(hub.apply(parts(&format!("r{i}"), 0)), Some(i));
    }
    let (why, s) = resync(format!("since=1&instance={instance}")).await;
    assert_eq!(why.as_deref(), Some("expired"));
    assert_eq!(s["revision"], n + 2);
    let mut ws = connect(format!("ws://{addr}/ws?since={n}&instance={instance}"), &[])
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "resume");
    assert_eq!(next_json(&mut ws).await["revision"], n + 1);

    // A diff bigger than the history's byte budget is not kept, so nothing before it resumes;
    // revisions after it do.
    let big = n + 3;
    assert_eq!(
        hub.apply(parts("big", agent::hub::HISTORY_BYTES + 1)),
        Some(big)
    );
    assert_eq!(hub.apply(parts("after", 0)), Some(big + 1));
    let (why, _) = resync(format!("since={}&instance={instance}", big - 1)).await;
    assert_eq!(why.as_deref(), Some("expired"));
    let mut ws = connect(
        format!("ws://{addr}/ws?since={big}&instance={instance}"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "resume");
    let d = next_json(&mut ws).await;
    assert_eq!(d["changed"]["iptables"]["v4"]["text"], "after");

    // A malformed revision is bad input, refused before the upgrade.
    assert_eq!(
        refused_status(connect(format!("ws://{addr}/ws?since=abc"), &[]).await),
        400
    );
}

/// A self-signed certificate for `localhost` / 127.0.0.1 written as PEM files, generated here
/// (rcgen) so no key material lives in the repository.
fn cert_files(tag: &str) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("psa-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

/// A TLS websocket client that trusts exactly `ca_der`.
async fn connect_tls(
    addr: SocketAddr,
    ca_der: &[u8],
    path: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    String,
> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake in time")
    .map_err(|e| e.to_string())?;
    let url = format!("wss://localhost:{}{path}", addr.port());
    timeout(WAIT, tokio_tungstenite::client_async(url, tls))
        .await
        .expect("websocket handshake in time")
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn tls_serves_wss_with_the_given_certificate_and_nothing_in_clear() {
    let (cert, key, der) = cert_files("ok");
    let tls = server::tls_config(&cert, &key).unwrap();
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (addr, hub) = start(|c| {
        *c = Config::new(listen, Some("tls-token"));
        c.tls = Some(tls);
    })
    .await;
    let mut ws = connect_tls(addr, &der, "/ws?token=tls-token")
        .await
        .unwrap();
    let snap = {
        let m = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        serde_json::from_str::<Value>(m.to_text().unwrap()).unwrap()
    };
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(hub.apply(parts("r2", 0)), Some(2));
    let m = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(m.to_text().unwrap()).unwrap()["revision"],
        2
    );
    // The token is still required over TLS.
    let e = connect_tls(addr, &der, "/ws").await.unwrap_err();
    assert!(e.contains("401"), "{e}");
    // A client that does not trust this certificate gets no connection.
    let (_, _, other) = cert_files("other");
    assert!(
        connect_tls(addr, &other, "/ws?token=tls-token")
            .await
            .is_err()
    );
    // Clear-text websocket on the TLS port: no upgrade (the server waits for a ClientHello).
    let plain = timeout(
        Duration::from_secs(1),
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token=tls-token")),
    )
    .await;
    assert!(!matches!(plain, Ok(Ok(_))), "clear text was served");
    // A client stuck mid-handshake does not block others.
    let _stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(connect_tls(addr, &der, "/ws?token=tls-token").await.is_ok());
    let _ = std::fs::remove_dir_all(cert.parent().unwrap());
}

#[test]
fn bad_tls_files_are_named_in_the_error() {
    let (cert, key, _) = cert_files("bad");
    let dir = cert.parent().unwrap().to_path_buf();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").unwrap();
    let e = server::tls_config(&garbage, &key).unwrap_err();
    assert!(e.contains("--tls-cert") && e.contains("garbage.pem"), "{e}");
    let e = server::tls_config(&cert, &garbage).unwrap_err();
    assert!(e.contains("--tls-key") && e.contains("garbage.pem"), "{e}");
    let missing = dir.join("missing.pem");
    let e = server::tls_config(&missing, &key).unwrap_err();
    assert!(e.contains("missing.pem"), "{e}");
    // A key that does not belong to the certificate.
    let (_, other_key, _) = cert_files("bad-other");
    let e = server::tls_config(&cert, &other_key).unwrap_err();
    assert!(e.contains("--tls-cert/--tls-key"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(other_key.parent().unwrap());
}
