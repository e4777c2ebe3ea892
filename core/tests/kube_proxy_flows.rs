//! kube-proxy's own iptables-mode packet-flow tests (kubernetes/kubernetes
//! `pkg/proxy/iptables/proxier_test.go`, `runPacketFlowTests` tables), run against proxyscope.
//!
//! Each test names its upstream function. The flow rows (source, destination, port, `output`,
//! `masq`) are copied verbatim; the scenario YAML under `golden/` reproduces the upstream setup
//! (`makeTestService` / `populateEndpointSlices` on `NewFakeProxier`).
//!
//! Upstream grades with a deliberately simple tracer (spec §14): node-originated packets are
//! walked through nat PREROUTING, state matches never match, `masq` means "KUBE-MARK-MASQ was
//! reached". proxyscope models the kernel instead (OUTPUT path for node-local sources, real
//! marks and conntrack). Where the two disagree the row keeps upstream's values as data and
//! carries `.kernel(output, masq, why)` with proxyscope's answer and the reason.
//!
//! No row needs that today. The node-originated rows (source 192.168.0.2, 127.0.0.1, ::1…) take
//! nat OUTPUT in proxyscope, but kube-proxy jumps to the same KUBE-SERVICES from OUTPUT and
//! PREROUTING, and the rules that treat them apart key on `--src-type LOCAL`, which both
//! tracers evaluate; the filter rules upstream's tracer walks directly are reached from INPUT /
//! FORWARD / OUTPUT on the kernel path (the `--ctstate NEW` jumps hold for a first packet); and
//! every KUBE-MARK-MASQ these flows reach ends in a MASQUERADE in POSTROUTING.

mod common;

use common::*;
use proxyscope_core::proxier::iptables::generate;
use proxyscope_core::rules::iptables::Family;
use proxyscope_core::trace::Proto;

/// Upstream: TestClusterIPGeneral.
#[test]
fn cluster_ip_general() {
    let s = scenario(include_str!("golden/cluster-ip-general.yaml"));
    run_flows(
        "TestClusterIPGeneral",
        &s,
        &[
            flow(
                "simple clusterIP",
                "10.180.0.2",
                "172.30.0.41",
                80,
                "10.180.0.1:80",
                false,
            ),
            flow(
                "hairpin to cluster IP",
                "10.180.0.1",
                "172.30.0.41",
                80,
                "10.180.0.1:80",
                true,
            ),
            flow(
                "clusterIP with multiple endpoints",
                "10.180.0.2",
                "172.30.0.42",
                80,
                "10.180.0.1:80, 10.180.2.1:80",
                false,
            ),
            flow(
                "clusterIP with TargetPort",
                "10.180.0.2",
                "172.30.0.42",
                443,
                "10.180.0.1:8443, 10.180.2.1:8443",
                false,
            ),
            flow(
                "clusterIP with TCP, UDP, and SCTP on same port (TCP)",
                "10.180.0.2",
                "172.30.0.42",
                53,
                "10.180.0.1:5353, 10.180.2.1:5353",
                false,
            ),
            flow(
                "clusterIP with TCP, UDP, and SCTP on same port (UDP)",
                "10.180.0.2",
                "172.30.0.42",
                53,
                "10.180.0.1:53, 10.180.2.1:53",
                false,
            )
            .proto(Proto::Udp),
            flow(
                "clusterIP with TCP, UDP, and SCTP on same port (SCTP)",
                "10.180.0.2",
                "172.30.0.42",
                53,
                "10.180.0.1:53, 10.180.2.1:53",
                false,
            )
            .proto(Proto::Sctp),
            flow(
                "TCP-only port does not match UDP traffic",
                "10.180.0.2",
                "172.30.0.42",
                80,
                "",
                false,
            )
            .proto(Proto::Udp),
            flow(
                "svc1 does not accept svc2's ports",
                "10.180.0.2",
                "172.30.0.41",
                443,
                "",
                false,
            ),
        ],
    );
}

/// The scenario with one more line in its KubeProxyConfiguration (upstream sets the matching
/// `fp.` field on the fake proxier).
fn with_config(yaml: &str, line: &str) -> String {
    assert!(yaml.contains("mode: iptables\n"));
    yaml.replacen("mode: iptables\n", &format!("mode: iptables\n{line}\n"), 1)
}

/// The scenario without a local-traffic detector (upstream `NewNoOpLocalDetector`): ClusterCIDR
/// mode with no clusterCIDR builds none.
fn without_local_detector(yaml: &str) -> String {
    assert!(yaml.contains("clusterCIDR: 10.0.0.0/8\n"));
    yaml.replacen("clusterCIDR: 10.0.0.0/8\n", "", 1)
}

/// The scenario with its Services and EndpointSlices deleted (`OnServiceDelete`).
fn without_services(yaml: &str) -> String {
    yaml.split("\n---\n")
        .filter(|d| !d.contains("\nkind: Service\n") && !d.contains("\nkind: EndpointSlice\n"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

const NODE: &str = TEST_NODE_IP;
const EXT: &str = TEST_EXTERNAL_CLIENT;

/// Upstream: TestNoEndpointsReject.
#[test]
fn no_endpoints_reject() {
    let s = scenario(include_str!("golden/no-endpoints-reject.yaml"));
    run_flows(
        "TestNoEndpointsReject",
        &s,
        &[
            flow(
                "pod to cluster IP with no endpoints",
                "10.0.0.2",
                "172.30.0.41",
                80,
                "REJECT",
                false,
            ),
            flow(
                "external to external IP with no endpoints",
                EXT,
                "192.168.99.11",
                80,
                "REJECT",
                false,
            ),
            flow(
                "pod to NodePort with no endpoints",
                "10.0.0.2",
                NODE,
                3001,
                "REJECT",
                false,
            ),
            flow(
                "external to NodePort with no endpoints",
                EXT,
                NODE,
                3001,
                "REJECT",
                false,
            ),
            flow(
                "pod to LoadBalancer IP with no endpoints",
                "10.0.0.2",
                "1.2.3.4",
                80,
                "REJECT",
                false,
            ),
            flow(
                "external to LoadBalancer IP with no endpoints",
                EXT,
                "1.2.3.4",
                80,
                "REJECT",
                false,
            ),
        ],
    );
}

/// Upstream: TestLoadBalancer.
#[test]
fn load_balancer() {
    let s = scenario(include_str!("golden/load-balancer.yaml"));
    let ep = "10.180.0.1:80";
    let blocked = TEST_EXTERNAL_CLIENT_BLOCKED;
    run_flows(
        "TestLoadBalancer",
        &s,
        &[
            flow(
                "pod to cluster IP",
                "10.0.0.2",
                "172.30.0.41",
                80,
                ep,
                false,
            ),
            flow("external to nodePort", EXT, NODE, 3001, ep, true),
            flow(
                "nodePort bypasses LoadBalancerSourceRanges",
                blocked,
                NODE,
                3001,
                ep,
                true,
            ),
            flow("accepted external to LB1", EXT, "1.2.3.4", 80, ep, true),
            flow("accepted external to LB2", EXT, "5.6.7.8", 80, ep, true),
            flow(
                "blocked external to LB1",
                blocked,
                "1.2.3.4",
                80,
                "DROP",
                false,
            ),
            flow(
                "blocked external to LB2",
                blocked,
                "5.6.7.8",
                80,
                "DROP",
                false,
            ),
            flow(
                "pod to LB1 (blocked by LoadBalancerSourceRanges)",
                "10.0.0.2",
                "1.2.3.4",
                80,
                "DROP",
                false,
            ),
            flow(
                "pod to LB2 (blocked by LoadBalancerSourceRanges)",
                "10.0.0.2",
                "5.6.7.8",
                80,
                "DROP",
                false,
            ),
            flow(
                "node to LB1 (allowed by LoadBalancerSourceRanges)",
                NODE,
                "1.2.3.4",
                80,
                ep,
                true,
            ),
            flow(
                "node to LB2 (allowed by LoadBalancerSourceRanges)",
                NODE,
                "5.6.7.8",
                80,
                ep,
                true,
            ),
            flow(
                "same node to LB1, SNATted to LB1 (implicitly allowed)",
                "1.2.3.4",
                "1.2.3.4",
                80,
                ep,
                true,
            ),
            flow(
                "same node to LB2, SNATted to LB2 (implicitly allowed)",
                "5.6.7.8",
                "5.6.7.8",
                80,
                ep,
                true,
            ),
        ],
    );
}

/// One case of upstream TestNodePorts.
struct NodePortCase {
    name: &'static str,
    v6: bool,
    localhost_node_ports: bool,
    node_port_addresses: Option<&'static str>,
    allow_alt_node_ip: bool,
    expect_firewall: bool,
}

/// Upstream: TestNodePorts (all seven cases: both families, --nodeport-addresses,
/// --iptables-localhost-nodeports).
#[test]
fn node_ports() {
    let cases = [
        NodePortCase {
            name: "ipv4, localhost-nodeports enabled",
            v6: false,
            localhost_node_ports: true,
            node_port_addresses: None,
            allow_alt_node_ip: true,
            expect_firewall: true,
        },
        NodePortCase {
            name: "ipv4, localhost-nodeports disabled",
            v6: false,
            localhost_node_ports: false,
            node_port_addresses: None,
            allow_alt_node_ip: true,
            expect_firewall: false,
        },
        NodePortCase {
            name: "ipv4, localhost-nodeports disabled, localhost in nodeport-addresses",
            v6: false,
            localhost_node_ports: false,
            node_port_addresses: Some("[192.168.0.0/24, 127.0.0.1/32]"),
            allow_alt_node_ip: false,
            expect_firewall: false,
        },
        NodePortCase {
            name: "ipv4, localhost-nodeports enabled, multiple nodeport-addresses",
            v6: false,
            localhost_node_ports: false,
            node_port_addresses: Some("[192.168.0.0/24, 192.168.1.0/24, \"2001:db8::/64\"]"),
            allow_alt_node_ip: true,
            expect_firewall: false,
        },
        NodePortCase {
            name: "ipv6, localhost-nodeports enabled",
            v6: true,
            localhost_node_ports: true,
            node_port_addresses: None,
            allow_alt_node_ip: true,
            expect_firewall: false,
        },
        NodePortCase {
            name: "ipv6, localhost-nodeports disabled",
            v6: true,
            localhost_node_ports: false,
            node_port_addresses: None,
            allow_alt_node_ip: true,
            expect_firewall: false,
        },
        NodePortCase {
            name: "ipv6, localhost-nodeports disabled, multiple nodeport-addresses",
            v6: true,
            localhost_node_ports: false,
            node_port_addresses: Some("[192.168.0.0/24, 192.168.1.0/24, \"2001:db8::/64\"]"),
            allow_alt_node_ip: false,
            expect_firewall: false,
        },
    ];
    for tc in &cases {
        let base = if tc.v6 {
            include_str!("golden/node-ports-v6.yaml")
        } else {
            include_str!("golden/node-ports-v4.yaml")
        };
        let mut yaml = with_config(
            base,
            &format!(
                "iptables: {{localhostNodePorts: {}}}",
                tc.localhost_node_ports
            ),
        );
        if let Some(npa) = tc.node_port_addresses {
            yaml = with_config(&yaml, &format!("nodePortAddresses: {npa}"));
        }
        let s = scenario(&yaml);
        let (svc_ip, pod_ip, ext_ip, node_ip, alt_ip, localhost, output) = if tc.v6 {
            (
                "fd00:172:30::41",
                "fd00:10::2",
                "2600:5200::1",
                TEST_NODE_IPV6,
                TEST_NODE_IPV6_ALT,
                "::1",
                "[fd00:10:180::1]:80, [fd00:10:180::2:1]:80",
            )
        } else {
            (
                "172.30.0.41",
                "10.0.0.2",
                EXT,
                NODE,
                TEST_NODE_IP_ALT,
                "127.0.0.1",
                "10.180.0.1:80, 10.180.2.1:80",
            )
        };
        let mut flows = vec![
            flow("pod to cluster IP", pod_ip, svc_ip, 80, output, false),
            flow("external to nodePort", ext_ip, node_ip, 3001, output, true),
            flow("node to nodePort", node_ip, node_ip, 3001, output, true),
        ];
        // localhost to NodePort is only allowed in IPv4, and only if not disabled.
        if !tc.v6 && tc.localhost_node_ports {
            flows.push(flow(
                "localhost to nodePort gets masqueraded",
                localhost,
                localhost,
                3001,
                output,
                true,
            ));
        } else {
            flows.push(flow(
                "localhost to nodePort is ignored",
                localhost,
                localhost,
                3001,
                "",
                false,
            ));
        }
        if tc.allow_alt_node_ip {
            flows.push(flow(
                "external to nodePort on secondary IP",
                ext_ip,
                alt_ip,
                3001,
                output,
                true,
            ));
        } else {
            flows.push(flow(
                "secondary nodeIP ignores NodePorts",
                ext_ip,
                alt_ip,
                3001,
                "",
                false,
            ));
        }
        run_flows(&format!("TestNodePorts / {}", tc.name), &s, &flows);

        // Checked on the payload, as upstream does, because its tracer has no conntrack states.
        let family = if tc.v6 { Family::V6 } else { Family::V4 };
        let payload = generate(&s, family).payload;
        let expected = if tc.expect_firewall {
            "-A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n"
        } else {
            ""
        };
        assert_eq!(
            chain_rules(&payload, "filter", "KUBE-FIREWALL"),
            expected,
            "TestNodePorts / {}: KUBE-FIREWALL",
            tc.name
        );
    }
}

/// Upstream: TestHealthCheckNodePort.
#[test]
fn health_check_node_port() {
    let yaml = include_str!("golden/health-check-node-port.yaml");
    let s = scenario(yaml);
    run_flows(
        "TestHealthCheckNodePort",
        &s,
        &[flow(
            "firewall accepts HealthCheckNodePort",
            "1.2.3.4",
            NODE,
            30000,
            "ACCEPT",
            false,
        )],
    );
    let s = scenario(&without_services(yaml));
    run_flows(
        "TestHealthCheckNodePort (after OnServiceDelete)",
        &s,
        &[flow(
            "HealthCheckNodePort no longer has any rule",
            "1.2.3.4",
            NODE,
            30000,
            "",
            false,
        )],
    );
}

/// Upstream: TestExternalTrafficPolicyLocal.
#[test]
fn external_traffic_policy_local() {
    let s = scenario(include_str!("golden/external-traffic-policy-local.yaml"));
    let both = "10.180.0.1:80, 10.180.2.1:80";
    let local = "10.180.2.1:80";
    run_flows(
        "TestExternalTrafficPolicyLocal",
        &s,
        &[
            flow(
                "pod to cluster IP hits both endpoints, unmasqueraded",
                "10.0.0.2",
                "172.30.0.41",
                80,
                both,
                false,
            ),
            flow(
                "pod to external IP hits both endpoints, unmasqueraded",
                "10.0.0.2",
                "192.168.99.11",
                80,
                both,
                false,
            ),
            flow(
                "external to external IP hits only local endpoint, unmasqueraded",
                EXT,
                "192.168.99.11",
                80,
                local,
                false,
            ),
            flow(
                "pod to LB IP hits only both endpoints, unmasqueraded",
                "10.0.0.2",
                "1.2.3.4",
                80,
                both,
                false,
            ),
            flow(
                "external to LB IP hits only local endpoint, unmasqueraded",
                EXT,
                "1.2.3.4",
                80,
                local,
                false,
            ),
            flow(
                "pod to NodePort hits both endpoints, unmasqueraded",
                "10.0.0.2",
                NODE,
                3001,
                both,
                false,
            ),
            flow(
                "external to NodePort hits only local endpoint, unmasqueraded",
                EXT,
                NODE,
                3001,
                local,
                false,
            ),
        ],
    );
}

/// Upstream: TestExternalTrafficPolicyCluster.
#[test]
fn external_traffic_policy_cluster() {
    let s = scenario(include_str!("golden/external-traffic-policy-cluster.yaml"));
    let both = "10.180.0.1:80, 10.180.2.1:80";
    run_flows(
        "TestExternalTrafficPolicyCluster",
        &s,
        &[
            flow(
                "pod to cluster IP hits both endpoints, unmasqueraded",
                "10.0.0.2",
                "172.30.0.41",
                80,
                both,
                false,
            ),
            flow(
                "pod to external IP hits both endpoints, masqueraded",
                "10.0.0.2",
                "192.168.99.11",
                80,
                both,
                true,
            ),
            flow(
                "external to external IP hits both endpoints, masqueraded",
                EXT,
                "192.168.99.11",
                80,
                both,
                true,
            ),
            flow(
                "pod to LB IP hits both endpoints, masqueraded",
                "10.0.0.2",
                "1.2.3.4",
                80,
                both,
                true,
            ),
            flow(
                "external to LB IP hits both endpoints, masqueraded",
                EXT,
                "1.2.3.4",
                80,
                both,
                true,
            ),
            flow(
                "pod to NodePort hits both endpoints, masqueraded",
                "10.0.0.2",
                NODE,
                3001,
                both,
                true,
            ),
            flow(
                "external to NodePort hits both endpoints, masqueraded",
                EXT,
                NODE,
                3001,
                both,
                true,
            ),
        ],
    );
}

/// Upstream: TestInternalTrafficPolicy (four cases, each followed by OnEndpointSliceDelete).
#[test]
fn internal_traffic_policy() {
    let base = include_str!("golden/internal-traffic-policy.yaml");
    let ready = "{ready: true}";
    type Case = (
        &'static str,
        &'static str,
        [(&'static str, &'static str); 3],
        Flow,
    );
    let cases: [Case; 4] = [
        (
            "internalTrafficPolicy is cluster",
            "Cluster",
            [
                ("10.0.1.1", "test-node"),
                ("10.0.1.2", "node1"),
                ("10.0.1.3", "node2"),
            ],
            flow(
                "pod to ClusterIP hits all endpoints",
                "10.0.0.2",
                "172.30.1.1",
                80,
                "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80",
                false,
            ),
        ),
        (
            "internalTrafficPolicy is local and there is one local endpoint",
            "Local",
            [
                ("10.0.1.1", "test-node"),
                ("10.0.1.2", "node1"),
                ("10.0.1.3", "node2"),
            ],
            flow(
                "pod to ClusterIP hits only local endpoint",
                "10.0.0.2",
                "172.30.1.1",
                80,
                "10.0.1.1:80",
                false,
            ),
        ),
        (
            "internalTrafficPolicy is local and there are multiple local endpoints",
            "Local",
            [
                ("10.0.1.1", "test-node"),
                ("10.0.1.2", "test-node"),
                ("10.0.1.3", "node2"),
            ],
            flow(
                "pod to ClusterIP hits all local endpoints",
                "10.0.0.2",
                "172.30.1.1",
                80,
                "10.0.1.1:80, 10.0.1.2:80",
                false,
            ),
        ),
        (
            "internalTrafficPolicy is local and there are no local endpoints",
            "Local",
            [
                ("10.0.1.1", "node0"),
                ("10.0.1.2", "node1"),
                ("10.0.1.3", "node2"),
            ],
            flow("no endpoints", "10.0.0.2", "172.30.1.1", 80, "DROP", false),
        ),
    ];
    for (name, itp, eps, f) in cases {
        let svc = base.replacen(
            "internalTrafficPolicy: Cluster",
            &format!("internalTrafficPolicy: {itp}"),
            1,
        );
        let eps: Vec<(&str, &str, &str)> = eps.iter().map(|(i, n)| (*i, *n, ready)).collect();
        let s = scenario(&format!("{svc}{}", slice_svc1(&eps)));
        run_flows(&format!("TestInternalTrafficPolicy / {name}"), &s, &[f]);
        let s = scenario(&svc);
        run_flows(
            &format!("TestInternalTrafficPolicy / {name} (after OnEndpointSliceDelete)"),
            &s,
            &[flow(
                "endpoints deleted",
                "10.0.0.2",
                "172.30.1.1",
                80,
                "REJECT",
                false,
            )],
        );
    }
}

const READY: &str = "{ready: true, serving: true, terminating: false}";
const TERMINATING: &str = "{ready: false, serving: true, terminating: true}";
const GONE: &str = "{ready: false, serving: false, terminating: true}";

/// The flows every terminating-endpoints case ends with, after OnEndpointSliceDelete.
fn after_delete() -> [Flow; 2] {
    [
        flow(
            "pod to clusterIP after endpoints deleted",
            "10.0.0.2",
            "172.30.1.1",
            80,
            "REJECT",
            false,
        ),
        flow(
            "external to LB after endpoints deleted",
            EXT,
            "1.2.3.4",
            80,
            "REJECT",
            false,
        ),
    ]
}

type TermCase = (
    &'static str,
    Vec<(&'static str, &'static str, &'static str)>,
    [Flow; 2],
);

fn run_terminating(test: &str, base: &str, cases: Vec<TermCase>) {
    for (name, eps, flows) in cases {
        let s = scenario(&format!("{base}{}", slice_svc1(&eps)));
        run_flows(&format!("{test} / {name}"), &s, &flows);
        let s = scenario(base);
        run_flows(
            &format!("{test} / {name} (after delete)"),
            &s,
            &after_delete(),
        );
    }
}

/// Upstream: TestTerminatingEndpointsTrafficPolicyLocal.
#[test]
fn terminating_endpoints_traffic_policy_local() {
    run_terminating(
        "TestTerminatingEndpointsTrafficPolicyLocal",
        include_str!("golden/terminating-endpoints-local.yaml"),
        vec![
            (
                "ready endpoints exist",
                vec![
                    ("10.0.1.1", "test-node", READY),
                    ("10.0.1.2", "test-node", READY),
                    ("10.0.1.3", "test-node", TERMINATING),
                    ("10.0.1.4", "test-node", GONE),
                    ("10.0.1.5", "node-1", READY),
                ],
                [
                    flow(
                        "pod to clusterIP",
                        "10.0.0.2",
                        "172.30.1.1",
                        80,
                        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
                        false,
                    ),
                    flow(
                        "external to LB",
                        EXT,
                        "1.2.3.4",
                        80,
                        "10.0.1.1:80, 10.0.1.2:80",
                        false,
                    ),
                ],
            ),
            (
                "only terminating endpoints exist",
                vec![
                    ("10.0.1.2", "test-node", TERMINATING),
                    ("10.0.1.3", "test-node", TERMINATING),
                    ("10.0.1.4", "test-node", GONE),
                    ("10.0.1.5", "node-1", READY),
                ],
                [
                    flow(
                        "pod to clusterIP",
                        "10.0.0.2",
                        "172.30.1.1",
                        80,
                        "10.0.1.5:80",
                        false,
                    ),
                    flow(
                        "external to LB",
                        EXT,
                        "1.2.3.4",
                        80,
                        "10.0.1.2:80, 10.0.1.3:80",
                        false,
                    ),
                ],
            ),
            (
                "terminating endpoints on remote node",
                vec![("10.0.1.5", "node-1", TERMINATING)],
                [
                    flow(
                        "pod to clusterIP",
                        "10.0.0.2",
                        "172.30.1.1",
                        80,
                        "10.0.1.5:80",
                        false,
                    ),
                    flow(
                        "external to LB, no locally-usable endpoints",
                        EXT,
                        "1.2.3.4",
                        80,
                        "DROP",
                        false,
                    ),
                ],
            ),
            (
                "no usable endpoints on any node",
                vec![
                    ("10.0.1.5", "test-node", GONE),
                    ("10.0.1.5", "node-1", GONE),
                ],
                [
                    flow(
                        "pod to clusterIP, no usable endpoints",
                        "10.0.0.2",
                        "172.30.1.1",
                        80,
                        "REJECT",
                        false,
                    ),
                    flow(
                        "external to LB, no usable endpoints",
                        EXT,
                        "1.2.3.4",
                        80,
                        "REJECT",
                        false,
                    ),
                ],
            ),
        ],
    );
}

/// Upstream: TestTerminatingEndpointsTrafficPolicyCluster.
#[test]
fn terminating_endpoints_traffic_policy_cluster() {
    run_terminating(
        "TestTerminatingEndpointsTrafficPolicyCluster",
        include_str!("golden/terminating-endpoints-cluster.yaml"),
        vec![
            (
                "ready endpoints exist",
                vec![
                    ("10.0.1.1", "test-node", READY),
                    ("10.0.1.2", "test-node", READY),
                    ("10.0.1.3", "another-node", TERMINATING),
                    ("10.0.1.4", "another-node", GONE),
                    ("10.0.1.5", "another-node", READY),
                ],
                [
                    flow(
                        "pod to clusterIP",
                        "10.0.0.2",
                        "172.30.1.1",
                        80,
                        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
                        false,
                    ),
                    flow(
                        "external to LB",
                        EXT,
                        "1.2.3.4",
                        80,
                        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
                        true,
                    ),
                ],
            ),
            (
                "only terminating endpoints exist",
                vec![
                    ("10.0.1.2", "test-node", TERMINATING),
                    ("10.0.1.3", "test-node", TERMINATING),
                    ("10.0.1.4", "another-node", GONE),
                    ("10.0.1.5", "another-node", TERMINATING),
                ],
                [
                    flow(
                        "pod to clusterIP",
                        "10.0.0.2",
                        "172.30.1.1",
                        80,
                        "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80",
                        false,
                    ),
                    flow(
                        "external to LB",
                        EXT,
                        "1.2.3.4",
                        80,
                        "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80",
                        true,
                    ),
                ],
            ),
            (
                "terminating endpoints on remote node",
                vec![("10.0.1.5", "node-1", TERMINATING)],
                [
                    flow(
                        "pod to clusterIP",
                        "10.0.0.2",
                        "172.30.1.1",
                        80,
                        "10.0.1.5:80",
                        false,
                    ),
                    flow("external to LB", EXT, "1.2.3.4", 80, "10.0.1.5:80", true),
                ],
            ),
            (
                "no usable endpoints on any node",
                vec![
                    ("10.0.1.5", "test-node", GONE),
                    ("10.0.1.5", "node-1", GONE),
                ],
                [
                    flow(
                        "pod to clusterIP",
                        "10.0.0.2",
                        "172.30.1.1",
                        80,
                        "REJECT",
                        false,
                    ),
                    flow("external to LB", EXT, "1.2.3.4", 80, "REJECT", false),
                ],
            ),
        ],
    );
}

/// Upstream TestInternalExternalMasquerade's shared flow table: the normal case (working
/// local-traffic detector, no masqueradeAll).
fn internal_external_masquerade_flows() -> Vec<Flow> {
    let svc1 = "10.180.0.1:80, 10.180.1.1:80";
    let svc2 = "10.180.0.2:80, 10.180.1.2:80";
    let svc3 = "10.180.0.3:80, 10.180.1.3:80";
    let lo = "127.0.0.1";
    vec![
        flow(
            "pod to ClusterIP",
            "10.0.0.2",
            "172.30.0.41",
            80,
            svc1,
            false,
        ),
        flow("pod to NodePort", "10.0.0.2", NODE, 3001, svc1, true),
        flow("pod to LB", "10.0.0.2", "1.2.3.4", 80, svc1, true),
        flow("node to ClusterIP", NODE, "172.30.0.41", 80, svc1, true),
        flow("node to NodePort", NODE, NODE, 3001, svc1, true),
        flow("localhost to NodePort", lo, lo, 3001, svc1, true),
        flow("node to LB", NODE, "1.2.3.4", 80, svc1, true),
        flow("external to ClusterIP", EXT, "172.30.0.41", 80, svc1, true),
        flow("external to NodePort", EXT, NODE, 3001, svc1, true),
        flow("external to LB", EXT, "1.2.3.4", 80, svc1, true),
        flow(
            "pod to ClusterIP with eTP:Local",
            "10.0.0.2",
            "172.30.0.42",
            80,
            svc2,
            false,
        ),
        flow(
            "pod to NodePort with eTP:Local",
            "10.0.0.2",
            NODE,
            3002,
            svc2,
            false,
        ),
        flow(
            "pod to LB with eTP:Local",
            "10.0.0.2",
            "5.6.7.8",
            80,
            svc2,
            false,
        ),
        flow(
            "node to ClusterIP with eTP:Local",
            NODE,
            "172.30.0.42",
            80,
            svc2,
            true,
        ),
        // Upstream sends this one to svc1's NodePort 3001 (not 3002) and expects svc1's
        // endpoints; transcribed as written.
        flow(
            "node to NodePort with eTP:Local",
            NODE,
            NODE,
            3001,
            svc1,
            true,
        ),
        flow(
            "localhost to NodePort with eTP:Local",
            lo,
            lo,
            3002,
            svc2,
            true,
        ),
        flow("node to LB with eTP:Local", NODE, "5.6.7.8", 80, svc2, true),
        flow(
            "external to ClusterIP with eTP:Local",
            EXT,
            "172.30.0.42",
            80,
            svc2,
            true,
        ),
        flow(
            "external to NodePort with eTP:Local",
            EXT,
            NODE,
            3002,
            "10.180.0.2:80",
            false,
        ),
        flow(
            "external to LB with eTP:Local",
            EXT,
            "5.6.7.8",
            80,
            "10.180.0.2:80",
            false,
        ),
        flow(
            "pod to ClusterIP with iTP:Local",
            "10.0.0.2",
            "172.30.0.43",
            80,
            "10.180.0.3:80",
            false,
        ),
        flow(
            "pod to NodePort with iTP:Local",
            "10.0.0.2",
            NODE,
            3003,
            svc3,
            true,
        ),
        flow(
            "pod to LB with iTP:Local",
            "10.0.0.2",
            "9.10.11.12",
            80,
            svc3,
            true,
        ),
        flow(
            "node to ClusterIP with iTP:Local",
            NODE,
            "172.30.0.43",
            80,
            "10.180.0.3:80",
            true,
        ),
        flow(
            "node to NodePort with iTP:Local",
            NODE,
            NODE,
            3003,
            svc3,
            true,
        ),
        flow(
            "localhost to NodePort with iTP:Local",
            lo,
            lo,
            3003,
            svc3,
            true,
        ),
        flow(
            "node to LB with iTP:Local",
            NODE,
            "9.10.11.12",
            80,
            svc3,
            true,
        ),
        flow(
            "external to ClusterIP with iTP:Local",
            EXT,
            "172.30.0.43",
            80,
            "10.180.0.3:80",
            true,
        ),
        flow(
            "external to NodePort with iTP:Local",
            EXT,
            NODE,
            3003,
            svc3,
            true,
        ),
        flow(
            "external to LB with iTP:Local",
            EXT,
            "9.10.11.12",
            80,
            svc3,
            true,
        ),
    ]
}

/// Upstream's per-variant overrides of the shared table: (flow name, output, masq), `None` =
/// unchanged.
type Override = (&'static str, Option<&'static str>, Option<bool>);

fn apply_overrides(base: &[Flow], overrides: &[Override]) -> Vec<Flow> {
    let mut out = base.to_vec();
    for (name, output, masq) in overrides {
        let f = out
            .iter_mut()
            .find(|f| f.name == *name)
            .unwrap_or_else(|| panic!("override {name:?} matches no flow"));
        if let Some(o) = output {
            assert_ne!(f.output, *o, "{name}: override equals base value");
            f.output = o;
        }
        if let Some(m) = masq {
            assert_ne!(f.masq, *m, "{name}: override equals base value");
            f.masq = *m;
        }
    }
    out
}

/// Upstream: TestInternalExternalMasquerade, case "base".
#[test]
fn internal_external_masquerade_base() {
    let s = scenario(include_str!("golden/internal-external-masquerade.yaml"));
    run_flows(
        "TestInternalExternalMasquerade / base",
        &s,
        &internal_external_masquerade_flows(),
    );
}

/// With no LocalTrafficDetector, all traffic to a ClusterIP is assumed to come from a pod (no
/// masquerade), and there is no eTP:Local short-circuit for pod traffic.
const NO_DETECTOR: &[Override] = &[
    ("node to ClusterIP", None, Some(false)),
    ("node to ClusterIP with eTP:Local", None, Some(false)),
    ("node to ClusterIP with iTP:Local", None, Some(false)),
    ("external to ClusterIP", None, Some(false)),
    ("external to ClusterIP with eTP:Local", None, Some(false)),
    ("external to ClusterIP with iTP:Local", None, Some(false)),
    (
        "pod to NodePort with eTP:Local",
        Some("10.180.0.2:80"),
        None,
    ),
    ("pod to LB with eTP:Local", Some("10.180.0.2:80"), None),
];

/// All "to ClusterIP" traffic gets masqueraded with --masquerade-all.
const MASQUERADE_ALL: &[Override] = &[
    ("pod to ClusterIP", None, Some(true)),
    ("pod to ClusterIP with eTP:Local", None, Some(true)),
    ("pod to ClusterIP with iTP:Local", None, Some(true)),
];

/// Upstream: TestInternalExternalMasquerade, case "no LocalTrafficDetector".
#[test]
fn internal_external_masquerade_no_local_detector() {
    let yaml = without_local_detector(include_str!("golden/internal-external-masquerade.yaml"));
    let s = scenario(&yaml);
    let flows = apply_overrides(&internal_external_masquerade_flows(), NO_DETECTOR);
    run_flows(
        "TestInternalExternalMasquerade / no LocalTrafficDetector",
        &s,
        &flows,
    );
}

/// Upstream: TestInternalExternalMasquerade, case "masqueradeAll".
#[test]
fn internal_external_masquerade_masquerade_all() {
    let yaml = with_config(
        include_str!("golden/internal-external-masquerade.yaml"),
        "iptables: {masqueradeAll: true}",
    );
    let s = scenario(&yaml);
    let flows = apply_overrides(&internal_external_masquerade_flows(), MASQUERADE_ALL);
    run_flows("TestInternalExternalMasquerade / masqueradeAll", &s, &flows);
}

/// Upstream: TestInternalExternalMasquerade, case "masqueradeAll, no LocalTrafficDetector".
#[test]
fn internal_external_masquerade_masquerade_all_no_local_detector() {
    let yaml = with_config(
        &without_local_detector(include_str!("golden/internal-external-masquerade.yaml")),
        "iptables: {masqueradeAll: true}",
    );
    let s = scenario(&yaml);
    let overrides: Vec<Override> = MASQUERADE_ALL
        .iter()
        .chain(&NO_DETECTOR[6..])
        .copied()
        .collect();
    let flows = apply_overrides(&internal_external_masquerade_flows(), &overrides);
    run_flows(
        "TestInternalExternalMasquerade / masqueradeAll, no LocalTrafficDetector",
        &s,
        &flows,
    );
}

/// Upstream TestTracePacket's flow table.
fn trace_packet_flows() -> [Flow; 7] {
    [
        flow("no match", "10.0.0.2", "10.0.0.3", 80, "", false),
        flow(
            "single endpoint",
            "10.0.0.2",
            "172.30.0.41",
            80,
            "10.180.0.1:80",
            false,
        ),
        flow(
            "multiple endpoints",
            "10.0.0.2",
            "172.30.0.44",
            80,
            "10.180.0.4:80, 10.180.0.5:80",
            false,
        ),
        flow(
            "LOCAL, KUBE-MARK-MASQ",
            NODE,
            "192.168.99.22",
            80,
            "10.180.0.2:80",
            true,
        ),
        flow("DROP", EXT, "192.168.99.22", 80, "DROP", false),
        flow(
            "ACCEPT (NodePortHealthCheck)",
            NODE,
            NODE,
            30000,
            "ACCEPT",
            false,
        ),
        flow("REJECT", "10.0.0.2", "172.30.0.46", 80, "REJECT", false),
    ]
}

/// Upstream: TestTracePacket — its flows on its own static rules, walked by proxyscope's kernel
/// model on the fake node of TestOverallIPTablesRules.
#[test]
fn trace_packet_static_rules() {
    let s = scenario(include_str!("golden/overall.yaml"));
    run_flows_on_dump(
        "TestTracePacket",
        &s,
        include_str!("golden/trace-packet.rules"),
        &trace_packet_flows(),
    );
}

/// Upstream: TestTracePacket's flows on the rules proxyscope generates for
/// TestOverallIPTablesRules, which upstream's static rules are a copy of (less the localhost
/// NodePort and session-affinity rules, which none of these flows reach).
#[test]
fn trace_packet_generated_rules() {
    let s = scenario(include_str!("golden/overall.yaml"));
    run_flows(
        "TestTracePacket (generated rules)",
        &s,
        &trace_packet_flows(),
    );
}

// The next two upstream tests exist in kube-proxy v1.26-era proxier_test.go (each with a full
// dump and a flow table); current upstream folded their flows into
// TestExternalTrafficPolicyLocal/Cluster. Their flows are transcribed here; the nat half of their
// dumps is checked in kube_proxy_dumps.rs.

/// Upstream (v1.26 era): TestOnlyLocalExternalIPs.
#[test]
fn only_local_external_ips() {
    let s = scenario(include_str!("golden/only-local-external-ips.yaml"));
    run_flows(
        "TestOnlyLocalExternalIPs",
        &s,
        &[
            flow(
                "cluster IP hits both endpoints",
                "10.0.0.2",
                "172.30.0.41",
                80,
                "10.180.0.1:80, 10.180.2.1:80",
                false,
            ),
            flow(
                "external IP hits only local endpoint, unmasqueraded",
                EXT,
                "192.168.99.11",
                80,
                "10.180.2.1:80",
                false,
            ),
        ],
    );
}

/// Upstream (v1.26 era): TestNonLocalExternalIPs.
#[test]
fn non_local_external_ips() {
    let s = scenario(include_str!("golden/non-local-external-ips.yaml"));
    run_flows(
        "TestNonLocalExternalIPs",
        &s,
        &[
            flow(
                "pod to cluster IP",
                "10.0.0.2",
                "172.30.0.41",
                80,
                "10.180.0.1:80, 10.180.2.1:80",
                false,
            ),
            flow(
                "external to external IP",
                EXT,
                "192.168.99.11",
                80,
                "10.180.0.1:80, 10.180.2.1:80",
                true,
            ),
        ],
    );
}

/// Not an upstream table: the fake proxier of TestNodePorts sets `localhostNodePorts` directly,
/// but the real `NewProxier` turns it off when nodePortAddresses excludes 127.0.0.1
/// (`if !nodePortAddresses.ContainsIPv4Loopback() { localhostNodePorts = false }`), so with
/// the flag left on and nodePortAddresses [192.168.0.0/24] localhost gets no NodePorts, no
/// `-d 127.0.0.0/8` NodePort rule and no KUBE-FIREWALL anti-martian rule, and NodePorts answer
/// on 192.168.0.2 only (hand-derived from that code path).
#[test]
fn node_ports_localhost_forced_off_by_node_port_addresses() {
    let yaml = with_config(
        &with_config(
            include_str!("golden/node-ports-v4.yaml"),
            "iptables: {localhostNodePorts: true}",
        ),
        "nodePortAddresses: [192.168.0.0/24]",
    );
    let s = scenario(&yaml);
    let output = "10.180.0.1:80, 10.180.2.1:80";
    run_flows(
        "NewProxier localhost override",
        &s,
        &[
            flow("external to nodePort", EXT, NODE, 3001, output, true),
            flow(
                "localhost to nodePort is ignored",
                "127.0.0.1",
                "127.0.0.1",
                3001,
                "",
                false,
            ),
            flow(
                "secondary nodeIP ignores NodePorts",
                EXT,
                TEST_NODE_IP_ALT,
                3001,
                "",
                false,
            ),
        ],
    );
    let payload = generate(&s, Family::V4).payload;
    assert_eq!(chain_rules(&payload, "filter", "KUBE-FIREWALL"), "");
    assert!(
        !payload.contains("-d 127.0.0.0/8 --dport 3001"),
        "{payload}"
    );
}
