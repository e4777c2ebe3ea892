//! CPU time per scheduling decision, 100 servers, for rr/wrr/lc/wlc/sh/mh.
//!
//! `cargo bench -p proxyscope-core --bench ipvs_cpu`. Criterion's wall-clock figures
//! (`--bench ipvs_sched`) inflate when other jobs share the cores; this one reads the thread's
//! own CPU time from `/proc/thread-self/stat` (Linux, 10 ms ticks, so it runs 20 M decisions
//! per scheduler). Same setup as `ipvs_sched`: random weights 1..=5 and 0..=3 active
//! connections per server, flag-2 set.

use proxyscope_core::ipvs::{
    ConnKey, NoRandom, RandomSource, SchedFlags, SchedulerKind, SplitMix64, Sysctl, VirtualService,
};
use proxyscope_core::trace::Proto;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (USER_HZ = 100).
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

fn main() {
    const N: u64 = 20_000_000;
    let vip: SocketAddr = "10.96.0.1:80".parse().unwrap();
    let keys: Vec<ConnKey> = (0..1024u32)
        .map(|i| ConnKey {
            proto: Proto::Tcp,
            client: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(0xC633_6400 + i * 7)),
                (1024 + i * 13) as u16,
            ),
            dst: vip,
        })
        .collect();
    for kind in [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
        SchedulerKind::Mh,
    ] {
        let mut s = VirtualService::new(
            vip,
            Proto::Tcp,
            SchedulerKind::Lc,
            SchedFlags::default(),
            Sysctl::default(),
            0.0,
        );
        let mut rng = SplitMix64(42);
        for i in 0..100u32 {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A00_0001 + i)), 8080);
            let id = s
                .add_dest(addr, 1 + rng.below(5).unwrap() as i32, 0, 0, 0.0)
                .unwrap();
            for _ in 0..rng.below(4).unwrap() {
                let mut c = s.bind(id, Proto::Tcp);
                s.establish(&mut c);
            }
        }
        s.set_scheduler(kind, SchedFlags(SchedFlags::FLAG_2), 0.0);
        let Some(t0) = cpu_seconds() else {
            println!("no /proc/thread-self/stat: run ipvs_sched instead");
            return;
        };
        for i in 0..N {
            black_box(
                s.schedule(black_box(&keys[(i & 1023) as usize]), 1.0, &mut NoRandom)
                    .unwrap()
                    .dest,
            );
        }
        let dt = cpu_seconds().unwrap() - t0;
        println!(
            "ipvs_cpu/{:<4} 100 servers: {:6.1} ns/decision CPU, {:6.1} M decisions/s",
            kind.name(),
            dt * 1e9 / N as f64,
            N as f64 / dt / 1e6
        );
    }
}
