//! Seeded generators of Kubernetes scenarios: random ones for the real-kernel differential tests,
//! large ones for benchmarks.
//!
//! A scenario is a multi-document YAML string of real objects, printed the way
//! `kubectl get -o yaml` prints them (keys sorted, lists flush with their key, strings that
//! would read as numbers or timestamps double-quoted, `endpoints: null` for an empty slice):
//! one `kubeproxy.config.k8s.io/v1alpha1` KubeProxyConfiguration, one `v1` Node, one
//! `proxyscope.dev/v1alpha1` NodeNetwork, then `v1` Services each followed by their
//! `discovery.k8s.io/v1` EndpointSlices.
//!
//! The generators are pure: randomness comes only from `StdRng::seed_from_u64(seed)`, so a seed
//! names a scenario forever (on every platform, including wasm32).
//!
//! # Address plan
//!
//! The same plan is wired into network namespaces by the native agent's kernel harness
//! (`native-agent/src/kernel/world.rs`), so every address below is reachable there.
//!
//! | what | IPv4 | IPv6 |
//! |---|---|---|
//! | this node `node-a`, eth0 (LAN) | 192.168.0.2/24 | 2001:db8::1/64 |
//! | node-a, pods0 (gateway of its Pods, like a CNI bridge; MASQUERADE source towards them) | 10.244.0.1/24 | fd00:10:244::1/64 |
//! | node-a, up0 (upstream link, default route) | 172.31.255.2/30 | fd00:ffff::2/64 |
//! | clusterCIDR (kube-proxy's local-traffic detector) | 10.244.0.0/16 | fd00:10:244::/48 |
//! | node-a podCIDR; its Pods' endpoints | 10.244.0.0/24; 10.244.0.10 … | fd00:10:244::/64; fd00:10:244::a … |
//! | node-b podCIDR; remote endpoints | 10.244.1.0/24; 10.244.1.10 … | fd00:10:244:1::/64; fd00:10:244:1::a … |
//! | Service ClusterIPs (service CIDR) | 10.96.0.0/16 | fd00:10:96::/112 |
//! | externalIPs | 203.0.113.0/24 | 2001:db8:e::/64 |
//! | LoadBalancer ingress IPs | 198.51.100.0/24 | 2001:db8:1b::/64 |
//! | external client (on the LAN) | 192.168.0.100 | 2001:db8::100 |
//! | client Pod on node-a | 10.244.0.250 | fd00:10:244::fa |
//!
//! NodePorts are 30000 + 10·service + port index; health-check NodePorts 32000 + service.
//! kube-proxy's local-traffic detector is drawn per scenario: `ClusterCIDR` (mostly),
//! `NodeCIDR`, or `InterfaceNamePrefix` with prefix `pod` (the harness's Pod-facing interfaces
//! are `pods0` and `podc0`).
//! `large_cluster` uses a wider clusterCIDR (10.128.0.0/9) so 100 000 endpoints fit; it is for
//! benchmarks, not for the kernel harness.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Name of the node the scenarios describe (kube-proxy's `hostnameOverride`).
pub const NODE_NAME: &str = "node-a";
/// Name of the other node that hosts "remote" endpoints.
pub const OTHER_NODE_NAME: &str = "node-b";

// ---------------------------------------------------------------------------------------------
// A tiny YAML tree and a printer with kubectl's layout.

#[derive(Debug, Clone)]
enum Y {
    Map(Vec<(String, Y)>),
    /// A map printed in the given key order (proxyscope's own NodeNetwork, where the order of
    /// interfaces is meaningful; kubectl never prints these).
    Ordered(Vec<(String, Y)>),
    List(Vec<Y>),
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
}

fn s(v: impl ToString) -> Y {
    Y::Str(v.to_string())
}

fn map(entries: Vec<(&str, Y)>) -> Y {
    Y::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn strs<T: std::fmt::Display>(items: &[T]) -> Y {
    Y::List(items.iter().map(s).collect())
}

/// Would a plain scalar read back as something other than this string (YAML 1.1 or 1.2), or
/// not parse at all? Then kubectl (go-yaml) quotes it.
fn needs_quotes(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~"
    ) {
        return true;
    }
    // Numbers (and timestamps, which start with digits and contain '-' / ':').
    if v.parse::<f64>().is_ok()
        || (v.as_bytes()[0].is_ascii_digit() && v.contains('T') && v.contains(':'))
    {
        return true;
    }
    let first = v.as_bytes()[0];
    if b"-?:,[]{}#&*!|>'\"%@`".contains(&first) {
        return true;
    }
    v.contains(": ")
        || v.contains(" #")
        || v.ends_with(':')
        || v.starts_with(' ')
        || v.ends_with(' ')
}

fn scalar(out: &mut String, v: &Y) {
    match v {
        Y::Str(t) if needs_quotes(t) => {
            let _ = write!(out, "\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""));
        }
        Y::Str(t) => out.push_str(t),
        Y::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Y::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Y::Null => out.push_str("null"),
        Y::Map(m) | Y::Ordered(m) if m.is_empty() => out.push_str("{}"),
        Y::List(l) if l.is_empty() => out.push_str("[]"),
        Y::Map(_) | Y::Ordered(_) | Y::List(_) => unreachable!("containers are not scalars"),
    }
}

fn is_scalar(v: &Y) -> bool {
    match v {
        Y::Map(m) | Y::Ordered(m) => m.is_empty(),
        Y::List(l) => l.is_empty(),
        _ => true,
    }
}

fn emit_map(out: &mut String, entries: &[(String, Y)], indent: usize) {
    let mut sorted: Vec<&(String, Y)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    emit_entries(out, sorted, indent);
}

fn emit_entries(out: &mut String, entries: Vec<&(String, Y)>, indent: usize) {
    for (k, v) in entries {
        out.extend(std::iter::repeat_n(' ', indent));
        out.push_str(k);
        out.push(':');
        if is_scalar(v) {
            out.push(' ');
            scalar(out, v);
            out.push('\n');
            continue;
        }
        out.push('\n');
        match v {
            Y::Map(m) => emit_map(out, m, indent + 2),
            Y::Ordered(m) => emit_entries(out, m.iter().collect(), indent + 2),
            // kubectl puts a list's dashes at the same indentation as its key.
            Y::List(items) => emit_list(out, items, indent),
            _ => unreachable!(),
        }
    }
}

fn emit_list(out: &mut String, items: &[Y], indent: usize) {
    for item in items {
        if is_scalar(item) {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str("- ");
            scalar(out, item);
            out.push('\n');
        } else if let Y::Map(m) = item {
            let mut body = String::new();
            emit_map(&mut body, m, indent + 2);
            // The first key shares the line with the dash.
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str("- ");
            out.push_str(&body[indent + 2..]);
        } else {
            unreachable!("lists of lists are not used");
        }
    }
}

fn document(out: &mut String, obj: &Y) {
    out.push_str("---\n");
    match obj {
        Y::Map(m) => emit_map(out, m, 0),
        _ => unreachable!("documents are objects"),
    }
}

// ---------------------------------------------------------------------------------------------
// The scenario model.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SvcType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
    Headless,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
    Dual,
}

impl Fam {
    fn families(self) -> &'static [bool] {
        // true = IPv4
        match self {
            Fam::V4 => &[true],
            Fam::V6 => &[false],
            Fam::Dual => &[true, false],
        }
    }
}

#[derive(Debug, Clone)]
struct Port {
    name: Option<String>,
    port: u16,
    udp: bool,
    target: u16,
    node_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cond {
    Ready,
    /// ready=false serving=true terminating=true: used only when nothing is ready.
    TerminatingServing,
    TerminatingNotServing,
    NotReady,
    /// `conditions: {}`: kube-proxy treats missing conditions as ready.
    Unset,
}

#[derive(Debug, Clone)]
struct Ep {
    /// Index into the per-node address pools.
    slot: u32,
    local: bool,
    cond: Cond,
}

#[derive(Debug, Clone)]
struct Svc {
    idx: u32,
    ns: String,
    name: String,
    typ: SvcType,
    fam: Fam,
    ports: Vec<Port>,
    etp_local: bool,
    itp_local: bool,
    affinity: Option<u32>,
    external_ips: u32,
    lb: bool,
    source_ranges: Vec<&'static str>,
    hcnp: Option<u16>,
    eps: Vec<Ep>,
    /// Split the endpoints over two slices.
    two_slices: bool,
}

fn cluster_ip(idx: u32, v4: bool) -> IpAddr {
    let n = 10 + idx * 10;
    if v4 {
        IpAddr::V4(Ipv4Addr::new(10, 96, (n >> 8) as u8, n as u8))
    } else {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, n as u16))
    }
}

fn external_ip(idx: u32, k: u32, v4: bool) -> IpAddr {
    let n = 10 + idx * 4 + k;
    if v4 {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, n as u8))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xe, 0, 0, 0, 0, n as u16))
    }
}

fn lb_ip(idx: u32, v4: bool) -> IpAddr {
    let n = 10 + idx;
    if v4 {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, n as u8))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x1b, 0, 0, 0, 0, n as u16))
    }
}

/// Pod IP number `slot` on node-a (`local`) or node-b.
fn pod_ip(slot: u32, local: bool, v4: bool) -> IpAddr {
    let n = 10 + slot;
    let third = if local { 0 } else { 1 };
    if v4 {
        IpAddr::V4(Ipv4Addr::new(10, 244, third, n as u8))
    } else {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x10,
            0x244,
            third as u16,
            0,
            0,
            0,
            n as u16,
        ))
    }
}

/// LoadBalancer source ranges to draw from, per family, with who they let in (for readers).
const SOURCE_RANGES_V4: [&str; 4] = [
    "192.168.0.0/25", // the LAN client (.100) and the node (.2): the node-IP rule appears
    "192.168.0.128/25", // neither the LAN client nor the node
    "10.244.0.0/24",  // node-a's Pods only
    "203.0.113.0/24", // nobody in the world
];
const SOURCE_RANGES_V6: [&str; 3] = [
    "2001:db8::/64",      // the LAN client and the node
    "2001:db8:ffff::/48", // nobody
    "fd00:10:244::/64",   // node-a's Pods
];

fn uid(rng: &mut StdRng) -> String {
    let a: u64 = rng.random_range(0..u64::MAX);
    let b: u64 = rng.random_range(0..u64::MAX);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

fn suffix(rng: &mut StdRng) -> String {
    // What generateName appends: 5 characters from Kubernetes' "consonants and digits" alphabet.
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
        .collect()
}

fn chance(rng: &mut StdRng, percent: u32) -> bool {
    rng.random_range(0..100) < percent
}

fn metadata(rng: &mut StdRng, name: &str, ns: Option<&str>, extra: Vec<(&str, Y)>) -> Y {
    let rv = rng.random_range(1000..999_999).to_string();
    let mut m = vec![
        ("creationTimestamp", s("2026-01-01T00:00:00Z")),
        ("name", s(name)),
        ("resourceVersion", s(rv)),
        ("uid", s(uid(rng))),
    ];
    if let Some(ns) = ns {
        m.push(("namespace", s(ns)));
    }
    m.extend(extra);
    map(m)
}

// ---------------------------------------------------------------------------------------------
// Fixed documents.

struct ProxyOptions {
    /// `detectLocalMode`; for `InterfaceNamePrefix` the prefix is `pod` (the harness's Pod-side
    /// interfaces are `pods0` and `podc0`).
    detect_local_mode: &'static str,
    masquerade_all: bool,
    localhost_node_ports: bool,
    node_port_addresses: bool,
    cluster_cidr: &'static str,
}

fn proxy_config(o: &ProxyOptions) -> Y {
    let mut m = vec![
        ("apiVersion", s("kubeproxy.config.k8s.io/v1alpha1")),
        ("kind", s("KubeProxyConfiguration")),
        ("clusterCIDR", s(o.cluster_cidr)),
        ("detectLocalMode", s(o.detect_local_mode)),
        ("hostnameOverride", s(NODE_NAME)),
        (
            "iptables",
            map(vec![
                ("localhostNodePorts", Y::Bool(o.localhost_node_ports)),
                ("masqueradeAll", Y::Bool(o.masquerade_all)),
                ("masqueradeBit", Y::Int(14)),
            ]),
        ),
        ("mode", s("iptables")),
    ];
    if o.detect_local_mode == "InterfaceNamePrefix" {
        m.push(("detectLocal", map(vec![("interfaceNamePrefix", s("pod"))])));
    }
    if o.node_port_addresses {
        m.push((
            "nodePortAddresses",
            strs(&["192.168.0.0/24", "2001:db8::/64"]),
        ));
    } else {
        m.push(("nodePortAddresses", Y::Null));
    }
    map(m)
}

fn node(rng: &mut StdRng, pod_cidrs: &[&str]) -> Y {
    map(vec![
        ("apiVersion", s("v1")),
        ("kind", s("Node")),
        (
            "metadata",
            metadata(
                rng,
                NODE_NAME,
                None,
                vec![(
                    "labels",
                    map(vec![
                        ("kubernetes.io/arch", s("amd64")),
                        ("kubernetes.io/hostname", s(NODE_NAME)),
                        ("kubernetes.io/os", s("linux")),
                    ]),
                )],
            ),
        ),
        (
            "spec",
            map(vec![
                ("podCIDR", s(pod_cidrs[0])),
                ("podCIDRs", strs(pod_cidrs)),
            ]),
        ),
        (
            "status",
            map(vec![(
                "addresses",
                Y::List(vec![
                    map(vec![
                        ("address", s("192.168.0.2")),
                        ("type", s("InternalIP")),
                    ]),
                    map(vec![
                        ("address", s("2001:db8::1")),
                        ("type", s("InternalIP")),
                    ]),
                    map(vec![("address", s(NODE_NAME)), ("type", s("Hostname"))]),
                ]),
            )]),
        ),
    ])
}

fn node_network() -> Y {
    map(vec![
        ("apiVersion", s("proxyscope.dev/v1alpha1")),
        ("kind", s("NodeNetwork")),
        ("metadata", map(vec![("name", s(NODE_NAME))])),
        (
            "interfaces",
            // Interface order is kube-proxy's nodePortAddresses order: keep lo, eth0, pods0, up0.
            Y::Ordered(vec![
                ("lo".into(), strs(&["127.0.0.1/8", "::1/128"])),
                ("eth0".into(), strs(&["192.168.0.2/24", "2001:db8::1/64"])),
                (
                    "pods0".into(),
                    strs(&["10.244.0.1/24", "fd00:10:244::1/64"]),
                ),
                ("up0".into(), strs(&["172.31.255.2/30", "fd00:ffff::2/64"])),
            ]),
        ),
        (
            "features",
            map(vec![
                ("nfacct", Y::Bool(true)),
                ("randomFully", Y::Bool(true)),
            ]),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Services and EndpointSlices.

fn service_doc(rng: &mut StdRng, svc: &Svc) -> Y {
    let fams = svc.fam.families();
    let mut spec: Vec<(&str, Y)> = Vec::new();
    let type_name = match svc.typ {
        SvcType::ClusterIP | SvcType::Headless => "ClusterIP",
        SvcType::NodePort => "NodePort",
        SvcType::LoadBalancer => "LoadBalancer",
        SvcType::ExternalName => "ExternalName",
    };
    spec.push(("type", s(type_name)));
    spec.push((
        "sessionAffinity",
        s(if svc.affinity.is_some() {
            "ClientIP"
        } else {
            "None"
        }),
    ));
    if svc.typ == SvcType::ExternalName {
        spec.push(("externalName", s(format!("{}.example.com", svc.name))));
        return service_wrapper(rng, svc, spec, map(vec![("loadBalancer", map(vec![]))]));
    }
    let ips: Vec<String> = if svc.typ == SvcType::Headless {
        vec!["None".into()]
    } else {
        fams.iter()
            .map(|&v4| cluster_ip(svc.idx, v4).to_string())
            .collect()
    };
    spec.push(("clusterIP", s(&ips[0])));
    spec.push(("clusterIPs", strs(&ips)));
    spec.push((
        "ipFamilies",
        strs(
            &fams
                .iter()
                .map(|&v4| if v4 { "IPv4" } else { "IPv6" })
                .collect::<Vec<_>>(),
        ),
    ));
    spec.push((
        "ipFamilyPolicy",
        s(if svc.fam == Fam::Dual {
            "PreferDualStack"
        } else {
            "SingleStack"
        }),
    ));
    spec.push((
        "internalTrafficPolicy",
        s(if svc.itp_local { "Local" } else { "Cluster" }),
    ));
    let external = matches!(svc.typ, SvcType::NodePort | SvcType::LoadBalancer);
    // The API server defaults externalTrafficPolicy only for NodePort / LoadBalancer; a
    // ClusterIP Service with externalIPs carries it only when the user set it.
    if external || (svc.external_ips > 0 && svc.etp_local) {
        spec.push((
            "externalTrafficPolicy",
            s(if svc.etp_local { "Local" } else { "Cluster" }),
        ));
    }
    if svc.external_ips > 0 {
        let eips: Vec<String> = fams
            .iter()
            .flat_map(|&v4| {
                (0..svc.external_ips).map(move |k| external_ip(svc.idx, k, v4).to_string())
            })
            .collect();
        spec.push(("externalIPs", strs(&eips)));
    }
    if svc.typ == SvcType::LoadBalancer {
        spec.push(("allocateLoadBalancerNodePorts", Y::Bool(true)));
        if !svc.source_ranges.is_empty() {
            spec.push(("loadBalancerSourceRanges", strs(&svc.source_ranges)));
        }
    }
    if let Some(h) = svc.hcnp {
        spec.push(("healthCheckNodePort", Y::Int(h.into())));
    }
    if let Some(t) = svc.affinity {
        spec.push((
            "sessionAffinityConfig",
            map(vec![(
                "clientIP",
                map(vec![("timeoutSeconds", Y::Int(t.into()))]),
            )]),
        ));
    }
    let ports = svc
        .ports
        .iter()
        .map(|p| {
            let mut m = vec![
                ("port", Y::Int(p.port.into())),
                ("protocol", s(if p.udp { "UDP" } else { "TCP" })),
                ("targetPort", Y::Int(p.target.into())),
            ];
            if let Some(n) = &p.name {
                m.push(("name", s(n)));
            }
            if let Some(np) = p.node_port {
                m.push(("nodePort", Y::Int(np.into())));
            }
            map(m)
        })
        .collect();
    spec.push(("ports", Y::List(ports)));
    spec.push(("selector", map(vec![("app", s(&svc.name))])));
    let status = if svc.lb {
        let ingress = fams
            .iter()
            .map(|&v4| map(vec![("ip", s(lb_ip(svc.idx, v4))), ("ipMode", s("VIP"))]))
            .collect();
        map(vec![(
            "loadBalancer",
            map(vec![("ingress", Y::List(ingress))]),
        )])
    } else {
        map(vec![("loadBalancer", map(vec![]))])
    };
    service_wrapper(rng, svc, spec, status)
}

fn service_wrapper(rng: &mut StdRng, svc: &Svc, spec: Vec<(&str, Y)>, status: Y) -> Y {
    map(vec![
        ("apiVersion", s("v1")),
        ("kind", s("Service")),
        ("metadata", metadata(rng, &svc.name, Some(&svc.ns), vec![])),
        ("spec", map(spec)),
        ("status", status),
    ])
}

fn conditions(c: Cond) -> Y {
    let (ready, serving, terminating) = match c {
        Cond::Ready => (true, true, false),
        Cond::TerminatingServing => (false, true, true),
        Cond::TerminatingNotServing => (false, false, true),
        Cond::NotReady => (false, false, false),
        Cond::Unset => return map(vec![]),
    };
    map(vec![
        ("ready", Y::Bool(ready)),
        ("serving", Y::Bool(serving)),
        ("terminating", Y::Bool(terminating)),
    ])
}

fn slice_docs(rng: &mut StdRng, svc: &Svc) -> Vec<Y> {
    if svc.typ == SvcType::ExternalName {
        return Vec::new();
    }
    let mut docs = Vec::new();
    for &v4 in svc.fam.families() {
        let groups: Vec<&[Ep]> = if svc.two_slices && svc.eps.len() >= 2 {
            let (a, b) = svc.eps.split_at(svc.eps.len() / 2);
            vec![a, b]
        } else {
            vec![&svc.eps[..]]
        };
        for group in groups {
            let endpoints: Vec<Y> = group
                .iter()
                .map(|e| {
                    let node = if e.local { NODE_NAME } else { OTHER_NODE_NAME };
                    let pod = format!("{}-{}", svc.name, suffix(rng));
                    let pod_uid = uid(rng);
                    map(vec![
                        ("addresses", strs(&[pod_ip(e.slot, e.local, v4)])),
                        ("conditions", conditions(e.cond)),
                        ("nodeName", s(node)),
                        (
                            "targetRef",
                            map(vec![
                                ("kind", s("Pod")),
                                ("name", s(pod)),
                                ("namespace", s(&svc.ns)),
                                ("uid", s(pod_uid)),
                            ]),
                        ),
                    ])
                })
                .collect();
            let ports = svc
                .ports
                .iter()
                .map(|p| {
                    map(vec![
                        ("name", s(p.name.clone().unwrap_or_default())),
                        ("port", Y::Int(p.target.into())),
                        ("protocol", s(if p.udp { "UDP" } else { "TCP" })),
                    ])
                })
                .collect();
            let name = format!("{}-{}", svc.name, suffix(rng));
            let mut labels = vec![
                (
                    "endpointslice.kubernetes.io/managed-by",
                    s("endpointslice-controller.k8s.io"),
                ),
                ("kubernetes.io/service-name", s(&svc.name)),
            ];
            if svc.typ == SvcType::Headless {
                labels.push(("service.kubernetes.io/headless", s("")));
            }
            let meta = metadata(
                rng,
                &name,
                Some(&svc.ns),
                vec![
                    ("generateName", s(format!("{}-", svc.name))),
                    ("labels", map(labels)),
                ],
            );
            docs.push(map(vec![
                ("addressType", s(if v4 { "IPv4" } else { "IPv6" })),
                ("apiVersion", s("discovery.k8s.io/v1")),
                // An empty slice prints `endpoints: null` (the field has no omitempty).
                (
                    "endpoints",
                    if endpoints.is_empty() {
                        Y::Null
                    } else {
                        Y::List(endpoints)
                    },
                ),
                ("kind", s("EndpointSlice")),
                ("metadata", meta),
                ("ports", Y::List(ports)),
            ]));
        }
    }
    docs
}

// ---------------------------------------------------------------------------------------------
// Random scenarios.

const PORTS: [u16; 5] = [80, 443, 53, 8080, 9090];
const TARGETS: [u16; 5] = [80, 8080, 9376, 5353, 8443];

fn random_service(rng: &mut StdRng, idx: u32, typ: SvcType, slot: &mut [u32; 2]) -> Svc {
    let fam = match rng.random_range(0..10) {
        0..=5 => Fam::V4,
        6..=7 => Fam::V6,
        _ => Fam::Dual,
    };
    let nports = match rng.random_range(0..10) {
        0..=6 => 1,
        7..=8 => 2,
        _ => 3,
    };
    let mut ports: Vec<Port> = Vec::new();
    while ports.len() < nports {
        let port = PORTS[rng.random_range(0..PORTS.len())];
        let udp = chance(rng, 30);
        if ports.iter().any(|p| p.port == port && p.udp == udp) {
            continue;
        }
        let k = ports.len() as u16;
        ports.push(Port {
            name: None,
            port,
            udp,
            target: TARGETS[rng.random_range(0..TARGETS.len())],
            node_port: matches!(typ, SvcType::NodePort | SvcType::LoadBalancer)
                .then(|| 30000 + idx as u16 * 10 + k),
        });
    }
    // A single port may be unnamed; with several, the API requires names.
    let named = nports > 1 || chance(rng, 60);
    if named {
        for p in &mut ports {
            p.name = Some(format!("{}{}", if p.udp { "u" } else { "p" }, p.port));
        }
    }
    let external_capable = matches!(
        typ,
        SvcType::ClusterIP | SvcType::NodePort | SvcType::LoadBalancer
    );
    let external_ips = if external_capable && chance(rng, 25) {
        rng.random_range(1..=2)
    } else {
        0
    };
    let lb = typ == SvcType::LoadBalancer;
    let source_ranges = if lb && chance(rng, 40) {
        pick_ranges(rng, fam)
    } else {
        Vec::new()
    };
    let etp_local = (external_ips > 0 || matches!(typ, SvcType::NodePort | SvcType::LoadBalancer))
        && chance(rng, 40);
    let hcnp = (lb && etp_local).then_some(32000 + idx as u16);
    let itp_local = chance(rng, 15);
    // Small timeouts (1 s is the API's minimum) so the harness can watch affinity expire
    // without waiting long; 10800 is the API default.
    let affinity = chance(rng, 25).then(|| [1, 2, 10800][rng.random_range(0..3)]);
    let neps = match rng.random_range(0..10) {
        0 => 0,
        1..=3 => 1,
        4..=6 => 2,
        7..=8 => 3,
        _ => 4,
    };
    let eps = (0..neps)
        .map(|_| random_ep(rng, slot, Cond::Ready))
        .collect::<Vec<_>>();
    let mut svc = Svc {
        idx,
        ns: format!("ns{idx}"),
        name: format!("svc{idx}"),
        typ,
        fam,
        ports,
        etp_local,
        itp_local,
        affinity,
        external_ips,
        lb,
        source_ranges,
        hcnp,
        eps,
        two_slices: false,
    };
    svc.two_slices = svc.eps.len() >= 2 && chance(rng, 30);
    for e in &mut svc.eps {
        e.cond = match rng.random_range(0..20) {
            0 => Cond::TerminatingServing,
            1 => Cond::TerminatingNotServing,
            2 => Cond::NotReady,
            3 => Cond::Unset,
            _ => Cond::Ready,
        };
    }
    svc
}

fn pick_ranges(rng: &mut StdRng, fam: Fam) -> Vec<&'static str> {
    let mut out = Vec::new();
    for &v4 in fam.families() {
        if v4 {
            out.push(SOURCE_RANGES_V4[rng.random_range(0..SOURCE_RANGES_V4.len())]);
        } else {
            out.push(SOURCE_RANGES_V6[rng.random_range(0..SOURCE_RANGES_V6.len())]);
        }
    }
    out
}

fn random_ep(rng: &mut StdRng, slot: &mut [u32; 2], cond: Cond) -> Ep {
    let local = chance(rng, 55);
    let i = usize::from(!local);
    slot[i] += 1;
    Ep {
        slot: slot[i] - 1,
        local,
        cond,
    }
}

/// A random scenario for `seed`. Every scenario contains, whatever the seed: a ClusterIP, a
/// NodePort and a LoadBalancer Service; externalTrafficPolicy Local and Cluster;
/// internalTrafficPolicy Local; ClientIP affinity; a Service without endpoints; one whose only
/// endpoints are terminating (kube-proxy's serving-terminating fallback); LB source ranges;
/// externalIPs; several ports; TCP and UDP; IPv4 and IPv6 Services. The rest is drawn at
/// random, plus now and then an ExternalName or headless Service (which kube-proxy skips).
pub fn random_scenario(seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut slot = [0u32; 2];
    let n: u32 = rng.random_range(8..=12);
    let mut types = vec![
        SvcType::ClusterIP,
        SvcType::NodePort,
        SvcType::LoadBalancer,
        SvcType::LoadBalancer,
    ];
    while types.len() < n as usize {
        types.push(match rng.random_range(0..20) {
            0 => SvcType::ExternalName,
            1 => SvcType::Headless,
            2..=8 => SvcType::ClusterIP,
            9..=13 => SvcType::NodePort,
            _ => SvcType::LoadBalancer,
        });
    }
    // Shuffle (Fisher–Yates) so the guaranteed shapes do not always sit at the same index.
    for i in (1..types.len()).rev() {
        let j = rng.random_range(0..=i);
        types.swap(i, j);
    }
    let mut svcs: Vec<Svc> = types
        .iter()
        .enumerate()
        .map(|(i, &t)| random_service(&mut rng, i as u32 + 1, t, &mut slot))
        .collect();
    guarantee_coverage(&mut rng, &mut svcs, &mut slot);

    let opts = ProxyOptions {
        masquerade_all: chance(&mut rng, 10),
        localhost_node_ports: !chance(&mut rng, 20),
        node_port_addresses: chance(&mut rng, 15),
        cluster_cidr: "10.244.0.0/16,fd00:10:244::/48",
        detect_local_mode: match rng.random_range(0..20) {
            0..=2 => "NodeCIDR",
            3..=4 => "InterfaceNamePrefix",
            _ => "ClusterCIDR",
        },
    };
    let mut out = String::new();
    document(&mut out, &proxy_config(&opts));
    document(
        &mut out,
        &node(&mut rng, &["10.244.0.0/24", "fd00:10:244::/64"]),
    );
    document(&mut out, &node_network());
    for svc in &svcs {
        document(&mut out, &service_doc(&mut rng, svc));
        for d in slice_docs(&mut rng, svc) {
            document(&mut out, &d);
        }
    }
    out
}

/// Indices of services that kube-proxy programs (not ExternalName / headless).
fn proxied(svcs: &[Svc]) -> Vec<usize> {
    svcs.iter()
        .enumerate()
        .filter(|(_, s)| !matches!(s.typ, SvcType::ExternalName | SvcType::Headless))
        .map(|(i, _)| i)
        .collect()
}

fn guarantee_coverage(rng: &mut StdRng, svcs: &mut [Svc], slot: &mut [u32; 2]) {
    let idx_of = |svcs: &[Svc], t: SvcType| {
        svcs.iter()
            .position(|s| s.typ == t)
            .expect("type is always present")
    };
    let np = idx_of(svcs, SvcType::NodePort);
    let lbs: Vec<usize> = svcs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.typ == SvcType::LoadBalancer)
        .map(|(i, _)| i)
        .collect();
    let cip = idx_of(svcs, SvcType::ClusterIP);

    // eTP: one external Service Local and one Cluster, both with endpoints, and local ones.
    let (local_one, cluster_one) = if rng.random_range(0..2) == 0 {
        (np, lbs[0])
    } else {
        (lbs[0], np)
    };
    svcs[local_one].etp_local = true;
    svcs[cluster_one].etp_local = false;
    // LB source ranges on the other LoadBalancer.
    if svcs[lbs[1]].source_ranges.is_empty() {
        svcs[lbs[1]].source_ranges = pick_ranges(rng, svcs[lbs[1]].fam);
    }
    for &i in &lbs {
        svcs[i].hcnp = svcs[i].etp_local.then_some(32000 + svcs[i].idx as u16);
    }
    for i in [local_one, cluster_one, lbs[1]] {
        if svcs[i].eps.is_empty() {
            let e = random_ep(rng, slot, Cond::Ready);
            svcs[i].eps.push(e);
        }
        if let Some(e) = svcs[i].eps.first_mut() {
            e.cond = Cond::Ready;
        }
    }
    if !svcs[local_one].eps.iter().any(|e| e.local) {
        slot[0] += 1;
        svcs[local_one].eps.push(Ep {
            slot: slot[0] - 1,
            local: true,
            cond: Cond::Ready,
        });
    }

    let candidates = proxied(svcs);
    let pick = |rng: &mut StdRng, avoid: &[usize]| -> usize {
        let free: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|i| !avoid.contains(i))
            .collect();
        let pool = if free.is_empty() { &candidates } else { &free };
        pool[rng.random_range(0..pool.len())]
    };
    let reserved = [local_one, cluster_one, lbs[1]];

    // No endpoints at all (filter REJECT).
    let none = pick(rng, &reserved);
    svcs[none].eps.clear();
    // Only terminating endpoints (serving-terminating fallback).
    let term = pick(rng, &[reserved.as_slice(), &[none]].concat());
    if svcs[term].eps.is_empty() {
        let e = random_ep(rng, slot, Cond::TerminatingServing);
        svcs[term].eps.push(e);
    }
    for e in &mut svcs[term].eps {
        e.cond = if e.cond == Cond::TerminatingNotServing {
            e.cond
        } else {
            Cond::TerminatingServing
        };
    }
    svcs[term].eps[0].cond = Cond::TerminatingServing;
    let busy = [reserved.as_slice(), &[none, term]].concat();

    // ClientIP affinity with a short timeout and at least two ready endpoints.
    let aff = pick(rng, &busy);
    svcs[aff].affinity = Some(1);
    // Reachable from the external client through its ClusterIP (where the harness tests
    // stickiness): internalTrafficPolicy Local could leave that path without endpoints.
    svcs[aff].itp_local = false;
    while svcs[aff]
        .eps
        .iter()
        .filter(|e| matches!(e.cond, Cond::Ready | Cond::Unset))
        .count()
        < 2
    {
        let e = random_ep(rng, slot, Cond::Ready);
        svcs[aff].eps.push(e);
    }
    // internalTrafficPolicy Local.
    if !svcs.iter().any(|s| s.itp_local) {
        let i = pick(rng, &[none, term, aff]);
        svcs[i].itp_local = true;
    }
    // externalIPs on the ClusterIP Service.
    if !svcs.iter().any(|s| s.external_ips > 0) {
        svcs[cip].external_ips = 1;
    }
    // Several ports, TCP and UDP.
    if !svcs.iter().any(|s| {
        s.ports.len() > 1 && s.ports.iter().any(|p| p.udp) && s.ports.iter().any(|p| !p.udp)
    }) {
        let i = pick(rng, &[]);
        let svc = &mut svcs[i];
        let first = svc.ports[0].clone();
        let mut other = first.clone();
        other.udp = !first.udp;
        other.node_port = first.node_port.map(|n| n + 5);
        svc.ports.truncate(1);
        svc.ports.push(other);
        for p in &mut svc.ports {
            p.name = Some(format!("{}{}", if p.udp { "u" } else { "p" }, p.port));
        }
    }
    // Both families among programmed Services.
    let has = |svcs: &[Svc], v4: bool| {
        candidates
            .iter()
            .any(|&i| svcs[i].fam == Fam::Dual || (svcs[i].fam == Fam::V4) == v4)
    };
    for v4 in [true, false] {
        if !has(svcs, v4) {
            let i = pick(rng, &[]);
            svcs[i].fam = Fam::Dual;
            svcs[i].source_ranges = if svcs[i].source_ranges.is_empty() {
                Vec::new()
            } else {
                pick_ranges(rng, Fam::Dual)
            };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Large clusters for benchmarks.

/// A deterministic cluster with `services` IPv4 TCP Services of `endpoints_per_service` ready
/// endpoints each (every 10th Service a NodePort, every 20th a LoadBalancer with eTP Local).
/// Pod IPs come from 10.128.0.0/9 (the clusterCIDR of this scenario), ClusterIPs from
/// 10.96.0.0/16 and then 10.97.0.0/16 … NodePorts and healthCheckNodePorts are allocated once
/// each, as the API server does, from 30000 upwards: within the default 30000-32767 range up to
/// ~18,000 Services; past that the cluster assumes a wider `--service-node-port-range`.
pub fn large_cluster(services: usize, endpoints_per_service: usize) -> String {
    let mut rng = StdRng::seed_from_u64(0x1a26e);
    let opts = ProxyOptions {
        masquerade_all: false,
        localhost_node_ports: true,
        node_port_addresses: false,
        cluster_cidr: "10.128.0.0/9",
        detect_local_mode: "ClusterCIDR",
    };
    let mut out = String::with_capacity(services * (1500 + endpoints_per_service * 300));
    document(&mut out, &proxy_config(&opts));
    document(&mut out, &node(&mut rng, &["10.128.0.0/24"]));
    document(&mut out, &node_network());
    let mut next_pod: u32 = 256;
    let mut next_node_port: u32 = 30000;
    let mut alloc_port = || {
        let p = next_node_port;
        next_node_port = if p >= 65535 { 30000 } else { p + 1 };
        p as u16
    };
    for i in 0..services {
        let typ = if i % 20 == 19 {
            SvcType::LoadBalancer
        } else if i % 10 == 9 {
            SvcType::NodePort
        } else {
            SvcType::ClusterIP
        };
        let n = i as u32 + 10;
        let cip = Ipv4Addr::new(10, 96 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
        let nodeport =
            matches!(typ, SvcType::NodePort | SvcType::LoadBalancer).then(&mut alloc_port);
        let svc = Svc {
            idx: i as u32,
            ns: format!("ns{}", i / 100),
            name: format!("svc{i}"),
            typ,
            fam: Fam::V4,
            ports: vec![Port {
                name: Some("http".into()),
                port: 80,
                udp: false,
                target: 8080,
                node_port: nodeport,
            }],
            etp_local: typ == SvcType::LoadBalancer,
            itp_local: false,
            affinity: None,
            external_ips: 0,
            lb: typ == SvcType::LoadBalancer,
            source_ranges: Vec::new(),
            hcnp: (typ == SvcType::LoadBalancer).then(&mut alloc_port),
            eps: Vec::new(),
            two_slices: false,
        };
        let mut doc = service_doc(&mut rng, &svc);
        // Replace the small-plan addresses with the large plan's.
        if let Y::Map(m) = &mut doc {
            for (k, v) in m.iter_mut() {
                if k == "spec" {
                    set_key(v, "clusterIP", s(cip));
                    set_key(v, "clusterIPs", strs(&[cip]));
                } else if k == "status" && svc.lb {
                    let lbip = Ipv4Addr::new(198, 18 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
                    *v = map(vec![(
                        "loadBalancer",
                        map(vec![(
                            "ingress",
                            Y::List(vec![map(vec![("ip", s(lbip)), ("ipMode", s("VIP"))])]),
                        )]),
                    )]);
                }
            }
        }
        document(&mut out, &doc);
        let endpoints: Vec<Y> = (0..endpoints_per_service)
            .map(|k| {
                let p = next_pod;
                next_pod += 1;
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + p);
                map(vec![
                    ("addresses", strs(&[ip])),
                    ("conditions", conditions(Cond::Ready)),
                    (
                        "nodeName",
                        s(if k % 4 == 0 {
                            NODE_NAME
                        } else {
                            OTHER_NODE_NAME
                        }),
                    ),
                ])
            })
            .collect();
        let slice = map(vec![
            ("addressType", s("IPv4")),
            ("apiVersion", s("discovery.k8s.io/v1")),
            (
                "endpoints",
                if endpoints.is_empty() {
                    Y::Null
                } else {
                    Y::List(endpoints)
                },
            ),
            ("kind", s("EndpointSlice")),
            (
                "metadata",
                map(vec![
                    (
                        "labels",
                        map(vec![("kubernetes.io/service-name", s(&svc.name))]),
                    ),
                    ("name", s(format!("{}-{}", svc.name, suffix(&mut rng)))),
                    ("namespace", s(&svc.ns)),
                ]),
            ),
            (
                "ports",
                Y::List(vec![map(vec![
                    ("name", s("http")),
                    ("port", Y::Int(8080)),
                    ("protocol", s("TCP")),
                ])]),
            ),
        ]);
        document(&mut out, &slice);
    }
    out
}

fn set_key(obj: &mut Y, key: &str, value: Y) {
    if let Y::Map(m) = obj
        && let Some(e) = m.iter_mut().find(|(k, _)| k == key)
    {
        e.1 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn docs(text: &str) -> Vec<Value> {
        serde_saphyr::from_multiple::<Value>(text).expect("generated YAML parses")
    }

    fn kinds(d: &[Value]) -> Vec<String> {
        d.iter()
            .map(|v| {
                format!(
                    "{} {}",
                    v["apiVersion"].as_str().unwrap(),
                    v["kind"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn scenario_has_the_expected_kinds_in_order() {
        for seed in 0..20 {
            let d = docs(&random_scenario(seed));
            let k = kinds(&d);
            assert_eq!(
                k[0],
                "kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration"
            );
            assert_eq!(k[1], "v1 Node");
            assert_eq!(k[2], "proxyscope.dev/v1alpha1 NodeNetwork");
            assert!(
                k[3..]
                    .iter()
                    .all(|k| k == "v1 Service" || k == "discovery.k8s.io/v1 EndpointSlice"),
                "{k:?}"
            );
            assert_eq!(d[0]["mode"], "iptables");
            assert_eq!(d[1]["metadata"]["name"], NODE_NAME);
            // Every slice names an existing Service in its namespace.
            for sl in d.iter().filter(|v| v["kind"] == "EndpointSlice") {
                let svc = &sl["metadata"]["labels"]["kubernetes.io/service-name"];
                assert!(
                    d.iter().any(|v| v["kind"] == "Service"
                        && v["metadata"]["name"] == *svc
                        && v["metadata"]["namespace"] == sl["metadata"]["namespace"]),
                    "seed {seed}: slice for unknown service {svc}"
                );
            }
        }
    }

    #[test]
    fn same_seed_same_text_other_seed_other_text() {
        assert_eq!(random_scenario(7), random_scenario(7));
        assert_ne!(random_scenario(7), random_scenario(8));
    }

    /// Every scenario covers every feature the differential suite needs (see `random_scenario`).
    #[test]
    fn every_scenario_covers_every_feature() {
        for seed in 0..50 {
            let d = docs(&random_scenario(seed));
            let svcs: Vec<&Value> = d.iter().filter(|v| v["kind"] == "Service").collect();
            let slices: Vec<&Value> = d.iter().filter(|v| v["kind"] == "EndpointSlice").collect();
            let spec = |v: &Value, k: &str| v["spec"][k].clone();
            let any = |f: &dyn Fn(&Value) -> bool| svcs.iter().any(|v| f(v));
            let eps_of = |v: &Value| -> Vec<Value> {
                slices
                    .iter()
                    .filter(|sl| {
                        sl["metadata"]["labels"]["kubernetes.io/service-name"]
                            == v["metadata"]["name"]
                    })
                    .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
                    .collect()
            };
            let has_type = |t: &str| any(&|v| spec(v, "type") == t);
            assert!(
                has_type("ClusterIP") && has_type("NodePort") && has_type("LoadBalancer"),
                "seed {seed}"
            );
            assert!(
                any(&|v| spec(v, "externalTrafficPolicy") == "Local"),
                "seed {seed}: eTP Local"
            );
            assert!(
                any(&|v| spec(v, "externalTrafficPolicy") == "Cluster"),
                "seed {seed}: eTP Cluster"
            );
            assert!(
                any(&|v| spec(v, "internalTrafficPolicy") == "Local"),
                "seed {seed}: iTP Local"
            );
            assert!(
                any(&|v| spec(v, "sessionAffinity") == "ClientIP"),
                "seed {seed}: affinity"
            );
            assert!(
                any(&|v| spec(v, "loadBalancerSourceRanges").is_array()),
                "seed {seed}: source ranges"
            );
            assert!(
                any(&|v| spec(v, "externalIPs").is_array()),
                "seed {seed}: externalIPs"
            );
            assert!(
                any(&|v| spec(v, "clusterIP") != "None"
                    && spec(v, "type") != "ExternalName"
                    && eps_of(v).is_empty()),
                "seed {seed}: a Service without endpoints"
            );
            assert!(
                any(&|v| {
                    let e = eps_of(v);
                    !e.is_empty() && e.iter().all(|e| e["conditions"]["terminating"] == true)
                }),
                "seed {seed}: only terminating endpoints"
            );
            assert!(
                any(&|v| {
                    let p = spec(v, "ports");
                    let p = p.as_array().cloned().unwrap_or_default();
                    p.len() > 1
                        && p.iter().any(|p| p["protocol"] == "UDP")
                        && p.iter().any(|p| p["protocol"] == "TCP")
                }),
                "seed {seed}: multi-port TCP+UDP"
            );
            let fam = |f: &str| {
                any(&|v| {
                    spec(v, "ipFamilies")
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == f))
                })
            };
            assert!(fam("IPv4") && fam("IPv6"), "seed {seed}: both families");
        }
    }

    #[test]
    fn addresses_follow_the_plan() {
        let d = docs(&random_scenario(3));
        for v in d.iter().filter(|v| v["kind"] == "EndpointSlice") {
            for e in v["endpoints"].as_array().into_iter().flatten() {
                let ip: IpAddr = e["addresses"][0].as_str().unwrap().parse().unwrap();
                let local = e["nodeName"] == NODE_NAME;
                let ok = match ip {
                    IpAddr::V4(a) => a.octets()[..3] == [10, 244, if local { 0 } else { 1 }],
                    IpAddr::V6(a) => {
                        a.segments()[..4] == [0xfd00, 0x10, 0x244, if local { 0 } else { 1 }]
                    }
                };
                assert!(ok, "{ip} on {}", e["nodeName"]);
            }
        }
        for v in d
            .iter()
            .filter(|v| v["kind"] == "Service" && v["spec"]["type"] != "ExternalName")
        {
            let ip = v["spec"]["clusterIP"].as_str().unwrap();
            assert!(
                ip == "None" || ip.starts_with("10.96.") || ip.starts_with("fd00:10:96::"),
                "{ip}"
            );
        }
    }

    #[test]
    fn kubectl_layout_details() {
        let text = random_scenario(1);
        // Strings that would read as other types are quoted; lists are flush with their key.
        assert!(text.contains("  creationTimestamp: \"2026-01-01T00:00:00Z\"\n"));
        assert!(text.contains("  resourceVersion: \""));
        assert!(text.contains("spec:\n  podCIDR: 10.244.0.0/24\n  podCIDRs:\n  - 10.244.0.0/24\n  - fd00:10:244::/64\n"));
        assert!(text.contains("  lo:\n  - 127.0.0.1/8\n  - \"::1/128\"\n"));
        assert!(
            needs_quotes("::1/128")
                && needs_quotes("10800")
                && needs_quotes("")
                && needs_quotes("true")
        );
        assert!(
            !needs_quotes("fd00:10:96::a")
                && !needs_quotes("10.96.0.10")
                && !needs_quotes("ns1/svc1")
        );
    }

    #[test]
    fn large_cluster_counts() {
        let d = docs(&large_cluster(50, 10));
        assert_eq!(d.iter().filter(|v| v["kind"] == "Service").count(), 50);
        let slices: Vec<&Value> = d.iter().filter(|v| v["kind"] == "EndpointSlice").collect();
        assert_eq!(slices.len(), 50);
        assert!(
            slices
                .iter()
                .all(|s| s["endpoints"].as_array().unwrap().len() == 10)
        );
        let ips: std::collections::HashSet<&str> = slices
            .iter()
            .flat_map(|s| {
                s["endpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["addresses"][0].as_str().unwrap())
            })
            .collect();
        assert_eq!(ips.len(), 500, "endpoint IPs are unique");
        // NodePorts and healthCheckNodePorts never repeat (the API server allocates each once).
        // 3,000 Services: past the 2,700 where an `i % 2700` scheme would wrap. Read from the
        // text (`nodePort: N`, `healthCheckNodePort: N`): thousands of documents exceed the
        // test reader's budget.
        let text = large_cluster(3_000, 1);
        let mut ports: Vec<u64> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim_start().trim_start_matches("- ");
                l.strip_prefix("nodePort: ")
                    .or_else(|| l.strip_prefix("healthCheckNodePort: "))
            })
            .map(|v| v.trim().parse().unwrap())
            .collect();
        assert_eq!(ports.len(), 450, "300 NodePort + 150 LoadBalancer Services");
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 450, "no NodePort repeats");
        assert!(ports.iter().all(|p| (30000..=32767).contains(p)));
        let cips: std::collections::HashSet<&str> = d
            .iter()
            .filter(|v| v["kind"] == "Service")
            .map(|v| v["spec"]["clusterIP"].as_str().unwrap())
            .collect();
        assert_eq!(cips.len(), 50);
    }
}

#[cfg(test)]
mod load_tests {
    use super::*;

    /// The generated objects are what core's own loader accepts: no errors for any seed.
    #[test]
    fn scenarios_load_without_errors() {
        for seed in 0..30 {
            match crate::k8s::load(&random_scenario(seed)) {
                Ok(l) => {
                    assert_eq!(l.scenario.node_name, NODE_NAME);
                    for w in &l.warnings {
                        eprintln!("seed {seed}: {w}");
                    }
                }
                Err(e) => panic!("seed {seed}: {e:?}"),
            }
        }
        let l = crate::k8s::load(&large_cluster(20, 3)).expect("large cluster loads");
        assert_eq!(l.scenario.services.len(), 20);
    }
}
