//! Kubernetes context: watch events folded into the store, chains named by Service, drift
//! between the API objects and a node's rules, and the list + watch client against a small fake
//! API server (axum) that serves both resources and streams watch events the test controls.
//!
//! Chain-name goldens are kube-proxy's hash computed independently of our code:
//! `base32(sha256("default/my-service:http" + "tcp"))[:16]` = I37Z43XJW6BD4TLV, and with the
//! endpoint `ip:port` appended: 10.0.0.2:80 → YWRVH2FWH65NLCRN, 10.0.0.3:80 → X4524Q7J2DDHSIHR,
//! 10.0.0.4:80 → XGOX6DPSS3YBRERL (Python's hashlib + base64.b32encode).

#[allow(dead_code)]
#[path = "../src/agent/mod.rs"]
mod agent;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::kube::{NodeSide, Resource, Store, WatchOutcome, client, context};
use serde_json::{Value, json};

const SVC: &str = "KUBE-SVC-I37Z43XJW6BD4TLV";
const SEP2: &str = "KUBE-SEP-YWRVH2FWH65NLCRN";
const SEP3: &str = "KUBE-SEP-X4524Q7J2DDHSIHR";
const SEP4: &str = "KUBE-SEP-XGOX6DPSS3YBRERL";

/// examples/demo.yaml's Service and EndpointSlice as a list response has them (no
/// apiVersion/kind on items).
fn demo_objects() -> (Vec<Value>, Vec<Value>) {
    let text = include_str!("../../examples/demo.yaml");
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).unwrap();
    let strip = |mut v: Value| {
        let m = v.as_object_mut().unwrap();
        m.remove("apiVersion");
        m.remove("kind");
        v
    };
    let of = |k: &str| {
        docs.iter()
            .filter(|d| d["kind"] == k)
            .cloned()
            .map(strip)
            .collect::<Vec<_>>()
    };
    (of("Service"), of("EndpointSlice"))
}

fn demo_store() -> Store {
    let (svcs, slices) = demo_objects();
    let mut s = Store::default();
    s.replace(Resource::Services, svcs);
    s.replace(Resource::EndpointSlices, slices);
    s
}

/// The nat rules kube-proxy writes for demo.yaml's my-service, written by hand in kube-proxy's
/// layout (comments and the masquerade rule left out: drift does not look at them).
fn node_nat() -> String {
    format!(
        "*nat
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:{SVC} - [0:0]
:{SEP2} - [0:0]
:{SEP3} - [0:0]
:{SEP4} - [0:0]
-A KUBE-SERVICES -d 10.104.14.67/32 -p tcp -m tcp --dport 80 -j {SVC}
-A {SVC} -m statistic --mode random --probability 0.33333333349 -j {SEP2}
-A {SVC} -m statistic --mode random --probability 0.50000000000 -j {SEP3}
-A {SVC} -j {SEP4}
-A {SEP2} -s 10.0.0.2/32 -j KUBE-MARK-MASQ
-A {SEP2} -p tcp -m tcp -j DNAT --to-destination 10.0.0.2:80
-A {SEP3} -s 10.0.0.3/32 -j KUBE-MARK-MASQ
-A {SEP3} -p tcp -m tcp -j DNAT --to-destination 10.0.0.3:80
-A {SEP4} -s 10.0.0.4/32 -j KUBE-MARK-MASQ
-A {SEP4} -p tcp -m tcp -j DNAT --to-destination 10.0.0.4:80
COMMIT
"
    )
}

fn interfaces() -> Value {
    json!([
        {"name": "lo", "addresses": ["127.0.0.1/8"]},
        {"name": "eth0", "addresses": ["192.168.0.2/24"]},
        {"name": "cni0", "addresses": ["10.0.0.1/24"]},
    ])
}

fn ctx_iptables(store: &Store, nat: &str) -> Value {
    let ifs = interfaces();
    context(
        store,
        &NodeSide {
            node_name: "node-1",
            interfaces: &ifs,
            iptables_v4: Some(nat),
            iptables_v6: None,
            ipvs: None,
        },
    )
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn chains_are_named_by_their_service_and_a_faithful_node_has_no_drift() {
    let c = ctx_iptables(&demo_store(), &node_nat());
    assert_eq!(c["synced"], true);
    assert_eq!(
        (c["services"].as_u64(), c["endpointslices"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(c["chains"][SVC], "default/my-service:http");
    assert_eq!(c["chains"][SEP3], "default/my-service:http → 10.0.0.3:80");
    assert_eq!(
        c["drift"],
        json!({"missing": [], "extra": [], "stale": []}),
        "{c}"
    );
}

#[test]
fn missing_extra_and_stale_chains_are_found() {
    let store = demo_store();
    // The node never got endpoint 10.0.0.4: its chain and the jump to it are absent.
    let nat: String = node_nat()
        .lines()
        .filter(|l| !l.contains(SEP4))
        .map(|l| format!("{l}\n"))
        .collect();
    // A Service deleted from the API whose chain stayed, and an endpoint chain pointing at an
    // old Pod address.
    let nat = nat
        .replace(
            "COMMIT",
            ":KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-SEP-BBBBBBBBBBBBBBBB\nCOMMIT",
        )
        .replace("--to-destination 10.0.0.2:80", "--to-destination 10.0.0.9:80");
    let c = ctx_iptables(&store, &nat);
    let d = &c["drift"];
    assert_eq!(names(&d["missing"]), [SEP4]);
    assert_eq!(
        d["missing"][0]["service"],
        "default/my-service:http → 10.0.0.4:80"
    );
    assert_eq!(names(&d["extra"]), ["KUBE-SVC-AAAAAAAAAAAAAAAA"]);
    assert!(d["extra"][0]["service"].is_null());
    let mut stale = names(&d["stale"]);
    stale.sort();
    assert_eq!(stale, [SEP2, SVC]);
    let sep2 = d["stale"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == SEP2)
        .unwrap();
    assert_eq!(
        sep2["detail"],
        "node: DNAT to 10.0.0.9:80; API: DNAT to 10.0.0.2:80"
    );
}

#[test]
fn ipvs_drift_shows_a_weight_zero_server_that_never_drained() {
    let store = demo_store();
    // What kube-proxy's IPVS proxier programs for my-service (rr, masquerading, weight 1), plus
    // 10.0.0.9: at weight 0 (graceful termination began, the endpoint is gone) and 10.0.0.8 at
    // weight 1; 10.0.0.4 is missing.
    let ipvs = "-A -t 10.104.14.67:80 -s rr
-a -t 10.104.14.67:80 -r 10.0.0.2:80 -m -w 1
-a -t 10.104.14.67:80 -r 10.0.0.3:80 -m -w 1
-a -t 10.104.14.67:80 -r 10.0.0.9:80 -m -w 0
-a -t 10.104.14.67:80 -r 10.0.0.8:80 -m -w 1
-A -u 10.96.0.10:53 -s rr
";
    let ifs = interfaces();
    let c = context(
        &store,
        &NodeSide {
            node_name: "node-1",
            interfaces: &ifs,
            iptables_v4: None,
            iptables_v6: None,
            ipvs: Some(ipvs),
        },
    );
    let d = &c["drift"];
    assert_eq!(names(&d["stale"]), ["TCP 10.104.14.67:80 -> 10.0.0.9:80"]);
    assert!(
        d["stale"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("weight 0")
    );
    assert_eq!(
        names(&d["extra"]),
        ["TCP 10.104.14.67:80 -> 10.0.0.8:80", "UDP 10.96.0.10:53"]
    );
    assert_eq!(names(&d["missing"]), ["TCP 10.104.14.67:80 -> 10.0.0.4:80"]);
}

#[test]
fn watch_events_update_the_store() {
    let mut s = demo_store();
    let g = s.generation;
    let svc = |name: &str, rv: &str| {
        json!({"metadata": {"name": name, "namespace": "default", "resourceVersion": rv,
                            "managedFields": [{"manager": "kubectl"}]},
               "spec": {"clusterIP": "10.96.5.5", "ports": [{"port": 80}]}})
    };
    let ev = |t: &str, o: Value| json!({"type": t, "object": o});
    assert_eq!(
        s.event(Resource::Services, &ev("ADDED", svc("web", "7"))),
        Ok(WatchOutcome::Continue(Some("7".into())))
    );
    let stored = &s.objects[&Resource::Services]["default/web"];
    assert_eq!(stored["kind"], "Service");
    assert!(stored["metadata"].get("managedFields").is_none());
    assert!(s.generation > g);
    assert_eq!(
        s.event(Resource::Services, &ev("DELETED", svc("web", "8"))),
        Ok(WatchOutcome::Continue(Some("8".into())))
    );
    assert!(!s.objects[&Resource::Services].contains_key("default/web"));
    let g = s.generation;
    let bookmark = json!({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}});
    assert_eq!(
        s.event(Resource::Services, &bookmark),
        Ok(WatchOutcome::Continue(Some("9".into())))
    );
    assert_eq!(s.generation, g);
    let gone =
        json!({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}});
    assert_eq!(s.event(Resource::Services, &gone), Ok(WatchOutcome::Relist));
    let other = json!({"type": "ERROR", "object": {"code": 500, "message": "boom"}});
    assert!(
        s.event(Resource::Services, &other)
            .unwrap_err()
            .contains("boom")
    );
    assert!(
        s.event(Resource::Services, &json!({"type": "ADDED"}))
            .is_err()
    );
}

/// The fake API server: list answers from `objects`, watch streams what the test sends.
struct Fake {
    objects: Mutex<Vec<(Resource, Vec<Value>)>>,
    watchers: Mutex<Vec<(Resource, tokio::sync::mpsc::UnboundedSender<String>)>>,
    lists: AtomicUsize,
}

async fn fake_api() -> (SocketAddr, Arc<Fake>) {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let (svcs, slices) = demo_objects();
    let fake = Arc::new(Fake {
        objects: Mutex::new(vec![
            (Resource::Services, svcs),
            (Resource::EndpointSlices, slices),
        ]),
        watchers: Mutex::new(Vec::new()),
        lists: AtomicUsize::new(0),
    });
    async fn serve(
        r: Resource,
        fake: Arc<Fake>,
        headers: HeaderMap,
        q: std::collections::HashMap<String, String>,
    ) -> axum::response::Response {
        if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some("Bearer api-token") {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if q.contains_key("watch") {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            fake.watchers.lock().unwrap().push((r, tx));
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                let line = rx.recv().await?;
                Some((Ok::<_, std::io::Error>(format!("{line}\n")), rx))
            });
            return axum::body::Body::from_stream(stream).into_response();
        }
        fake.lists.fetch_add(1, Ordering::SeqCst);
        let items = fake
            .objects
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| *k == r)
            .map(|(_, v)| v.clone())
            .unwrap();
        let body = json!({"kind": "List", "metadata": {"resourceVersion": "100"}, "items": items});
        ([("content-type", "application/json")], body.to_string()).into_response()
    }
    let app = axum::Router::new()
        .route(
            Resource::Services.path(),
            axum::routing::get(
                |State(f): State<Arc<Fake>>, h: HeaderMap, Query(q)| async move {
                    serve(Resource::Services, f, h, q).await
                },
            ),
        )
        .route(
            Resource::EndpointSlices.path(),
            axum::routing::get(
                |State(f): State<Arc<Fake>>, h: HeaderMap, Query(q)| async move {
                    serve(Resource::EndpointSlices, f, h, q).await
                },
            ),
        )
        .with_state(fake.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, fake)
}

fn kubeconfig(dir: &std::path::Path, server: &str, user: &str) -> std::path::PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1
kind: Config
current-context: test
contexts:
- name: test
  context: {{cluster: fake, user: me}}
clusters:
- name: fake
  cluster: {{server: \"{server}\"}}
users:
- name: me
  user: {user}
"
        ),
    )
    .unwrap();
    p
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn list_then_watch_against_a_fake_api_server() {
    let (addr, fake) = fake_api().await;
    let dir = std::env::temp_dir().join(format!("psa-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = client::from_kubeconfig(&kubeconfig(
        &dir,
        &format!("http://{addr}"),
        "{token: api-token}",
    ))
    .unwrap();
    let store = Arc::new(Mutex::new(Store::default()));
    let mut tasks = Vec::new();
    for r in Resource::ALL {
        tasks.push(tokio::spawn(client::run(
            creds.clone(),
            r,
            store.clone(),
            Duration::from_millis(100),
        )));
    }
    until("both lists", || store.lock().unwrap().synced.len() == 2).await;
    until("both watches", || fake.watchers.lock().unwrap().len() == 2).await;
    let send = |r: Resource, line: Value| {
        for (k, tx) in fake.watchers.lock().unwrap().iter() {
            if *k == r {
                let _ = tx.send(line.to_string());
            }
        }
    };
    let web = json!({"metadata": {"name": "web", "namespace": "prod", "resourceVersion": "101"},
                     "spec": {"clusterIP": "10.96.7.7", "ports": [{"port": 443, "protocol": "TCP"}]}});
    send(Resource::Services, json!({"type": "ADDED", "object": web}));
    until("the watched Service", || {
        store.lock().unwrap().objects[&Resource::Services].contains_key("prod/web")
    })
    .await;
    send(
        Resource::Services,
        json!({"type": "DELETED", "object": web}),
    );
    until("the deletion", || {
        !store.lock().unwrap().objects[&Resource::Services].contains_key("prod/web")
    })
    .await;
    // The server forgot our resourceVersion: the client lists again.
    let lists = fake.lists.load(Ordering::SeqCst);
    send(
        Resource::EndpointSlices,
        json!({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}),
    );
    until("a relist", || fake.lists.load(Ordering::SeqCst) > lists).await;
    assert!(store.lock().unwrap().error.is_none());

    // A wrong token: the error is recorded in the store (and so in the snapshot).
    let bad = client::from_kubeconfig(&kubeconfig(
        &dir,
        &format!("http://{addr}"),
        "{token: wrong}",
    ))
    .unwrap();
    let bad_store = Arc::new(Mutex::new(Store::default()));
    tasks.push(tokio::spawn(client::run(
        bad,
        Resource::Services,
        bad_store.clone(),
        Duration::from_millis(100),
    )));
    until("the 401", || {
        bad_store
            .lock()
            .unwrap()
            .error
            .as_deref()
            .is_some_and(|e| e.contains("401"))
    })
    .await;
    for t in tasks {
        t.abort();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kubeconfig_problems_name_the_field() {
    let dir = std::env::temp_dir().join(format!("psa-kubecfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = client::from_kubeconfig(&kubeconfig(
        &dir,
        "https://10.0.0.1:6443",
        "{exec: {command: aws}}",
    ))
    .unwrap_err();
    assert!(e.contains("users[me].user.exec"), "{e}");
    // https without a CA to check the server with.
    let e = client::from_kubeconfig(&kubeconfig(&dir, "https://10.0.0.1:6443", "{token: t}"))
        .unwrap_err();
    assert!(e.contains("certificate authority"), "{e}");
    let e = client::from_kubeconfig(&kubeconfig(
        &dir,
        "https://10.0.0.1:6443",
        "{client-certificate-data: AAAA}",
    ))
    .unwrap_err();
    assert!(e.contains("needs its key"), "{e}");
    let p = dir.join("kubeconfig");
    std::fs::write(&p, "apiVersion: v1\nkind: Config\n").unwrap();
    let e = client::from_kubeconfig(&p).unwrap_err();
    assert!(e.contains("current-context"), "{e}");
    let e = client::from_kubeconfig(&dir.join("nope")).unwrap_err();
    assert!(e.contains("nope"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary against the real kernel: demo.yaml's rules (as iptables-save shows them on a
/// node) loaded into a namespace this test creates and deletes, the agent reading it with
/// `--kubeconfig` pointed at the fake API server. The kernel's own listing must name the chains
/// by Service and show no drift; after a Service is deleted through the API, its chains are
/// reported extra.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_names_kernel_chains_and_reports_drift() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root
        || !Command::new("ip")
            .args(["netns", "list"])
            .status()
            .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED agent kube netns test: needs root and `ip netns`");
        return;
    }
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let ns = Ns(format!("psk-{}", std::process::id()));
    let run = |args: &[&str], input: Option<&str>| {
        let mut c = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(input.unwrap_or("").as_bytes())
            .unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    run(&["ip", "netns", "add", &ns.0], None);
    for c in [
        "ct_state_invalid_dropped_pkts",
        "localhost_nps_accepted_pkts",
    ] {
        run(&["ip", "netns", "exec", &ns.0, "nfacct", "add", c], None);
    }
    let bin = env!("CARGO_BIN_EXE_proxyscope");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo.yaml");
    let saved = run(&[bin, "rules", "--format", "saved", demo], None);
    run(
        &["ip", "netns", "exec", &ns.0, "iptables-restore"],
        Some(&saved),
    );

    let (addr, fake) = fake_api().await;
    let dir = std::env::temp_dir().join(format!("psk-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = kubeconfig(&dir, &format!("http://{addr}"), "{token: api-token}");
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut agent = Child(
        Command::new(bin)
            .args([
                "agent",
                "--netns",
                &ns.0,
                "--listen",
                "127.0.0.1:0",
                "--interval",
                "200ms",
            ])
            .arg("--kubeconfig")
            .arg(&cfg)
            .env("NODE_NAME", "node-1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(agent.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let agent_addr = line
        .trim()
        .strip_prefix("listening on ws://")
        .and_then(|s| s.strip_suffix("/ws"))
        .unwrap_or_else(|| panic!("agent did not start: {line:?}"))
        .to_string();
    let snapshot = || -> Value {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(&agent_addr).unwrap();
        write!(
            s,
            "GET /snapshot HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let body = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(&out[..0], |i| &out[i + 4..]);
        serde_json::from_slice(body).unwrap_or(Value::Null)
    };
    let mut k = Value::Null;
    for _ in 0..100 {
        k = snapshot()["kubernetes"].clone();
        if k["synced"] == true && k.get("drift").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(k["chains"][SVC], "default/my-service:http", "{k}");
    assert_eq!(k["chains"][SEP4], "default/my-service:http → 10.0.0.4:80");
    assert_eq!(
        k["drift"],
        json!({"missing": [], "extra": [], "stale": []}),
        "{k}"
    );

    // The Service goes away in the API; the node keeps its chains: all extra.
    let svc = fake.objects.lock().unwrap()[0].1[0].clone();
    for (r, tx) in fake.watchers.lock().unwrap().iter() {
        if *r == Resource::Services {
            let _ = tx.send(json!({"type": "DELETED", "object": svc}).to_string());
        }
    }
    let mut extra = Vec::new();
    for _ in 0..100 {
        extra = names(&snapshot()["kubernetes"]["drift"]["extra"]);
        if !extra.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    extra.sort();
    assert_eq!(extra, [SEP3, SEP4, SEP2, SVC]);
    let _ = std::fs::remove_dir_all(&dir);
}
