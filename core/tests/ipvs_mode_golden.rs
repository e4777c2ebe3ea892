//! IPVS mode against kube-proxy's own IPVS unit-test expectations
//! (kubernetes/kubernetes `pkg/proxy/ipvs/proxier_test.go`, 2025-era master). Each test names
//! its upstream function and reproduces its setup (`makeTestService`, `populateEndpointSlices`,
//! the fake interfaces and `nodePortAddresses`) as a scenario. The expected side is upstream's:
//! virtual servers with their real servers (`checkIPVS`), ipset entries (`checkIPSet`), and per
//! chain the sequence of (jump target, match-set) pairs (`checkIptables`; its fake iptables keeps
//! one list per chain name, nat rules before filter rules). Where upstream does not look, the
//! expectation is derived by hand in a comment.

use proxyscope_core::k8s::{self, Scenario};
use proxyscope_core::proxier::ipvs::{FamilyIpvs, generate};
use proxyscope_core::rules::iptables::{self as ipt, Family, Match, Target};

const CONFIG: &str = r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
clusterCIDR: 10.0.0.0/24
"#;

/// The upstream fake proxier's node: `testNodeName`, with the given interfaces
/// (`networkInterfacer.AddInterfaceAddr`) and `nodePortAddresses`.
fn scenario(config_extra: &str, interfaces: &str, objects: &str) -> Scenario {
    let text = format!(
        "{CONFIG}{config_extra}---
apiVersion: v1
kind: Node
metadata: {{name: test-node}}
---
apiVersion: proxyscope.dev/v1alpha1
kind: NodeNetwork
metadata: {{name: test-node}}
interfaces:
{interfaces}
features: {{randomFully: false, nfacct: false}}
{objects}"
    );
    k8s::load(&text)
        .unwrap_or_else(|e| panic!("scenario does not load: {e:?}\n{text}"))
        .scenario
}

fn v4(s: &Scenario) -> FamilyIpvs {
    generate(s, Family::V4)
}

/// `checkIPVS`: the virtual server at (ip, port, proto) exists, has exactly these real servers,
/// and the table has `n` virtual servers in all.
fn check_vs(f: &FamilyIpvs, n: usize, ip: &str, port: u16, proto: &str, rs: &[(&str, u16)]) {
    assert_eq!(
        f.virtual_servers.len(),
        n,
        "number of virtual servers: {:#?}",
        f.virtual_servers
    );
    let vs = f
        .virtual_servers
        .iter()
        .find(|v| v.address.to_string() == ip && v.port == port && v.protocol == proto)
        .unwrap_or_else(|| panic!("no virtual server {proto} {ip}:{port}"));
    let got: Vec<(String, u16)> = vs
        .real_servers
        .iter()
        .map(|r| (r.address.to_string(), r.port))
        .collect();
    let want: Vec<(String, u16)> = rs.iter().map(|(a, p)| (a.to_string(), *p)).collect();
    assert_eq!(got, want, "real servers of {proto} {ip}:{port}");
    for r in &vs.real_servers {
        assert_eq!((r.weight, r.forward.as_str()), (1, "Masq"));
    }
}

/// `checkIPSet`: the set holds exactly these entries.
fn check_set(f: &FamilyIpvs, name: &str, entries: &[&str]) {
    let set = f
        .ipsets
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no set {name}"));
    let mut got: Vec<String> = set.members.iter().map(|m| m.elem.to_string()).collect();
    got.sort();
    let mut want: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "entries of {name}");
}

/// `checkIptables`: per chain name, (target, match-set or source) of each rule, nat then filter.
fn chain(f: &FamilyIpvs, name: &str) -> Vec<(String, String)> {
    let p = ipt::parse(&f.payload, f.family);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    let mut out = Vec::new();
    for table in ["nat", "filter"] {
        let Some(c) = p.ruleset.table(table).and_then(|t| t.chain(name)) else {
            continue;
        };
        for r in &c.rules {
            let target = match &r.target {
                Some(Target::Jump { chain }) => chain.clone(),
                Some(Target::Accept) => "ACCEPT".into(),
                Some(Target::Return) => "RETURN".into(),
                Some(Target::Drop) => "DROP".into(),
                Some(Target::Reject { .. }) => "REJECT".into(),
                Some(Target::Masquerade { .. }) => "MASQUERADE".into(),
                Some(Target::Mark { .. }) => "MARK".into(),
                other => format!("{other:?}"),
            };
            let set = r
                .matches
                .iter()
                .find_map(|m| match m {
                    Match::Set { name, .. } => Some(name.clone()),
                    _ => None,
                })
                .or_else(|| r.src.as_ref().map(|s| s.value.to_string()))
                .unwrap_or_default();
            out.push((target, set));
        }
    }
    out
}

fn rules(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const SLICE_HEAD: &str = "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
addressType: IPv4
";

/// Upstream: TestOnlyLocalNodePorts.
#[test]
fn only_local_node_ports() {
    let s = scenario(
        "nodePortAddresses: [100.101.102.0/24]\n",
        "  eth0: [100.101.102.103/24]\n  eth1: [2001:db8::/64]\n",
        &format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  externalTrafficPolicy: Local
  ports: [{{name: p80, port: 80, protocol: TCP, nodePort: 3001}}]
---
{SLICE_HEAD}metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}
endpoints:
- {{addresses: [10.180.0.1], nodeName: test-node}}
- {{addresses: [10.180.1.1], nodeName: other-node}}
ports: [{{name: p80, port: 80, protocol: TCP}}]
"
        ),
    );
    let f = v4(&s);
    // "Expect 2 services and 1 destination": the NodePort VS on the one node IP inside
    // nodePortAddresses gets only the local endpoint (eTP Local).
    check_vs(&f, 2, "100.101.102.103", 3001, "TCP", &[("10.180.0.1", 80)]);
    // Hand-derived: the ClusterIP VS follows internalTrafficPolicy (Cluster): both endpoints.
    check_vs(
        &f,
        2,
        "10.20.30.41",
        80,
        "TCP",
        &[("10.180.0.1", 80), ("10.180.1.1", 80)],
    );
    check_set(&f, "KUBE-NODE-PORT-TCP", &["3001"]);
    check_set(&f, "KUBE-NODE-PORT-LOCAL-TCP", &["3001"]);
    assert_eq!(
        chain(&f, "KUBE-SERVICES"),
        rules(&[
            ("RETURN", "127.0.0.0/8"),
            ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
            ("KUBE-NODE-PORT", ""),
            ("ACCEPT", "KUBE-CLUSTER-IP"),
        ])
    );
    assert_eq!(
        chain(&f, "KUBE-NODE-PORT"),
        rules(&[
            ("RETURN", "KUBE-NODE-PORT-LOCAL-TCP"),
            ("KUBE-MARK-MASQ", "KUBE-NODE-PORT-TCP"),
            ("ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"),
        ])
    );
    // Hand-derived: node IPs are never bound; the ClusterIP is.
    assert_eq!(
        f.kube_ipvs0,
        vec!["10.20.30.41".parse::<std::net::IpAddr>().unwrap()]
    );
    check_set(&f, "KUBE-IPVS-IPS", &["10.20.30.41"]);
    // Hand-derived: KUBE-LOOP-BACK holds the local endpoint only.
    check_set(&f, "KUBE-LOOP-BACK", &["10.180.0.1,tcp:80,10.180.0.1"]);
}

/// Upstream: TestHealthCheckNodePort.
#[test]
fn health_check_node_port() {
    let svc = |name: &str, etp: &str, hc: u16| {
        format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: ns1}}
spec:
  type: LoadBalancer
  clusterIP: 10.20.30.41
  externalTrafficPolicy: {etp}
  healthCheckNodePort: {hc}
  ports: [{{name: p80, port: 80, protocol: TCP, nodePort: 3000}}]
"
        )
    };
    let s = scenario(
        "nodePortAddresses: [100.101.102.0/24]\n",
        "  eth0: [100.101.102.103/24]\n  eth1: [2001:db8::/64]\n",
        &format!(
            "{}{}{}",
            svc("valid-svc1", "Local", 30000),
            svc("valid-svc2", "Local", 30001),
            // eTP Cluster: its healthCheckNodePort is not used.
            svc("invalid-svc3", "Cluster", 30002)
        ),
    );
    let f = v4(&s);
    check_set(&f, "KUBE-HEALTH-CHECK-NODE-PORT", &["30000", "30001"]);
    assert_eq!(
        chain(&f, "KUBE-NODE-PORT"),
        rules(&[
            ("RETURN", "KUBE-NODE-PORT-LOCAL-TCP"),
            ("KUBE-MARK-MASQ", "KUBE-NODE-PORT-TCP"),
            ("ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"),
        ])
    );
}

/// Upstream: TestLoadBalancerSourceRanges.
#[test]
fn load_balancer_source_ranges() {
    let s = scenario(
        "",
        "  eth0: [100.101.102.103/24]\n",
        &format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  type: LoadBalancer
  clusterIP: 10.20.30.41
  loadBalancerSourceRanges: [10.0.0.0/8]
  ports: [{{name: p80, port: 80, protocol: TCP}}]
status:
  loadBalancer:
    ingress: [{{ip: 1.2.3.4}}]
---
{SLICE_HEAD}metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}
endpoints:
- {{addresses: [10.180.0.1]}}
ports: [{{name: p80, port: 80, protocol: TCP}}]
"
        ),
    );
    let f = v4(&s);
    check_vs(&f, 2, "1.2.3.4", 80, "TCP", &[("10.180.0.1", 80)]);
    check_set(&f, "KUBE-LOAD-BALANCER", &["1.2.3.4,tcp:80"]);
    check_set(&f, "KUBE-LOAD-BALANCER-FW", &["1.2.3.4,tcp:80"]);
    check_set(
        &f,
        "KUBE-LOAD-BALANCER-SOURCE-CIDR",
        &["1.2.3.4,tcp:80,10.0.0.0/8"],
    );
    assert_eq!(
        chain(&f, "KUBE-SERVICES"),
        rules(&[
            ("RETURN", "127.0.0.0/8"),
            ("KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
            ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
            ("KUBE-NODE-PORT", ""),
            ("ACCEPT", "KUBE-CLUSTER-IP"),
            ("ACCEPT", "KUBE-LOAD-BALANCER"),
        ])
    );
    assert_eq!(
        chain(&f, "KUBE-PROXY-FIREWALL"),
        rules(&[("KUBE-SOURCE-RANGES-FIREWALL", "KUBE-LOAD-BALANCER-FW")])
    );
    assert_eq!(
        chain(&f, "KUBE-SOURCE-RANGES-FIREWALL"),
        rules(&[("RETURN", "KUBE-LOAD-BALANCER-SOURCE-CIDR"), ("DROP", "")])
    );
    // Hand-derived: the node IP 100.101.102.103 is outside 10.0.0.0/8, so no SOURCE-IP entry,
    // and the node itself is kept away from the VIP by KUBE-IPVS-OUT-FILTER
    // (`lbNoNodeAccessIPPortProtocolEntries`).
    check_set(&f, "KUBE-LOAD-BALANCER-SOURCE-IP", &[]);
    assert!(f.payload.contains(
        "-A KUBE-IPVS-OUT-FILTER -s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP\n"
    ));
}

/// Hand-derived companion of TestLoadBalancerSourceRanges: when a source range contains the
/// node IP, kube-proxy adds `lbIP,proto:port,lbIP` to KUBE-LOAD-BALANCER-SOURCE-IP ("allow
/// request on host") and no OUT-FILTER rule.
#[test]
fn load_balancer_source_range_covering_the_node() {
    let s = scenario(
        "",
        "  eth0: [100.101.102.103/24]\n",
        "---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 10.20.30.41
  loadBalancerSourceRanges: [100.101.0.0/16]
  ports: [{name: p80, port: 80, protocol: TCP}]
status:
  loadBalancer:
    ingress: [{ip: 1.2.3.4}]
",
    );
    let f = v4(&s);
    check_set(
        &f,
        "KUBE-LOAD-BALANCER-SOURCE-IP",
        &["1.2.3.4,tcp:80,1.2.3.4"],
    );
    assert_eq!(
        chain(&f, "KUBE-SOURCE-RANGES-FIREWALL"),
        rules(&[
            ("RETURN", "KUBE-LOAD-BALANCER-SOURCE-CIDR"),
            ("RETURN", "KUBE-LOAD-BALANCER-SOURCE-IP"),
            ("DROP", ""),
        ])
    );
    assert!(!f.payload.contains("-A KUBE-IPVS-OUT-FILTER"));
}

/// Upstream: TestOnlyLocalLoadBalancing. The fake has no interfaces, so no node IP: the
/// NodePort VS is skipped and only ClusterIP + LB exist ("Expect 2 services").
#[test]
fn only_local_load_balancing() {
    let s = scenario(
        "",
        "  lo: [127.0.0.1/8]\n",
        &format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  type: LoadBalancer
  clusterIP: 10.20.30.41
  externalTrafficPolicy: Local
  ports: [{{name: p80, port: 80, protocol: TCP, nodePort: 3001}}]
status:
  loadBalancer:
    ingress: [{{ip: 1.2.3.4}}]
---
{SLICE_HEAD}metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}
endpoints:
- {{addresses: [10.180.0.1], nodeName: test-node}}
- {{addresses: [10.180.1.1], nodeName: other-node}}
ports: [{{name: p80, port: 80, protocol: TCP}}]
"
        ),
    );
    let f = v4(&s);
    check_vs(&f, 2, "1.2.3.4", 80, "TCP", &[("10.180.0.1", 80)]);
    check_set(&f, "KUBE-LOAD-BALANCER", &["1.2.3.4,tcp:80"]);
    check_set(&f, "KUBE-LOAD-BALANCER-LOCAL", &["1.2.3.4,tcp:80"]);
    assert_eq!(
        chain(&f, "KUBE-SERVICES"),
        rules(&[
            ("RETURN", "127.0.0.0/8"),
            ("KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
            ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
            ("KUBE-NODE-PORT", ""),
            ("ACCEPT", "KUBE-CLUSTER-IP"),
            ("ACCEPT", "KUBE-LOAD-BALANCER"),
        ])
    );
    assert_eq!(
        chain(&f, "KUBE-LOAD-BALANCER"),
        rules(&[
            ("RETURN", "KUBE-LOAD-BALANCER-LOCAL"),
            ("KUBE-MARK-MASQ", "")
        ])
    );
    // Hand-derived (upstream `continue` when no node IP): no NodePort set entries, and the
    // LB VIP (not a node address) is bound to kube-ipvs0 with the ClusterIP.
    check_set(&f, "KUBE-NODE-PORT-TCP", &[]);
    check_set(&f, "KUBE-IPVS-IPS", &["1.2.3.4", "10.20.30.41"]);
}

/// Upstream: TestAcceptIPVSTraffic. The slices are owned by a Service named "p80" and carry
/// UDP ports, so no endpoint reaches any of the three services.
#[test]
fn accept_ipvs_traffic() {
    let mut objs = String::new();
    for (ty, ip, name, extra) in [
        (
            "ClusterIP",
            "10.20.30.40",
            "svc1",
            "  externalIPs: [5.6.7.8]\n",
        ),
        ("LoadBalancer", "10.20.30.41", "svc2", ""),
        ("NodePort", "10.20.30.42", "svc3", ""),
    ] {
        let status = if ty == "LoadBalancer" {
            "status:\n  loadBalancer:\n    ingress: [{ip: 1.2.3.4}]\n"
        } else {
            ""
        };
        let np = if ty == "ClusterIP" {
            ""
        } else {
            ", nodePort: 80"
        };
        objs.push_str(&format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: ns1}}
spec:
  type: {ty}
  clusterIP: {ip}
{extra}  ports: [{{name: p80, port: 80, protocol: TCP{np}}}]
{status}"
        ));
    }
    let s = scenario("", "  lo: [127.0.0.1/8]\n", &objs);
    let f = v4(&s);
    assert_eq!(
        chain(&f, "KUBE-SERVICES"),
        rules(&[
            ("RETURN", "127.0.0.0/8"),
            ("KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
            ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
            ("KUBE-MARK-MASQ", "KUBE-EXTERNAL-IP"),
            ("ACCEPT", "KUBE-EXTERNAL-IP"),
            ("ACCEPT", "KUBE-EXTERNAL-IP"),
            ("KUBE-NODE-PORT", ""),
            ("ACCEPT", "KUBE-CLUSTER-IP"),
            ("ACCEPT", "KUBE-LOAD-BALANCER"),
        ])
    );
    // Hand-derived (spec §2: "no endpoints ≠ no VS"): every VS exists with no real server:
    // 3 ClusterIPs + the externalIP + the LB VIP (no node IP, so no NodePort VS).
    assert_eq!(f.virtual_servers.len(), 5);
    assert!(f.virtual_servers.iter().all(|v| v.real_servers.is_empty()));
}

/// Upstream: TestSessionAffinity. Every VS of a ClientIP-affinity Service (ClusterIP,
/// externalIP, NodePort) is persistent with the default 10800 s.
#[test]
fn session_affinity() {
    let s = scenario(
        "",
        "  eth0: [100.101.102.103/24]\n",
        "---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  externalIPs: [50.60.70.81]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
",
    );
    let f = v4(&s);
    assert_eq!(f.virtual_servers.len(), 3);
    for v in &f.virtual_servers {
        assert_eq!((v.flags, v.timeout), (0x1, 10800), "{v:?}");
    }
    // Hand-derived: ipvsadm shows it as `-p 10800`.
    let text = proxyscope_core::ipvs::ipvsadm::print_rules(
        &proxyscope_core::proxier::ipvs::ipvsadm_services(&f.virtual_servers),
        false,
    );
    assert!(
        text.contains("-A -t 10.20.30.41:80 -s rr -p 10800\n"),
        "{text}"
    );
}

/// Hand-derived (spec §2, upstream `FlagSourceHash`): with scheduler mh every VS carries
/// 0x10, which ipvsadm prints as `-b mh-port`; affinity still adds 0x1.
#[test]
fn mh_scheduler_sets_mh_port() {
    let s = scenario(
        "ipvs: {scheduler: mh}\n",
        "  eth0: [100.101.102.103/24]\n",
        "---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  clusterIP: 10.20.30.41
  ports: [{name: p80, port: 80, protocol: UDP}]
",
    );
    let f = v4(&s);
    assert_eq!(f.virtual_servers[0].flags, 0x10);
    let text = proxyscope_core::ipvs::ipvsadm::print_rules(
        &proxyscope_core::proxier::ipvs::ipvsadm_services(&f.virtual_servers),
        false,
    );
    assert_eq!(text, "-A -u 10.20.30.41:80 -s mh -b mh-port\n");
}

/// Hand-derived from upstream `syncEndpoint` (PR 97081): eTP Local with no local endpoint
/// falls back to every cluster endpoint in IPVS mode (iptables mode would drop), while the
/// KUBE-NODE-PORT-LOCAL set still keeps the client address unmasqueraded.
#[test]
fn external_local_without_local_endpoints_falls_back_to_cluster() {
    let s = scenario(
        "",
        "  eth0: [100.101.102.103/24]\n",
        &format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  externalTrafficPolicy: Local
  ports: [{{name: p80, port: 80, protocol: TCP, nodePort: 3001}}]
---
{SLICE_HEAD}metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}
endpoints:
- {{addresses: [10.180.1.1], nodeName: other-node}}
- {{addresses: [10.180.2.1], nodeName: other-node}}
ports: [{{name: p80, port: 8080, protocol: TCP}}]
"
        ),
    );
    let f = v4(&s);
    check_vs(
        &f,
        2,
        "100.101.102.103",
        3001,
        "TCP",
        &[("10.180.1.1", 8080), ("10.180.2.1", 8080)],
    );
    check_set(&f, "KUBE-NODE-PORT-LOCAL-TCP", &["3001"]);
    check_set(&f, "KUBE-LOOP-BACK", &[]);
}

/// Hand-derived (spec §1.2, upstream `syncEndpoint` with `internalNodeLocal`): internal
/// traffic policy Local on a plain ClusterIP service uses no cluster endpoints at all, so the
/// fallback finds nothing: the VS has no real server when no endpoint is local.
#[test]
fn internal_local_without_local_endpoints_has_no_real_server() {
    let s = scenario(
        "",
        "  eth0: [100.101.102.103/24]\n",
        &format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  clusterIP: 10.20.30.41
  internalTrafficPolicy: Local
  ports: [{{name: p80, port: 80, protocol: TCP}}]
---
{SLICE_HEAD}metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}
endpoints:
- {{addresses: [10.180.1.1], nodeName: other-node}}
ports: [{{name: p80, port: 80, protocol: TCP}}]
"
        ),
    );
    let f = v4(&s);
    check_vs(&f, 1, "10.20.30.41", 80, "TCP", &[]);
}

/// Hand-derived (CategorizeEndpoints, upstream TestTerminatingEndpoints* cases): with no
/// ready endpoint, serving+terminating ones are used; not-serving ones never. KUBE-LOOP-BACK
/// still lists every local endpoint of the map, whatever its conditions.
#[test]
fn terminating_endpoints() {
    let s = scenario(
        "",
        "  eth0: [100.101.102.103/24]\n",
        &format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  clusterIP: 10.20.30.41
  ports: [{{name: p80, port: 80, protocol: TCP}}]
---
{SLICE_HEAD}metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}
endpoints:
- addresses: [10.0.1.1]
  nodeName: test-node
  conditions: {{ready: false, serving: true, terminating: true}}
- addresses: [10.0.1.2]
  nodeName: test-node
  conditions: {{ready: false, serving: false, terminating: true}}
ports: [{{name: p80, port: 80, protocol: TCP}}]
"
        ),
    );
    let f = v4(&s);
    check_vs(&f, 1, "10.20.30.41", 80, "TCP", &[("10.0.1.1", 80)]);
    check_set(
        &f,
        "KUBE-LOOP-BACK",
        &["10.0.1.1,tcp:80,10.0.1.1", "10.0.1.2,tcp:80,10.0.1.2"],
    );
}

/// Hand-derived (spec §4, upstream `NewIPSet`): the IPv6 proxier names sets `KUBE-6-...`,
/// cut at 31 characters, with `family inet6`.
#[test]
fn ipv6_set_names() {
    assert_eq!(
        proxyscope_core::proxier::ipvs::set_name("KUBE-LOAD-BALANCER-SOURCE-CIDR", true),
        "KUBE-6-LOAD-BALANCER-SOURCE-CID"
    );
    let s = scenario(
        "",
        "  eth0: [2001:db8::1/64]\n",
        "---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  clusterIP: fd00::41
  ipFamilies: [IPv6]
  ports: [{name: p80, port: 80, protocol: TCP}]
",
    );
    let f = generate(&s, Family::V6);
    let set = f
        .ipsets
        .iter()
        .find(|s| s.name == "KUBE-6-CLUSTER-IP")
        .unwrap();
    assert_eq!(set.members[0].elem.to_string(), "fd00::41,tcp:80");
    assert!(
        f.payload
            .contains("-A KUBE-SERVICES -s ::1/128 -j RETURN\n")
    );
}
