//! kube-proxy's IPVS mode: what one sync programs (kube-proxy v1.32..v1.35
//! `pkg/proxy/ipvs/proxier.go` `syncProxyRules` + `writeIptablesRules`): the IPVS virtual servers
//! and their real servers, the addresses bound to the `kube-ipvs0` dummy device, every ipset with
//! its entries, and the `iptables-restore` payload that keys on those sets.
//!
//! Order: kube-proxy walks its service map (a Go map) and creates sets from a map too, so its
//! own order differs per sync. We emit service ports sorted by namespace, name, spec port order;
//! sets in the order of upstream's `ipsetInfo` table; set members sorted; virtual servers in
//! ipvsadm's sort order (protocol number, address, port).
//!
//! Differences from iptables mode a reader should know (each is commented where it happens):
//! * NodePort is one virtual server per node address, never a wildcard;
//! * a policy that wants node-local endpoints falls back to the cluster-wide list when there are
//!   none (upstream PR 97081), where iptables mode drops;
//! * a service with no endpoints still gets its virtual server (IPVS itself refuses packets);
//! * masquerading is decided by iptables marks, never by IPVS (forwarding is always Masq).

use super::{Endpoint, ServicePort, categorize, service_ports};
use crate::ipvs::ipset::{Element, IpSet, Opt};
use crate::ipvs::ipvsadm::{self, Forward, IpvsProto, ServiceKey};
use crate::k8s::Scenario;
use crate::netfilter;
use crate::rules::iptables::{self as ipt, Chain, Counters, Family, Ruleset};
use crate::trace::Proto;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::net::IpAddr;

/// `utilipvs.FlagPersistent` (`IP_VS_SVC_F_PERSISTENT`).
pub const FLAG_PERSISTENT: u32 = 0x1;
/// `utilipvs.FlagSourceHash` = `IP_VS_SVC_F_SCHED2`, which ipvsadm names `mh-port`.
pub const FLAG_SOURCE_HASH: u32 = 0x10;
/// The dummy device kube-proxy binds service addresses to.
pub const DUMMY_DEVICE: &str = "kube-ipvs0";
/// kube-proxy's default scheduler when `ipvs.scheduler` is empty.
pub const DEFAULT_SCHEDULER: &str = "rr";

/// One real server as kube-proxy programs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RealServer {
    pub address: IpAddr,
    pub port: u16,
    pub weight: i32,
    /// Always `Masq`: kube-proxy leaves the connection flags at 0 = `IP_VS_CONN_F_MASQ`.
    pub forward: String,
}

/// One IPVS virtual server (kube-proxy's `utilipvs.VirtualServer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualServer {
    /// `TCP`, `UDP`, `SCTP`.
    pub protocol: String,
    pub address: IpAddr,
    pub port: u16,
    pub scheduler: String,
    /// kube-proxy's flag bits: 0x1 persistent, 0x10 mh-port (source hash).
    pub flags: u32,
    /// Persistence timeout in seconds (0 = not persistent).
    pub timeout: u32,
    pub real_servers: Vec<RealServer>,
    /// The Service port this virtual server belongs to (`ns/name[:port]`); not in the kernel.
    #[serde(skip)]
    pub service: String,
    /// `cluster_ip`, `external_ip`, `load_balancer`, `node_port`; not in the kernel.
    #[serde(skip)]
    pub kind: &'static str,
    #[serde(skip)]
    pub proto: Proto,
}

/// What one family's IPVS proxier programs.
#[derive(Debug, Clone)]
pub struct FamilyIpvs {
    pub family: Family,
    pub virtual_servers: Vec<VirtualServer>,
    /// Every set kube-proxy creates (also the empty ones), in `ipsetInfo` order.
    pub ipsets: Vec<IpSet>,
    /// Addresses bound to kube-ipvs0, sorted.
    pub kube_ipvs0: Vec<IpAddr>,
    /// The `iptables-restore --noflush --counters` input, byte for byte.
    pub payload: String,
}

/// Which endpoints a set of kube-proxy's names stands for.
struct SetInfo {
    name: &'static str,
    set_type: &'static str,
    comment: &'static str,
}

// Upstream `ipsetInfo`, in its order (also the order we print `ipset save` in).
const LOOP_BACK: usize = 0;
const CLUSTER_IP: usize = 1;
const EXTERNAL_IP: usize = 2;
const EXTERNAL_IP_LOCAL: usize = 3;
const LOAD_BALANCER: usize = 4;
const LOAD_BALANCER_FW: usize = 5;
const LOAD_BALANCER_LOCAL: usize = 6;
const LOAD_BALANCER_SOURCE_IP: usize = 7;
const LOAD_BALANCER_SOURCE_CIDR: usize = 8;
const NODE_PORT_TCP: usize = 9;
const NODE_PORT_LOCAL_TCP: usize = 10;
const NODE_PORT_UDP: usize = 11;
const NODE_PORT_LOCAL_UDP: usize = 12;
const NODE_PORT_SCTP: usize = 13;
const NODE_PORT_LOCAL_SCTP: usize = 14;
const HEALTH_CHECK_NODE_PORT: usize = 15;
const IPVS_IPS: usize = 16;

const SETS: [SetInfo; 17] = [
    SetInfo {
        name: "KUBE-LOOP-BACK",
        set_type: "hash:ip,port,ip",
        comment: "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose",
    },
    SetInfo {
        name: "KUBE-CLUSTER-IP",
        set_type: "hash:ip,port",
        comment: "Kubernetes service cluster ip + port for masquerade purpose",
    },
    SetInfo {
        name: "KUBE-EXTERNAL-IP",
        set_type: "hash:ip,port",
        comment: "Kubernetes service external ip + port for masquerade and filter purpose",
    },
    SetInfo {
        name: "KUBE-EXTERNAL-IP-LOCAL",
        set_type: "hash:ip,port",
        comment: "Kubernetes service external ip + port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: "KUBE-LOAD-BALANCER",
        set_type: "hash:ip,port",
        comment: "Kubernetes service lb portal",
    },
    SetInfo {
        name: "KUBE-LOAD-BALANCER-FW",
        set_type: "hash:ip,port",
        comment: "Kubernetes service load balancer ip + port for load balancer with sourceRange",
    },
    SetInfo {
        name: "KUBE-LOAD-BALANCER-LOCAL",
        set_type: "hash:ip,port",
        comment: "Kubernetes service load balancer ip + port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: "KUBE-LOAD-BALANCER-SOURCE-IP",
        set_type: "hash:ip,port,ip",
        comment: "Kubernetes service load balancer ip + port + source IP for packet filter purpose",
    },
    SetInfo {
        name: "KUBE-LOAD-BALANCER-SOURCE-CIDR",
        set_type: "hash:ip,port,net",
        comment: "Kubernetes service load balancer ip + port + source cidr for packet filter purpose",
    },
    SetInfo {
        name: "KUBE-NODE-PORT-TCP",
        set_type: "bitmap:port",
        comment: "Kubernetes nodeport TCP port for masquerade purpose",
    },
    SetInfo {
        name: "KUBE-NODE-PORT-LOCAL-TCP",
        set_type: "bitmap:port",
        comment: "Kubernetes nodeport TCP port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: "KUBE-NODE-PORT-UDP",
        set_type: "bitmap:port",
        comment: "Kubernetes nodeport UDP port for masquerade purpose",
    },
    SetInfo {
        name: "KUBE-NODE-PORT-LOCAL-UDP",
        set_type: "bitmap:port",
        comment: "Kubernetes nodeport UDP port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: "KUBE-NODE-PORT-SCTP-HASH",
        set_type: "hash:ip,port",
        comment: "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'",
    },
    SetInfo {
        name: "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
        set_type: "hash:ip,port",
        comment: "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'",
    },
    SetInfo {
        name: "KUBE-HEALTH-CHECK-NODE-PORT",
        set_type: "bitmap:port",
        comment: "Kubernetes health check node port",
    },
    SetInfo {
        name: "KUBE-IPVS-IPS",
        set_type: "hash:ip",
        comment: "Addresses on the ipvs interface",
    },
];

/// The set's name for a family: the IPv6 proxier prefixes `KUBE-6-` and cuts at 31 characters
/// (ipset's `IPSET_MAXNAMELEN` - 1), upstream `NewIPSet`.
pub fn set_name(base: &str, v6: bool) -> String {
    if v6 {
        let mut n = format!("KUBE-6-{}", base.trim_start_matches("KUBE-"));
        n.truncate(31);
        n
    } else {
        base.to_string()
    }
}

fn proto_upper(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
        Proto::Sctp => "SCTP",
    }
}

/// The node addresses NodePort virtual servers listen on (§2.2 of our spec, upstream
/// `GetNodeIPs` + `nodeAddressHandler`): every address of the family on every interface except
/// kube-ipvs0, minus loopback and IPv6 link-local; with `nodePortAddresses`, only those inside
/// the CIDRs (`primary` = the node IP), still minus loopback.
pub fn node_ips(s: &Scenario, v6: bool) -> Vec<IpAddr> {
    let mut cidrs: Vec<IpNet> = Vec::new();
    for c in &s.config.node_port_addresses {
        if c == "primary" {
            if let Some(ip) = s.node_ip(v6) {
                cidrs.push(IpNet::from(ip));
            }
        } else if let Some(n) = crate::k8s::ip::parse_cidr_sloppy(c)
            && matches!(n, IpNet::V6(_)) == v6
        {
            cidrs.push(n);
        }
    }
    let all = s.config.node_port_addresses.is_empty() || cidrs.iter().any(|c| c.prefix_len() == 0);
    let mut out: Vec<IpAddr> = Vec::new();
    for (iface, addrs) in &s.network.interfaces {
        if iface == DUMMY_DEVICE {
            continue;
        }
        for n in addrs {
            let a = n.addr();
            if a.is_ipv6() != v6 || a.is_loopback() {
                continue;
            }
            if let IpAddr::V6(a6) = a
                && (a6.segments()[0] & 0xffc0) == 0xfe80
            {
                continue;
            }
            if (all || cidrs.iter().any(|c| c.contains(&a))) && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out.sort();
    out
}

fn elem_ip_port(ip: IpAddr, proto: Proto, port: u16) -> Element {
    Element::IpPort {
        ip,
        proto: proto.as_str().into(),
        port,
    }
}

/// The real servers of one virtual server: `onlyNodeLocalEndpoints` picks the local list, but
/// an empty local list falls back to the cluster list (upstream `syncEndpoint`, PR 97081: "allow
/// access from local pods even if no local endpoints exist").
fn real_servers(cluster: &[Endpoint], local: &[Endpoint], only_local: bool) -> Vec<RealServer> {
    let eps = if only_local && !local.is_empty() {
        local
    } else {
        cluster
    };
    let mut v: Vec<RealServer> = eps
        .iter()
        .map(|e| RealServer {
            address: e.ip,
            port: e.port,
            weight: 1,
            forward: Forward::Masq.name().into(),
        })
        .collect();
    v.sort_by_key(|r| (r.address, r.port));
    v.dedup();
    v
}

/// Generate one family's IPVS-mode state.
pub fn generate(s: &Scenario, family: Family) -> FamilyIpvs {
    let v6 = family == Family::V6;
    let scheduler = if s.config.ipvs.scheduler.is_empty() {
        DEFAULT_SCHEDULER.to_string()
    } else {
        s.config.ipvs.scheduler.clone()
    };
    let node_ips = node_ips(s, v6);
    let node_ip = s.node_ip(v6);
    // Addresses configured on a real interface are never bound to kube-ipvs0 (upstream
    // `nodeAddressSet`: "we must not add the address to the dummy device if it exist on another
    // interface").
    let node_addrs: Vec<IpAddr> = s
        .network
        .interfaces
        .iter()
        .filter(|(n, _)| n != DUMMY_DEVICE)
        .flat_map(|(_, a)| a.iter().map(|n| n.addr()))
        .collect();
    let mut entries: Vec<BTreeSet<String>> = vec![BTreeSet::new(); SETS.len()];
    let mut elems: Vec<BTreeMap<String, Element>> = vec![BTreeMap::new(); SETS.len()];
    let mut add = |set: usize, e: Element| {
        let k = e.to_string();
        entries[set].insert(k.clone());
        elems[set].insert(k, e);
    };
    let mut vss: Vec<VirtualServer> = Vec::new();
    let mut bound: BTreeSet<IpAddr> = BTreeSet::new();
    let mut lb_no_node_access: Vec<(IpAddr, Proto, u16)> = Vec::new();

    for spe in service_ports(s, v6) {
        let sp: &ServicePort = &spe.port;
        let proto = sp.protocol;
        let c = categorize(&spe.endpoints, sp);
        // KUBE-LOOP-BACK: every local endpoint in the endpoints map, whatever its conditions.
        for e in spe.endpoints.iter().filter(|e| e.local) {
            add(
                LOOP_BACK,
                Element::IpPortIp {
                    ip: e.ip,
                    proto: proto.as_str().into(),
                    port: e.port,
                    ip2: e.ip,
                },
            );
        }
        add(CLUSTER_IP, elem_ip_port(sp.cluster_ip, proto, sp.port));
        let mut flags = 0;
        let mut timeout = 0;
        if let Some(t) = sp.affinity_seconds {
            flags |= FLAG_PERSISTENT;
            timeout = t;
        }
        if scheduler == "mh" {
            flags |= FLAG_SOURCE_HASH;
        }
        let vs = |address: IpAddr, port: u16, kind: &'static str, only_local: bool| VirtualServer {
            protocol: proto_upper(proto).into(),
            address,
            port,
            scheduler: scheduler.clone(),
            flags,
            timeout,
            real_servers: real_servers(&c.cluster, &c.local, only_local),
            service: sp.name_string.clone(),
            kind,
            proto,
        };
        // The ClusterIP VS follows internalTrafficPolicy only.
        vss.push(vs(
            sp.cluster_ip,
            sp.port,
            "cluster_ip",
            sp.internal_policy_local,
        ));
        bound.insert(sp.cluster_ip);

        for &ip in &sp.external_ips {
            let set = if sp.external_policy_local {
                EXTERNAL_IP_LOCAL
            } else {
                EXTERNAL_IP
            };
            add(set, elem_ip_port(ip, proto, sp.port));
            vss.push(vs(ip, sp.port, "external_ip", sp.external_policy_local));
            if !node_addrs.contains(&ip) {
                bound.insert(ip);
            }
        }

        for &ip in &sp.lb_ips {
            let e = elem_ip_port(ip, proto, sp.port);
            add(LOAD_BALANCER, e.clone());
            if sp.external_policy_local {
                add(LOAD_BALANCER_LOCAL, e.clone());
            }
            if !sp.source_ranges.is_empty() {
                add(LOAD_BALANCER_FW, e);
                let mut allow_from_node = false;
                for r in &sp.source_ranges {
                    add(
                        LOAD_BALANCER_SOURCE_CIDR,
                        Element::IpPortNet {
                            ip,
                            proto: proto.as_str().into(),
                            port: sp.port,
                            net: r.network(),
                            prefix: r.prefix_len(),
                        },
                    );
                    if node_ip.is_some_and(|n| r.contains(&n)) {
                        allow_from_node = true;
                    }
                }
                if allow_from_node {
                    add(
                        LOAD_BALANCER_SOURCE_IP,
                        Element::IpPortIp {
                            ip,
                            proto: proto.as_str().into(),
                            port: sp.port,
                            ip2: ip,
                        },
                    );
                } else {
                    lb_no_node_access.push((ip, proto, sp.port));
                }
            }
            vss.push(vs(ip, sp.port, "load_balancer", sp.external_policy_local));
            if !node_addrs.contains(&ip) {
                bound.insert(ip);
            }
        }

        if sp.node_port != 0 {
            if node_ips.is_empty() {
                // Upstream `continue`s here: the health-check entry below is skipped too.
                continue;
            }
            let (set, local_set) = match proto {
                Proto::Tcp => (NODE_PORT_TCP, NODE_PORT_LOCAL_TCP),
                Proto::Udp => (NODE_PORT_UDP, NODE_PORT_LOCAL_UDP),
                Proto::Sctp => (NODE_PORT_SCTP, NODE_PORT_LOCAL_SCTP),
            };
            // TCP/UDP node ports are port-only bitmaps; SCTP uses hash:ip,port per node IP.
            let es: Vec<Element> = if proto == Proto::Sctp {
                node_ips
                    .iter()
                    .map(|&n| elem_ip_port(n, proto, sp.node_port))
                    .collect()
            } else {
                vec![Element::Port(sp.node_port)]
            };
            for e in &es {
                add(set, e.clone());
                if sp.external_policy_local {
                    add(local_set, e.clone());
                }
            }
            for &n in &node_ips {
                vss.push(vs(n, sp.node_port, "node_port", sp.external_policy_local));
            }
        }
        if sp.health_check_node_port != 0 {
            add(
                HEALTH_CHECK_NODE_PORT,
                Element::Port(sp.health_check_node_port),
            );
        }
    }
    for &a in &bound {
        add(IPVS_IPS, Element::Ip(a));
    }
    // One VS per (protocol, address, port): a second Service port claiming the same triple
    // updates the same kernel object (the last sync wins, as upstream's UpdateVirtualServer).
    let mut by_key: BTreeMap<(u8, IpAddr, u16), VirtualServer> = BTreeMap::new();
    for v in vss {
        by_key.insert((v.proto.number(), v.address, v.port), v);
    }
    let virtual_servers: Vec<VirtualServer> = by_key.into_values().collect();

    let fam_opt = if v6 { "inet6" } else { "inet" };
    let ipsets: Vec<IpSet> = SETS
        .iter()
        .enumerate()
        .map(|(i, si)| {
            let header = if si.set_type == "bitmap:port" {
                vec![Opt {
                    key: "range".into(),
                    value: Some("0-65535".into()),
                }]
            } else {
                vec![
                    Opt {
                        key: "family".into(),
                        value: Some(fam_opt.into()),
                    },
                    Opt {
                        key: "hashsize".into(),
                        value: Some("1024".into()),
                    },
                    Opt {
                        key: "maxelem".into(),
                        value: Some("65536".into()),
                    },
                ]
            };
            IpSet {
                name: set_name(si.name, v6),
                set_type: si.set_type.into(),
                header,
                revision: None,
                size_in_memory: None,
                references: None,
                members: elems[i]
                    .values()
                    .map(|e| crate::ipvs::ipset::Member {
                        elem: e.clone(),
                        opts: Vec::new(),
                    })
                    .collect(),
            }
        })
        .collect();
    let empty = |i: usize| entries[i].is_empty();
    let payload = write_iptables(s, v6, &empty, &lb_no_node_access);
    FamilyIpvs {
        family,
        virtual_servers,
        ipsets,
        kube_ipvs0: bound.into_iter().collect(),
        payload,
    }
}

/// `writeIptablesRules` + the chain declarations of `createAndLinkKubeChain`.
fn write_iptables(
    s: &Scenario,
    v6: bool,
    empty: &dyn Fn(usize) -> bool,
    lb_no_node_access: &[(IpAddr, Proto, u16)],
) -> String {
    let n = |i: usize| set_name(SETS[i].name, v6);
    let cm = |i: usize| format!("\"{}\"", SETS[i].comment);
    let mark = format!("{:#08x}", s.config.masquerade_mark());
    let mut nat = String::from("*nat\n");
    for c in [
        "KUBE-SERVICES",
        "KUBE-POSTROUTING",
        "KUBE-NODE-PORT",
        "KUBE-LOAD-BALANCER",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(nat, ":{c} - [0:0]");
    }
    let mut filter = String::from("*filter\n");
    for c in [
        "KUBE-FORWARD",
        "KUBE-NODE-PORT",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SOURCE-RANGES-FIREWALL",
        "KUBE-IPVS-FILTER",
        "KUBE-IPVS-OUT-FILTER",
    ] {
        let _ = writeln!(filter, ":{c} - [0:0]");
    }
    let lo = if v6 { "::1/128" } else { "127.0.0.0/8" };
    let _ = writeln!(nat, "-A KUBE-SERVICES -s {lo} -j RETURN");
    // Upstream `ipsetWithIptablesChain`: (set, table is filter, from, to, match, -p).
    let with_chain: [(usize, bool, &str, &str, &str, &str); 12] = [
        (
            LOOP_BACK,
            false,
            "KUBE-POSTROUTING",
            "MASQUERADE",
            "dst,dst,src",
            "",
        ),
        (
            LOAD_BALANCER,
            false,
            "KUBE-SERVICES",
            "KUBE-LOAD-BALANCER",
            "dst,dst",
            "",
        ),
        (
            LOAD_BALANCER_LOCAL,
            false,
            "KUBE-LOAD-BALANCER",
            "RETURN",
            "dst,dst",
            "",
        ),
        (
            NODE_PORT_LOCAL_TCP,
            false,
            "KUBE-NODE-PORT",
            "RETURN",
            "dst",
            "tcp",
        ),
        (
            NODE_PORT_TCP,
            false,
            "KUBE-NODE-PORT",
            "KUBE-MARK-MASQ",
            "dst",
            "tcp",
        ),
        (
            NODE_PORT_LOCAL_UDP,
            false,
            "KUBE-NODE-PORT",
            "RETURN",
            "dst",
            "udp",
        ),
        (
            NODE_PORT_UDP,
            false,
            "KUBE-NODE-PORT",
            "KUBE-MARK-MASQ",
            "dst",
            "udp",
        ),
        (
            NODE_PORT_LOCAL_SCTP,
            false,
            "KUBE-NODE-PORT",
            "RETURN",
            "dst,dst",
            "sctp",
        ),
        (
            NODE_PORT_SCTP,
            false,
            "KUBE-NODE-PORT",
            "KUBE-MARK-MASQ",
            "dst,dst",
            "sctp",
        ),
        (
            LOAD_BALANCER_FW,
            true,
            "KUBE-PROXY-FIREWALL",
            "KUBE-SOURCE-RANGES-FIREWALL",
            "dst,dst",
            "",
        ),
        (
            LOAD_BALANCER_SOURCE_CIDR,
            true,
            "KUBE-SOURCE-RANGES-FIREWALL",
            "RETURN",
            "dst,dst,src",
            "",
        ),
        (
            LOAD_BALANCER_SOURCE_IP,
            true,
            "KUBE-SOURCE-RANGES-FIREWALL",
            "RETURN",
            "dst,dst,src",
            "",
        ),
    ];
    let mut filter_rules = String::new();
    for (set, is_filter, from, to, mt, p) in with_chain {
        if empty(set) {
            continue;
        }
        let out = if is_filter {
            &mut filter_rules
        } else {
            &mut nat
        };
        let _ = write!(out, "-A {from} ");
        if !p.is_empty() {
            let _ = write!(out, "-p {p} ");
        }
        let _ = writeln!(
            out,
            "-m comment --comment {} -m set --match-set {} {mt} -j {to}",
            cm(set),
            n(set)
        );
    }
    if !empty(CLUSTER_IP) {
        let head = format!(
            "-A KUBE-SERVICES -m comment --comment {} -m set --match-set {}",
            cm(CLUSTER_IP),
            n(CLUSTER_IP)
        );
        let detect = s.config.detect_local(v6, &s.node_pod_cidrs());
        if s.config.masquerade_all {
            let _ = writeln!(nat, "{head} dst,dst -j KUBE-MARK-MASQ");
        } else if let Some(not_local) = detect.if_not_local() {
            let _ = writeln!(nat, "{head} dst,dst {not_local} -j KUBE-MARK-MASQ");
        } else {
            // No detector: masquerade node-originated connections whose source is the VIP
            // itself (the VIP on kube-ipvs0 is picked as source for a VIP destination).
            let _ = writeln!(nat, "{head} src,dst -j KUBE-MARK-MASQ");
        }
    }
    let external_rules = |nat: &mut String, set: usize| {
        let head = format!(
            "-A KUBE-SERVICES -m comment --comment {} -m set --match-set {} dst,dst",
            cm(set),
            n(set)
        );
        let _ = writeln!(
            nat,
            "{head} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"
        );
        let _ = writeln!(nat, "{head} -m addrtype --dst-type LOCAL -j ACCEPT");
    };
    if !empty(EXTERNAL_IP) {
        let _ = writeln!(
            nat,
            "-A KUBE-SERVICES -m comment --comment {} -m set --match-set {} dst,dst -j KUBE-MARK-MASQ",
            cm(EXTERNAL_IP),
            n(EXTERNAL_IP)
        );
        external_rules(&mut nat, EXTERNAL_IP);
    }
    if !empty(EXTERNAL_IP_LOCAL) {
        external_rules(&mut nat, EXTERNAL_IP_LOCAL);
    }
    nat.push_str("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT\n");
    nat.push_str("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ\n");
    filter_rules.push_str("-A KUBE-SOURCE-RANGES-FIREWALL -j DROP\n");
    for (ip, proto, port) in lb_no_node_access {
        let _ = writeln!(
            filter_rules,
            "-A KUBE-IPVS-OUT-FILTER -s {ip} -m ipvs --vaddr {ip} --vproto {} --vport {port} -j DROP",
            proto.as_str()
        );
    }
    // acceptIPVSTraffic: must stay at the end of KUBE-SERVICES.
    for set in [CLUSTER_IP, LOAD_BALANCER] {
        if !empty(set) {
            let _ = writeln!(
                nat,
                "-A KUBE-SERVICES -m set --match-set {} dst,dst -j ACCEPT",
                n(set)
            );
        }
    }
    let _ = writeln!(
        filter_rules,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
    );
    filter_rules.push_str("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    let _ = writeln!(
        filter_rules,
        "-A KUBE-NODE-PORT -m comment --comment {} -m set --match-set {} dst -j ACCEPT",
        cm(HEALTH_CHECK_NODE_PORT),
        n(HEALTH_CHECK_NODE_PORT)
    );
    for (set, mt) in [
        (LOAD_BALANCER, "dst,dst"),
        (CLUSTER_IP, "dst,dst"),
        (EXTERNAL_IP, "dst,dst"),
        (EXTERNAL_IP_LOCAL, "dst,dst"),
        (HEALTH_CHECK_NODE_PORT, "dst"),
    ] {
        let _ = writeln!(
            filter_rules,
            "-A KUBE-IPVS-FILTER -m set --match-set {} {mt} -j RETURN",
            n(set)
        );
    }
    let _ = writeln!(
        filter_rules,
        "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set {} dst -j REJECT",
        n(IPVS_IPS)
    );
    super::write_masquerade_rules(&mut nat, &mark, s.network.random_fully);
    nat.push_str("COMMIT\n");
    filter.push_str(&filter_rules);
    filter.push_str("COMMIT\n");
    nat.push_str(&filter);
    nat
}

/// Upstream `iptablesJumpChain`, in processing order; each is prepended (`-I 1`) when missing.
pub const JUMPS: &[(&str, &str, &str, &str)] = &[
    (
        "nat",
        "OUTPUT",
        "KUBE-SERVICES",
        "kubernetes service portals",
    ),
    (
        "nat",
        "PREROUTING",
        "KUBE-SERVICES",
        "kubernetes service portals",
    ),
    (
        "nat",
        "POSTROUTING",
        "KUBE-POSTROUTING",
        "kubernetes postrouting rules",
    ),
    (
        "filter",
        "FORWARD",
        "KUBE-FORWARD",
        "kubernetes forwarding rules",
    ),
    (
        "filter",
        "INPUT",
        "KUBE-NODE-PORT",
        "kubernetes health check rules",
    ),
    (
        "filter",
        "INPUT",
        "KUBE-PROXY-FIREWALL",
        "kube-proxy firewall rules",
    ),
    (
        "filter",
        "FORWARD",
        "KUBE-PROXY-FIREWALL",
        "kube-proxy firewall rules",
    ),
    (
        "filter",
        "INPUT",
        "KUBE-IPVS-FILTER",
        "kubernetes ipvs access filter",
    ),
    (
        "filter",
        "OUTPUT",
        "KUBE-IPVS-OUT-FILTER",
        "kubernetes ipvs access filter",
    ),
];

/// The node's ruleset after the sync: the payload loaded into empty tables, plus the jumps.
pub fn node_ruleset(f: &FamilyIpvs) -> Ruleset {
    let parsed = ipt::parse(&f.payload, f.family);
    // Everything kube-proxy writes (`-m physdev`, `-m ipvs` included) parses cleanly.
    debug_assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let mut rs = parsed.ruleset;
    with_builtin_chains(&mut rs);
    // kube-proxy's IPVS payload writes *nat first; iptables-save lists filter before nat
    // (checked with iptables 1.8.9 nf_tables in a namespace: the kernel round trip test).
    rs.tables
        .sort_by_key(|t| if t.name == "filter" { 0 } else { 1 });
    for (table, from, to, comment) in JUMPS {
        let t = rs.table_mut(table).expect("table created above");
        let text = format!("-m comment --comment \"{comment}\" -j {to}");
        let idx: HashMap<String, usize> = [(to.to_string(), 0)].into();
        let mut diags = Vec::new();
        let rule = ipt::parse::parse_rule_args(&text, f.family, table, &idx, 0, &mut diags)
            .expect("static rule");
        let chain = t.chain_mut(from).expect("built-in chain");
        if !chain.rules.contains(&rule) {
            chain.rules.insert(0, rule);
        }
    }
    rs
}

/// Give a ruleset the built-in chains of filter and nat (policy ACCEPT) it lacks.
pub fn with_builtin_chains(rs: &mut Ruleset) {
    for table in ["filter", "nat"] {
        let t = match rs.table_mut(table) {
            Some(t) => t,
            None => {
                rs.tables.push(ipt::Table::new(table));
                rs.tables.last_mut().expect("pushed")
            }
        };
        for (i, b) in ipt::builtin_chains(table).iter().enumerate() {
            if t.chain(b).is_none() {
                t.chains.insert(
                    i.min(t.chains.len()),
                    Chain {
                        name: b.to_string(),
                        policy: Some("ACCEPT".into()),
                        counters: Counters::default(),
                        rules: Vec::new(),
                    },
                );
            }
        }
    }
}

/// `iptables-save` text of the node after the sync.
pub fn saved_text(f: &FamilyIpvs) -> String {
    ipt::print_saved(&node_ruleset(f), false)
}

/// The virtual servers as ipvsadm's model (for `ipvsadm -Sn` / `-Ln`).
pub fn ipvsadm_services(vss: &[VirtualServer]) -> Vec<ipvsadm::Service> {
    vss.iter()
        .map(|v| {
            let proto = match v.proto {
                Proto::Tcp => IpvsProto::Tcp,
                Proto::Udp => IpvsProto::Udp,
                Proto::Sctp => IpvsProto::Sctp,
            };
            let mut s = ipvsadm::Service::new(
                ServiceKey::Addr {
                    proto,
                    addr: std::net::SocketAddr::new(v.address, v.port),
                },
                &v.scheduler,
            );
            s.sched_flags = v.flags & 0x38;
            if v.flags & FLAG_PERSISTENT != 0 {
                s.persistent = Some(v.timeout);
            }
            s.dests = v
                .real_servers
                .iter()
                .map(|r| {
                    ipvsadm::RealServer::new(
                        std::net::SocketAddr::new(r.address, r.port),
                        Forward::Masq,
                        r.weight,
                    )
                })
                .collect();
            s
        })
        .collect()
}

/// The sets as the netfilter machine's `-m set` sees them.
pub fn machine_ipsets(sets: &[IpSet]) -> HashMap<String, netfilter::IpSet> {
    sets.iter()
        .map(|s| {
            let members = s
                .members
                .iter()
                .filter_map(|m| member_of(&m.elem))
                .collect();
            (
                s.name.clone(),
                netfilter::IpSet {
                    set_type: s.set_type.clone(),
                    members,
                },
            )
        })
        .collect()
}

fn member_of(e: &Element) -> Option<netfilter::IpSetMember> {
    let host = |a: IpAddr| IpNet::from(a);
    let m = |ip, proto: Option<&str>, port, ip2| netfilter::IpSetMember {
        ip,
        proto: proto.and_then(Proto::parse),
        port,
        ip2,
    };
    Some(match e {
        Element::Ip(a) => m(Some(host(*a)), None, None, None),
        Element::Net(a, p) => m(IpNet::new(*a, *p).ok(), None, None, None),
        Element::IpPort { ip, proto, port } => m(Some(host(*ip)), Some(proto), Some(*port), None),
        Element::IpPortIp {
            ip,
            proto,
            port,
            ip2,
        } => m(Some(host(*ip)), Some(proto), Some(*port), Some(host(*ip2))),
        Element::IpPortNet {
            ip,
            proto,
            port,
            net,
            prefix,
        } => m(
            Some(host(*ip)),
            Some(proto),
            Some(*port),
            IpNet::new(*net, *prefix).ok(),
        ),
        Element::Port(p) => m(None, None, Some(*p), None),
        Element::Other(_) => return None,
    })
}

/// Every family's state.
pub fn generate_all(s: &Scenario) -> Vec<FamilyIpvs> {
    super::iptables::families(s)
        .into_iter()
        .map(|f| generate(s, f))
        .collect()
}

/// `ip -brief address show dev kube-ipvs0` as iproute2 prints it: name padded to 16, state
/// padded to 14 (the dummy is never brought up: `DOWN`), then each address with its prefix.
pub fn kube_ipvs0_text(addrs: &[IpAddr]) -> String {
    let mut s = format!("{DUMMY_DEVICE:<16} {:<14} ", "DOWN");
    for a in addrs {
        let p = if a.is_ipv4() { 32 } else { 128 };
        let _ = write!(s, "{a}/{p} ");
    }
    s.push('\n');
    s
}
