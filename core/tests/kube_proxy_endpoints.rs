//! What kube-proxy derives from the API objects, checked against upstream
//! (kubernetes/kubernetes `pkg/proxy/iptables/proxier_test.go`):
//! - its service map (TestBuildServiceMap*): how many service ports, which health-check
//!   NodePorts;
//! - its EndpointSlice cache (TestUpdateEndpointsMap): for every case, the slices the proxier
//!   holds at the end (`currentEndpoints`) and the endpoints map it must build from them
//!   (`expectedResult`: per service port, `ip:port` strings in kube-proxy's order and `isLocal`).
//!
//! The incremental-update bookkeeping of those tests (old maps, conntrack clean-up flags, local
//! endpoint counts for the health-check server) is not modelled by proxyscope: it always
//! rebuilds from the current objects, so each state is checked as a rebuild.

mod common;

use common::scenario;
use proxyscope_core::proxier::endpoints_for;
use proxyscope_core::trace::Proto;
use std::collections::BTreeSet;

/// `makeTestEndpointSlice(ns, name, num, …)` with UDP ports; each endpoint is (ip, on this node).
fn slice(ns: &str, name: &str, num: u32, eps: &[(&str, bool)], ports: &[(&str, u16)]) -> String {
    let mut s = format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{namespace: {ns}, name: {name}-{num}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nendpoints:\n"
    );
    for (ip, local) in eps {
        if *local {
            s.push_str(&format!("- {{addresses: [{ip}], nodeName: test-node}}\n"));
        } else {
            s.push_str(&format!("- {{addresses: [{ip}]}}\n"));
        }
    }
    s.push_str("ports:\n");
    for (p, n) in ports {
        s.push_str(&format!("- {{name: {p}, port: {n}, protocol: UDP}}\n"));
    }
    s
}

// The named slice contents of upstream TestUpdateEndpointsMap.
fn subset1(ns: &str, name: &str, num: u32) -> String {
    slice(ns, name, num, &[("10.1.1.1", false)], &[("p11", 11)])
}
fn subset2(ns: &str, name: &str, num: u32) -> String {
    slice(ns, name, num, &[("10.1.1.2", false)], &[("p12", 12)])
}
fn named_port_local() -> String {
    slice("ns1", "ep1", 1, &[("10.1.1.1", true)], &[("p11", 11)])
}
fn named_port() -> String {
    subset1("ns1", "ep1", 1)
}
fn multiple_subsets() -> String {
    subset1("ns1", "ep1", 1) + &subset2("ns1", "ep1", 2)
}
fn multiple_subsets_multiple_ports_local() -> String {
    slice(
        "ns1",
        "ep1",
        1,
        &[("10.1.1.1", true)],
        &[("p11", 11), ("p12", 12)],
    ) + &slice("ns1", "ep1", 2, &[("10.1.1.3", false)], &[("p13", 13)])
}
fn multiple_subsets_ips_ports() -> String {
    slice(
        "ns1",
        "ep1",
        1,
        &[("10.1.1.1", false), ("10.1.1.2", true)],
        &[("p11", 11), ("p12", 12)],
    ) + &slice(
        "ns1",
        "ep1",
        2,
        &[("10.1.1.3", false), ("10.1.1.4", true)],
        &[("p13", 13), ("p14", 14)],
    ) + &slice(
        "ns2",
        "ep2",
        1,
        &[("10.2.2.1", false), ("10.2.2.2", true)],
        &[("p21", 21), ("p22", 22)],
    )
}
fn named_ports_local_no_local() -> String {
    slice(
        "ns1",
        "ep1",
        1,
        &[("10.1.1.1", false), ("10.1.1.2", true)],
        &[("p11", 11), ("p12", 12)],
    )
}
fn multiple_subsets_with_local() -> String {
    subset1("ns1", "ep1", 1) + &slice("ns1", "ep1", 2, &[("10.1.1.2", true)], &[("p12", 12)])
}
fn named_port_renamed() -> String {
    slice("ns1", "ep1", 1, &[("10.1.1.1", false)], &[("p11-2", 11)])
}
fn named_port_renumbered() -> String {
    slice("ns1", "ep1", 1, &[("10.1.1.1", false)], &[("p11", 22)])
}
fn complex_after() -> String {
    slice(
        "ns1",
        "ep1",
        1,
        &[("10.1.1.1", false), ("10.1.1.11", false)],
        &[("p11", 11)],
    ) + &slice(
        "ns1",
        "ep1",
        2,
        &[("10.1.1.2", false)],
        &[("p12", 12), ("p122", 122)],
    ) + &slice("ns3", "ep3", 1, &[("10.3.3.3", false)], &[("p33", 33)])
        + &slice("ns4", "ep4", 1, &[("10.4.4.4", true)], &[("p44", 44)])
}

/// Expected endpoints of one service port: ((ns, name, port), [(endpoint, isLocal)]).
type Expect = (
    (&'static str, &'static str, &'static str),
    Vec<(&'static str, bool)>,
);

fn check(case: &str, slices: &str, expected: &[Expect]) {
    let s = scenario(&format!(
        "{}{slices}",
        include_str!("golden/fake-proxier.yaml")
    ));
    // Every service port any current slice names (upstream: len(newMap) == len(expected)).
    let mut ports: BTreeSet<(String, String, String)> = BTreeSet::new();
    for sl in &s.slices {
        let ns = sl.metadata.namespace.clone().unwrap_or_default();
        let svc = sl.metadata.labels.as_ref().unwrap()["kubernetes.io/service-name"].clone();
        for p in sl.ports.iter().flatten() {
            ports.insert((ns.clone(), svc.clone(), p.name.clone().unwrap_or_default()));
        }
    }
    for ((ns, name, port), _) in expected {
        ports.insert((ns.to_string(), name.to_string(), port.to_string()));
    }
    for (ns, name, port) in &ports {
        let got: Vec<(String, bool)> = endpoints_for(&s, ns, name, port, Proto::Udp, false)
            .iter()
            .map(|e| (e.key(), e.local))
            .collect();
        let want: Vec<(String, bool)> = expected
            .iter()
            .find(|((n, m, p), _)| n == ns && m == name && p == port)
            .map(|(_, v)| v.iter().map(|(e, l)| (e.to_string(), *l)).collect())
            .unwrap_or_default();
        assert_eq!(
            got, want,
            "TestUpdateEndpointsMap / {case}: {ns}/{name}:{port}"
        );
    }
}

/// Upstream: TestUpdateEndpointsMap, the final state of each of its 15 cases.
#[test]
fn update_endpoints_map() {
    let ep1 = |p: &'static str| ("ns1", "ep1", p);
    check("nothing", "", &[]);
    check(
        "no change, named port, local",
        &named_port_local(),
        &[(ep1("p11"), vec![("10.1.1.1:11", true)])],
    );
    check(
        "no change, multiple subsets",
        &multiple_subsets(),
        &[
            (ep1("p11"), vec![("10.1.1.1:11", false)]),
            (ep1("p12"), vec![("10.1.1.2:12", false)]),
        ],
    );
    check(
        "no change, multiple subsets, multiple ports, local",
        &multiple_subsets_multiple_ports_local(),
        &[
            (ep1("p11"), vec![("10.1.1.1:11", true)]),
            (ep1("p12"), vec![("10.1.1.1:12", true)]),
            (ep1("p13"), vec![("10.1.1.3:13", false)]),
        ],
    );
    check(
        "no change, multiple endpoints, subsets, IPs, and ports",
        &multiple_subsets_ips_ports(),
        &[
            (
                ep1("p11"),
                vec![("10.1.1.1:11", false), ("10.1.1.2:11", true)],
            ),
            (
                ep1("p12"),
                vec![("10.1.1.1:12", false), ("10.1.1.2:12", true)],
            ),
            (
                ep1("p13"),
                vec![("10.1.1.3:13", false), ("10.1.1.4:13", true)],
            ),
            (
                ep1("p14"),
                vec![("10.1.1.3:14", false), ("10.1.1.4:14", true)],
            ),
            (
                ("ns2", "ep2", "p21"),
                vec![("10.2.2.1:21", false), ("10.2.2.2:21", true)],
            ),
            (
                ("ns2", "ep2", "p22"),
                vec![("10.2.2.1:22", false), ("10.2.2.2:22", true)],
            ),
        ],
    );
    check(
        "add an Endpoints",
        &named_port_local(),
        &[(ep1("p11"), vec![("10.1.1.1:11", true)])],
    );
    check("remove an Endpoints", "", &[]);
    check(
        "add an IP and port",
        &named_ports_local_no_local(),
        &[
            (
                ep1("p11"),
                vec![("10.1.1.1:11", false), ("10.1.1.2:11", true)],
            ),
            (
                ep1("p12"),
                vec![("10.1.1.1:12", false), ("10.1.1.2:12", true)],
            ),
        ],
    );
    check(
        "remove an IP and port",
        &named_port(),
        &[(ep1("p11"), vec![("10.1.1.1:11", false)])],
    );
    check(
        "add a subset",
        &multiple_subsets_with_local(),
        &[
            (ep1("p11"), vec![("10.1.1.1:11", false)]),
            (ep1("p12"), vec![("10.1.1.2:12", true)]),
        ],
    );
    check(
        "remove a subset",
        &named_port(),
        &[(ep1("p11"), vec![("10.1.1.1:11", false)])],
    );
    check(
        "rename a port",
        &named_port_renamed(),
        &[(ep1("p11-2"), vec![("10.1.1.1:11", false)])],
    );
    check(
        "renumber a port",
        &named_port_renumbered(),
        &[(ep1("p11"), vec![("10.1.1.1:22", false)])],
    );
    check(
        "complex add and remove",
        &complex_after(),
        &[
            // kube-proxy sorts endpoints as strings: "10.1.1.11:11" < "10.1.1.1:11".
            (
                ep1("p11"),
                vec![("10.1.1.11:11", false), ("10.1.1.1:11", false)],
            ),
            (ep1("p12"), vec![("10.1.1.2:12", false)]),
            (ep1("p122"), vec![("10.1.1.2:122", false)]),
            (("ns3", "ep3", "p33"), vec![("10.3.3.3:33", false)]),
            (("ns4", "ep4", "p44"), vec![("10.4.4.4:44", true)]),
        ],
    );
    check(
        "change from 0 endpoint address to 1 unnamed port",
        &named_port(),
        &[(ep1("p11"), vec![("10.1.1.1:11", false)])],
    );
}

/// Service ports proxyscope builds from a scenario's Services, and the health-check NodePorts
/// by service (upstream `svcPortMap` and `HealthCheckNodePorts()`).
fn service_map(services: &str) -> (usize, Vec<(String, u16)>) {
    let s = scenario(&format!(
        "{}{services}",
        include_str!("golden/fake-proxier.yaml")
    ));
    let ports = proxyscope_core::proxier::service_ports(&s, false);
    let mut hc: Vec<(String, u16)> = ports
        .iter()
        .filter(|p| p.port.health_check_node_port != 0)
        .map(|p| {
            (
                format!("{}/{}", p.port.namespace, p.port.name),
                p.port.health_check_node_port,
            )
        })
        .collect();
    hc.dedup();
    (ports.len(), hc)
}

/// `makeTestService` + `addTestPort`: (name, protocol, port, nodePort, targetPort; 0 = unset).
fn service(ns: &str, name: &str, spec: &str, ports: &[(&str, &str, u16, u16, u16)]) -> String {
    let mut s = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{namespace: {ns}, name: {name}}}\nspec:\n{spec}  ports:\n"
    );
    for (n, proto, port, np, tp) in ports {
        s.push_str(&format!("  - {{name: {n}, protocol: {proto}, port: {port}"));
        if *np != 0 {
            s.push_str(&format!(", nodePort: {np}"));
        }
        if *tp != 0 {
            s.push_str(&format!(", targetPort: {tp}"));
        }
        s.push_str("}\n");
    }
    s
}

fn lb_status(ip: &str) -> String {
    format!("status:\n  loadBalancer:\n    ingress: [{{ip: {ip}}}]\n")
}

/// Upstream: TestBuildServiceMapAddRemove.
#[test]
fn build_service_map_add_remove() {
    let cluster_ip = service(
        "somewhere-else",
        "cluster-ip",
        "  type: ClusterIP\n  clusterIP: 172.30.55.4\n",
        &[
            ("something", "UDP", 1234, 4321, 0),
            ("somethingelse", "UDP", 1235, 5321, 0),
            ("sctpport", "SCTP", 1236, 6321, 0),
        ],
    );
    let node_port = service(
        "somewhere-else",
        "node-port",
        "  type: NodePort\n  clusterIP: 172.30.55.10\n",
        &[
            ("blahblah", "UDP", 345, 678, 0),
            ("moreblahblah", "TCP", 344, 677, 0),
            ("muchmoreblah", "SCTP", 343, 676, 0),
        ],
    );
    let load_balancer = service(
        "somewhere",
        "load-balancer",
        "  type: LoadBalancer\n  clusterIP: 172.30.55.11\n  loadBalancerIP: 1.2.3.4\n",
        &[
            ("foobar", "UDP", 8675, 30061, 7000),
            ("baz", "UDP", 8676, 30062, 7001),
        ],
    ) + &lb_status("1.2.3.4");
    let only_local = service(
        "somewhere",
        "only-local-load-balancer",
        "  type: LoadBalancer\n  clusterIP: 172.30.55.12\n  loadBalancerIP: 5.6.7.8\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 345\n",
        &[
            ("foobar2", "UDP", 8677, 30063, 7002),
            ("baz", "UDP", 8678, 30064, 7003),
        ],
    ) + &lb_status("5.6.7.8");
    let (n, hc) = service_map(&(cluster_ip + &node_port + &load_balancer + &only_local));
    assert_eq!(n, 10, "expected service map length 10");
    // The only-local-loadbalancer ones get added.
    assert_eq!(
        hc,
        vec![("somewhere/only-local-load-balancer".to_string(), 345)]
    );

    // oneService: services[0] with its first port removed; the other three deleted.
    let one_service = service(
        "somewhere-else",
        "cluster-ip",
        "  type: ClusterIP\n  clusterIP: 172.30.55.4\n",
        &[("somethingelse", "UDP", 1235, 5321, 0)],
    );
    let (n, hc) = service_map(&one_service);
    assert_eq!(n, 1, "expected service map length 1");
    assert!(hc.is_empty(), "expected 0 healthcheck ports, got {hc:?}");
}

/// Upstream: TestBuildServiceMapServiceHeadless.
#[test]
fn build_service_map_headless() {
    let svcs = service(
        "somewhere-else",
        "headless",
        "  type: ClusterIP\n  clusterIP: None\n",
        &[("rpc", "UDP", 1234, 0, 0)],
    ) + "---\napiVersion: v1\nkind: Service\nmetadata: {namespace: somewhere-else, name: headless-without-port}\nspec:\n  type: ClusterIP\n  clusterIP: None\n";
    assert_eq!(
        service_map(&svcs),
        (0, vec![]),
        "headless services are ignored"
    );
}

/// Upstream: TestBuildServiceMapServiceTypeExternalName.
#[test]
fn build_service_map_external_name() {
    let svcs = service(
        "somewhere-else",
        "external-name",
        "  type: ExternalName\n  clusterIP: 172.30.55.4\n  externalName: foo2.bar.com\n",
        &[("blah", "UDP", 1235, 5321, 0)],
    );
    assert_eq!(
        service_map(&svcs),
        (0, vec![]),
        "ExternalName services are ignored"
    );
}

/// Upstream: TestBuildServiceMapServiceUpdate (each state of the service, rebuilt).
#[test]
fn build_service_map_update() {
    let v1 = service(
        "somewhere",
        "some-service",
        "  type: ClusterIP\n  clusterIP: 172.30.55.4\n",
        &[
            ("something", "UDP", 1234, 4321, 0),
            ("somethingelse", "TCP", 1235, 5321, 0),
        ],
    );
    let v2 = service(
        "somewhere",
        "some-service",
        "  type: LoadBalancer\n  clusterIP: 172.30.55.4\n  loadBalancerIP: 1.2.3.4\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 345\n",
        &[
            ("something", "UDP", 1234, 4321, 7002),
            ("somethingelse", "TCP", 1235, 5321, 7003),
        ],
    ) + &lb_status("1.2.3.4");
    assert_eq!(service_map(&v1), (2, vec![]));
    let hc = vec![("somewhere/some-service".to_string(), 345)];
    // Changed to LoadBalancer, then "no change": same map, one health-check port.
    assert_eq!(service_map(&v2), (2, hc.clone()));
    assert_eq!(service_map(&v2), (2, hc));
    // And back to ClusterIP.
    assert_eq!(service_map(&v1), (2, vec![]));
}
