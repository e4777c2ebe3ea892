//! IPVS mode packet by packet: a `Session` carries the IPVS connection table, persistence
//! templates and conntrack across packets. Every expectation is derived by hand from the
//! kernel / kube-proxy behaviour it names (written next to it), never from our own output.
//!
//! The demo (`examples/ipvs-demo.yaml`): ClusterIP 10.104.14.67:80, endpoints 10.0.0.2/3/4:80
//! all on this node, clusterCIDR 10.0.0.0/16 (detector `! -s 10.0.0.0/16`), node 192.168.0.2.
//! Real servers are loaded in reverse `ipvsadm -Sn` order, so the kernel's newest-first list is
//! 10.0.0.2, 10.0.0.3, 10.0.0.4, and rr (`ip_vs_rr.c`: start after `sched_data`, initially the
//! list head) hands out .2, .3, .4, .2, ... to successive new connections.

use proxyscope_core::api::{self, Session, TraceRequest};
use proxyscope_core::k8s::Scenario;
use proxyscope_core::trace::{Proto, Step, Trace, Verdict};
use std::net::IpAddr;

fn load(text: &str) -> Scenario {
    api::load_scenario(text)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .scenario
}

fn demo() -> Scenario {
    load(include_str!("../../examples/ipvs-demo.yaml"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn req(src: &str, dst: &str, dport: u16, sport: Option<u16>, now: f64) -> TraceRequest {
    TraceRequest {
        src: ip(src),
        dst: ip(dst),
        dport,
        proto: Proto::Tcp,
        sport,
        seed: 7,
        now,
    }
}

fn counters(s: &Session, server: &str) -> (u32, u32) {
    let t = s.ipvs_table().expect("IPVS session");
    for svc in &t {
        for d in &svc.dests {
            if d.addr.to_string() == server {
                return (d.activeconns, d.inactconns);
            }
        }
    }
    panic!("no real server {server}");
}

fn has_step(t: &Trace, f: impl Fn(&Step) -> bool) -> bool {
    t.steps.iter().any(f)
}

#[test]
fn rr_hands_out_servers_in_list_order_and_reuses_connections() {
    let mut s = Session::new_ipvs(&demo());
    let outs: Vec<String> = (0..4)
        .map(|i| {
            s.trace(&req("10.0.0.100", "10.104.14.67", 80, Some(40000 + i), 0.0))
                .output
        })
        .collect();
    assert_eq!(
        outs,
        ["10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.2:80"]
    );
    // rr is deterministic: one outcome with probability 1.
    let t = s.trace(&req("10.0.0.100", "10.104.14.67", 80, Some(40100), 1.0));
    assert_eq!(t.outcomes.len(), 1);
    assert_eq!(t.outcomes[0].probability, 1.0);
    assert_eq!(t.outcomes[0].output, "10.0.0.3:80");
    // Two connections went to .2; TCP connections count active (set_tcp_state ESTABLISHED).
    assert_eq!(counters(&s, "10.0.0.2:80"), (2, 0));
    // Same 5-tuple again: ip_vs_conn_in_get finds the entry, no scheduling, no new counter.
    let again = s.trace(&req("10.0.0.100", "10.104.14.67", 80, Some(40000), 2.0));
    assert_eq!(again.output, "10.0.0.2:80");
    assert!(!has_step(&again, |st| matches!(
        st,
        Step::IpvsSchedule { .. }
    )));
    assert!(has_step(&again, |st| matches!(
        st,
        Step::IpvsConnection { note, .. } if note.contains("exists")
    )));
    assert_eq!(counters(&s, "10.0.0.2:80"), (2, 0));
}

#[test]
fn masquerade_is_decided_by_iptables_marks() {
    let mut s = Session::new_ipvs(&demo());
    // A pod on this node: `! -s 10.0.0.0/16` fails, no mark, KUBE-POSTROUTING returns.
    let pod = s.trace(&req("10.0.0.100", "10.104.14.67", 80, None, 0.0));
    assert!(!pod.masq);
    assert_eq!(pod.verdict, Verdict::Forwarded);
    // No iptables DNAT in IPVS mode: the only DNAT step is IPVS's, after INPUT.
    let dnats: Vec<usize> = pod
        .steps
        .iter()
        .enumerate()
        .filter(|(_, st)| matches!(st, Step::Dnat { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(dnats.len(), 1);
    let lookup = pod
        .steps
        .iter()
        .position(|st| matches!(st, Step::IpvsLookup { .. }))
        .unwrap();
    assert!(lookup < dnats[0]);
    // An off-cluster client: marked by the KUBE-CLUSTER-IP rule, masqueraded in POSTROUTING to
    // the address of the interface it leaves by: the Pod is on cni0 (10.0.0.1/24), and the
    // kernel's MASQUERADE takes that interface's address (inet_select_addr on the out device;
    // confirmed by the kernel differential suite), not the node's InternalIP.
    let ext = s.trace(&req("203.0.113.10", "10.104.14.67", 80, None, 0.0));
    assert!(ext.masq);
    assert_eq!(ext.final_packet.unwrap().src, ip("10.0.0.1"));
    // The node itself (OUTPUT path, IPVS at LOCAL_OUT): source 192.168.0.2 is not in the
    // cluster CIDR either: masqueraded.
    let node = s.trace(&req("192.168.0.2", "10.104.14.67", 80, None, 0.0));
    assert!(node.masq);
    assert!(has_step(&node, |st| matches!(
        st,
        Step::Note { text } if text.contains("LOCAL_OUT right after nat OUTPUT")
    )));
}

#[test]
fn hairpin_is_masqueraded_by_kube_loop_back() {
    let mut s = Session::new_ipvs(&demo());
    // rr picks 10.0.0.2 first; the client is 10.0.0.2 itself: KUBE-LOOP-BACK
    // (dst ip, dst port, src ip) = 10.0.0.2,tcp:80,10.0.0.2 → MASQUERADE.
    let t = s.trace(&req("10.0.0.2", "10.104.14.67", 80, None, 0.0));
    assert_eq!(t.chosen.output, "10.0.0.2:80");
    assert!(t.masq);
    // The next connection goes to .3: not a hairpin, not masqueraded.
    let t2 = s.trace(&req("10.0.0.2", "10.104.14.67", 80, None, 0.0));
    assert_eq!(t2.chosen.output, "10.0.0.3:80");
    assert!(!t2.masq);
}

#[test]
fn vip_port_that_is_no_service_is_rejected_by_kube_ipvs_filter() {
    let mut s = Session::new_ipvs(&demo());
    // KUBE-IPVS-FILTER: 10.104.14.67,tcp:81 is in no service set, 10.104.14.67 is in
    // KUBE-IPVS-IPS, the packet is NEW → REJECT (upstream issue 72236).
    let t = s.trace(&req("10.0.0.100", "10.104.14.67", 81, None, 0.0));
    assert_eq!(t.verdict, Verdict::Reject);
    assert_eq!(t.output, "REJECT");
}

const NO_ENDPOINTS: &str = r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
clusterCIDR: 10.0.0.0/16
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec:
  clusterIP: 10.96.0.50
  ports: [{port: 80, protocol: TCP}]
"#;

#[test]
fn no_real_server_means_icmp_unreachable_from_ipvs() {
    let mut s = Session::new_ipvs(&load(NO_ENDPOINTS));
    let t = s.trace(&req("10.0.0.100", "10.96.0.50", 80, None, 0.0));
    // ip_vs_schedule finds no server; ip_vs_leave sends ICMP port unreachable and drops.
    assert_eq!(t.verdict, Verdict::Reject);
    assert_eq!(t.output, "REJECT");
    assert!(has_step(&t, |st| matches!(
        st,
        Step::IpvsSchedule { server: None, .. }
    )));
    // It is IPVS, not an iptables rule, that refuses: the service port passed
    // KUBE-IPVS-FILTER (it is in KUBE-CLUSTER-IP).
    assert!(!has_step(&t, |st| matches!(
        st,
        Step::Rule { matched: true, text, .. } if text.contains("-j REJECT")
    )));
}

fn with_scheduler(sched: &str, affinity: bool) -> Scenario {
    let text = include_str!("../../examples/ipvs-demo.yaml")
        .replace(
            "mode: ipvs\n",
            &format!(
                "mode: ipvs\nipvs: {{scheduler: {sched}, tcpTimeout: 60s, udpTimeout: 30s}}\n"
            ),
        )
        .replace(
            "  sessionAffinity: None\n",
            if affinity {
                "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 100}}\n"
            } else {
                "  sessionAffinity: None\n"
            },
        );
    load(&text)
}

#[test]
fn client_ip_affinity_uses_a_persistence_template_until_it_expires() {
    let mut s = Session::new_ipvs(&with_scheduler("rr", true));
    let a = "10.0.0.100";
    let first = s.trace(&req(a, "10.104.14.67", 80, Some(1000), 0.0));
    assert_eq!(first.output, "10.0.0.2:80");
    // Another client gets the next rr pick; client a keeps 10.0.0.2 for every new connection
    // (ip_vs_sched_persist: the template <TCP a:0 -> VIP> decides, the scheduler is not asked).
    let b = s.trace(&req("10.0.0.101", "10.104.14.67", 80, Some(1000), 1.0));
    assert_eq!(b.output, "10.0.0.3:80");
    for (i, now) in [(1001, 10.0), (1002, 20.0)] {
        let t = s.trace(&req(a, "10.104.14.67", 80, Some(i), now));
        assert_eq!(t.output, "10.0.0.2:80");
        assert!(!has_step(&t, |st| matches!(st, Step::IpvsSchedule { .. })));
        // Pinned: one outcome, probability 1.
        assert_eq!(t.outcomes.len(), 1);
    }
    // Connections expire 60 s (tcpTimeout) after their last packet: the last at t=20 → 80.
    // The template was last restarted at t=20 with 100 s: its timer fires at 120, when no
    // connection it controls is alive, so it goes. At t=130 client a is scheduled afresh: rr
    // continues after .3 → .4.
    let later = s.trace(&req(a, "10.104.14.67", 80, Some(1003), 130.0));
    assert!(has_step(&later, |st| matches!(
        st,
        Step::IpvsSchedule { .. }
    )));
    assert_eq!(later.output, "10.0.0.4:80");
    // Every connection of .2 expired and was freed: counters back to 0.
    assert_eq!(counters(&s, "10.0.0.2:80"), (0, 0));
}

#[test]
fn template_outlives_its_timeout_while_a_connection_lives() {
    let mut s = Session::new_ipvs(&with_scheduler("rr", true));
    let a = "10.0.0.100";
    assert_eq!(
        s.trace(&req(a, "10.104.14.67", 80, Some(1000), 0.0)).output,
        "10.0.0.2:80"
    );
    // Keep the connection alive with packets every 50 s (tcpTimeout 60): at t=100 the template
    // timer fires with a live controlled connection and is re-armed (ip_vs_conn_expire), so a
    // new connection at t=150 still goes to 10.0.0.2.
    for now in [50.0, 100.0, 140.0] {
        s.trace(&req(a, "10.104.14.67", 80, Some(1000), now));
    }
    let t = s.trace(&req(a, "10.104.14.67", 80, Some(1001), 150.0));
    assert_eq!(t.output, "10.0.0.2:80");
    assert!(!has_step(&t, |st| matches!(st, Step::IpvsSchedule { .. })));
}

#[test]
fn udp_connections_stay_inactive_and_expire_after_the_udp_timeout() {
    let text = include_str!("../../examples/ipvs-demo.yaml")
        .replace("mode: ipvs\n", "mode: ipvs\nipvs: {udpTimeout: 30s}\n")
        .replace("protocol: TCP", "protocol: UDP");
    let mut s = Session::new_ipvs(&load(&text));
    let mut r = req("10.0.0.100", "10.104.14.67", 80, Some(5353), 0.0);
    r.proto = Proto::Udp;
    assert_eq!(s.trace(&r).output, "10.0.0.2:80");
    // udp_state_transition never moves a counter: InActConn 1.
    assert_eq!(counters(&s, "10.0.0.2:80"), (0, 1));
    r.now = 29.0;
    assert_eq!(s.trace(&r).output, "10.0.0.2:80");
    // 30 s after the last packet the entry is gone: the same flow is scheduled anew (→ .3).
    r.now = 60.0;
    assert_eq!(s.trace(&r).output, "10.0.0.3:80");
    assert_eq!(counters(&s, "10.0.0.2:80"), (0, 0));
    assert_eq!(counters(&s, "10.0.0.3:80"), (0, 1));
}

#[test]
fn twos_outcomes_are_the_kernels_draw_distribution() {
    let mut s = Session::new_ipvs(&with_scheduler("twos", false));
    let t = s.trace(&req("10.0.0.100", "10.104.14.67", 80, None, 0.0));
    // ip_vs_twos.c with weights 1,1,1 (total 3): two draws r in 0..=3
    // (get_random_u32_below(total + 1)), each walking the list .2, .3, .4 subtracting weights
    // until r <= 0: r=0,1 → .2, r=2 → .3, r=3 → .4. With no connections both candidates have
    // overhead 0, `w2*oh1 > w1*oh2` is false and the first draw's server is kept:
    // P(.2) = 2/4, P(.3) = 1/4, P(.4) = 1/4.
    let p = |o: &str| {
        t.outcomes
            .iter()
            .find(|x| x.output == o)
            .map(|x| x.probability)
            .unwrap_or(0.0)
    };
    assert!((p("10.0.0.2:80") - 0.5).abs() < 1e-12, "{:?}", t.outcomes);
    assert!((p("10.0.0.3:80") - 0.25).abs() < 1e-12);
    assert!((p("10.0.0.4:80") - 0.25).abs() < 1e-12);
    assert_eq!(t.output, "10.0.0.2:80, 10.0.0.3:80, 10.0.0.4:80");
}

#[test]
fn a_dump_of_the_generated_node_traces_like_the_generated_node() {
    let sc = demo();
    let text = api::ipvs_rules(&sc).text();
    let (mut from_dump, diags) = Session::from_ipvs_dump(&sc, &text);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let mut generated = Session::new_ipvs(&sc);
    for (src, sport) in [("10.0.0.100", 1), ("203.0.113.10", 2), ("192.168.0.2", 3)] {
        let a = from_dump.trace(&req(src, "10.104.14.67", 80, Some(sport), 0.0));
        let b = generated.trace(&req(src, "10.104.14.67", 80, Some(sport), 0.0));
        assert_eq!(
            (&a.output, a.masq, a.verdict, &a.outcomes),
            (&b.output, b.masq, b.verdict, &b.outcomes)
        );
    }
    // Rules traced from the dump carry the line they came from in the whole text.
    let t = from_dump.trace(&req("10.0.0.100", "10.104.14.67", 80, Some(9), 0.0));
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let want = line_of("-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN");
    assert!(has_step(&t, |st| matches!(
        st,
        Step::Rule { line: Some(l), text, .. } if *l == want && text.contains("KUBE-IPVS-FILTER")
    )));
}

#[test]
fn bad_dumps_name_the_place() {
    let sc = demo();
    let (_, diags) = Session::from_ipvs_dump(&sc, "-A -t 10.0.0.1:80 -s rr\n");
    let msgs: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("line 1") && m.contains("before the first section header")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("no `# ipset save` section")));
    let text = "# ipvsadm -Sn\n-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r nonsense -m -w 1\n# ipset save\ncreate KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\nadd KUBE-CLUSTER-IP 10.0.0.1,tcp:notaport\n# iptables-save\n*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n";
    let (_, diags) = Session::from_ipvs_dump(&sc, text);
    let errs: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(
        errs.iter()
            .any(|m| m.contains("line 3") && m.contains("ipvsadm -Sn section")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|m| m.contains("line 6") && m.contains("ipset save section")),
        "{errs:?}"
    );
}

fn mixed() -> Scenario {
    load(include_str!("golden/ipvs/mixed.yaml"))
}

fn req_p(src: &str, dst: &str, dport: u16, proto: Proto) -> TraceRequest {
    TraceRequest {
        proto,
        ..req(src, dst, dport, None, 0.0)
    }
}

#[test]
fn load_balancer_source_ranges_and_local_policy() {
    let mut s = Session::new_ipvs(&mixed());
    // 203.0.113.10 is in 203.0.113.0/24: KUBE-PROXY-FIREWALL → KUBE-SOURCE-RANGES-FIREWALL
    // RETURNs on KUBE-LOAD-BALANCER-SOURCE-CIDR; KUBE-LOAD-BALANCER RETURNs on the LOCAL set
    // (no mark). No endpoint is local, so the VS holds the remote ones (IPVS fallback, upstream
    // PR 97081) and the client address is kept: forwarded without masquerade.
    let t = s.trace(&req_p("203.0.113.10", "172.18.0.100", 443, Proto::Tcp));
    assert_eq!(t.verdict, Verdict::Forwarded);
    assert_eq!(t.output, "10.244.2.7:8443");
    assert!(!t.masq);
    // 198.18.0.1 is in no range: `-A KUBE-SOURCE-RANGES-FIREWALL -j DROP` in filter INPUT,
    // before IPVS ever sees the packet.
    let t = s.trace(&req_p("198.18.0.1", "172.18.0.100", 443, Proto::Tcp));
    assert_eq!(t.verdict, Verdict::Drop);
    assert_eq!(t.output, "DROP");
    assert!(!has_step(&t, |st| matches!(st, Step::IpvsLookup { .. })));
}

#[test]
fn udp_and_sctp_node_ports_are_marked_by_their_sets() {
    let mut s = Session::new_ipvs(&mixed());
    // KUBE-NODE-PORT: `-p udp ... KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ` (bitmap:port).
    let t = s.trace(&req_p("203.0.113.10", "192.168.10.11", 30053, Proto::Udp));
    assert_eq!(t.output, "10.244.1.8:53");
    assert!(t.masq);
    // SCTP: hash:ip,port per node IP, matched `dst,dst`.
    let t = s.trace(&req_p("203.0.113.10", "192.168.10.11", 30868, Proto::Sctp));
    assert_eq!(t.output, "10.244.1.8:3868");
    assert!(t.masq);
    // eTP Local TCP node port: RETURN before the MARK rule, client address kept.
    let t = s.trace(&req_p("203.0.113.10", "192.168.10.11", 30080, Proto::Tcp));
    assert_eq!(t.output, "10.244.1.6:8080");
    assert!(!t.masq);
}

#[test]
fn external_ip_with_affinity() {
    let mut s = Session::new_ipvs(&mixed());
    // KUBE-EXTERNAL-IP marks (eTP Cluster); the off-node client arrives on the uplink, not a
    // bridge port, so the packet has no bridge info and `-m physdev ! --physdev-is-in` holds
    // (xt_physdev: all options inverted); its source is not local: that rule's ACCEPT ends nat
    // PREROUTING, and routing delivers the externalIP (on kube-ipvs0) locally.
    let t1 = s.trace(&req("203.0.113.10", "198.51.100.7", 80, None, 0.0));
    assert!(t1.masq);
    assert_eq!(t1.output, "10.244.1.5:8080");
    assert!(
        t1.warnings.iter().all(|w| !w.contains("physdev")),
        "{:?}",
        t1.warnings
    );
    assert!(has_step(&t1, |st| matches!(
        st,
        Step::Rule { text, matched: true, .. } if text.contains("-m physdev ! --physdev-is-in")
    )));
    // ClientIP affinity (persistent 10800 s): the same client sticks, a new one moves on.
    let t2 = s.trace(&req("203.0.113.10", "198.51.100.7", 80, None, 5.0));
    assert_eq!(t2.output, "10.244.1.5:8080");
    let t3 = s.trace(&req("203.0.113.11", "198.51.100.7", 80, None, 6.0));
    assert_eq!(t3.output, "10.244.2.5:8080");
}

#[test]
fn graceful_termination_drains_at_weight_zero() {
    let base = include_str!("../../examples/ipvs-demo.yaml")
        .replace("mode: ipvs\n", "mode: ipvs\nipvs: {tcpTimeout: 60s}\n");
    let mut s = Session::new_ipvs(&load(&base));
    let c1 = s.trace(&req("10.0.0.100", "10.104.14.67", 80, Some(1000), 0.0));
    assert_eq!(c1.output, "10.0.0.2:80");
    // 10.0.0.2 starts terminating (ready false): kube-proxy no longer wants it. It has one
    // TCP connection, so upstream's graceful termination sets its weight to 0 instead of
    // deleting it (`graceful_termination.go`: delete now only for UDP/SCTP or no connections).
    let term = base.replacen(
        "- addresses: [10.0.0.2]\n  conditions: {ready: true, serving: true, terminating: false}",
        "- addresses: [10.0.0.2]\n  conditions: {ready: false, serving: true, terminating: true}",
        1,
    );
    assert_ne!(term, base);
    let rep = s.resync_ipvs(&load(&term), 10.0).unwrap();
    assert!(
        rep.changes
            .iter()
            .any(|c| c.contains("10.0.0.2:80") && c.contains("weight 0")),
        "{rep:?}"
    );
    // The existing connection continues to 10.0.0.2 ...
    let again = s.trace(&req("10.0.0.100", "10.104.14.67", 80, Some(1000), 20.0));
    assert_eq!(again.output, "10.0.0.2:80");
    // ... while new ones avoid it: rr skips weight-0 servers.
    let outs: Vec<String> = (0..3)
        .map(|i| {
            s.trace(&req("10.0.0.100", "10.104.14.67", 80, Some(2000 + i), 21.0))
                .output
        })
        .collect();
    assert!(outs.iter().all(|o| o != "10.0.0.2:80"), "{outs:?}");
    // Once its connection expired (last packet at 20 s + 60 s), the next sync deletes it.
    let rep = s.resync_ipvs(&load(&term), 100.0).unwrap();
    assert!(
        rep.changes
            .iter()
            .any(|c| c.contains("delete") && c.contains("10.0.0.2:80")),
        "{rep:?}"
    );
    let table = s.ipvs_table().unwrap();
    assert!(
        table[0]
            .dests
            .iter()
            .all(|d| d.addr.to_string() != "10.0.0.2:80")
    );
}

#[test]
fn a_deleted_server_drops_its_connections_packets() {
    // UDP: no graceful termination, the real server is deleted at once; the next packet of
    // its connection is dropped (expire_nodest_conn=1) and the one after is scheduled afresh.
    let base =
        include_str!("../../examples/ipvs-demo.yaml").replace("protocol: TCP", "protocol: UDP");
    let mut s = Session::new_ipvs(&load(&base));
    let mut r = req("10.0.0.100", "10.104.14.67", 80, Some(5353), 0.0);
    r.proto = Proto::Udp;
    assert_eq!(s.trace(&r).output, "10.0.0.2:80");
    let gone = base.replacen("- addresses: [10.0.0.2]\n", "- addresses: [10.0.0.9]\n", 1);
    let rep = s.resync_ipvs(&load(&gone), 1.0).unwrap();
    assert!(
        rep.changes
            .iter()
            .any(|c| c.starts_with("delete") && c.contains("10.0.0.2:80")),
        "{rep:?}"
    );
    r.now = 2.0;
    let t = s.trace(&r);
    assert_eq!((t.verdict, t.output.as_str()), (Verdict::Drop, "DROP"));
    r.now = 3.0;
    let t = s.trace(&r);
    assert_eq!(t.verdict, Verdict::Forwarded);
    assert_ne!(t.output, "10.0.0.2:80");
}
