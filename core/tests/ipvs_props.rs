//! Property tests of scheduler invariants the kernel guarantees.

use proptest::prelude::*;
use proxyscope_core::ipvs::{
    ConnKey, Connection, NoRandom, SchedFlags, SchedulerKind, SplitMix64, Sysctl, VirtualService,
};
use proxyscope_core::trace::Proto;
use std::collections::HashMap;
use std::net::SocketAddr;

fn vip() -> SocketAddr {
    "10.96.0.1:80".parse().unwrap()
}

fn server(i: usize) -> SocketAddr {
    format!("10.0.{}.{}:8080", i / 200, i % 200 + 1)
        .parse()
        .unwrap()
}

fn client(i: u32) -> ConnKey {
    ConnKey {
        proto: Proto::Tcp,
        client: format!(
            "198.51.{}.{}:{}",
            (i >> 8) & 255,
            i & 255,
            1024 + (i % 50000)
        )
        .parse()
        .unwrap(),
        dst: vip(),
    }
}

/// Service with servers added in index order (so the list is reversed), scheduler bound after.
fn bound_after(kind: SchedulerKind, weights: &[i32]) -> VirtualService {
    let mut s = VirtualService::new(
        vip(),
        Proto::Tcp,
        SchedulerKind::Lc,
        SchedFlags::default(),
        Sysctl::default(),
        0.0,
    );
    for (i, w) in weights.iter().enumerate() {
        s.add_dest(server(i), *w, 0, 0, 0.0).unwrap();
    }
    s.set_scheduler(kind, SchedFlags::default(), 0.0);
    s
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

proptest! {
    /// wrr: from a fresh binding, one cycle of sum(w/gcd) picks gives each server w/gcd picks,
    /// cycle after cycle.
    #[test]
    fn wrr_cycle_matches_weights(weights in prop::collection::vec(0i32..12, 1..7), cycles in 1usize..4) {
        let di = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
        prop_assume!(di > 0);
        let mut s = bound_after(SchedulerKind::Wrr, &weights);
        let per_cycle: i32 = weights.iter().map(|w| w / di).sum();
        let mut count: HashMap<SocketAddr, i32> = HashMap::new();
        for i in 0..per_cycle as usize * cycles {
            let d = s.schedule(&client(i as u32), 1.0, &mut NoRandom).unwrap();
            *count.entry(d.server.unwrap()).or_default() += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            prop_assert_eq!(count.get(&server(i)).copied().unwrap_or(0), w / di * cycles as i32, "server {}", i);
        }
    }

    /// rr: each eligible server (weight > 0, not OVERLOAD) exactly once per cycle of that many
    /// picks, whatever the starting position.
    #[test]
    fn rr_visits_each_eligible_server_once_per_cycle(
        servers in prop::collection::vec((0i32..3, any::<bool>()), 1..10),
        warmup in 0usize..7,
    ) {
        let weights: Vec<i32> = servers.iter().map(|(w, _)| *w).collect();
        let mut s = bound_after(SchedulerKind::Rr, &weights);
        for _ in 0..warmup {
            let _ = s.schedule(&client(0), 1.0, &mut NoRandom).unwrap();
        }
        for (i, (_, ov)) in servers.iter().enumerate() {
            s.set_overload(server(i), *ov).unwrap();
        }
        let eligible: Vec<SocketAddr> = servers.iter().enumerate()
            .filter(|(_, (w, ov))| *w > 0 && !ov).map(|(i, _)| server(i)).collect();
        let mut seen: Vec<SocketAddr> = (0..eligible.len())
            .map(|i| s.schedule(&client(i as u32), 1.0, &mut NoRandom).unwrap().server.unwrap())
            .collect();
        seen.sort();
        let mut want = eligible.clone();
        want.sort();
        prop_assert_eq!(seen, want);
        if eligible.is_empty() {
            prop_assert!(s.schedule(&client(1), 1.0, &mut NoRandom).unwrap().dest.is_none());
        }
    }

    /// mh: quiescing or overloading a server leaves the table as it is (last_weight is kept),
    /// so no client of another server moves; with mh-fallback the quiesced server's clients
    /// land on usable servers.
    #[test]
    fn mh_unrelated_clients_stay_when_a_server_is_quiesced(
        weights in prop::collection::vec(1i32..20, 2..8),
        victim in 0usize..8,
        fallback in any::<bool>(),
        port in any::<bool>(),
        overload in any::<bool>(),
    ) {
        let victim = victim % weights.len();
        let mut flags = 0;
        if fallback { flags |= SchedFlags::FLAG_1; }
        if port { flags |= SchedFlags::FLAG_2; }
        let mut s = bound_after(SchedulerKind::Mh, &weights);
        s.set_scheduler(SchedulerKind::Mh, SchedFlags(flags), 0.0);
        let before: Vec<Option<SocketAddr>> = (0..300).map(|i| s.schedule(&client(i * 7919), 1.0, &mut NoRandom).unwrap().server).collect();
        if overload {
            s.set_overload(server(victim), true).unwrap();
        } else {
            s.edit_dest(server(victim), 0, 0, 0, 1.0).unwrap();
        }
        for (i, b) in before.iter().enumerate() {
            let after = s.schedule(&client(i as u32 * 7919), 1.0, &mut NoRandom).unwrap().server;
            if *b != Some(server(victim)) {
                prop_assert_eq!(after, *b);
            } else if fallback {
                prop_assert!(after.is_some() && after != Some(server(victim)));
            } else {
                prop_assert_eq!(after, None);
            }
        }
    }

    /// sh: OVERLOAD on one server does not touch the table; other servers' clients stay put.
    #[test]
    fn sh_unrelated_clients_stay_when_a_server_is_overloaded(
        weights in prop::collection::vec(1i32..5, 2..8),
        victim in 0usize..8,
        fallback in any::<bool>(),
    ) {
        let victim = victim % weights.len();
        let mut s = bound_after(SchedulerKind::Sh, &weights);
        s.set_scheduler(SchedulerKind::Sh, SchedFlags(if fallback { SchedFlags::FLAG_1 } else { 0 }), 0.0);
        let before: Vec<Option<SocketAddr>> = (0..300).map(|i| s.schedule(&client(i * 104729), 1.0, &mut NoRandom).unwrap().server).collect();
        s.set_overload(server(victim), true).unwrap();
        for (i, b) in before.iter().enumerate() {
            let after = s.schedule(&client(i as u32 * 104729), 1.0, &mut NoRandom).unwrap().server;
            if *b != Some(server(victim)) {
                prop_assert_eq!(after, *b);
            } else if fallback {
                prop_assert!(after.is_some() && after != Some(server(victim)));
            } else {
                prop_assert_eq!(after, None);
            }
        }
    }

    /// Under any stream of admin operations and connections, no scheduler picks a deleted
    /// server or one with weight 0, and every non-lblc scheduler avoids OVERLOAD (lblc's cache
    /// hit path does not look at the flag). Counters always equal the live connections.
    #[test]
    fn never_weight_0_or_deleted_and_counters_balance(
        kind in prop::sample::select(SchedulerKind::ALL.to_vec()),
        flags in 0u32..4,
        ops in prop::collection::vec((0u8..8, 0usize..6, 0i32..4, 0u32..40), 1..120),
    ) {
        let mut s = VirtualService::new(vip(), Proto::Tcp, kind, SchedFlags(flags << 3), Sysctl { lblc_expiration: 120.0, lblcr_expiration: 60.0 }, 0.0);
        let mut rng = SplitMix64(7);
        let mut live: Vec<Connection> = Vec::new();
        let mut t = 0.0;
        for (op, srv, w, x) in ops {
            t += f64::from(x);
            match op {
                0 => { let _ = s.add_dest(server(srv), w, 0, 0, t); }
                1 => { let _ = s.edit_dest(server(srv), w, x % 4, 0, t); }
                2 => { let _ = s.del_dest(server(srv), t); }
                3 => { let _ = s.set_overload(server(srv), w == 0); }
                4 if !live.is_empty() => { let c = live.swap_remove(x as usize % live.len()); s.free(c); }
                5 if !live.is_empty() => { let n = live.len(); s.establish(&mut live[x as usize % n]); }
                _ => {
                    let mut key = client(x * 31 + srv as u32);
                    // vary the destination address so lblc/lblcr/dh see several.
                    key.dst = format!("10.96.0.{}:80", x % 5 + 1).parse().unwrap();
                    let d = s.schedule(&key, t, &mut rng).unwrap();
                    if let Some(id) = d.dest {
                        let dest = s.dest(id);
                        prop_assert!(dest.available, "{:?} picked deleted {}", kind, dest.addr);
                        prop_assert!(dest.weight > 0, "{:?} picked weight-0 {}", kind, dest.addr);
                        if kind != SchedulerKind::Lblc {
                            prop_assert!(!dest.overloaded, "{:?} picked overloaded {}", kind, dest.addr);
                        }
                        let mut c = s.bind(id, Proto::Tcp);
                        if w > 1 { s.establish(&mut c); }
                        live.push(c);
                    }
                }
            }
        }
        for (i, d) in s.all_dests().iter().enumerate() {
            let act = live.iter().filter(|c| c.dest.index() == i && c.active).count() as i32;
            let inact = live.iter().filter(|c| c.dest.index() == i && !c.active).count() as i32;
            prop_assert_eq!((d.activeconns, d.inactconns), (act, inact));
        }
    }
}

/// The kernel's wlc/sed loops written out plainly over the public server data (seed = first
/// non-OVERLOAD server with weight > 0; a later non-OVERLOAD server replaces it on a strictly
/// smaller `overhead / weight`, compared as 64-bit cross products).
fn reference_weighted_least(
    s: &VirtualService,
    overhead: impl Fn(i32, i32) -> i64,
) -> Option<SocketAddr> {
    let mut best: Option<(SocketAddr, i64, i64)> = None;
    for (_, d) in s.iter() {
        if d.overloaded {
            continue;
        }
        let oh = overhead(d.activeconns, d.inactconns);
        let w = i64::from(d.weight);
        match best {
            None if d.weight > 0 => best = Some((d.addr, oh, w)),
            None => {}
            Some((_, boh, bw)) if boh * w > oh * bw => best = Some((d.addr, oh, w)),
            Some(_) => {}
        }
    }
    best.map(|b| b.0)
}

proptest! {
    /// The packed, four-at-a-time scan picks exactly what the plain kernel loop picks.
    #[test]
    fn wlc_and_sed_match_the_plain_kernel_loop(
        servers in prop::collection::vec((0i32..6, 0u8..5, 0u8..5, prop::bool::weighted(0.2)), 1..40),
    ) {
        let weights: Vec<i32> = servers.iter().map(|s| s.0).collect();
        for kind in [SchedulerKind::Wlc, SchedulerKind::Sed] {
            let mut s = bound_after(kind, &weights);
            let ids: Vec<_> = s.list().to_vec();
            for (id, (_, act, inact, ov)) in ids.iter().zip(servers.iter().rev()) {
                for _ in 0..*act {
                    let mut c = s.bind(*id, Proto::Tcp);
                    s.establish(&mut c);
                }
                for _ in 0..*inact {
                    s.bind(*id, Proto::Tcp);
                }
                let addr = s.dest(*id).addr;
                s.set_overload(addr, *ov).unwrap();
            }
            let want = match kind {
                SchedulerKind::Wlc => reference_weighted_least(&s, |a, i| i64::from(a) * 256 + i64::from(i)),
                _ => reference_weighted_least(&s, |a, _| i64::from(a) + 1),
            };
            let got = s.schedule(&client(1), 1.0, &mut NoRandom).unwrap().server;
            prop_assert_eq!(got, want, "{:?}", kind);
        }
    }
}
