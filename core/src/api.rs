//! The facade the CLI and the web app use: plain data in, plain data out.

use crate::diag::Diagnostic;
use crate::ipvs::mode::Stages;
use crate::ipvs::path::{IpvsNode, Timeouts};
use crate::k8s::{self, Loaded, Scenario};
use crate::netfilter::{self, Machine, NodeView, State, WalkRequest};
use crate::proxier::iptables as ipt_mode;
use crate::proxier::ipvs as ipvs_mode;
use crate::proxier::service_ports;
use crate::rules::iptables::{self as ipt, Family};
use crate::trace::{Packet, Proto, Trace};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The built-in demo: the seed's `my-service` (ClusterIP 10.104.14.67:80, Pods 10.0.0.2/3/4).
pub const DEMO_SCENARIO: &str = include_str!("../../examples/demo.yaml");

/// Every shipped example scenario: (file name, text).
pub const EXAMPLES: &[(&str, &str)] = &[
    ("demo.yaml", DEMO_SCENARIO),
    (
        "nodeport-local.yaml",
        include_str!("../../examples/nodeport-local.yaml"),
    ),
    (
        "loadbalancer-source-ranges.yaml",
        include_str!("../../examples/loadbalancer-source-ranges.yaml"),
    ),
    (
        "session-affinity.yaml",
        include_str!("../../examples/session-affinity.yaml"),
    ),
    (
        "no-endpoints.yaml",
        include_str!("../../examples/no-endpoints.yaml"),
    ),
    (
        "dual-stack.yaml",
        include_str!("../../examples/dual-stack.yaml"),
    ),
    (
        "terminating.yaml",
        include_str!("../../examples/terminating.yaml"),
    ),
    (
        "ipvs-demo.yaml",
        include_str!("../../examples/ipvs-demo.yaml"),
    ),
];

/// Load a scenario (YAML or JSON, what `kubectl get -o yaml` prints).
pub fn load_scenario(text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    k8s::load(text)
}

/// One packet to trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRequest {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub dport: u16,
    pub proto: Proto,
    /// Source port; None = a fresh ephemeral port (a new connection) per packet.
    pub sport: Option<u16>,
    /// Seed of the random draws of `-m statistic` (the kernel's get_random_u32).
    pub seed: u64,
    /// Time in seconds since the session started (affinity and conntrack expiry).
    pub now: f64,
}

/// The iptables-mode rules kube-proxy writes, per family.
#[derive(Debug, Clone, Serialize)]
pub struct RulesText {
    pub family: Family,
    /// `iptables-restore` input, byte for byte as kube-proxy writes it.
    pub restore: String,
    /// What `iptables-save` shows on the node afterwards.
    pub saved: String,
}

/// Rules for every family the node runs.
pub fn iptables_rules(s: &Scenario) -> Vec<RulesText> {
    ipt_mode::generate_all(s)
        .into_iter()
        .map(|fr| RulesText {
            family: fr.family,
            saved: ipt_mode::saved_text(&fr),
            restore: fr.payload,
        })
        .collect()
}

/// An ipset in IPVS mode's JSON: its type and its entries as `ipset save` prints them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpsetEntries {
    #[serde(rename = "type")]
    pub set_type: String,
    pub entries: Vec<String>,
}

/// What kube-proxy programs in IPVS mode, every family together (they share one IPVS table,
/// one kube-ipvs0 device and one ipset namespace; IPv6 sets are named `KUBE-6-...`).
#[derive(Debug, Clone, Serialize)]
pub struct IpvsRules {
    pub virtual_servers: Vec<ipvs_mode::VirtualServer>,
    /// Set name → type and entries, in kube-proxy's `ipsetInfo` order (IPv4 sets first).
    pub ipsets: serde_json::Map<String, serde_json::Value>,
    pub kube_ipvs0: Vec<IpAddr>,
    /// `iptables-save` of the IPv4 proxier (empty when the node has no IPv4).
    pub iptables: String,
    /// `ip6tables-save` of the IPv6 proxier, on IPv6 and dual-stack nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6tables: Option<String>,
    /// `ipvsadm -Sn` text.
    #[serde(skip)]
    pub ipvsadm_save: String,
    /// `ipset save` text.
    #[serde(skip)]
    pub ipset_save: String,
}

/// The section headers of [`IpvsRules::text`] (and of a node dump `--rules` accepts).
pub const IPVS_SECTION_IPVSADM: &str = "# ipvsadm -Sn";
pub const IPVS_SECTION_IPSET: &str = "# ipset save";
pub const IPVS_SECTION_IPTABLES: &str = "# iptables-save";
pub const IPVS_SECTION_IP6TABLES: &str = "# ip6tables-save";
pub const IPVS_SECTION_KUBE_IPVS0: &str = "# ip -brief address show dev kube-ipvs0";

impl IpvsRules {
    /// The four dumps, each under its `# <command>` header line.
    pub fn text(&self) -> String {
        let mut o = String::new();
        for (h, body) in [
            (IPVS_SECTION_IPVSADM, Some(&self.ipvsadm_save)),
            (IPVS_SECTION_IPSET, Some(&self.ipset_save)),
            (
                IPVS_SECTION_IPTABLES,
                (!self.iptables.is_empty()).then_some(&self.iptables),
            ),
            (IPVS_SECTION_IP6TABLES, self.ip6tables.as_ref()),
        ] {
            if let Some(b) = body {
                o.push_str(h);
                o.push('\n');
                o.push_str(b);
            }
        }
        o.push_str(IPVS_SECTION_KUBE_IPVS0);
        o.push('\n');
        o.push_str(&ipvs_mode::kube_ipvs0_text(&self.kube_ipvs0));
        o
    }
}

/// IPVS mode for every family the node runs.
pub fn ipvs_rules(s: &Scenario) -> IpvsRules {
    let fams = ipvs_mode::generate_all(s);
    let mut vss = Vec::new();
    let mut sets = Vec::new();
    let mut addrs = Vec::new();
    let mut iptables = String::new();
    let mut ip6tables = None;
    for f in &fams {
        vss.extend(f.virtual_servers.iter().cloned());
        sets.extend(f.ipsets.iter().cloned());
        addrs.extend(f.kube_ipvs0.iter().copied());
        let saved = ipvs_mode::saved_text(f);
        match f.family {
            Family::V4 => iptables = saved,
            Family::V6 => ip6tables = Some(saved),
        }
    }
    let services = ipvs_mode::ipvsadm_services(&vss);
    let mut ipsets = serde_json::Map::new();
    for set in &sets {
        let v = IpsetEntries {
            set_type: set.set_type.clone(),
            entries: set.members.iter().map(|m| m.elem.to_string()).collect(),
        };
        ipsets.insert(
            set.name.clone(),
            serde_json::to_value(v).expect("plain data serialises"),
        );
    }
    // The JSON list is sorted by family, protocol number, address, port (ipvsadm's -Sn order
    // differs: libipvs compares addresses by an int subtraction that wraps).
    let sorted = crate::ipvs::ipvsadm::print_rules(&services, false);
    vss.sort_by(|a, b| {
        (a.address.is_ipv6(), a.proto.number(), a.address, a.port).cmp(&(
            b.address.is_ipv6(),
            b.proto.number(),
            b.address,
            b.port,
        ))
    });
    IpvsRules {
        virtual_servers: vss,
        ipsets,
        kube_ipvs0: addrs,
        iptables,
        ip6tables,
        ipvsadm_save: sorted,
        ipset_save: crate::ipvs::ipset::print_save(&sets),
    }
}

/// How a client reaches the node, for the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A process on the node itself (OUTPUT path).
    Node,
    /// A Pod on this node (arrives from the pod network on this node).
    LocalPod,
    /// Anything else (arrives on the node's uplink).
    Remote,
}

/// Node facts the walk needs, derived from the scenario.
#[derive(Debug, Clone)]
struct NodeFacts {
    view: NodeView,
    pod_cidrs: Vec<IpNet>,
    /// Addresses of endpoints on this node (a set: big clusters have tens of thousands).
    local_pod_ips: std::collections::BTreeSet<IpAddr>,
    uplink: String,
    pod_iface: String,
    /// Bridges and br_netfilter (what `-m physdev` sees of a packet's way in).
    network: k8s::NodeNetwork,
}

impl NodeFacts {
    fn bridge_port(&self, iface: &str) -> Option<&str> {
        self.network.bridge_port(iface)
    }
}

fn node_facts(s: &Scenario) -> NodeFacts {
    let local: Vec<IpNet> = s
        .network
        .interfaces
        .iter()
        .flat_map(|(_, a)| a.iter().copied())
        .collect();
    // Connected routes of every non-loopback interface, with that interface's first address of
    // the family (what MASQUERADE picks as source for packets leaving through it).
    let mut connected = Vec::new();
    for (name, addrs) in &s.network.interfaces {
        if name == "lo" {
            continue;
        }
        for a in addrs {
            let primary = addrs
                .iter()
                .find(|x| x.addr().is_ipv4() == a.addr().is_ipv4())
                .map(|x| x.addr());
            let host = if a.addr().is_ipv4() { 32 } else { 128 };
            if let Some(p) = primary
                && a.prefix_len() < host
            {
                connected.push((a.trunc(), p));
            }
        }
    }
    let view = NodeView {
        local,
        masq_v4: s.node_ip(false),
        masq_v6: s.node_ip(true),
        connected,
        ipsets: Default::default(),
    };
    let local_pod_ips = s
        .slices
        .iter()
        .flat_map(|sl| sl.endpoints.iter().flatten())
        .filter(|e| e.node_name.as_deref() == Some(s.node_name.as_str()))
        .filter_map(|e| {
            e.addresses
                .first()
                .and_then(|a| k8s::ip::parse_ip_sloppy(a))
        })
        .collect();
    let uplink = s
        .network
        .interfaces
        .iter()
        .map(|(n, _)| n.clone())
        .find(|n| n != "lo")
        .unwrap_or_else(|| "eth0".into());
    let pod_iface = match s.config.detect_local_mode.as_str() {
        "BridgeInterface" => s.config.bridge_interface.clone(),
        "InterfaceNamePrefix" => format!("{}0", s.config.interface_name_prefix),
        _ => "cni0".into(),
    };
    NodeFacts {
        view,
        pod_cidrs: s.node_pod_cidrs(),
        local_pod_ips,
        uplink,
        pod_iface,
        network: s.network.clone(),
    }
}

impl NodeFacts {
    fn client_kind(&self, src: IpAddr) -> ClientKind {
        if self.view.is_local(src) {
            ClientKind::Node
        } else if self.pod_cidrs.iter().any(|c| c.contains(&src))
            || self.local_pod_ips.contains(&src)
        {
            ClientKind::LocalPod
        } else {
            ClientKind::Remote
        }
    }
}

/// A tracing session: the node's rules plus the state (conntrack, `-m recent`) that carries
/// over from one packet to the next.
#[derive(Debug, Clone)]
pub struct Session {
    machines: Vec<Machine>,
    facts: NodeFacts,
    pub state: State,
    next_sport: u16,
    mode: String,
    ipvs: Option<Box<IpvsPart>>,
}

/// IPVS mode's part of a session: the IPVS table with its connections and templates, the
/// ruleset split at IPVS's hooks, and conntrack as seen after IPVS's rewrite.
#[derive(Debug, Clone)]
struct IpvsPart {
    node: IpvsNode,
    stages: Vec<Stages>,
    post_state: State,
}

impl Session {
    /// iptables mode with the rules kube-proxy would program for this scenario.
    pub fn new(s: &Scenario) -> Session {
        let facts = node_facts(s);
        let machines = ipt_mode::generate_all(s)
            .iter()
            .map(|fr| Machine::new(ipt_mode::node_ruleset(fr), fr.family, facts.view.clone()))
            .collect();
        Session {
            machines,
            facts,
            state: State::default(),
            next_sport: 40000,
            mode: "iptables".into(),
            ipvs: None,
        }
    }

    /// The mode the scenario's KubeProxyConfiguration names: IPVS for `mode: ipvs`, iptables
    /// otherwise (nftables mode is not built; kube-proxy's default is iptables).
    pub fn for_config_mode(s: &Scenario) -> Session {
        match s.config.mode {
            k8s::ProxyMode::Ipvs => Session::new_ipvs(s),
            _ => Session::new(s),
        }
    }

    /// IPVS mode with what kube-proxy would program for this scenario.
    pub fn new_ipvs(s: &Scenario) -> Session {
        let facts = node_facts(s);
        let fams = ipvs_mode::generate_all(s);
        let mut view = facts.view.clone();
        let mut vss = Vec::new();
        for f in &fams {
            view.ipsets.extend(ipvs_mode::machine_ipsets(&f.ipsets));
            view.local
                .extend(f.kube_ipvs0.iter().map(|a| IpNet::from(*a)));
            vss.extend(f.virtual_servers.iter().cloned());
        }
        let machines: Vec<Machine> = fams
            .iter()
            .map(|f| Machine::new(ipvs_mode::node_ruleset(f), f.family, view.clone()))
            .collect();
        let (node, problems) =
            IpvsNode::from_ipvsadm(&ipvs_mode::ipvsadm_services(&vss), ipvs_timeouts(s));
        debug_assert!(problems.is_empty(), "{problems:?}");
        Session::with_ipvs(machines, facts, node)
    }

    fn with_ipvs(machines: Vec<Machine>, mut facts: NodeFacts, node: IpvsNode) -> Session {
        // kube-ipvs0's addresses are the node's own: a process may use a VIP as its source.
        if let Some(m) = machines.first() {
            facts.view.local = m.node.local.clone();
        }
        let stages = machines.iter().cloned().map(Stages::new).collect();
        Session {
            machines,
            facts,
            state: State::default(),
            next_sport: 40000,
            mode: "ipvs".into(),
            ipvs: Some(Box::new(IpvsPart {
                node,
                stages,
                post_state: State::default(),
            })),
        }
    }

    /// IPVS mode with a real node's dumps: `text` holds `ipvsadm -Sn`, `ipset save`,
    /// `iptables-save` (and/or `ip6tables-save`) and optionally the kube-ipvs0 addresses, each
    /// under its `# <command>` header as `proxyscope rules --mode ipvs` prints them. Lines in
    /// diagnostics and traces are lines of `text`.
    pub fn from_ipvs_dump(s: &Scenario, text: &str) -> (Session, Vec<Diagnostic>) {
        let facts = node_facts(s);
        let mut diags = Vec::new();
        let d = crate::ipvs::dump::split(text, &mut diags);
        let mut view = facts.view.clone();
        view.ipsets.extend(ipvs_mode::machine_ipsets(&d.ipsets));
        view.local
            .extend(d.kube_ipvs0.iter().map(|a| IpNet::from(*a)));
        let machines: Vec<Machine> = d
            .rulesets
            .into_iter()
            .map(|(fam, mut rs)| {
                ipvs_mode::with_builtin_chains(&mut rs);
                Machine::new(rs, fam, view.clone())
            })
            .collect();
        let (node, problems) = IpvsNode::from_ipvsadm(&d.services, ipvs_timeouts(s));
        for p in problems {
            diags.push(Diagnostic::warning(
                None,
                format!("ipvsadm service {}", p.service),
                format!("{}; the service is left out", p.message),
            ));
        }
        (Session::with_ipvs(machines, facts, node), diags)
    }

    /// IPVS mode: kube-proxy syncs again after the scenario changed (Services or endpoints
    /// added, removed, terminating) at time `now`. The IPVS table is updated the way kube-proxy
    /// updates it (in place, graceful termination at weight 0), the ipsets and iptables rules
    /// are replaced; connections, templates and conntrack carry over. `None` in iptables mode.
    pub fn resync_ipvs(&mut self, s: &Scenario, now: f64) -> Option<crate::ipvs::path::SyncReport> {
        let old = self.ipvs.take()?;
        let fresh = Session::new_ipvs(s);
        let mut part = fresh.ipvs.expect("IPVS session");
        let mut node = old.node;
        let wanted = part.node.to_ipvsadm();
        let report = node.sync(&wanted, now);
        part.node = node;
        part.post_state = old.post_state;
        self.machines = fresh.machines;
        self.facts = fresh.facts;
        self.ipvs = Some(part);
        Some(report)
    }

    /// The IPVS table with live counters (`ipvsadm -Ln`), in IPVS mode.
    pub fn ipvs_table(&self) -> Option<Vec<crate::ipvs::ipvsadm::Service>> {
        self.ipvs.as_ref().map(|p| p.node.to_ipvsadm())
    }

    /// The IPVS state (connections, persistence templates), in IPVS mode.
    pub fn ipvs_node(&self) -> Option<&IpvsNode> {
        self.ipvs.as_ref().map(|p| &p.node)
    }

    /// iptables mode with a real node's `iptables-save` / `ip6tables-save` dump; the scenario
    /// supplies the node (addresses, pod CIDR).
    pub fn from_dump(s: &Scenario, dump: &str) -> (Session, Vec<Diagnostic>) {
        let facts = node_facts(s);
        let family = ipt::parse::detect_family(dump);
        // Straight into the compact program: a node's dump is never held as the owned model.
        let (program, diagnostics) = netfilter::program::Program::parse(dump, family);
        let machines = vec![Machine::from_program(program, facts.view.clone())];
        (
            Session {
                machines,
                facts,
                state: State::default(),
                next_sport: 40000,
                mode: "iptables".into(),
                ipvs: None,
            },
            diagnostics,
        )
    }

    /// How a source address reaches this node.
    pub fn client_kind(&self, src: IpAddr) -> ClientKind {
        self.facts.client_kind(src)
    }

    /// Trace one packet, updating the session's state.
    pub fn trace(&mut self, req: &TraceRequest) -> Trace {
        let sport = req.sport.unwrap_or_else(|| {
            let p = self.next_sport;
            self.next_sport = if p >= 60999 { 32768 } else { p + 1 };
            p
        });
        let pkt = Packet {
            src: req.src,
            sport,
            dst: req.dst,
            dport: req.dport,
            proto: req.proto,
            mark: 0,
        };
        let kind = self.facts.client_kind(req.src);
        let in_iface = match kind {
            ClientKind::Node => None,
            ClientKind::LocalPod => Some(self.facts.pod_iface.clone()),
            ClientKind::Remote => Some(self.facts.uplink.clone()),
        };
        // br_netfilter's view of where the packet came in (`-m physdev`).
        let bridge = in_iface
            .as_deref()
            .and_then(|i| self.facts.bridge_port(i))
            .map(|port| netfilter::eval::BridgeInfo {
                physindev: Some(port.to_string()),
                physoutdev: None,
            });
        let wreq = WalkRequest {
            pkt,
            local_origin: kind == ClientKind::Node,
            in_iface,
            now: req.now,
            bridge,
            ipvs: None,
        };
        let fam = if req.dst.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        };
        let Some(m) = self.machines.iter().find(|m| m.family == fam) else {
            return no_family_trace(&self.mode, pkt, fam);
        };
        let mut t = match self.ipvs.as_mut() {
            Some(ip) => {
                let st = ip
                    .stages
                    .iter()
                    .find(|st| st.full.family == fam)
                    .expect("one stage set per machine");
                crate::ipvs::mode::trace(
                    st,
                    &mut ip.node,
                    &wreq,
                    &mut self.state,
                    &mut ip.post_state,
                    req.seed,
                )
            }
            None => netfilter::trace(m, &wreq, &mut self.state, req.seed, &self.mode),
        };
        if req.src.is_ipv6() != req.dst.is_ipv6() {
            t.warnings.push(
                "source and destination are of different families: no such packet exists".into(),
            );
        }
        t
    }
}

/// The IPVS timeouts kube-proxy sets (`ipvs.tcpTimeout`, ...; 0 keeps the kernel's).
fn ipvs_timeouts(s: &Scenario) -> Timeouts {
    let c = &s.config.ipvs;
    Timeouts::from_config(c.tcp_timeout, c.tcp_fin_timeout, c.udp_timeout)
}

fn no_family_trace(mode: &str, pkt: Packet, fam: Family) -> Trace {
    let o = crate::trace::Outcome {
        output: String::new(),
        probability: 1.0,
        masq: false,
    };
    Trace {
        mode: mode.into(),
        packet: pkt,
        output: String::new(),
        masq: false,
        outcomes: vec![o.clone()],
        chosen: o,
        rules_evaluated: 0,
        final_packet: Some(pkt),
        verdict: crate::trace::Verdict::Forwarded,
        steps: Vec::new(),
        warnings: vec![format!(
            "the node runs no {fam:?} proxier (it has no address of that family): no rules apply"
        )],
    }
}

/// A client to send packets from, for pickers in UIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientPreset {
    pub label: String,
    pub kind: ClientKind,
    pub src: IpAddr,
}

/// Typical clients for this scenario: a Pod on this node, a Pod on another node, the node, an
/// external client (TEST-NET-3 documentation address).
pub fn client_presets(s: &Scenario) -> Vec<ClientPreset> {
    let f = node_facts(s);
    let mut out = Vec::new();
    let v6 = s.node_ip(false).is_none() && s.node_ip(true).is_some();
    let host_in = |net: &IpNet, n: u32| -> Option<IpAddr> {
        match net {
            IpNet::V4(n4) => {
                let base = u32::from(n4.network());
                let ip = std::net::Ipv4Addr::from(base.checked_add(n)?);
                n4.contains(&ip).then_some(IpAddr::V4(ip))
            }
            IpNet::V6(n6) => {
                let base = u128::from(n6.network());
                let ip = std::net::Ipv6Addr::from(base + n as u128);
                n6.contains(&ip).then_some(IpAddr::V6(ip))
            }
        }
    };
    let pod_net = f
        .pod_cidrs
        .iter()
        .find(|c| c.addr().is_ipv6() == v6)
        .copied();
    let local_pod = pod_net
        .and_then(|n| host_in(&n, 100))
        .or_else(|| f.local_pod_ips.iter().next().copied());
    if let Some(ip) = local_pod {
        out.push(ClientPreset {
            label: "Pod on this node".into(),
            kind: ClientKind::LocalPod,
            src: ip,
        });
    }
    let cluster = s
        .config
        .cluster_cidrs
        .iter()
        .find(|c| c.addr().is_ipv6() == v6)
        .copied();
    let other = cluster.and_then(|c| {
        (1..4096u32)
            .map(|k| k * 256 + 100)
            .filter_map(|n| host_in(&c, n))
            .find(|ip| !f.pod_cidrs.iter().any(|p| p.contains(ip)) && !f.local_pod_ips.contains(ip))
    });
    if let Some(ip) = other {
        out.push(ClientPreset {
            label: "Pod on another node".into(),
            kind: ClientKind::Remote,
            src: ip,
        });
    }
    if let Some(ip) = s.node_ip(v6) {
        out.push(ClientPreset {
            label: "This node".into(),
            kind: ClientKind::Node,
            src: ip,
        });
    }
    let ext: IpAddr = if v6 {
        "2001:db8:ffff::10".parse().expect("literal")
    } else {
        "203.0.113.10".parse().expect("literal")
    };
    out.push(ClientPreset {
        label: "External client".into(),
        kind: ClientKind::Remote,
        src: ext,
    });
    out
}

/// Where a packet can be sent to reach a Service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceTarget {
    pub label: String,
    /// `cluster_ip`, `node_port`, `external_ip`, `load_balancer`.
    pub kind: String,
    pub service: String,
    pub dst: IpAddr,
    pub dport: u16,
    pub proto: Proto,
}

/// Every address:port of every Service port (ClusterIP, NodePort on the node IP, externalIPs,
/// LB IPs), for pickers in UIs.
pub fn service_targets(s: &Scenario) -> Vec<ServiceTarget> {
    let mut out = Vec::new();
    for fam in ipt_mode::families(s) {
        let v6 = fam == Family::V6;
        for spe in service_ports(s, v6) {
            let sp = &spe.port;
            let svc = sp.name_string.clone();
            let mut push = |kind: &str, label: String, dst: IpAddr, dport: u16| {
                out.push(ServiceTarget {
                    label,
                    kind: kind.into(),
                    service: svc.clone(),
                    dst,
                    dport,
                    proto: sp.protocol,
                });
            };
            push(
                "cluster_ip",
                format!(
                    "{svc} ClusterIP {}",
                    k8s::ip::join_host_port(sp.cluster_ip, sp.port)
                ),
                sp.cluster_ip,
                sp.port,
            );
            if sp.node_port != 0
                && let Some(ip) = s.node_ip(v6)
            {
                push(
                    "node_port",
                    format!(
                        "{svc} NodePort {}",
                        k8s::ip::join_host_port(ip, sp.node_port)
                    ),
                    ip,
                    sp.node_port,
                );
            }
            for ip in &sp.external_ips {
                push(
                    "external_ip",
                    format!("{svc} externalIP {}", k8s::ip::join_host_port(*ip, sp.port)),
                    *ip,
                    sp.port,
                );
            }
            for ip in &sp.lb_ips {
                push(
                    "load_balancer",
                    format!(
                        "{svc} LoadBalancer {}",
                        k8s::ip::join_host_port(*ip, sp.port)
                    ),
                    *ip,
                    sp.port,
                );
            }
        }
    }
    out
}
