//! ClientIP session affinity across packets, hand-derived from the kernel's `xt_recent` and
//! kube-proxy's rule layout (spec §9–10): the SEP chain's DNAT rule carries
//! `-m recent --name <SEP> --set`, so only the endpoint actually chosen records the client;
//! the SVC chain first tries `-m recent --name <SEP> --rcheck --seconds T --reap` for every
//! endpoint in order. Hence a client's next connection within T seconds must go to the endpoint
//! its first connection went to — whichever that was — and after T seconds it is free again.
//! (kube-proxy's own test tracer never matches `--rcheck`, so upstream has no flow table for
//! this; the kernel behaviour is the reference.)

mod common;

use common::scenario;
use proxyscope_core::api::{Session, TraceRequest};
use proxyscope_core::trace::Proto;

fn request(sport: u16, seed: u64, now: f64) -> TraceRequest {
    TraceRequest {
        src: "10.0.0.2".parse().unwrap(),
        dst: "172.30.0.41".parse().unwrap(),
        dport: 80,
        proto: Proto::Tcp,
        sport: Some(sport),
        seed,
        now,
    }
}

#[test]
fn second_connection_sticks_to_the_first_ones_endpoint() {
    let s = scenario(include_str!("golden/session-affinity.yaml"));
    let mut seen = Vec::new();
    for seed in 0..32u64 {
        let mut session = Session::new(&s);
        let first = session.trace(&request(40000, seed, 0.0)).chosen.output;
        // A new connection (new source port: no conntrack entry) 60 s later, with a different
        // random draw: the rcheck rule of the first endpoint chosen must win.
        let second = session
            .trace(&request(40001, seed.wrapping_add(1000), 60.0))
            .chosen
            .output;
        assert_eq!(second, first, "seed {seed}: affinity not kept");
        seen.push(first);
    }
    // Both endpoints occur as first choices, so the check above covers both rcheck rules.
    assert!(seen.iter().any(|o| o == "10.180.0.1:80"));
    assert!(seen.iter().any(|o| o == "10.180.0.2:80"));
}

#[test]
fn exploring_the_outcomes_leaves_no_affinity_behind() {
    let s = scenario(include_str!("golden/session-affinity.yaml"));
    let mut session = Session::new(&s);
    let t = session.trace(&request(40000, 7, 0.0));
    // Both endpoints are possible for a first connection, each with probability 1/2.
    assert_eq!(t.outcomes.len(), 2, "{:?}", t.outcomes);
    // Only the sampled walk may record the client, and only in the chosen endpoint's list.
    let lists: Vec<&String> = session
        .state
        .recent
        .iter()
        .filter(|(_, addrs)| !addrs.is_empty())
        .map(|(name, _)| name)
        .collect();
    assert_eq!(lists.len(), 1, "client recorded in {lists:?}");
}

#[test]
fn affinity_expires_after_timeout_seconds() {
    let s = scenario(include_str!("golden/session-affinity.yaml"));
    let mut session = Session::new(&s);
    session.trace(&request(40000, 3, 0.0));
    // 10800 s later the `--seconds 10800` rcheck no longer matches: both endpoints possible.
    let t = session.trace(&request(40001, 3, 10801.0));
    assert_eq!(t.outcomes.len(), 2, "{:?}", t.outcomes);
}
