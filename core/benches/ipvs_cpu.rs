//! CPU time per scheduling decision, 100 servers, for rr/wrr/lc/wlc/sh/mh.
//!
//! `cargo bench -p proxyscope-core --bench ipvs_cpu`. Criterion's wall-clock figures
//! (`--bench ipvs_sched`) inflate when other jobs share the cores; this one reads the thread's
//! own CPU time from `/proc/thread-self/stat` (Linux, 10 ms ticks, so it runs 20 M decisions
//! per scheduler). Same setup as `ipvs_sched`: random weights 1..=5 and 0..=3 active
//! connections per server, flag-2 set (`common/sched.rs`).

#[path = "common/sched.rs"]
mod sched;

use proxyscope_core::ipvs::{NoRandom, SchedulerKind};
use std::hint::black_box;

fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (USER_HZ = 100).
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

fn main() {
    const N: u64 = 20_000_000;
    let keys = sched::keys();
    for kind in [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
        SchedulerKind::Mh,
    ] {
        let mut s = sched::service(kind, 100);
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
