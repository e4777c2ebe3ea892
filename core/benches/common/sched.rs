//! The scheduler benchmarks' fixture, shared by `benches/ipvs_sched.rs`, `benches/ipvs_cpu.rs`
//! and the browser benchmark in `tests/wasm_ipvs.rs` so every figure measures the same setup:
//! `n` real servers with random weights 1..=5 and 0..=3 established connections each (uneven
//! load, so the least-connection scans really compare), scheduler flag 2 set.

use proxyscope_core::ipvs::{
    ConnKey, RandomSource, SchedFlags, SchedulerKind, SplitMix64, Sysctl, VirtualService,
};
use proxyscope_core::trace::Proto;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The virtual service every benchmark schedules for.
pub const VIP: &str = "10.96.0.1:80";

pub fn service(kind: SchedulerKind, n: usize) -> VirtualService {
    let vip: SocketAddr = VIP.parse().unwrap();
    let mut s = VirtualService::new(
        vip,
        Proto::Tcp,
        SchedulerKind::Lc,
        SchedFlags::default(),
        Sysctl::default(),
        0.0,
    );
    let mut rng = SplitMix64(42);
    for i in 0..n {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i as u32 + 1)), 8080);
        let w = 1 + rng.below(5).unwrap() as i32;
        let id = s.add_dest(addr, w, 0, 0, 0.0).unwrap();
        for _ in 0..rng.below(4).unwrap() {
            let mut c = s.bind(id, Proto::Tcp);
            s.establish(&mut c);
        }
    }
    s.set_scheduler(kind, SchedFlags(SchedFlags::FLAG_2), 0.0);
    s
}

/// 1,024 distinct clients of [`VIP`], cycled through by the benchmarks.
pub fn keys() -> Vec<ConnKey> {
    (0..1024u32)
        .map(|i| ConnKey {
            proto: Proto::Tcp,
            client: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(0xC633_6400 + i * 7)),
                (1024 + i * 13) as u16,
            ),
            dst: VIP.parse().unwrap(),
        })
        .collect()
}
