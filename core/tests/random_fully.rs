//! `MASQUERADE --random-fully` (kube-proxy adds it when iptables supports it): the kernel does not
//! keep the source port but draws one (nf_nat_l4proto_unique_tuple with
//! NF_NAT_RANGE_PROTO_RANDOM_FULLY: `min + random % range_size`), within the original port's class:
//! 1-511 for ports below 512, 600-1023 for 512-1023, 1024-65535 above. Without the flag a free
//! tuple keeps its port.

use proxyscope_core::api::{Session, TraceRequest, load_scenario};
use proxyscope_core::trace::Proto;

const DEMO: &str = include_str!("../../examples/demo.yaml");

fn masqueraded_sport(yaml: &str, sport: u16, seed: u64) -> (u16, bool) {
    let s = load_scenario(yaml).expect("demo loads").scenario;
    let mut session = Session::new(&s);
    // From the node itself to the ClusterIP: not from the cluster CIDR, so kube-proxy marks it
    // and KUBE-POSTROUTING masquerades it.
    let t = session.trace(&TraceRequest {
        src: "192.168.0.2".parse().unwrap(),
        dst: "10.104.14.67".parse().unwrap(),
        dport: 80,
        proto: Proto::Tcp,
        sport: Some(sport),
        seed,
        now: 0.0,
    });
    let p = t.final_packet.expect("forwarded");
    (p.sport, t.masq)
}

#[test]
fn random_fully_draws_the_port_within_its_class() {
    for (sport, lo, hi) in [
        (40000u16, 1024u16, 65535u16),
        (700, 600, 1023),
        (80, 1, 511),
    ] {
        let mut changed = 0;
        for seed in 0..20 {
            let (p, masq) = masqueraded_sport(DEMO, sport, seed);
            assert!(masq, "the node's own packet to a ClusterIP is masqueraded");
            assert!(
                (lo..=hi).contains(&p),
                "port {sport} became {p}, outside {lo}-{hi}"
            );
            changed += usize::from(p != sport);
        }
        // 20 draws from a range of 424+ ports: keeping the port every time would be no draw.
        assert!(
            changed >= 18,
            "port {sport} kept in {} of 20 walks",
            20 - changed
        );
    }
}

#[test]
fn without_random_fully_the_port_is_kept() {
    let yaml = DEMO.replace("randomFully: true", "randomFully: false");
    assert_ne!(yaml, DEMO);
    for seed in 0..5 {
        let (p, masq) = masqueraded_sport(&yaml, 40000, seed);
        assert!(masq);
        assert_eq!(p, 40000);
    }
}
