//! "Live node": the real rules and connections of one or more nodes, streamed by
//! `proxyscope agent` over its websocket, with packets traced through them by core.
//!
//! Self-contained on purpose: the component owns its sockets (one per node) and reconnect
//! timers, so the rest of the app only mounts `<LiveNode />`. Inside, the same split as the app:
//! [`NodeData`] is plain data driven by the agent's messages (unit-tested natively), the views
//! only render it.
//!
//! Protocol (agent `hub.rs`): the first message is a `snapshot` (full state at `revision`), or
//! after a reconnect with `?since=REV&instance=ID` a `resume` followed by the missed diffs; then
//! `diff`s, each naming its `base`. A diff whose base is not our revision means we missed
//! something: we drop the socket and reconnect with our revision, and the agent either replays
//! what we missed or sends a snapshot marked `resync`.
//!
//! Nodes open at once are shown side by side, and one packet (the probe) is traced through each
//! node's own rules, so two nodes that should be programmed alike can be compared.

use std::collections::BTreeMap;
use std::rc::Rc;

use proxyscope_core::api;
use proxyscope_core::ipvs::ipvsadm::{self, ListOptions};
use proxyscope_core::trace::{Hook, Proto, Step, Trace};
use serde_json::{Value, json};
use yew::prelude::*;

use crate::i18n::{Lang, NarrCtx, narrate};

/// A closed socket is retried after this long (an agent restart, a network blip).
#[cfg(target_arch = "wasm32")]
const RETRY_MS: u32 = 1000;
/// Chains listed per node at most; a 10k-Service node has ~40k chains, and the filter narrows.
const MAX_CHAINS: usize = 300;
/// conntrack entries listed per node at most (the agent already caps what it sends).
const MAX_CONNS: usize = 200;

// ---------------------------------------------------------------------------------------------
// Text, both languages per key (the compiler checks every key has both).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L {
    Title,
    Intro,
    AgentUrl,
    Token,
    Connect,
    Remove,
    Connecting,
    Live,
    Closed,
    Revision,
    Resynced,
    Chains,
    Filter,
    MoreChains,
    VirtualServers,
    NoIpvs,
    Conntrack,
    NoConns,
    Probe,
    Source,
    Destination,
    Port,
    Protocol,
    TraceIt,
    Goes,
    NoRuleTouched,
    Probability,
    RulesEvaluated,
    Steps,
    Absent,
    Errors,
    NoNodes,
    BadProbe,
    Node,
    Drift,
    Missing,
    Extra,
    Stale,
    NoDrift,
}

fn tr(lang: Lang, k: L) -> &'static str {
    let (en, zh) = match k {
        L::Title => ("Live node", "实时节点"),
        L::Intro => (
            "Connect to `proxyscope agent` on a node: its real iptables chains, IPVS virtual servers and conntrack entries, updated as they change. Open several nodes to compare them.",
            "连接节点上的 `proxyscope agent`：查看真实的 iptables 链、IPVS 虚拟服务器和 conntrack 连接，变化时自动更新。可同时打开多个节点进行对比。",
        ),
        L::AgentUrl => ("Agent URL", "Agent 地址"),
        L::Token => ("Token", "令牌"),
        L::Connect => ("Connect", "连接"),
        L::Remove => ("Close", "关闭"),
        L::Connecting => ("connecting…", "连接中…"),
        L::Live => ("live", "已连接"),
        L::Closed => ("disconnected", "已断开"),
        L::Revision => ("revision", "版本"),
        L::Resynced => (
            "full resync (the agent restarted or too much changed while away)",
            "已完全重新同步（agent 重启，或断开期间变化太多）",
        ),
        L::Chains => ("iptables chains", "iptables 链"),
        L::Filter => ("Filter chains", "筛选链"),
        L::MoreChains => (
            "more chains: narrow the filter",
            "条链未显示：请缩小筛选范围",
        ),
        L::VirtualServers => ("IPVS virtual servers", "IPVS 虚拟服务器"),
        L::NoIpvs => ("no IPVS virtual servers", "没有 IPVS 虚拟服务器"),
        L::Conntrack => ("conntrack", "conntrack 连接跟踪"),
        L::NoConns => ("no connections", "没有连接"),
        L::Probe => (
            "Trace a packet through every node",
            "在每个节点上跟踪同一个数据包",
        ),
        L::Source => ("Source", "源地址"),
        L::Destination => ("Destination", "目的地址"),
        L::Port => ("Port", "端口"),
        L::Protocol => ("Protocol", "协议"),
        L::TraceIt => ("Trace", "跟踪"),
        L::Goes => ("goes to", "去往"),
        L::NoRuleTouched => (
            "no kube-proxy rule rewrote it",
            "没有 kube-proxy 规则改写它",
        ),
        L::Probability => ("probability", "概率"),
        L::RulesEvaluated => ("rules evaluated", "条规则被检查"),
        L::Steps => ("Steps", "步骤"),
        L::Absent => ("not on this node", "本节点没有"),
        L::Errors => ("errors", "错误"),
        L::NoNodes => ("No node connected yet.", "尚未连接任何节点。"),
        L::BadProbe => ("not an address", "不是有效地址"),
        L::Node => ("node", "节点"),
        L::Drift => (
            "Drift: the API's Services and endpoints vs this node's rules",
            "偏差：API 中的 Service 和端点与本节点规则的对比",
        ),
        L::Missing => ("missing on the node", "节点上缺失"),
        L::Extra => ("extra on the node", "节点上多余"),
        L::Stale => ("stale", "过期"),
        L::NoDrift => (
            "none: the node's rules match the API objects",
            "无：节点规则与 API 对象一致",
        ),
    };
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

// ---------------------------------------------------------------------------------------------
// Plain data: what we know about one node.

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Status {
    #[default]
    Connecting,
    Live,
    Closed(String),
}

/// What a message did to the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Snapshot { resync: Option<String> },
    Resumed,
    Diff,
}

/// A packet to trace through each node's rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub dport: u16,
    pub proto: Proto,
}

/// One `*table` of an `iptables-save` text, chains in the order the tool printed them.
#[derive(Debug, Clone, PartialEq)]
pub struct TableView {
    pub name: String,
    pub chains: Vec<ChainView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChainView {
    pub name: String,
    /// `ACCEPT`/`DROP` for built-in chains, `-` for user chains.
    pub policy: String,
    /// The `-A` lines verbatim.
    pub rules: Vec<String>,
}

/// A probe's trace through one node, or why there is none.
pub type Traced = Rc<Result<Trace, String>>;

#[derive(Default)]
pub struct NodeData {
    /// The node's state with every diff applied: the agent's snapshot JSON.
    pub snapshot: Option<Value>,
    pub instance: Option<String>,
    pub revision: u64,
    pub status: Status,
    /// Why the last snapshot was a resync, if it was one.
    pub resync: Option<String>,
    /// Bumped when a part the trace depends on changes (rules, sets, IPVS, addresses), so a
    /// conntrack-only change does not rebuild core's session.
    pub rules_rev: u64,
    tables: Option<(u64, Rc<Vec<TableView>>)>,
    traced: Option<(u64, Probe, Traced)>,
}

/// Parts whose change means the rules a packet meets changed.
fn rules_part(key: &str) -> bool {
    ["iptables", "ipsets", "ipvs", "interfaces"]
        .iter()
        .any(|p| key == *p || key.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
}

fn field<'a>(v: &'a Value, k: &str) -> Result<&'a Value, String> {
    v.get(k).ok_or_else(|| format!("message without \"{k}\""))
}

impl NodeData {
    /// The query that resumes where we are (`since=REV&instance=ID`), once we have a state.
    pub fn resume_query(&self) -> Option<String> {
        let inst = self.instance.as_deref()?;
        self.snapshot.as_ref()?;
        Some(format!(
            "since={}&instance={}",
            self.revision,
            url_encode(inst)
        ))
    }

    /// Fold in one agent message. An error means the stream cannot be trusted any more (a
    /// missed diff, another agent instance, garbage): the caller reconnects and resumes.
    pub fn on_message(&mut self, text: &str) -> Result<Applied, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let kind = field(&v, "type")?.as_str().unwrap_or_default().to_string();
        let revision = field(&v, "revision")?
            .as_u64()
            .ok_or("\"revision\" is not a number")?;
        let instance = v
            .get("instance")
            .and_then(Value::as_str)
            .map(str::to_string);
        match kind.as_str() {
            "snapshot" => {
                let resync = v.get("resync").and_then(Value::as_str).map(str::to_string);
                let mut v = v;
                if let Value::Object(m) = &mut v {
                    m.remove("resync");
                }
                self.snapshot = Some(v);
                self.instance = instance;
                self.revision = revision;
                self.resync = resync.clone();
                self.rules_rev += 1;
                self.status = Status::Live;
                Ok(Applied::Snapshot { resync })
            }
            "resume" => {
                let base = field(&v, "base")?.as_u64();
                if self.snapshot.is_none()
                    || instance != self.instance
                    || base != Some(self.revision)
                {
                    return Err(format!(
                        "resume from {base:?} of {instance:?}, but we are at {} of {:?}",
                        self.revision, self.instance
                    ));
                }
                self.status = Status::Live;
                Ok(Applied::Resumed)
            }
            "diff" => {
                let base = field(&v, "base")?.as_u64();
                let Some(snap) = self.snapshot.as_mut() else {
                    return Err("a diff before any snapshot".into());
                };
                if base != Some(self.revision) || instance != self.instance {
                    return Err(format!(
                        "diff {revision} on base {base:?}, but we are at {}",
                        self.revision
                    ));
                }
                let changed = field(&v, "changed")?
                    .as_object()
                    .ok_or("\"changed\" is not an object")?;
                let mut rules = false;
                for (k, part) in changed {
                    rules |= rules_part(k);
                    match k.split_once('.') {
                        Some((outer, inner)) => {
                            if !snap[outer].is_object() {
                                snap[outer] = json!({});
                            }
                            snap[outer][inner] = part.clone();
                        }
                        None => snap[k.as_str()] = part.clone(),
                    }
                }
                snap["revision"] = revision.into();
                self.revision = revision;
                if rules {
                    self.rules_rev += 1;
                }
                Ok(Applied::Diff)
            }
            other => Err(format!("unknown message type {other:?}")),
        }
    }

    fn text(&self, path: &[&str]) -> Option<&str> {
        let mut v = self.snapshot.as_ref()?;
        for p in path {
            v = v.get(p)?;
        }
        v.get("text")?.as_str()
    }

    /// The iptables tables of the node (IPv4 then IPv6), parsed once per rules revision.
    pub fn tables(&mut self) -> Rc<Vec<TableView>> {
        if let Some((rev, t)) = &self.tables
            && *rev == self.rules_rev
        {
            return t.clone();
        }
        let mut all = Vec::new();
        for (fam, suffix) in [("v4", ""), ("v6", " (IPv6)")] {
            if let Some(text) = self.text(&["iptables", fam]) {
                all.extend(iptables_tables(text).into_iter().map(|mut t| {
                    t.name.push_str(suffix);
                    t
                }));
            }
        }
        let t = Rc::new(all);
        self.tables = Some((self.rules_rev, t.clone()));
        t
    }

    /// `ipvsadm -Ln` of the node's virtual servers (core parses `ipvsadm -Sn` and prints the list).
    pub fn ipvs_list(&self) -> Option<String> {
        let p = ipvsadm::parse_rules(self.text(&["ipvs"])?);
        (!p.services.is_empty()).then(|| ipvsadm::print_list(&p.services, ListOptions::default()))
    }

    fn is_ipvs(&self) -> bool {
        self.text(&["ipvs"])
            .is_some_and(|t| !ipvsadm::parse_rules(t).services.is_empty())
    }

    /// `probe` through this node's rules (core's walk), cached per rules revision.
    pub fn trace(&mut self, probe: Probe) -> Traced {
        if let Some((rev, p, t)) = &self.traced
            && *rev == self.rules_rev
            && *p == probe
        {
            return t.clone();
        }
        let t = Rc::new(self.trace_now(probe));
        self.traced = Some((self.rules_rev, probe, t.clone()));
        t
    }

    fn trace_now(&self, probe: Probe) -> Result<Trace, String> {
        let snap = self.snapshot.as_ref().ok_or("no snapshot yet")?;
        let loaded = api::load_scenario(&scenario_json(snap)).map_err(|ds| {
            ds.into_iter()
                .map(|d| d.message)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let fam = if probe.dst.is_ipv6() { "v6" } else { "v4" };
        let (mut session, _diags) = if self.is_ipvs() {
            api::Session::from_ipvs_dump(&loaded.scenario, &ipvs_dump(self, snap))
        } else {
            let dump = self
                .text(&["iptables", fam])
                .ok_or_else(|| format!("the node sent no iptables {fam} rules"))?;
            api::Session::from_dump(&loaded.scenario, dump)
        };
        Ok(session.trace(&api::TraceRequest {
            src: probe.src,
            dst: probe.dst,
            dport: probe.dport,
            proto: probe.proto,
            sport: None,
            seed: 0,
            now: 0.0,
        }))
    }
}

/// `iptables-save` text → tables and chains. The format is the tool's own (`*table`,
/// `:CHAIN POLICY [p:b]`, `-A CHAIN ...`, `COMMIT`); rules are shown verbatim, not re-printed.
pub fn iptables_tables(text: &str) -> Vec<TableView> {
    let mut out: Vec<TableView> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('*') {
            out.push(TableView {
                name: name.trim().to_string(),
                chains: Vec::new(),
            });
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut w = decl.split_whitespace();
            if let (Some(t), Some(name)) = (out.last_mut(), w.next()) {
                t.chains.push(ChainView {
                    name: name.to_string(),
                    policy: w.next().unwrap_or("-").to_string(),
                    rules: Vec::new(),
                });
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap_or_default();
            if let Some(t) = out.last_mut() {
                match t.chains.iter_mut().find(|c| c.name == chain) {
                    Some(c) => c.rules.push(line.to_string()),
                    // iptables-save declares every chain first; keep an undeclared one visible.
                    None => t.chains.push(ChainView {
                        name: chain.to_string(),
                        policy: "-".into(),
                        rules: vec![line.to_string()],
                    }),
                }
            }
        }
    }
    out
}

/// The node as a scenario for core: its interfaces (so core knows which addresses are local
/// and which one MASQUERADE picks) and the proxy mode. No Services: the rules come from the
/// node itself, not from regenerating them.
pub fn scenario_json(snap: &Value) -> String {
    let mut ifs: Vec<(String, Vec<String>)> = snap["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let name = i["name"].as_str()?.to_string();
            let addrs = i["addresses"]
                .as_array()?
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            Some((name, addrs))
        })
        .collect();
    // core takes the first non-loopback address as the node IP when there is no Node object;
    // kube-ipvs0 holds Service VIPs, never the node's own address.
    ifs.sort_by_key(|(n, _)| n == "kube-ipvs0");
    let interfaces: serde_json::Map<String, Value> =
        ifs.into_iter().map(|(n, a)| (n, json!(a))).collect();
    let name = snap["node"]["name"].as_str().unwrap_or("node");
    let name = if name.is_empty() { "node" } else { name };
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration"},
            {"apiVersion": "proxyscope.dev/v1alpha1", "kind": "NodeNetwork",
             "metadata": {"name": name}, "interfaces": interfaces},
        ]
    })
    .to_string()
}

/// The node's IPVS-mode state in the `# <command>` layout core's dump reader takes.
fn ipvs_dump(d: &NodeData, snap: &Value) -> String {
    let mut s = String::new();
    let mut section = |head: &str, body: &str| {
        s.push_str(head);
        s.push('\n');
        s.push_str(body);
        if !body.ends_with('\n') {
            s.push('\n');
        }
    };
    section("# ipvsadm -Sn", d.text(&["ipvs"]).unwrap_or_default());
    section("# ipset save", d.text(&["ipsets"]).unwrap_or_default());
    if let Some(t) = d.text(&["iptables", "v4"]) {
        section("# iptables-save", t);
    }
    if let Some(t) = d.text(&["iptables", "v6"]) {
        section("# ip6tables-save", t);
    }
    let vips: Vec<String> = snap["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["name"] == "kube-ipvs0")
        .flat_map(|i| i["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            a.as_str()
                .map(|a| format!("    inet {a} scope global kube-ipvs0"))
        })
        .collect();
    section("# ip addr show dev kube-ipvs0", &vips.join("\n"));
    s
}

/// Percent-encoding of a query value (RFC 3986 unreserved characters pass).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The websocket URL with the token and the resume position added to its query.
pub fn ws_url(url: &str, token: &str, resume: Option<&str>) -> String {
    let mut u = url.trim().to_string();
    let mut add = |kv: String| {
        u.push(if u.contains('?') { '&' } else { '?' });
        u.push_str(&kv);
    };
    if !token.trim().is_empty() {
        add(format!("token={}", url_encode(token.trim())));
    }
    if let Some(r) = resume {
        add(r.to_string());
    }
    u
}

fn parse_probe(src: &str, dst: &str, port: &str, proto: &str) -> Option<Probe> {
    Some(Probe {
        src: src.trim().parse().ok()?,
        dst: dst.trim().parse().ok()?,
        dport: port.trim().parse().ok()?,
        proto: match proto {
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            _ => Proto::Tcp,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Views.

#[derive(Properties, PartialEq, Clone)]
pub struct LiveProps {
    #[prop_or_default]
    pub lang: Lang,
}

#[derive(Debug, Clone, PartialEq)]
struct NodeRef {
    id: usize,
    url: AttrValue,
    token: AttrValue,
}

/// Agents named in the page's query: `?agent=ws://HOST:PORT/ws` (repeatable) and `token=T`.
fn agents_from_query() -> Vec<(String, String)> {
    #[cfg(target_arch = "wasm32")]
    {
        let search = gloo_utils::window().location().search().unwrap_or_default();
        let Ok(q) = web_sys::UrlSearchParams::new_with_str(&search) else {
            return Vec::new();
        };
        let token = q.get("token").unwrap_or_default();
        q.get_all("agent")
            .iter()
            .filter_map(|v| v.as_string())
            .filter(|u| !u.is_empty())
            .map(|u| (u, token.clone()))
            .collect()
    }
    #[cfg(not(target_arch = "wasm32"))]
    Vec::new()
}

fn input_value(e: &Event) -> String {
    use wasm_bindgen::JsCast;
    e.target()
        .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        .map(|i| i.value())
        .or_else(|| {
            e.target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlSelectElement>().ok())
                .map(|s| s.value())
        })
        .unwrap_or_default()
}

/// The Live node tab: connect form, the shared probe, and one panel per node side by side.
#[function_component(LiveNode)]
pub fn live_node(p: &LiveProps) -> Html {
    let lang = p.lang;
    let nodes = use_state(|| {
        agents_from_query()
            .into_iter()
            .enumerate()
            .map(|(id, (u, t))| NodeRef {
                id,
                url: u.into(),
                token: t.into(),
            })
            .collect::<Vec<_>>()
    });
    let next_id = use_mut_ref(|| nodes.len());
    let url = use_state(|| "ws://127.0.0.1:9180/ws".to_string());
    let token = use_state(String::new);
    let src = use_state(|| "192.0.2.10".to_string());
    let dst = use_state(String::new);
    let port = use_state(|| "80".to_string());
    let proto = use_state(|| "tcp".to_string());
    let probe = use_state(|| None::<Probe>);
    let probe_bad = use_state(|| false);

    let set = |h: &UseStateHandle<String>| {
        let h = h.clone();
        Callback::from(move |e: Event| h.set(input_value(&e)))
    };
    let connect = {
        let (nodes, url, token, next_id) =
            (nodes.clone(), url.clone(), token.clone(), next_id.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if url.trim().is_empty() {
                return;
            }
            let mut n = (*nodes).clone();
            let id = {
                let mut c = next_id.borrow_mut();
                *c += 1;
                *c
            };
            n.push(NodeRef {
                id,
                url: (*url).clone().into(),
                token: (*token).clone().into(),
            });
            nodes.set(n);
        })
    };
    let trace = {
        let (src, dst, port, proto, probe, bad) = (
            src.clone(),
            dst.clone(),
            port.clone(),
            proto.clone(),
            probe.clone(),
            probe_bad.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let p = parse_probe(&src, &dst, &port, &proto);
            bad.set(p.is_none());
            probe.set(p);
        })
    };
    let remove = |id: usize| {
        let nodes = nodes.clone();
        Callback::from(move |_| {
            nodes.set(nodes.iter().filter(|n| n.id != id).cloned().collect());
        })
    };

    html! {
        <section id="live-root" class="live" aria-labelledby="live-title">
            <h2 id="live-title">{ tr(lang, L::Title) }</h2>
            <p class="live-intro">{ tr(lang, L::Intro) }</p>
            <form id="live-connect" class="live-form" onsubmit={connect}>
                <label>{ tr(lang, L::AgentUrl) }{" "}
                    <input id="live-url" type="url" value={(*url).clone()} onchange={set(&url)} size="32" />
                </label>{" "}
                <label>{ tr(lang, L::Token) }{" "}
                    <input id="live-token" type="password" value={(*token).clone()} onchange={set(&token)} autocomplete="off" />
                </label>{" "}
                <button id="live-add" type="submit">{ tr(lang, L::Connect) }</button>
            </form>
            <form id="live-probe" class="live-form" onsubmit={trace} aria-label={tr(lang, L::Probe)}>
                <strong>{ tr(lang, L::Probe) }</strong>{" "}
                <label>{ tr(lang, L::Source) }{" "}<input id="live-src" value={(*src).clone()} onchange={set(&src)} size="16" /></label>{" "}
                <label>{ tr(lang, L::Destination) }{" "}<input id="live-dst" value={(*dst).clone()} onchange={set(&dst)} size="16" /></label>{" "}
                <label>{ tr(lang, L::Port) }{" "}<input id="live-port" value={(*port).clone()} onchange={set(&port)} size="5" /></label>{" "}
                <label>{ tr(lang, L::Protocol) }{" "}
                    <select id="live-proto" onchange={set(&proto)}>
                        { for ["tcp", "udp", "sctp"].iter().map(|p| html! { <option value={*p} selected={*proto == *p}>{ p.to_uppercase() }</option> }) }
                    </select>
                </label>{" "}
                <button id="live-trace" type="submit">{ tr(lang, L::TraceIt) }</button>
                if *probe_bad { <span class="error" role="alert">{ tr(lang, L::BadProbe) }</span> }
            </form>
            if nodes.is_empty() {
                <p id="live-empty">{ tr(lang, L::NoNodes) }</p>
            }
            <div class="live-nodes" style="display:flex;gap:1em;overflow-x:auto;align-items:flex-start">
                { for nodes.iter().map(|n| html! {
                    <NodePanel key={n.id} id={n.id} {lang} url={n.url.clone()} token={n.token.clone()}
                        probe={*probe} on_remove={remove(n.id)} />
                }) }
            </div>
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct PanelProps {
    id: usize,
    lang: Lang,
    url: AttrValue,
    token: AttrValue,
    probe: Option<Probe>,
    on_remove: Callback<()>,
}

/// One node: its socket (reconnecting with the last revision), its state, its views.
#[function_component(NodePanel)]
fn node_panel(p: &PanelProps) -> Html {
    let data = use_mut_ref(NodeData::default);
    let redraw = use_force_update();
    let attempt = use_state(|| 0u32);
    let filter = use_state(|| "KUBE-".to_string());
    #[cfg(target_arch = "wasm32")]
    {
        let (data, redraw, attempt) = (data.clone(), redraw.clone(), attempt.clone());
        use_effect_with(
            (p.url.clone(), p.token.clone(), *attempt),
            move |(url, token, n)| socket::open(url, token, *n, data, redraw, attempt),
        );
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (&redraw, &attempt);

    let lang = p.lang;
    let id = p.id;
    let mut d = data.borrow_mut();
    let (status_class, status) = match &d.status {
        Status::Connecting => ("connecting", tr(lang, L::Connecting).to_string()),
        Status::Live => ("live", tr(lang, L::Live).to_string()),
        Status::Closed(why) => ("closed", format!("{}: {why}", tr(lang, L::Closed))),
    };
    let on_remove = p.on_remove.reform(|_: MouseEvent| ());
    let head = html! {
        <header>
            <h3>
                { format!("{} ", tr(lang, L::Node)) }
                <span class="live-node-name">{ d.snapshot.as_ref().and_then(|s| s["node"]["name"].as_str()).unwrap_or("?").to_string() }</span>
            </h3>
            <p><code class="live-url">{ p.url.to_string() }</code>{" "}
                <span class={classes!("live-status", status_class)} role="status">{ status }</span>{" "}
                <button type="button" class="live-remove" onclick={on_remove}>{ tr(lang, L::Remove) }</button></p>
            <p>{ format!("{} ", tr(lang, L::Revision)) }<span class="live-revision">{ d.revision }</span>
                { d.instance.as_deref().map(|i| format!(" · {i}")).unwrap_or_default() }</p>
            if d.resync.is_some() { <p class="live-resync">{ tr(lang, L::Resynced) }</p> }
        </header>
    };
    if d.snapshot.is_none() {
        return html! { <article class="live-node" id={format!("live-node-{id}")} style="min-width:28em">{ head }</article> };
    }
    let problems = problems_view(lang, d.snapshot.as_ref().unwrap_or(&Value::Null));
    let kube = d
        .snapshot
        .as_ref()
        .map(|s| s["kubernetes"].clone())
        .unwrap_or(Value::Null);
    let traced = p.probe.map(|pr| trace_view(lang, pr, &d.trace(pr)));
    let tables = d.tables();
    let ipvs = d.ipvs_list();
    let conns = conns_view(lang, d.snapshot.as_ref().unwrap_or(&Value::Null));
    drop(d);
    let on_filter = {
        let f = filter.clone();
        Callback::from(move |e: InputEvent| {
            use wasm_bindgen::JsCast;
            if let Some(i) = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            {
                f.set(i.value());
            }
        })
    };
    html! {
        <article class="live-node" id={format!("live-node-{id}")} style="min-width:28em;max-width:48em">
            { head }
            { problems }
            { traced.unwrap_or_default() }
            <section class="live-chains">
                <h4>{ tr(lang, L::Chains) }</h4>
                <label>{ tr(lang, L::Filter) }{" "}<input class="live-filter" value={(*filter).clone()} oninput={on_filter} /></label>
                { chains_view(lang, &tables, &filter, &kube["chains"]) }
            </section>
            { drift_view(lang, &kube) }
            <section class="live-ipvs">
                <h4>{ tr(lang, L::VirtualServers) }</h4>
                { match ipvs {
                    Some(t) => html! { <pre class="live-ipvsadm">{ t }</pre> },
                    None => html! { <p>{ tr(lang, L::NoIpvs) }</p> },
                } }
            </section>
            { conns }
        </article>
    }
}

fn problems_view(lang: Lang, snap: &Value) -> Html {
    let list = |k: &str| -> Vec<(String, String)> {
        snap[k]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(p, m)| (p.clone(), m.as_str().unwrap_or_default().to_string()))
            .collect()
    };
    let (absent, errors) = (list("absent"), list("errors"));
    html! {
        <>
            if !errors.is_empty() {
                <details class="live-errors" open=true><summary>{ format!("{} ({})", tr(lang, L::Errors), errors.len()) }</summary>
                    <ul>{ for errors.iter().map(|(p, m)| html! { <li lang="en"><code>{ p.clone() }</code>{ ": " }{ m.clone() }</li> }) }</ul>
                </details>
            }
            if !absent.is_empty() {
                <details class="live-absent"><summary>{ format!("{} ({})", tr(lang, L::Absent), absent.len()) }</summary>
                    <ul>{ for absent.iter().map(|(p, m)| html! { <li lang="en"><code>{ p.clone() }</code>{ ": " }{ m.clone() }</li> }) }</ul>
                </details>
            }
        </>
    }
}

fn trace_view(lang: Lang, probe: Probe, t: &Result<Trace, String>) -> Html {
    let t = match t {
        Ok(t) => t,
        Err(e) => return html! { <p class="live-trace error" lang="en">{ e.clone() }</p> },
    };
    let goes = if t.chosen.output.is_empty() {
        tr(lang, L::NoRuleTouched).to_string()
    } else {
        format!("{} {}", tr(lang, L::Goes), t.chosen.output)
    };
    let local_origin = t
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Hook { hook, .. } => Some(*hook == Hook::Output),
            _ => None,
        })
        .unwrap_or(false);
    let cx = NarrCtx {
        dst: probe.dst.to_string(),
        local_origin,
        output_path: false,
    };
    html! {
        <section class="live-trace">
            <p class="live-outcome"><strong>{ goes }</strong>
                { format!(" · {} {:.4} · {} {} · {:?}", tr(lang, L::Probability), t.chosen.probability,
                    t.rules_evaluated, tr(lang, L::RulesEvaluated), t.verdict) }</p>
            <details class="live-steps"><summary>{ format!("{} ({})", tr(lang, L::Steps), t.steps.len()) }</summary>
                <ol>{ for t.steps.iter().map(|s| html! { <li>{ narrate(lang, s, &cx) }</li> }) }</ol>
            </details>
            if !t.warnings.is_empty() {
                <ul class="warnings">{ for t.warnings.iter().map(|w| html! { <li lang="en">{ w.clone() }</li> }) }</ul>
            }
        </section>
    }
}

/// The agent's Kubernetes context (`--kubeconfig` / `--in-cluster`): what differs between the
/// API objects and the node. Nothing when the agent does not watch the API.
fn drift_view(lang: Lang, kube: &Value) -> Html {
    let Some(drift) = kube.get("drift") else {
        return match kube["error"].as_str() {
            Some(e) => html! { <p class="live-kube-error error" lang="en">{ e.to_string() }</p> },
            None => Html::default(),
        };
    };
    let group = |key: &str, label: L| {
        let items = drift[key].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return Html::default();
        }
        html! {
            <li class={format!("live-drift-{key}")}>{ format!("{} ({})", tr(lang, label), items.len()) }
                <ul>{ for items.iter().map(|i| html! {
                    <li><code>{ i["name"].as_str().unwrap_or("").to_string() }</code>
                        { i["service"].as_str().map(|s| format!(" ({s})")).unwrap_or_default() }
                        <span lang="en">{ format!(": {}", i["detail"].as_str().unwrap_or("")) }</span></li>
                }) }</ul>
            </li>
        }
    };
    let none = ["missing", "extra", "stale"]
        .iter()
        .all(|k| drift[*k].as_array().is_none_or(|a| a.is_empty()));
    html! {
        <section class="live-drift">
            <h4>{ tr(lang, L::Drift) }</h4>
            if none { <p>{ tr(lang, L::NoDrift) }</p> } else {
                <ul>{ group("missing", L::Missing) }{ group("extra", L::Extra) }{ group("stale", L::Stale) }</ul>
            }
        </section>
    }
}

fn chains_view(lang: Lang, tables: &[TableView], filter: &str, names: &Value) -> Html {
    let f = filter.trim().to_ascii_uppercase();
    let mut shown = 0usize;
    let mut hidden = 0usize;
    let mut by_table: BTreeMap<usize, Vec<&ChainView>> = BTreeMap::new();
    for (ti, t) in tables.iter().enumerate() {
        for c in &t.chains {
            if !f.is_empty() && !c.name.to_ascii_uppercase().contains(&f) {
                continue;
            }
            if shown < MAX_CHAINS {
                shown += 1;
                by_table.entry(ti).or_default().push(c);
            } else {
                hidden += 1;
            }
        }
    }
    html! {
        <>
            { for by_table.iter().map(|(ti, chains)| html! {
                <details class="live-table" data-table={tables[*ti].name.clone()} open=true>
                    <summary>{ format!("*{} ({})", tables[*ti].name, chains.len()) }</summary>
                    <ul>
                        { for chains.iter().map(|c| html! {
                            <li class="live-chain" data-chain={c.name.clone()}>
                                <details>
                                    <summary><code>{ c.name.clone() }</code>{ format!(" {} · {}", c.policy, c.rules.len()) }
                                        { names[c.name.as_str()].as_str().map(|n| html! { <span class="live-service">{ format!(" — {n}") }</span> }).unwrap_or_default() }</summary>
                                    <pre>{ c.rules.join("\n") }</pre>
                                </details>
                            </li>
                        }) }
                    </ul>
                </details>
            }) }
            if hidden > 0 { <p class="live-more">{ format!("{hidden} {}", tr(lang, L::MoreChains)) }</p> }
        </>
    }
}

fn conns_view(lang: Lang, snap: &Value) -> Html {
    let entries: Vec<&Value> = snap["conntrack"]["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .take(MAX_CONNS)
        .collect();
    let total = snap["conntrack"]["total"]
        .as_u64()
        .unwrap_or(entries.len() as u64);
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    html! {
        <section class="live-conntrack">
            <h4>{ format!("{} ({total})", tr(lang, L::Conntrack)) }</h4>
            if entries.is_empty() { <p>{ tr(lang, L::NoConns) }</p> } else {
                <table>
                    <tbody>
                        { for entries.iter().map(|e| html! {
                            <tr>
                                <td>{ s(&e["proto"]) }</td>
                                <td><code>{ format!("{}:{} → {}:{}", s(&e["orig"]["src"]), s(&e["orig"]["sport"]), s(&e["orig"]["dst"]), s(&e["orig"]["dport"])) }</code></td>
                                <td>{ e.get("dnat").map(|d| html! { <code>{ format!("DNAT {}", s(d)) }</code> }).unwrap_or_default() }</td>
                                <td>{ s(&e["state"]) }</td>
                            </tr>
                        }) }
                    </tbody>
                </table>
            }
        </section>
    }
}

/// The browser side: one websocket per panel, reconnecting with `since`/`instance`.
#[cfg(target_arch = "wasm32")]
mod socket {
    use super::*;
    use std::cell::RefCell;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    use web_sys::{CloseEvent, MessageEvent, WebSocket};

    type Guard = Option<(
        WebSocket,
        Closure<dyn FnMut(MessageEvent)>,
        Closure<dyn FnMut(CloseEvent)>,
        Rc<RefCell<Option<gloo_timers::callback::Timeout>>>,
    )>;

    pub fn open(
        url: &str,
        token: &str,
        attempt: u32,
        data: Rc<RefCell<NodeData>>,
        redraw: UseForceUpdateHandle,
        retry: UseStateHandle<u32>,
    ) -> impl FnOnce() + use<> {
        let full = ws_url(url, token, data.borrow().resume_query().as_deref());
        let mut guard: Guard = None;
        match WebSocket::new(&full) {
            Err(e) => {
                data.borrow_mut().status =
                    Status::Closed(e.as_string().unwrap_or_else(|| format!("{e:?}")));
                redraw.force_update();
            }
            Ok(ws) => {
                let timer = Rc::new(RefCell::new(None));
                let onmsg = {
                    let (data, redraw, ws) = (data.clone(), redraw.clone(), ws.clone());
                    Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                        let Some(text) = e.data().as_string() else {
                            return;
                        };
                        let r = data.borrow_mut().on_message(&text);
                        if let Err(why) = r {
                            // Out of step: reconnect and let the agent replay or resync.
                            data.borrow_mut().status = Status::Closed(why);
                            let _ = ws.close();
                        }
                        redraw.force_update();
                    })
                };
                let onclose = {
                    let (data, redraw, timer) = (data.clone(), redraw.clone(), timer.clone());
                    Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
                        {
                            let mut d = data.borrow_mut();
                            if !matches!(d.status, Status::Closed(_)) {
                                let why = e.reason();
                                d.status = Status::Closed(if why.is_empty() {
                                    format!("code {}", e.code())
                                } else {
                                    why
                                });
                            }
                        }
                        redraw.force_update();
                        let retry = retry.clone();
                        *timer.borrow_mut() =
                            Some(gloo_timers::callback::Timeout::new(RETRY_MS, move || {
                                retry.set(attempt + 1)
                            }));
                    })
                };
                ws.set_onmessage(Some(onmsg.as_ref().unchecked_ref()));
                ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
                guard = Some((ws, onmsg, onclose, timer));
            }
        }
        move || {
            if let Some((ws, onmsg, onclose, timer)) = guard {
                ws.set_onmessage(None);
                ws.set_onclose(None);
                let _ = ws.close();
                timer.borrow_mut().take();
                drop((onmsg, onclose));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kube-proxy iptables-mode node in miniature, written by hand after kube-proxy's own
    /// layout: ClusterIP 10.96.0.10:53/tcp → KUBE-SVC → one endpoint 10.244.1.5:53.
    const SAVE: &str = "# Generated by iptables-save v1.8.9 (nf_tables) on Wed Nov 25 10:13:04 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-X - [0:0]
:KUBE-SEP-A - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 53 -j KUBE-SVC-X
-A KUBE-SVC-X -j KUBE-SEP-A
-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:53
COMMIT
";

    fn snapshot(rev: u64, instance: &str, save: &str) -> String {
        json!({
            "type": "snapshot", "version": 1, "instance": instance, "revision": rev,
            "node": {"name": "n1"},
            "iptables": {"v4": {"text": save}, "v6": null},
            "ipvs": null, "ipsets": null,
            "interfaces": [
                {"name": "lo", "addresses": ["127.0.0.1/8"]},
                {"name": "eth0", "addresses": ["192.168.0.2/24"]},
            ],
            "conntrack": {"entries": [], "total": 0},
            "absent": {}, "errors": {},
        })
        .to_string()
    }

    fn diff(base: u64, instance: &str, changed: Value) -> String {
        json!({"type": "diff", "instance": instance, "base": base, "revision": base + 1, "changed": changed})
            .to_string()
    }

    #[test]
    fn diffs_apply_in_order_and_a_gap_is_refused() {
        let mut d = NodeData::default();
        assert_eq!(d.resume_query(), None);
        assert_eq!(
            d.on_message(&snapshot(4, "ab12", SAVE)),
            Ok(Applied::Snapshot { resync: None })
        );
        assert_eq!(d.resume_query().as_deref(), Some("since=4&instance=ab12"));
        let rules_before = d.rules_rev;
        // A conntrack-only change: the trace's inputs did not change.
        let c = json!({"conntrack": {"entries": [{"proto": "tcp"}], "total": 1}});
        assert_eq!(d.on_message(&diff(4, "ab12", c)), Ok(Applied::Diff));
        assert_eq!(d.rules_rev, rules_before);
        assert_eq!(d.snapshot.as_ref().unwrap()["conntrack"]["total"], 1);
        // Dotted part names address a field of an object.
        let new = SAVE.replace("COMMIT", "-A KUBE-SVC-X -j DROP\nCOMMIT");
        let c = json!({"iptables.v4": {"text": new}});
        assert_eq!(d.on_message(&diff(5, "ab12", c)), Ok(Applied::Diff));
        assert_eq!(d.rules_rev, rules_before + 1);
        assert_eq!(d.revision, 6);
        assert!(d.text(&["iptables", "v4"]).unwrap().contains("-j DROP"));
        // A missed revision (base 7 while at 6) and another instance's diff are both refused.
        assert!(d.on_message(&diff(7, "ab12", json!({}))).is_err());
        assert!(d.on_message(&diff(6, "other", json!({}))).is_err());
        assert_eq!(d.revision, 6);
        assert!(d.on_message("{").is_err());
        assert!(d.on_message(r#"{"type":"bogus","revision":1}"#).is_err());
    }

    #[test]
    fn resume_must_continue_our_revision_and_a_resync_replaces_everything() {
        let mut d = NodeData::default();
        d.on_message(&snapshot(3, "ab12", SAVE)).unwrap();
        let resume = |base: u64, inst: &str| {
            json!({"type": "resume", "instance": inst, "base": base, "revision": 9}).to_string()
        };
        assert!(d.on_message(&resume(2, "ab12")).is_err());
        assert!(d.on_message(&resume(3, "cd34")).is_err());
        assert_eq!(d.on_message(&resume(3, "ab12")), Ok(Applied::Resumed));
        let mut s: Value = serde_json::from_str(&snapshot(1, "cd34", "")).unwrap();
        s["resync"] = "instance".into();
        assert_eq!(
            d.on_message(&s.to_string()),
            Ok(Applied::Snapshot {
                resync: Some("instance".into())
            })
        );
        assert_eq!((d.revision, d.instance.as_deref()), (1, Some("cd34")));
        assert!(d.snapshot.as_ref().unwrap().get("resync").is_none());
        assert!(d.tables().is_empty());
    }

    #[test]
    fn chains_are_listed_per_table_with_their_rules_verbatim() {
        let t = iptables_tables(SAVE);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "nat");
        let names: Vec<&str> = t[0].chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "PREROUTING",
                "INPUT",
                "OUTPUT",
                "POSTROUTING",
                "KUBE-SERVICES",
                "KUBE-SVC-X",
                "KUBE-SEP-A"
            ]
        );
        assert_eq!(t[0].chains[0].policy, "ACCEPT");
        assert_eq!(t[0].chains[5].policy, "-");
        assert_eq!(
            t[0].chains[6].rules,
            ["-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:53"]
        );
    }

    #[test]
    fn a_probe_is_traced_through_the_nodes_own_rules() {
        let mut d = NodeData::default();
        d.on_message(&snapshot(1, "ab12", SAVE)).unwrap();
        let probe = Probe {
            src: "192.0.2.10".parse().unwrap(),
            dst: "10.96.0.10".parse().unwrap(),
            dport: 53,
            proto: Proto::Tcp,
        };
        // From the dump above: PREROUTING → KUBE-SERVICES → KUBE-SVC-X → KUBE-SEP-A, DNAT.
        let t = d.trace(probe);
        let t = t.as_ref().as_ref().unwrap();
        assert_eq!(t.chosen.output, "10.244.1.5:53");
        assert_eq!(t.chosen.probability, 1.0);
        // Another port matches no Service rule: nothing rewrites it.
        let other = Probe { dport: 54, ..probe };
        assert_eq!(d.trace(other).as_ref().as_ref().unwrap().chosen.output, "");
        // After the rules change, the cached trace is not reused.
        let new = SAVE.replace("-A KUBE-SVC-X -j KUBE-SEP-A", "-A KUBE-SVC-X -j REJECT");
        d.on_message(&diff(1, "ab12", json!({"iptables.v4": {"text": new}})))
            .unwrap();
        assert_eq!(
            d.trace(probe).as_ref().as_ref().unwrap().chosen.output,
            "REJECT"
        );
    }

    #[test]
    fn urls_carry_token_and_resume_position() {
        assert_eq!(ws_url("ws://h:1/ws", "", None), "ws://h:1/ws");
        assert_eq!(
            ws_url("ws://h:1/ws", "a b&c", Some("since=3&instance=ab")),
            "ws://h:1/ws?token=a%20b%26c&since=3&instance=ab"
        );
        assert_eq!(ws_url("ws://h/ws?x=1", "t", None), "ws://h/ws?x=1&token=t");
    }

    #[test]
    fn the_scenario_lists_kube_ipvs0_last() {
        let snap = json!({"node": {"name": ""}, "interfaces": [
            {"name": "kube-ipvs0", "addresses": ["10.96.0.1/32"]},
            {"name": "eth0", "addresses": ["192.168.0.2/24"]},
        ]});
        let loaded = api::load_scenario(&scenario_json(&snap)).unwrap();
        assert_eq!(
            loaded.scenario.node_ip(false),
            Some("192.168.0.2".parse().unwrap())
        );
    }
}
