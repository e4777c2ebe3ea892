//! kube-proxy's own iptables-mode dump tests (kubernetes/kubernetes
//! `pkg/proxy/iptables/proxier_test.go`): whole payloads compared after kube-proxy's
//! normaliser, single chains compared raw, and the checks kube-proxy's test helpers run on
//! payloads. Expected text is copied verbatim from upstream; each test names its source.

mod common;

use common::*;
use proxyscope_core::proxier::iptables::generate;
use proxyscope_core::rules::iptables::Family;

fn payload(yaml: &str) -> String {
    generate(&scenario(yaml), Family::V4).payload
}

const FAKE: &str = include_str!("golden/fake-proxier.yaml");

/// Upstream: TestSortIPTablesRules, case "correctly match same service name in different styles
/// of comments" — checks our copy of the normaliser against upstream's own expectation.
#[test]
fn normaliser_sorts_by_comment_service_name() {
    let input = r#"
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" svc1 line 1
        -A KUBE-SERVICES -m comment --comment ns1/svc1 svc1 line 2
        -A KUBE-SERVICES -m comment --comment "ns1/svc1 blah" svc1 line 3
        -A KUBE-SERVICES -m comment --comment ns4/svc4 svc4 line 1
        -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" svc4 line 2
        -A KUBE-SERVICES -m comment --comment "ns4/svc4 blah" svc4 line 3
        -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" svc3 line 1
        -A KUBE-SERVICES -m comment --comment "ns3/svc3 blah" svc3 line 2
        -A KUBE-SERVICES -m comment --comment ns3/svc3 svc3 line 3
        COMMIT
    "#;
    let output = r#"
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" svc1 line 1
        -A KUBE-SERVICES -m comment --comment ns1/svc1 svc1 line 2
        -A KUBE-SERVICES -m comment --comment "ns1/svc1 blah" svc1 line 3
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" svc3 line 1
        -A KUBE-SERVICES -m comment --comment "ns3/svc3 blah" svc3 line 2
        -A KUBE-SERVICES -m comment --comment ns3/svc3 svc3 line 3
        -A KUBE-SERVICES -m comment --comment ns4/svc4 svc4 line 1
        -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" svc4 line 2
        -A KUBE-SERVICES -m comment --comment "ns4/svc4 blah" svc4 line 3
        COMMIT
    "#;
    assert_eq!(normalise(&dedent(input)), dedent(output));
}

/// Upstream: TestSortIPTablesRules, case "unexpected junk lines are preserved".
#[test]
fn normaliser_keeps_unknown_chains() {
    let input = r#"
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
        :KUBE-AAAAA - [0:0]
        :KUBE-ZZZZZ - [0:0]
        :WHY-IS-THIS-CHAIN-HERE - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
        -A KUBE-ZZZZZ -m comment --comment "mystery chain number 1"
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A WHY-IS-THIS-CHAIN-HERE -j ACCEPT
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-AAAAA -m comment --comment "mystery chain number 2"
        COMMIT
    "#;
    let output = r#"
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        :KUBE-AAAAA - [0:0]
        :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
        :KUBE-ZZZZZ - [0:0]
        :WHY-IS-THIS-CHAIN-HERE - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-AAAAA -m comment --comment "mystery chain number 2"
        -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
        -A KUBE-ZZZZZ -m comment --comment "mystery chain number 1"
        -A WHY-IS-THIS-CHAIN-HERE -j ACCEPT
        COMMIT
    "#;
    assert_eq!(normalise(&dedent(input)), dedent(output));
}

/// Upstream: TestCheckIPTablesRuleJumps — our copy of the consistency check, on upstream's
/// cases (input, expected error prefix).
#[test]
fn rule_jump_check_matches_upstream_cases() {
    let cases: &[(&str, &str)] = &[
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-MARK-MASQ - [0:0]
            :KUBE-SERVICES - [0:0]
            :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
            -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 10.20.30.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
            -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 10.20.30.41 --dport 80 ! -s 10.0.0.0/24 -j KUBE-MARK-MASQ
            COMMIT"#,
            "",
        ),
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-SERVICES - [0:0]
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
            COMMIT"#,
            "some chains in nat are used but were not created: [KUBE-SVC-XPGD46QRK7WJZT7O]",
        ),
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-SERVICES - [0:0]
            :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
            COMMIT"#,
            "some chains in nat are jumped to but have no rules: [KUBE-SVC-XPGD46QRK7WJZT7O]",
        ),
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-MARK-MASQ - [0:0]
            :KUBE-SERVICES - [0:0]
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" ...
            -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
            COMMIT"#,
            "some chains in nat are used but were not created: [KUBE-SVC-XPGD46QRK7WJZT7O]",
        ),
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-MARK-MASQ - [0:0]
            :KUBE-SERVICES - [0:0]
            :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" ...
            COMMIT"#,
            "some chains in nat are created but not used: [KUBE-SVC-XPGD46QRK7WJZT7O]",
        ),
    ];
    for (input, want) in cases {
        let got = check_rule_jumps(&dedent(input));
        match (got, want.is_empty()) {
            (Ok(()), true) => {}
            (Err(e), false) => assert!(e.starts_with(want), "got {e:?}, want {want:?}"),
            (got, _) => panic!("got {got:?}, want {want:?}"),
        }
    }
}

/// kube-proxy runs `checkIPTablesRuleJumps` on every full expected dump; proxyscope's generated
/// payload for every golden scenario must pass it too (no dangling, empty or unused chains).
#[test]
fn every_golden_payload_is_consistent() {
    for (name, yaml) in [
        ("overall", include_str!("golden/overall.yaml")),
        ("fake-proxier", FAKE),
        (
            "cluster-ip-general",
            include_str!("golden/cluster-ip-general.yaml"),
        ),
        (
            "no-endpoints-reject",
            include_str!("golden/no-endpoints-reject.yaml"),
        ),
        ("load-balancer", include_str!("golden/load-balancer.yaml")),
        ("node-ports-v4", include_str!("golden/node-ports-v4.yaml")),
        (
            "health-check-node-port",
            include_str!("golden/health-check-node-port.yaml"),
        ),
        (
            "external-traffic-policy-local",
            include_str!("golden/external-traffic-policy-local.yaml"),
        ),
        (
            "external-traffic-policy-cluster",
            include_str!("golden/external-traffic-policy-cluster.yaml"),
        ),
        (
            "internal-external-masquerade",
            include_str!("golden/internal-external-masquerade.yaml"),
        ),
        ("bad-ips", include_str!("golden/bad-ips.yaml")),
        (
            "sync-proxy-rules-repeated",
            include_str!("golden/sync-proxy-rules-repeated.yaml"),
        ),
        (
            "internal-traffic-policy",
            include_str!("golden/internal-traffic-policy.yaml"),
        ),
        (
            "terminating-endpoints-local",
            include_str!("golden/terminating-endpoints-local.yaml"),
        ),
        (
            "terminating-endpoints-cluster",
            include_str!("golden/terminating-endpoints-cluster.yaml"),
        ),
        (
            "session-affinity",
            include_str!("golden/session-affinity.yaml"),
        ),
        (
            "only-local-external-ips",
            include_str!("golden/only-local-external-ips.yaml"),
        ),
        (
            "non-local-external-ips",
            include_str!("golden/non-local-external-ips.yaml"),
        ),
        (
            "localhost-node-ports-v4",
            include_str!("golden/localhost-node-ports-v4.yaml"),
        ),
        (
            "only-local-node-ports",
            include_str!("golden/only-local-node-ports.yaml"),
        ),
        (
            "terminating-affinity-local",
            include_str!("golden/terminating-affinity-local.yaml"),
        ),
        (
            "terminating-affinity-cluster",
            include_str!("golden/terminating-affinity-cluster.yaml"),
        ),
        (
            "load-balancer-ip-mode",
            include_str!("golden/load-balancer-ip-mode.yaml"),
        ),
    ] {
        if let Err(e) = check_rule_jumps(&payload(yaml)) {
            panic!("{name}: {e}");
        }
    }
    for yaml in [
        include_str!("golden/node-ports-v6.yaml"),
        include_str!("golden/localhost-node-ports-v6.yaml"),
    ] {
        check_rule_jumps(&generate(&scenario(yaml), Family::V6).payload).unwrap();
    }
}

/// Upstream: TestBadIPs — legacy leading-zero IPs and CIDRs are written canonically.
#[test]
fn bad_ips() {
    let expected = dedent(
        r#"
        *filter
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-EXTERNAL-SERVICES - [0:0]
        :KUBE-FIREWALL - [0:0]
        :KUBE-FORWARD - [0:0]
        :KUBE-PROXY-FIREWALL - [0:0]
        -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
        -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        -A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by KUBE-FW-XPGD46QRK7WJZT7O" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
        COMMIT
        *nat
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-FW-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        -A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-FW-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ
        -A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
        COMMIT
        "#,
    );
    check_rule_jumps(&expected).expect("upstream's expectation is consistent");
    assert_dump(
        &expected,
        &normalise(&payload(include_str!("golden/bad-ips.yaml"))),
    );
}

/// Upstream: TestDropInvalidRule (three cases: nfacct counter present or not, tcpBeLiberal).
#[test]
fn drop_invalid_rule() {
    let forward_rules = "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";
    let no_nfacct = FAKE.replace("nfacct: true", "nfacct: false");
    let cases = [
        (
            "tcpLiberal is false and nfacctEnsured is false",
            no_nfacct.clone(),
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n",
        ),
        (
            "tcpLiberal is false and nfacctEnsured is true",
            FAKE.to_string(),
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP\n",
        ),
        (
            "tcpLiberal is true and nfacctEnsured is false",
            no_nfacct.replacen(
                "mode: iptables\n",
                "mode: iptables\nconntrack: {tcpBeLiberal: true}\n",
                1,
            ),
            "",
        ),
    ];
    for (name, yaml, drop_rule) in cases {
        assert_eq!(
            chain_rules(&payload(&yaml), "filter", "KUBE-FORWARD"),
            format!("{drop_rule}{forward_rules}"),
            "TestDropInvalidRule / {name}"
        );
    }
}

/// Upstream: TestMasqueradeRule (randomFully false and true).
#[test]
fn masquerade_rule() {
    for random_fully in [false, true] {
        let yaml = FAKE.replace(
            "randomFully: false",
            &format!("randomFully: {random_fully}"),
        );
        let expected = format!(
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{}\n",
            if random_fully { " --random-fully" } else { "" }
        );
        assert_eq!(
            chain_rules(&payload(&yaml), "nat", "KUBE-POSTROUTING"),
            expected,
            "TestMasqueradeRule / randomFully {random_fully}"
        );
    }
}

/// Upstream: TestLoadBalancerIngressRouteTypeProxy, the three "LoadBalancerIPMode enabled"
/// cases (an `ipMode: Proxy` ingress gets no KUBE-SERVICES rule). The three "disabled" cases
/// need the feature gate off, which kube-proxy v1.33 no longer allows (GA and locked since
/// v1.32; upstream reaches them by emulating v1.31), so they are not transcribed.
#[test]
fn load_balancer_ingress_ip_mode() {
    let p = payload(include_str!("golden/load-balancer-ip-mode.yaml"));
    let services = chain_rules(&p, "nat", "KUBE-SERVICES");
    for (name, lb_ip, expected_rule) in [
        ("LoadBalancerIPMode enabled, ipMode Proxy", "1.2.3.4", false),
        ("LoadBalancerIPMode enabled, ipMode VIP", "1.2.3.5", true),
        ("LoadBalancerIPMode enabled, ipMode nil", "1.2.3.6", true),
    ] {
        let exists = services
            .lines()
            .any(|r| r.contains(&format!(" -d {lb_ip} ")));
        assert_eq!(exists, expected_rule, "{name}: unexpected rule for {lb_ip}");
    }
}

/// Upstream: TestSyncProxyRulesRepeated, its first sync (a full one). The later steps of that
/// test check kube-proxy's partial syncs and delayed chain deletion, which proxyscope does not
/// model (it always shows one full sync), so they are not transcribed.
#[test]
fn sync_proxy_rules_repeated_first_full_sync() {
    let expected = dedent(
        r#"
        *filter
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-EXTERNAL-SERVICES - [0:0]
        :KUBE-FIREWALL - [0:0]
        :KUBE-FORWARD - [0:0]
        :KUBE-PROXY-FIREWALL - [0:0]
        -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
        -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        COMMIT
        *nat
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-SEP-SNQ3ZNILQDEJNDQO - [0:0]
        :KUBE-SEP-UHEGFW77JX3KXTOV - [0:0]
        :KUBE-SVC-2VJB64SDSIJUP5T6 - [0:0]
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
        -A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
        -A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -s 10.0.2.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -m tcp -p tcp -j DNAT --to-destination 10.0.2.1:8080
        -A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO
        COMMIT
        "#,
    );
    check_rule_jumps(&expected).expect("upstream's expectation is consistent");
    assert_dump(
        &expected,
        &normalise(&payload(include_str!(
            "golden/sync-proxy-rules-repeated.yaml"
        ))),
    );
}

/// upstream `countEndpointsAndComments`: the DNAT rule of `endpoint` (if any), the number of
/// endpoint DNAT rules, and how many of them carry a comment.
fn count_endpoints_and_comments(payload: &str, endpoint: &str) -> (String, usize, usize) {
    let (mut matched, mut n, mut comments) = (String::new(), 0, 0);
    for line in payload.lines() {
        if line.starts_with("-A KUBE-SEP-") && line.contains("-j DNAT") {
            n += 1;
            if line.contains("--comment") {
                comments += 1;
            }
            if line.contains(endpoint) {
                matched = line.to_string();
            }
        }
    }
    (matched, n, comments)
}

/// A ClusterIP Service with one TCP port, as upstream `makeTestService` builds them.
fn cluster_ip_service(ns: &str, name: &str, ip: &str, port_name: &str, port: u16) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{namespace: {ns}, name: {name}}}\nspec:\n  type: ClusterIP\n  clusterIP: {ip}\n  ports: [{{name: {port_name}, port: {port}, protocol: TCP}}]\n"
    )
}

/// The EndpointSlice `<name>-1` of a Service: one port, endpoints without nodeName or conditions.
fn endpoint_slice(ns: &str, name: &str, port_name: &str, port: u16, ips: &[String]) -> String {
    let mut s = format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{namespace: {ns}, name: {name}-1, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: {port_name}, port: {port}, protocol: TCP}}]\nendpoints:\n"
    );
    for ip in ips {
        s.push_str(&format!("- {{addresses: [{ip}]}}\n"));
    }
    s
}

/// Upstream: TestSyncProxyRulesLargeClusterMode — above `largeClusterEndpointsThreshold` (1000)
/// endpoints kube-proxy drops the per-endpoint comments. Transcribed: the full-sync checks
/// (below and above the threshold, the exact DNAT lines upstream asserts, the endpoint counts)
/// and the chain names of the svc4 deletion step. Not transcribed: the partial-sync and
/// delayed-deletion timing, which proxyscope does not model.
#[test]
fn sync_proxy_rules_large_cluster_mode() {
    // largeClusterEndpointsThreshold/2 - 1 endpoints each for svc1 and svc2.
    let per_service = 1000 / 2 - 1;
    let ips = |a: u32| -> Vec<String> {
        (0..per_service)
            .map(|i| format!("10.{a}.{}.{}", i % 256, i / 256))
            .collect()
    };
    let mut yaml = with_masquerade_all(FAKE);
    yaml.push_str(&cluster_ip_service("ns1", "svc1", "172.30.0.41", "p80", 80));
    yaml.push_str(&cluster_ip_service(
        "ns2",
        "svc2",
        "172.30.0.42",
        "p8080",
        8080,
    ));
    yaml.push_str(&cluster_ip_service(
        "ns3",
        "svc3",
        "172.30.0.43",
        "p8081",
        8081,
    ));
    yaml.push_str(&endpoint_slice("ns1", "svc1", "p80", 80, &ips(0)));
    yaml.push_str(&endpoint_slice("ns2", "svc2", "p8080", 8080, &ips(1)));

    let p = payload(&yaml);
    let mut expected_endpoints = 2 * per_service as usize;
    let (first, n, comments) = count_endpoints_and_comments(&p, "10.0.0.0");
    assert_eq!(
        first,
        "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80"
    );
    assert_eq!(n, expected_endpoints, "wrong number of endpoints");
    assert_eq!(comments, n, "comments dropped below the threshold");

    yaml.push_str(&endpoint_slice(
        "ns3",
        "svc3",
        "p8081",
        8081,
        &[
            "203.0.113.4".into(),
            "203.0.113.8".into(),
            "203.0.113.12".into(),
        ],
    ));
    let p = payload(&yaml);
    expected_endpoints += 3;
    let (svc3_first, _, _) = count_endpoints_and_comments(&p, "203.0.113.4");
    assert_eq!(
        svc3_first,
        "-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081"
    );
    let (first, n, comments) = count_endpoints_and_comments(&p, "10.0.0.0");
    assert_eq!(
        first,
        "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80"
    );
    assert_eq!(n, expected_endpoints, "wrong number of endpoints");
    assert_eq!(comments, 0, "comments kept above the threshold");

    yaml.push_str(&cluster_ip_service(
        "ns4",
        "svc4",
        "172.30.0.44",
        "p8082",
        8082,
    ));
    yaml.push_str(&endpoint_slice(
        "ns4",
        "svc4",
        "p8082",
        8082,
        &["10.4.0.1".into()],
    ));
    let p = payload(&yaml);
    let (svc4, _, _) = count_endpoints_and_comments(&p, "10.4.0.1");
    assert_eq!(
        svc4,
        "-A KUBE-SEP-SU5STNODRYEWJAUF -m tcp -p tcp -j DNAT --to-destination 10.4.0.1:8082"
    );
    // Upstream's deletion step expects `-X KUBE-SVC-EBDQOQU5SJFXRIL3` and
    // `-X KUBE-SEP-SU5STNODRYEWJAUF` for svc4: its chains must have exactly these names.
    assert!(
        p.contains(":KUBE-SVC-EBDQOQU5SJFXRIL3 - [0:0]\n"),
        "svc4's SVC chain"
    );
    assert!(
        p.contains(":KUBE-SEP-SU5STNODRYEWJAUF - [0:0]\n"),
        "svc4's SEP chain"
    );
}

fn with_masquerade_all(yaml: &str) -> String {
    yaml.replacen(
        "mode: iptables\n",
        "mode: iptables\niptables: {masqueradeAll: true}\n",
        1,
    )
}

/// The `*nat` … `COMMIT` part of a normalised payload.
fn nat_table(normalised: &str) -> String {
    let start = normalised.find("*nat\n").expect("nat table");
    let len = normalised[start..].find("COMMIT\n").expect("COMMIT") + "COMMIT\n".len();
    normalised[start..start + len].to_string()
}

/// Upstream (kube-proxy v1.26 era, since folded into TestExternalTrafficPolicyLocal):
/// TestOnlyLocalExternalIPs. Only the nat table is compared: that release's filter table predates
/// KUBE-FIREWALL / KUBE-PROXY-FIREWALL and the nfacct counter, while the nat rules kube-proxy
/// writes for this service are unchanged since.
#[test]
fn only_local_external_ips_nat() {
    let expected = dedent(
        r#"
        *nat
        :KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-NODEPORTS - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
        :KUBE-SEP-ZX7GRIZKSNUQ3LAJ - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-SVL-XPGD46QRK7WJZT7O - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
        -A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
        -A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -s 10.180.2.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.2.1:80
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
        -A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
        COMMIT
        "#,
    );
    // That release's normaliser sorted chains purely alphabetically; apply today's order to
    // the expectation as well so only content is compared.
    assert_dump(
        &nat_table(&normalise(&format!("*filter\nCOMMIT\n{expected}"))),
        &nat_table(&normalise(&payload(include_str!(
            "golden/only-local-external-ips.yaml"
        )))),
    );
}

/// Upstream (kube-proxy v1.26 era, since folded into TestExternalTrafficPolicyCluster):
/// TestNonLocalExternalIPs, nat table only (see `only_local_external_ips_nat`).
#[test]
fn non_local_external_ips_nat() {
    let expected = dedent(
        r#"
        *nat
        :KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-NODEPORTS - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
        :KUBE-SEP-ZX7GRIZKSNUQ3LAJ - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ
        -A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
        -A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -s 10.180.2.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.2.1:80
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
        COMMIT
        "#,
    );
    assert_dump(
        &nat_table(&normalise(&format!("*filter\nCOMMIT\n{expected}"))),
        &nat_table(&normalise(&payload(include_str!(
            "golden/non-local-external-ips.yaml"
        )))),
    );
}

/// Upstream: TestComputeProbability — the `--probability` text of the SVC chain cascade.
#[test]
fn compute_probability() {
    use proxyscope_core::proxier::iptables::probability;
    for (n, expected) in [
        (1, "1.0000000000"),
        (2, "0.5000000000"),
        (10, "0.1000000000"),
        (100, "0.0100000000"),
        (1000, "0.0010000000"),
        (10000, "0.0001000000"),
        (100000, "0.0000100000"),
        (100001, "0.0000099999"),
    ] {
        assert_eq!(probability(n), expected, "computeProbability({n})");
    }
    let mut prev = 0.0f64;
    for i in (2..=100_000).rev() {
        let p: f64 = probability(i).parse().unwrap();
        assert!(p > prev, "probability not increasing at {i}: {p} <= {prev}");
        prev = p;
    }
}
