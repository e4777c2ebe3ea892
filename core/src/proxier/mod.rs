//! What kube-proxy derives from the API objects, shared by every mode: service ports, their
//! endpoints, and the endpoint categorisation that implements traffic policies.
//!
//! This mirrors kube-proxy's `pkg/proxy` (`BaseServicePortInfo`, the EndpointSlice cache and
//! `CategorizeEndpoints`). One [`ServicePort`] per `spec.ports[]` entry per IP family.

pub mod iptables;
pub mod ipvs;

use crate::k8s::Scenario;
use crate::k8s::ip::{join_host_port, parse_cidr_sloppy, parse_ip_sloppy, push_host_port};
use crate::rules::iptables::parse::NameHasher;
use crate::trace::Proto;
use ipnet::IpNet;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::net::IpAddr;

/// kube-proxy's default ClientIP affinity timeout (`v1.DefaultClientIPServiceAffinitySeconds`).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// KUBE-POSTROUTING and KUBE-MARK-MASQ, identical in iptables and IPVS mode: packets carrying the
/// masquerade bit are MASQUERADEd once (the bit is cleared first, so a packet that re-traverses
/// the stack is not masqueraded twice).
pub fn write_masquerade_rules(nat_rules: &mut String, mark: &str, random_fully: bool) {
    use std::fmt::Write;
    let _ = writeln!(
        nat_rules,
        "-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN"
    );
    let _ = writeln!(nat_rules, "-A KUBE-POSTROUTING -j MARK --xor-mark {mark}");
    let _ = writeln!(
        nat_rules,
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{}",
        if random_fully { " --random-fully" } else { "" }
    );
    let _ = writeln!(nat_rules, "-A KUBE-MARK-MASQ -j MARK --or-mark {mark}");
}

/// One service port as kube-proxy's proxier sees it, for one IP family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    /// `ns/name` or `ns/name:portName` (kube-proxy's `ServicePortName.String()`).
    pub name_string: String,
    pub protocol: Proto,
    pub cluster_ip: IpAddr,
    pub port: u16,
    /// 0 = none.
    pub node_port: u16,
    pub external_ips: Vec<IpAddr>,
    /// LB ingress IPs (ipMode Proxy excluded), this family only.
    pub lb_ips: Vec<IpAddr>,
    pub source_ranges: Vec<IpNet>,
    /// ClientIP affinity timeout, None without affinity.
    pub affinity_seconds: Option<u32>,
    pub external_policy_local: bool,
    pub internal_policy_local: bool,
    /// 0 = none (only LoadBalancer + externalTrafficPolicy Local).
    pub health_check_node_port: u16,
    pub service_type: String,
}

impl ServicePort {
    /// NodePort, externalIP or LB IP: traffic from outside can reach it.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.lb_ips.is_empty() || !self.external_ips.is_empty()
    }
    /// kube-proxy needs the cluster-wide endpoint set (`UsesClusterEndpoints`): internal policy
    /// Cluster, or any external access (eTP Local still short-circuits pod/node traffic to all).
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.external_policy_local && self.externally_accessible())
    }
}

/// One endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// `nodeName` equals this node.
    pub local: bool,
    pub node_name: Option<String>,
}

impl Endpoint {
    /// `ip:port` / `[ip]:port`: what kube-proxy sorts by, hashes and DNATs to.
    pub fn key(&self) -> String {
        join_host_port(self.ip, self.port)
    }
}

/// The result of kube-proxy's `CategorizeEndpoints`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Categorized {
    pub cluster: Vec<Endpoint>,
    pub local: Vec<Endpoint>,
    /// Endpoints reachable from this node given the policies (they get SEP chains / real servers).
    pub reachable: Vec<Endpoint>,
    pub has_any: bool,
}

/// kube-proxy's endpoint selection: ready endpoints, falling back to serving+terminating ones
/// when none is ready (per set: cluster-wide and node-local separately).
pub fn categorize(eps: &[Endpoint], sp: &ServicePort) -> Categorized {
    let mut c = Categorized::default();
    if sp.uses_cluster_endpoints() {
        // Sized up front: growing from 4 was most of categorize at 10 endpoints a port.
        c.cluster = Vec::with_capacity(eps.len());
        c.cluster.extend(eps.iter().filter(|e| e.ready).cloned());
        if c.cluster.is_empty() {
            c.cluster = eps
                .iter()
                .filter(|e| e.serving && e.terminating)
                .cloned()
                .collect();
        }
        c.has_any = !c.cluster.is_empty();
    }
    if !sp.uses_local_endpoints() {
        c.reachable = c.cluster.clone();
        return c;
    }
    let mut local_ready = false;
    let mut local_term = false;
    for e in eps {
        if e.ready {
            c.has_any = true;
            local_ready |= e.local;
        } else if e.serving && e.terminating {
            c.has_any = true;
            local_term |= e.local;
        }
    }
    let mut use_terminating = false;
    if local_ready {
        c.local = eps.iter().filter(|e| e.local && e.ready).cloned().collect();
    } else if local_term {
        use_terminating = true;
        c.local = eps
            .iter()
            .filter(|e| e.local && e.serving && e.terminating)
            .cloned()
            .collect();
    }
    if !sp.uses_cluster_endpoints() {
        c.reachable = c.local.clone();
        return c;
    }
    if !use_terminating {
        c.reachable = c.cluster.clone();
        return c;
    }
    // kube-proxy merges through a Go map (random order); we keep endpoint-string order.
    let mut merged: BTreeMap<String, Endpoint> = BTreeMap::new();
    for e in c.cluster.iter().chain(&c.local) {
        merged.insert(e.key(), e.clone());
    }
    c.reachable = merged.into_values().collect();
    c
}

/// A service port together with its (sorted) endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePortEndpoints {
    pub port: ServicePort,
    pub endpoints: Vec<Endpoint>,
}

fn family_ok(ip: &IpAddr, v6: bool) -> bool {
    ip.is_ipv6() == v6
}

/// All service ports of one family with their endpoints, in a stable order (namespace, name,
/// port order in the spec). kube-proxy walks a Go map here, so its order differs per sync.
pub fn service_ports(s: &Scenario, v6: bool) -> Vec<ServicePortEndpoints> {
    let mut out = Vec::new();
    let slices = SliceIndex::new(s);
    for svc in &s.services {
        let Some(spec) = &svc.spec else { continue };
        let ty = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
        if ty == "ExternalName" {
            continue;
        }
        let ns = svc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = svc.metadata.name.clone().unwrap_or_default();
        // The family's cluster IP: spec.clusterIPs (dual-stack) or spec.clusterIP.
        let cluster_ip = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter(|c| c.as_str() != "None")
            .filter_map(|c| parse_ip_sloppy(c))
            .find(|ip| family_ok(ip, v6));
        let Some(cluster_ip) = cluster_ip else {
            continue;
        };
        let externally_reachable_type = ty == "NodePort"
            || ty == "LoadBalancer"
            || (ty == "ClusterIP" && spec.external_ips.as_ref().is_some_and(|e| !e.is_empty()));
        let etp_local =
            externally_reachable_type && spec.external_traffic_policy.as_deref() == Some("Local");
        let itp_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .map(|t| t as u32)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let external_ips: Vec<IpAddr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|i| parse_ip_sloppy(i))
            .filter(|i| family_ok(i, v6))
            .collect();
        let lb_ips: Vec<IpAddr> = svc
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            // LoadBalancerIPMode (GA in 1.32): `Proxy` ingresses are not programmed on nodes.
            .filter(|ing| ing.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|ing| ing.ip.as_deref().and_then(parse_ip_sloppy))
            .filter(|i| family_ok(i, v6))
            .collect();
        let source_ranges: Vec<IpNet> = spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .filter_map(|r| parse_cidr_sloppy(r))
            .filter(|n| matches!(n, IpNet::V6(_)) == v6)
            .collect();
        let hc = if ty == "LoadBalancer" && etp_local {
            spec.health_check_node_port.unwrap_or(0) as u16
        } else {
            0
        };
        for p in spec.ports.iter().flatten() {
            let proto = p
                .protocol
                .as_deref()
                .and_then(Proto::parse)
                .unwrap_or(Proto::Tcp);
            let port_name = p.name.clone().unwrap_or_default();
            let name_string = if port_name.is_empty() {
                format!("{ns}/{name}")
            } else {
                format!("{ns}/{name}:{port_name}")
            };
            let sp = ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                port_name: port_name.clone(),
                name_string,
                protocol: proto,
                cluster_ip,
                port: p.port as u16,
                node_port: p.node_port.unwrap_or(0) as u16,
                external_ips: external_ips.clone(),
                lb_ips: lb_ips.clone(),
                source_ranges: source_ranges.clone(),
                affinity_seconds: affinity,
                external_policy_local: etp_local,
                internal_policy_local: itp_local,
                health_check_node_port: hc,
                service_type: ty.clone(),
            };
            let endpoints =
                endpoints_from(slices.of(&ns, &name), &s.node_name, &port_name, proto, v6);
            out.push(ServicePortEndpoints {
                port: sp,
                endpoints,
            });
        }
    }
    out
}

/// The internal maps' hasher: keys are namespace / Service names from the scenario, and SipHash
/// over them was ~5% of a 10k-Service sync.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<NameHasher>>;

/// EndpointSlices grouped by owning Service (`kubernetes.io/service-name` label), so looking up a
/// Service's slices does not scan every slice (10,000-Service clusters).
pub struct SliceIndex<'a> {
    by_service: FastMap<&'a str, FastMap<&'a str, Vec<&'a EndpointSlice>>>,
}

impl<'a> SliceIndex<'a> {
    pub fn new(s: &'a Scenario) -> Self {
        let mut by_service: FastMap<&str, FastMap<&str, Vec<&EndpointSlice>>> = FastMap::default();
        for slice in &s.slices {
            let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
            if let Some(owner) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
            {
                by_service
                    .entry(ns)
                    .or_default()
                    .entry(owner.as_str())
                    .or_default()
                    .push(slice);
            }
        }
        SliceIndex { by_service }
    }
    pub fn of(&self, ns: &str, name: &str) -> &[&'a EndpointSlice] {
        self.by_service
            .get(ns)
            .and_then(|m| m.get(name))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Endpoints of one service port (kube-proxy's EndpointSliceCache).
pub fn endpoints_for(
    s: &Scenario,
    ns: &str,
    name: &str,
    port_name: &str,
    proto: Proto,
    v6: bool,
) -> Vec<Endpoint> {
    let idx = SliceIndex::new(s);
    endpoints_from(idx.of(ns, name), &s.node_name, port_name, proto, v6)
}

/// Endpoints of one service port from its EndpointSlices: slices of this family whose port has
/// the same name and protocol; `addresses[0]` only; duplicates merged; sorted by `ip:port` string.
pub fn endpoints_from(
    slices: &[&EndpointSlice],
    node_name: &str,
    port_name: &str,
    proto: Proto,
    v6: bool,
) -> Vec<Endpoint> {
    let want_type = if v6 { "IPv6" } else { "IPv4" };
    // Each endpoint with its `ip:port` text (a range of `keys`): one buffer and one sort per
    // service port instead of a String and a BTreeMap node per endpoint.
    let cap: usize = slices
        .iter()
        .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
        .sum();
    let mut keys = String::with_capacity(cap * 24);
    let mut found: Vec<(std::ops::Range<usize>, Endpoint)> = Vec::with_capacity(cap);
    for slice in slices {
        if slice.address_type != want_type {
            continue;
        }
        for sp in slice.ports.iter().flatten() {
            let Some(port) = sp.port else { continue };
            if sp.name.as_deref().unwrap_or("") != port_name {
                continue;
            }
            let sp_proto = sp
                .protocol
                .as_deref()
                .and_then(Proto::parse)
                .unwrap_or(Proto::Tcp);
            if sp_proto != proto {
                continue;
            }
            for e in slice.endpoints.iter().flatten() {
                let Some(ip) = e.addresses.first().and_then(|a| parse_ip_sloppy(a)) else {
                    continue;
                };
                let cond = e.conditions.as_ref();
                // Missing conditions mean ready / serving / not terminating (EndpointSlice API).
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                let serving = cond.and_then(|c| c.serving).unwrap_or(true);
                let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
                let ep = Endpoint {
                    ip,
                    port: port as u16,
                    ready,
                    serving,
                    terminating,
                    local: e.node_name.as_deref() == Some(node_name),
                    node_name: e.node_name.clone(),
                };
                let start = keys.len();
                push_host_port(&mut keys, ip, ep.port);
                found.push((start..keys.len(), ep));
            }
        }
    }
    // Stable: equal keys keep slice order.
    found.sort_by(|a, b| keys[a.0.clone()].cmp(&keys[b.0.clone()]));
    let mut out: Vec<Endpoint> = Vec::with_capacity(found.len());
    let mut last: Option<std::ops::Range<usize>> = None;
    for (k, ep) in found {
        if let Some(prev) = &last
            && keys[prev.clone()] == keys[k.clone()]
        {
            // The same endpoint in two slices (during a slice migration): keep the first ready
            // copy, else the first.
            let kept = out.last_mut().expect("pushed with `last`");
            if !kept.ready && ep.ready {
                *kept = ep;
            }
            continue;
        }
        out.push(ep);
        last = Some(k);
    }
    out
}
