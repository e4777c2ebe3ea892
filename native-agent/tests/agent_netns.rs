//! The agent binary against a real kernel: a kube-proxy ruleset loaded into a network namespace
//! this test creates (and deletes on every exit path), read back over a real websocket; a rule
//! change arriving as the next revision at 20 clients at once. Plus the CLI's refusals.
//! The kernel parts need root and `ip netns`; without them they say SKIPPED.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

const WAIT: Duration = Duration::from_secs(10);

fn proxyscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proxyscope"))
}

fn can_make_netns() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    root && Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A namespace only this test uses, deleted when dropped (also when an assertion panics).
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "psa-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name], None);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"], None);
        ns
    }
    fn exec(&self, cmd: &[&str], stdin: Option<&str>) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.0];
        full.extend_from_slice(cmd);
        sh(&full, stdin)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(cmd: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The agent process, killed when dropped.
struct Agent {
    child: Child,
    addr: String,
}

impl Agent {
    fn start(args: &[&str]) -> Agent {
        Agent::start_with_scheme(args, "ws")
    }

    fn start_with_scheme(args: &[&str], scheme: &str) -> Agent {
        let mut child = proxyscope()
            .arg("agent")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start agent");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut agent = Agent {
            child,
            addr: String::new(),
        };
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        agent.addr = line
            .trim()
            .strip_prefix(&format!("listening on {scheme}://"))
            .and_then(|s| s.strip_suffix("/ws"))
            .unwrap_or_else(|| panic!("agent did not start: {line:?}"))
            .to_string();
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, bearer: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
        .map(|(ws, _)| ws)
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

/// Built-in chains of each table as the kernel registers them (iptable_filter: INPUT, FORWARD,
/// OUTPUT; iptable_nat: PREROUTING, INPUT, OUTPUT, POSTROUTING); iptables-save lists them even
/// when kube-proxy's payload does not mention them.
fn builtin_chains(table: &str) -> usize {
    match table {
        "filter" => 3,
        "nat" => 4,
        "mangle" | "raw" => 5,
        other => panic!("table {other} not expected in kube-proxy's payload"),
    }
}

fn without_comments(save: &str) -> String {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_shows_the_namespace_rules_and_streams_a_change() {
    if !can_make_netns() {
        eprintln!("SKIPPED agent netns test: needs root and `ip netns`");
        return;
    }
    let ns = Netns::new();
    // kube-proxy creates its nfacct counters before writing rules that use `-m nfacct`.
    for name in [
        "ct_state_invalid_dropped_pkts",
        "localhost_nps_accepted_pkts",
    ] {
        ns.exec(&["nfacct", "add", name], None);
    }
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo.yaml");
    let out = proxyscope()
        .args(["rules", "--mode", "iptables", demo])
        .output()
        .unwrap();
    assert!(out.status.success());
    let payload = String::from_utf8(out.stdout).unwrap();
    ns.exec(&["iptables-restore"], Some(&payload));

    // Expectations counted from the payload we loaded, not from the agent.
    let rules_loaded = payload.lines().filter(|l| l.starts_with("-A ")).count();
    let tables: Vec<&str> = payload
        .lines()
        .filter_map(|l| l.strip_prefix('*'))
        .collect();
    let chains_expected = payload.lines().filter(|l| l.starts_with(':')).count()
        + tables.iter().map(|t| builtin_chains(t)).sum::<usize>();
    let kernel_save = ns.exec(&["iptables-save"], None);

    let agent = Agent::start(&[
        "--netns",
        &ns.0,
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "200ms",
    ]);
    let url = format!("ws://{}/ws", agent.addr);
    let mut main = connect(&url, None).await.unwrap();
    let snap = next_json(&mut main).await;
    let v4 = &snap["iptables"]["v4"];
    assert_eq!(snap["errors"], serde_json::json!({}), "{}", snap["errors"]);
    assert_eq!(v4["diagnostics"], serde_json::json!([]));
    assert_eq!(v4["parsed_rules"], rules_loaded);
    assert_eq!(v4["chains"], chains_expected);
    assert_eq!(v4["tables"], tables.len());
    assert_eq!(
        without_comments(v4["text"].as_str().unwrap()),
        without_comments(&kernel_save)
    );
    let version = sh(&["iptables", "-V"], None);
    if version.contains("nf_tables") {
        assert_eq!(v4["backend"], "nf_tables");
        if snap["nft"].is_object() {
            let t = &snap["nft"]["tables"];
            assert!(
                t.as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["family"] == "ip" && t["name"] == "nat"),
                "{t}"
            );
        }
    }
    assert_eq!(snap["node"]["netns"], ns.0.as_str());
    let lo = snap["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "lo")
        .expect("lo listed");
    assert!(
        lo["addresses"]
            .as_array()
            .unwrap()
            .contains(&"127.0.0.1/8".into())
    );
    // A fresh namespace has no connections yet.
    assert_eq!(snap["conntrack"]["total"], 0);

    let rev = snap["revision"].as_u64().unwrap();
    let mut others = Vec::new();
    for _ in 0..20 {
        let mut ws = connect(&url, None).await.unwrap();
        let s = next_json(&mut ws).await;
        assert_eq!(s["revision"], rev);
        others.push(ws);
    }

    ns.exec(
        &[
            "iptables",
            "-t",
            "filter",
            "-A",
            "KUBE-FIREWALL",
            "-s",
            "192.0.2.1/32",
            "-j",
            "DROP",
        ],
        None,
    );
    let d = next_json(&mut main).await;
    assert_eq!(d["type"], "diff");
    assert_eq!(
        (d["base"].as_u64(), d["revision"].as_u64()),
        (Some(rev), Some(rev + 1))
    );
    let new_v4 = &d["changed"]["iptables.v4"];
    assert!(
        new_v4["text"]
            .as_str()
            .unwrap()
            .contains("-A KUBE-FIREWALL -s 192.0.2.1/32 -j DROP"),
        "{new_v4}"
    );
    assert_eq!(new_v4["parsed_rules"], rules_loaded + 1);
    let diffs = futures_util::future::join_all(others.iter_mut().map(next_json)).await;
    for o in diffs {
        assert_eq!(o["revision"], rev + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_through_a_service_shows_its_dnat_target() {
    if !can_make_netns() {
        eprintln!("SKIPPED agent conntrack test: needs root and `ip netns`");
        return;
    }
    let ns = Netns::new();
    for name in [
        "ct_state_invalid_dropped_pkts",
        "localhost_nps_accepted_pkts",
    ] {
        ns.exec(&["nfacct", "add", name], None);
    }
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo.yaml");
    let out = proxyscope()
        .args(["rules", "--mode", "iptables", demo])
        .output()
        .unwrap();
    ns.exec(
        &["iptables-restore"],
        Some(&String::from_utf8(out.stdout).unwrap()),
    );
    // The node: 10.0.0.1 on the Pod network (a veth whose peer answers nothing, not even ARP),
    // the Service range routed there, and kube-proxy's jump for locally generated traffic.
    ns.exec(
        &[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
        None,
    );
    ns.exec(&["ip", "addr", "add", "10.0.0.1/24", "dev", "v0"], None);
    ns.exec(&["ip", "link", "set", "v0", "up"], None);
    ns.exec(&["ip", "link", "set", "v1", "up"], None);
    ns.exec(&["ip", "route", "add", "10.96.0.0/12", "dev", "v0"], None);
    ns.exec(
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ],
        None,
    );

    let agent = Agent::start(&[
        "--netns",
        &ns.0,
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "200ms",
    ]);
    let mut ws = connect(&format!("ws://{}/ws", agent.addr), None)
        .await
        .unwrap();
    let snap = next_json(&mut ws).await;
    assert_eq!(snap["conntrack"]["total"], 0);

    // A TCP connect to the ClusterIP: the SYN goes out unanswered, leaving a SYN_SENT entry.
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "timeout",
            "1",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/10.104.14.67/80",
        ])
        .status();

    // demo.yaml's my-service:http has endpoints 10.0.0.2-4 port 80 (see its KUBE-SEP- rules).
    let endpoints = ["10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"];
    let deadline = tokio::time::Instant::now() + WAIT;
    let entry = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no conntrack entry reached the client"
        );
        let d = next_json(&mut ws).await;
        let Some(entries) = d["changed"]["conntrack"]["entries"].as_array() else {
            continue;
        };
        if let Some(e) = entries
            .iter()
            .find(|e| e["orig"]["dst"] == "10.104.14.67" && e["orig"]["dport"] == 80)
        {
            break e.clone();
        }
    };
    let dnat = entry["dnat"].as_str().unwrap_or_default();
    assert!(endpoints.contains(&dnat), "{entry}");
    assert_eq!(entry["proto"], "tcp");
    assert_eq!(entry["state"], "SYN_SENT");
    assert!(
        entry["flags"]
            .as_array()
            .unwrap()
            .contains(&"UNREPLIED".into()),
        "{entry}"
    );
    // Pod-network source (10.0.0.0/16 is the cluster CIDR): KUBE-MARK-MASQ skipped, no SNAT.
    assert_eq!(entry["orig"]["src"], "10.0.0.1");
    assert!(entry.get("snat").is_none(), "{entry}");
}

#[tokio::test]
async fn a_wrong_token_is_refused_by_the_running_agent() {
    let dir = std::env::temp_dir().join(format!("psa-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "correct-horse\n").unwrap();
    let agent = Agent::start(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        file.to_str().unwrap(),
        "--interval",
        "30s",
    ]);
    let url = format!("ws://{}/ws", agent.addr);
    match connect(&url, Some("battery-staple")).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 401),
        other => panic!("wrong token was not refused: {:?}", other.map(|_| ())),
    }
    let mut ws = connect(&url, Some("correct-horse")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restarted agent numbers revisions from 1 again: a client coming back with the old
/// instance id must be told to resync, never resumed onto the new numbering.
#[tokio::test]
async fn after_an_agent_restart_a_returning_client_resyncs() {
    let args = ["--listen", "127.0.0.1:0", "--interval", "30s"];
    let first = Agent::start(&args);
    let mut ws = connect(&format!("ws://{}/ws", first.addr), None)
        .await
        .unwrap();
    let snap = next_json(&mut ws).await;
    let (old, rev) = (
        snap["instance"].as_str().unwrap().to_string(),
        snap["revision"].as_u64().unwrap(),
    );
    // The same process resumes the client.
    let back = format!("since={rev}&instance={old}");
    let mut ws = connect(&format!("ws://{}/ws?{back}", first.addr), None)
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "resume");
    drop(ws);
    drop(first);

    let second = Agent::start(&args);
    let mut ws = connect(&format!("ws://{}/ws?{back}", second.addr), None)
        .await
        .unwrap();
    let s = next_json(&mut ws).await;
    assert_eq!(
        (s["type"].as_str(), s["resync"].as_str()),
        (Some("snapshot"), Some("instance"))
    );
    assert_ne!(s["instance"], old.as_str());
    assert_eq!(s["revision"], 1);
}

/// The binary on a non-loopback address with a token and TLS: no --insecure needed, `wss://`
/// announced, and a client trusting the certificate (generated here) gets the snapshot.
#[tokio::test]
async fn the_agent_serves_wss_on_a_non_loopback_address() {
    let dir = std::env::temp_dir().join(format!("psa-tls-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key, tok) = (dir.join("c.pem"), dir.join("k.pem"), dir.join("t"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(&tok, "tls-bin-token").unwrap();
    let agent = Agent::start_with_scheme(
        &[
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            tok.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--interval",
            "30s",
        ],
        "wss",
    );
    let port: u16 = agent.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut ws, _) = timeout(
        WAIT,
        tokio_tungstenite::client_async(
            format!("wss://localhost:{port}/ws?token=tls-bin-token"),
            tls,
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let m = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    let snap: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
    assert_eq!(snap["type"], "snapshot");
    let _ = std::fs::remove_dir_all(&dir);
}

fn refused(args: &[&str]) -> String {
    let out = proxyscope().arg("agent").args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unsafe_or_bad_flags_are_bad_input() {
    let e = refused(&["--listen", "0.0.0.0:0"]);
    assert!(e.contains("--token-file"), "{e}");
    let e = refused(&[
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        "/nonexistent/psa-token",
    ]);
    assert!(e.contains("/nonexistent/psa-token"), "{e}");
    let dir = std::env::temp_dir().join(format!("psa-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tok = dir.join("token");
    std::fs::write(&tok, "t").unwrap();
    let e = refused(&[
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        tok.to_str().unwrap(),
    ]);
    assert!(e.contains("TLS") && e.contains("--insecure"), "{e}");
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let e = refused(&["--token-file", empty.to_str().unwrap()]);
    assert!(e.contains("empty"), "{e}");
    let e = refused(&[
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        tok.to_str().unwrap(),
        "--tls-cert",
        "/nonexistent/psa-cert.pem",
        "--tls-key",
        "/nonexistent/psa-key.pem",
    ]);
    assert!(e.contains("/nonexistent/psa-cert.pem"), "{e}");
    // A certificate without its key (and the reverse) is a usage error.
    let e = refused(&["--tls-cert", "/nonexistent/psa-cert.pem"]);
    assert!(e.contains("--tls-key"), "{e}");
    let e = refused(&["--interval", "10ms"]);
    assert!(e.contains("100ms"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
