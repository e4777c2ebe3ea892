//! Kubernetes context: the cluster's Services and EndpointSlices (list + watch), used to name
//! each kube-proxy chain by its Service and to show drift — the rules core regenerates from the
//! API objects compared with the rules actually on the node.
//!
//! Two halves. [`Store`] and [`context`] are plain data (tested with captured objects); the
//! [`client`] half is the only code that talks to the API server. It is a small list + watch
//! over HTTP/1.1 (hyper's client connection, rustls for TLS) rather than kube-rs: kube-client
//! reads kubeconfig with serde_yaml (not allowed here) and adds a tower/hyper-util client stack
//! for two GET requests; kubeconfig is read with serde-saphyr like every other YAML here.
//!
//! Drift compares what kube-proxy derives from Services and endpoints alone, so the agent does
//! not need the node's KubeProxyConfiguration: in iptables mode the service chains' jump targets
//! (`KUBE-SVC-`/`KUBE-SVL-`/`KUBE-EXT-`/`KUBE-FW-` → which `KUBE-SEP-`) and each endpoint
//! chain's DNAT target; in IPVS mode the virtual servers and their real servers. Chain names are
//! kube-proxy's hashes (`servicePortChainName`, `servicePortEndpointChainName`), recomputed by
//! core from the API objects.

use std::collections::{BTreeMap, BTreeSet};

use proxyscope_core::api;
use proxyscope_core::ipvs::ipvsadm;
use proxyscope_core::proxier::iptables as ipt_mode;
use proxyscope_core::proxier::service_ports;
use proxyscope_core::rules::iptables::Family;
use serde_json::{Value, json};

/// The two resources the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Services,
    EndpointSlices,
}

impl Resource {
    pub const ALL: [Resource; 2] = [Resource::Services, Resource::EndpointSlices];

    /// Cluster-wide list path.
    pub fn path(self) -> &'static str {
        match self {
            Resource::Services => "/api/v1/services",
            Resource::EndpointSlices => "/apis/discovery.k8s.io/v1/endpointslices",
        }
    }

    /// List responses leave `apiVersion`/`kind` off their items; core's loader needs them.
    fn type_meta(self) -> (&'static str, &'static str) {
        match self {
            Resource::Services => ("v1", "Service"),
            Resource::EndpointSlices => ("discovery.k8s.io/v1", "EndpointSlice"),
        }
    }
}

/// The objects seen so far, keyed `namespace/name`.
#[derive(Debug, Default, Clone)]
pub struct Store {
    pub objects: BTreeMap<Resource, BTreeMap<String, Value>>,
    /// Bumped on every change, so the agent recomputes the context only when needed.
    pub generation: u64,
    /// Both resources have been listed at least once.
    pub synced: BTreeSet<Resource>,
    /// The last problem talking to the API server, shown in the snapshot.
    pub error: Option<String>,
}

fn key_of(o: &Value) -> Option<String> {
    let m = o.get("metadata")?;
    let name = m.get("name")?.as_str()?;
    let ns = m.get("namespace").and_then(Value::as_str).unwrap_or("");
    Some(format!("{ns}/{name}"))
}

/// Fields kube-proxy never reads that can be large (server-side apply bookkeeping, the
/// last-applied annotation): dropped so 10k Services do not cost their YAML history.
fn trim(mut o: Value, r: Resource) -> Value {
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("annotations");
    }
    if let Value::Object(m) = &mut o {
        let (api, kind) = r.type_meta();
        m.insert("apiVersion".into(), api.into());
        m.insert("kind".into(), kind.into());
        m.remove("status");
    }
    o
}

/// What a watch stream said that the client must act on.
#[derive(Debug, PartialEq)]
pub enum WatchOutcome {
    /// Applied; carry on from this resourceVersion.
    Continue(Option<String>),
    /// The server no longer has our resourceVersion (HTTP 410 / `Expired`): list again.
    Relist,
}

impl Store {
    /// A fresh list replaces everything of that resource.
    pub fn replace(&mut self, r: Resource, items: Vec<Value>) {
        let m: BTreeMap<String, Value> = items
            .into_iter()
            .filter_map(|o| Some((key_of(&o)?, trim(o, r))))
            .collect();
        self.objects.insert(r, m);
        self.synced.insert(r);
        self.generation += 1;
    }

    /// One watch event (`{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`).
    pub fn event(&mut self, r: Resource, ev: &Value) -> Result<WatchOutcome, String> {
        let kind = ev.get("type").and_then(Value::as_str).unwrap_or_default();
        let obj = ev.get("object").ok_or("watch event without \"object\"")?;
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        match kind {
            "ADDED" | "MODIFIED" => {
                let key = key_of(obj).ok_or("watch event object without metadata.name")?;
                self.objects
                    .entry(r)
                    .or_default()
                    .insert(key, trim(obj.clone(), r));
                self.generation += 1;
            }
            "DELETED" => {
                let key = key_of(obj).ok_or("watch event object without metadata.name")?;
                if self.objects.entry(r).or_default().remove(&key).is_some() {
                    self.generation += 1;
                }
            }
            "BOOKMARK" => {}
            // A Status object; 410 Gone means our resourceVersion is too old.
            "ERROR" => {
                let code = obj.get("code").and_then(Value::as_u64);
                let reason = obj.get("reason").and_then(Value::as_str).unwrap_or("");
                if code == Some(410) || reason == "Expired" || reason == "Gone" {
                    return Ok(WatchOutcome::Relist);
                }
                let msg = obj.get("message").and_then(Value::as_str).unwrap_or("");
                return Err(format!(
                    "watch {}: error {code:?} {reason}: {msg}",
                    r.path()
                ));
            }
            other => return Err(format!("watch {}: unknown event type {other:?}", r.path())),
        }
        Ok(WatchOutcome::Continue(rv))
    }
}

/// The node's side, as the snapshot has it.
pub struct NodeSide<'a> {
    pub node_name: &'a str,
    /// The snapshot's `interfaces` (kube-proxy's node IP and local addresses come from them).
    pub interfaces: &'a Value,
    pub iptables_v4: Option<&'a str>,
    pub iptables_v6: Option<&'a str>,
    /// `ipvsadm -Sn`.
    pub ipvs: Option<&'a str>,
}

/// The scenario core needs: the API objects plus this node (name and addresses).
fn scenario(
    store: &Store,
    node: &NodeSide,
    ipvs_mode: bool,
) -> Result<proxyscope_core::k8s::Loaded, String> {
    let mut items: Vec<Value> = Vec::new();
    items.push(json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": if ipvs_mode { "ipvs" } else { "iptables" },
    }));
    let interfaces: serde_json::Map<String, Value> = node
        .interfaces
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| Some((i["name"].as_str()?.to_string(), i["addresses"].clone())))
        .collect();
    items.push(json!({
        "apiVersion": "proxyscope.dev/v1alpha1",
        "kind": "NodeNetwork",
        "metadata": {"name": node.node_name},
        "interfaces": interfaces,
    }));
    for objs in store.objects.values() {
        items.extend(objs.values().cloned());
    }
    let text = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    api::load_scenario(&text).map_err(|ds| {
        ds.iter()
            .take(5)
            .map(|d| format!("{}: {}", d.location, d.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// What kube-proxy puts in one service or endpoint chain, reduced to what the API decides.
#[derive(Debug, Clone, PartialEq, Default)]
struct ChainSig {
    /// Service chains: the chains they jump to.
    jumps: BTreeSet<String>,
    /// Endpoint chains: `--to-destination`.
    dnat: Option<String>,
}

const SERVICE_PREFIXES: [&str; 4] = ["KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-"];

fn is_kube_chain(c: &str) -> bool {
    c.starts_with("KUBE-SEP-") || SERVICE_PREFIXES.iter().any(|p| c.starts_with(p))
}

/// Service and endpoint chains of the nat table of an `iptables-save` text.
fn chain_sigs(text: &str) -> BTreeMap<String, ChainSig> {
    let mut out: BTreeMap<String, ChainSig> = BTreeMap::new();
    let mut nat = false;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            nat = t.trim() == "nat";
        } else if !nat {
            continue;
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if is_kube_chain(name) {
                out.entry(name.to_string()).or_default();
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let mut words = rest.split_whitespace();
            let chain = words.next().unwrap_or_default();
            if !is_kube_chain(chain) {
                continue;
            }
            let words: Vec<&str> = words.collect();
            let sig = out.entry(chain.to_string()).or_default();
            for w in words.windows(2) {
                match w[0] {
                    "-j" | "-g" if is_kube_chain(w[1]) => {
                        sig.jumps.insert(w[1].to_string());
                    }
                    "--to-destination" => sig.dnat = Some(w[1].to_string()),
                    _ => {}
                }
            }
        }
    }
    out
}

fn describe(s: &ChainSig) -> String {
    match &s.dnat {
        Some(d) => format!("DNAT to {d}"),
        None if s.jumps.is_empty() => "no jumps".into(),
        None => format!(
            "jumps to {}",
            s.jumps.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// One difference between the API's view and the node.
fn item(what: &str, name: &str, service: Option<&String>, detail: String) -> Value {
    json!({"what": what, "name": name, "service": service, "detail": detail})
}

/// The `kubernetes` part of the snapshot: chain → Service names for the chains on the node,
/// and drift (`missing`: the API wants it and the node lacks it; `extra`: on the node, no API
/// object wants it; `stale`: both have it but the node's content is not what the API implies).
pub fn context(store: &Store, node: &NodeSide) -> Value {
    let mut out = json!({
        "synced": store.synced.len() == Resource::ALL.len(),
        "services": store.objects.get(&Resource::Services).map_or(0, |m| m.len()),
        "endpointslices": store.objects.get(&Resource::EndpointSlices).map_or(0, |m| m.len()),
        "error": store.error,
    });
    if store.synced.len() < Resource::ALL.len() {
        return out;
    }
    let node_ipvs = node
        .ipvs
        .map(ipvsadm::parse_rules)
        .filter(|p| !p.services.is_empty());
    let loaded = match scenario(store, node, node_ipvs.is_some()) {
        Ok(l) => l,
        Err(e) => {
            out["error"] = format!("the API objects do not load: {e}").into();
            return out;
        }
    };
    let sc = &loaded.scenario;

    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for v6 in [false, true] {
        for spe in service_ports(sc, v6) {
            let sp = &spe.port;
            for p in SERVICE_PREFIXES {
                names.insert(ipt_mode::service_chain(p, sp), sp.name_string.clone());
            }
            for ep in &spe.endpoints {
                names.insert(
                    ipt_mode::endpoint_chain(sp, ep),
                    format!("{} → {}", sp.name_string, ep.key()),
                );
            }
        }
    }

    let mut missing = Vec::new();
    let mut extra = Vec::new();
    let mut stale = Vec::new();
    let mut named = serde_json::Map::new();
    if node_ipvs.is_none() {
        for (fam, text) in [
            (Family::V4, node.iptables_v4),
            (Family::V6, node.iptables_v6),
        ] {
            let Some(text) = text else { continue };
            let actual = chain_sigs(text);
            if actual.is_empty() && fam == Family::V6 {
                continue;
            }
            let want = chain_sigs(&ipt_mode::saved_text(&ipt_mode::generate(sc, fam)));
            for (c, sig) in &actual {
                if let Some(n) = names.get(c) {
                    named.insert(c.clone(), n.clone().into());
                }
                match want.get(c) {
                    None => extra.push(item(
                        "chain",
                        c,
                        names.get(c),
                        format!(
                            "{} on the node; no Service or endpoint wants it",
                            describe(sig)
                        ),
                    )),
                    Some(w) if w != sig => stale.push(item(
                        "chain",
                        c,
                        names.get(c),
                        format!("node: {}; API: {}", describe(sig), describe(w)),
                    )),
                    Some(_) => {}
                }
            }
            for (c, w) in &want {
                if !actual.contains_key(c) {
                    missing.push(item("chain", c, names.get(c), describe(w)));
                }
            }
        }
    }

    if let Some(node_ipvs) = &node_ipvs {
        let want = ipvsadm::parse_rules(&api::ipvs_rules(sc).ipvsadm_save);
        let label = |k: &ipvsadm::ServiceKey| match k {
            ipvsadm::ServiceKey::Addr { proto, addr } => {
                format!("{} {addr}", format!("{proto:?}").to_uppercase())
            }
            ipvsadm::ServiceKey::Fwmark { mark, .. } => format!("FWM {mark}"),
        };
        for s in &node_ipvs.services {
            let name = label(&s.key);
            let Some(w) = want.services.iter().find(|w| w.key == s.key) else {
                extra.push(item(
                    "virtual server",
                    &name,
                    None,
                    "no Service wants this address".into(),
                ));
                continue;
            };
            for d in &s.dests {
                if w.dests.iter().any(|x| x.addr == d.addr) {
                    continue;
                }
                let rs = format!("{name} -> {}", d.addr);
                if d.weight == 0 {
                    // kube-proxy's graceful termination sets weight 0 and deletes the real
                    // server once it has no connections; one that stays was never drained.
                    stale.push(item(
                        "real server",
                        &rs,
                        None,
                        "weight 0 and no longer an endpoint: left by graceful termination, deleted only when its connections end".into(),
                    ));
                } else {
                    extra.push(item(
                        "real server",
                        &rs,
                        None,
                        format!("weight {}; not an endpoint", d.weight),
                    ));
                }
            }
            for d in &w.dests {
                if !s.dests.iter().any(|x| x.addr == d.addr) {
                    missing.push(item(
                        "real server",
                        &format!("{name} -> {}", d.addr),
                        None,
                        format!("endpoint with weight {}", d.weight),
                    ));
                }
            }
        }
        for w in &want.services {
            if !node_ipvs.services.iter().any(|s| s.key == w.key) {
                missing.push(item(
                    "virtual server",
                    &label(&w.key),
                    None,
                    format!("{} real servers", w.dests.len()),
                ));
            }
        }
    }

    out["chains"] = Value::Object(named);
    out["drift"] = json!({"missing": missing, "extra": extra, "stale": stale});
    out["diagnostics"] = loaded
        .warnings
        .iter()
        .take(20)
        .map(|d| format!("{}: {}", d.location, d.message))
        .collect::<Vec<_>>()
        .into();
    out
}

pub mod client {
    //! List + watch against the API server.

    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use serde_json::Value;

    use super::{Resource, Store, WatchOutcome};

    /// Where the API server is and how to prove who we are.
    #[derive(Clone)]
    pub struct Credentials {
        /// `https://host:port` or (tests, `kubectl proxy`) `http://host:port`.
        pub server: String,
        pub token: Option<String>,
        /// TLS client configuration for https servers.
        pub tls: Option<Arc<rustls::ClientConfig>>,
    }

    impl std::fmt::Debug for Credentials {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // Never print the token.
            f.debug_struct("Credentials")
                .field("server", &self.server)
                .finish_non_exhaustive()
        }
    }

    fn b64(field: &str, s: &str) -> Result<Vec<u8>, String> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| format!("{field}: not base64: {e}"))
    }

    fn tls_config(
        ca_pem: Option<&[u8]>,
        client: Option<(Vec<u8>, Vec<u8>)>,
        where_: &str,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = ca_pem {
            for c in CertificateDer::pem_slice_iter(pem) {
                let c = c.map_err(|e| format!("{where_}: certificate authority: {e}"))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{where_}: certificate authority: {e}"))?;
            }
        }
        if roots.is_empty() {
            return Err(format!(
                "{where_}: no certificate authority to check the API server with"
            ));
        }
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
        let cfg = match client {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{where_}: client certificate: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(&key)
                    .map_err(|e| format!("{where_}: client key: {e}"))?;
                b.with_client_auth_cert(chain, key)
                    .map_err(|e| format!("{where_}: client certificate: {e}"))?
            }
            None => b.with_no_client_auth(),
        };
        Ok(Arc::new(cfg))
    }

    /// The pod's service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    pub fn in_cluster() -> Result<Credentials, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .map_err(|_| "in-cluster: KUBERNETES_SERVICE_HOST is not set (not in a Pod?)")?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let dir = Path::new("/var/run/secrets/kubernetes.io/serviceaccount");
        let token = std::fs::read_to_string(dir.join("token"))
            .map_err(|e| format!("in-cluster: {}: {e}", dir.join("token").display()))?;
        let ca = std::fs::read(dir.join("ca.crt"))
            .map_err(|e| format!("in-cluster: {}: {e}", dir.join("ca.crt").display()))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(Credentials {
            server: format!("https://{host}:{port}"),
            token: Some(token.trim().to_string()),
            tls: Some(tls_config(Some(&ca), None, "in-cluster ca.crt")?),
        })
    }

    /// The current context of a kubeconfig file: server, CA, and a token or client
    /// certificate. Exec and auth-provider plugins are not run (the agent runs no programs
    /// besides its dump tools); errors name the field.
    pub fn from_kubeconfig(path: &Path) -> Result<Credentials, String> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let v: Value = serde_saphyr::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
        let current = v["current-context"]
            .as_str()
            .ok_or_else(|| format!("{shown}: no current-context"))?;
        let named = |list: &str, name: &str| -> Result<Value, String> {
            v[list]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == name)
                .cloned()
                .ok_or_else(|| format!("{shown}: {list}: no entry named {name:?}"))
        };
        let ctx = named("contexts", current)?;
        let cluster_name = ctx["context"]["cluster"].as_str().unwrap_or_default();
        let user_name = ctx["context"]["user"].as_str().unwrap_or_default();
        let cluster = named("clusters", cluster_name)?["cluster"].clone();
        let user = named("users", user_name)?["user"].clone();
        let server = cluster["server"]
            .as_str()
            .ok_or_else(|| format!("{shown}: clusters[{cluster_name}].cluster.server missing"))?
            .trim_end_matches('/')
            .to_string();
        let rel = |p: &str| path.parent().unwrap_or(Path::new(".")).join(p);
        let bytes = |obj: &Value, data: &str, file: &str, place: &str| {
            if let Some(d) = obj[data].as_str() {
                return b64(&format!("{shown}: {place}.{data}"), d).map(Some);
            }
            if let Some(f) = obj[file].as_str() {
                return std::fs::read(rel(f))
                    .map(Some)
                    .map_err(|e| format!("{shown}: {place}.{file} {f}: {e}"));
            }
            Ok(None)
        };
        for unsupported in ["exec", "auth-provider"] {
            if !user[unsupported].is_null() {
                return Err(format!(
                    "{shown}: users[{user_name}].user.{unsupported}: credential plugins are not run by the agent; use a token or a client certificate"
                ));
            }
        }
        let token = match (user["token"].as_str(), user["tokenFile"].as_str()) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(rel(f))
                    .map_err(|e| format!("{shown}: users[{user_name}].user.tokenFile {f}: {e}"))?
                    .trim()
                    .to_string(),
            ),
            _ => None,
        };
        let tls = if server.starts_with("https://") {
            let cplace = format!("clusters[{cluster_name}].cluster");
            let uplace = format!("users[{user_name}].user");
            let ca = bytes(
                &cluster,
                "certificate-authority-data",
                "certificate-authority",
                &cplace,
            )?;
            let cert = bytes(
                &user,
                "client-certificate-data",
                "client-certificate",
                &uplace,
            )?;
            let key = bytes(&user, "client-key-data", "client-key", &uplace)?;
            let client = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(format!(
                        "{shown}: {uplace}: a client certificate needs its key and the reverse"
                    ));
                }
            };
            Some(tls_config(ca.as_deref(), client, &shown)?)
        } else {
            None
        };
        Ok(Credentials { server, token, tls })
    }

    type Body = hyper::body::Incoming;

    /// One GET; the response's status and streaming body.
    async fn get(c: &Credentials, path_and_query: &str) -> Result<hyper::Response<Body>, String> {
        let (tls, rest) = match c.server.split_once("://") {
            Some(("https", r)) => (true, r),
            Some(("http", r)) => (false, r),
            _ => return Err(format!("{}: not an http(s) URL", c.server)),
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                match p.parse::<u16>() {
                    Ok(p) => (h, p),
                    Err(_) => (authority, if tls { 443 } else { 80 }),
                }
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect((bare, port)),
        )
        .await
        .map_err(|_| format!("{}: connect timed out", c.server))?
        .map_err(|e| format!("{}: {e}", c.server))?;
        let req = {
            let mut b = hyper::Request::get(path_and_query)
                .header(hyper::header::HOST, authority)
                .header(hyper::header::ACCEPT, "application/json");
            if let Some(t) = &c.token {
                b = b.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            b.body(Empty::<Bytes>::new())
                .map_err(|e| format!("request: {e}"))?
        };
        macro_rules! send {
            ($io:expr) => {{
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new($io))
                    .await
                    .map_err(|e| format!("{}: {e}", c.server))?;
                tokio::spawn(conn);
                sender
                    .send_request(req)
                    .await
                    .map_err(|e| format!("{}: {e}", c.server))?
            }};
        }
        let resp = if tls {
            let cfg = c
                .tls
                .clone()
                .ok_or_else(|| format!("{}: https without a TLS configuration", c.server))?;
            let name =
                ServerName::try_from(bare.to_string()).map_err(|e| format!("{}: {e}", c.server))?;
            let s = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("{}: TLS: {e}", c.server))?;
            send!(s)
        } else {
            send!(tcp)
        };
        Ok(resp)
    }

    /// Largest list response accepted (10k Services with their slices are a few tens of MB).
    const MAX_LIST: usize = 256 << 20;

    async fn list(c: &Credentials, r: Resource) -> Result<(Vec<Value>, String), String> {
        let resp = get(c, r.path()).await?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_LIST)
            .collect()
            .await
            .map_err(|e| format!("list {}: {e}", r.path()))?
            .to_bytes();
        if !status.is_success() {
            let msg = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(format!("list {}: HTTP {status}: {msg}", r.path()));
        }
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| format!("list {}: {e}", r.path()))?;
        let rv = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let items = match v.get("items") {
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(format!("list {}: no items", r.path())),
        };
        Ok((items, rv))
    }

    /// Watch from `rv` until the server ends the stream; events are applied to `store`.
    async fn watch(
        c: &Credentials,
        r: Resource,
        rv: &mut String,
        store: &Mutex<Store>,
    ) -> Result<WatchOutcome, String> {
        let q = format!(
            "{}?watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion={rv}",
            r.path()
        );
        let resp = get(c, &q).await?;
        if resp.status() == hyper::StatusCode::GONE {
            return Ok(WatchOutcome::Relist);
        }
        if !resp.status().is_success() {
            return Err(format!("watch {}: HTTP {}", r.path(), resp.status()));
        }
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("watch {}: {e}", r.path()))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.extend_from_slice(data);
            if buf.len() > MAX_LIST {
                return Err(format!(
                    "watch {}: event larger than {MAX_LIST} bytes",
                    r.path()
                ));
            }
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let ev: Value = serde_json::from_slice(&line)
                    .map_err(|e| format!("watch {}: {e}", r.path()))?;
                let out = lock(store).event(r, &ev)?;
                match out {
                    WatchOutcome::Relist => return Ok(WatchOutcome::Relist),
                    WatchOutcome::Continue(Some(v)) => *rv = v,
                    WatchOutcome::Continue(None) => {}
                }
            }
        }
        Ok(WatchOutcome::Continue(None))
    }

    fn lock(s: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
        s.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `store` equal to the API server's objects of `r`: list, then watch, relisting when
    /// the watch expires; errors are recorded in the store and retried after `retry`.
    pub async fn run(c: Credentials, r: Resource, store: Arc<Mutex<Store>>, retry: Duration) {
        loop {
            let mut rv = match list(&c, r).await {
                Ok((items, rv)) => {
                    let mut s = lock(&store);
                    s.replace(r, items);
                    s.error = None;
                    rv
                }
                Err(e) => {
                    lock(&store).error = Some(e);
                    tokio::time::sleep(retry).await;
                    continue;
                }
            };
            loop {
                match watch(&c, r, &mut rv, &store).await {
                    Ok(WatchOutcome::Continue(_)) => continue,
                    Ok(WatchOutcome::Relist) => break,
                    Err(e) => {
                        lock(&store).error = Some(e);
                        tokio::time::sleep(retry).await;
                        break;
                    }
                }
            }
        }
    }
}
