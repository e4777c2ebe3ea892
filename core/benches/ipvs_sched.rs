//! Scheduling decisions per second and the mh table rebuild.
//!
//! `cargo bench -p proxyscope-core --bench ipvs_sched` prints time per decision and
//! decisions/s (criterion "thrpt"). Targets: >= 10 M decisions/s with 100 servers for
//! rr/wrr/lc/wlc/sh/mh; mh 4093-entry rebuild < 1 ms.
//!
//! mh with 10,000 servers: more servers than the 4093 table entries, so the kernel refuses the
//! rebuild and the table stays empty (see `ip_vs_mh_reassign`); that figure is the empty-table
//! lookup. On a loaded machine wall-clock figures inflate; `--bench ipvs_cpu` reports CPU time.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use proxyscope_core::ipvs::{
    ConnKey, NoRandom, SchedFlags, SchedulerKind, SplitMix64, Sysctl, VirtualService,
};
use proxyscope_core::trace::Proto;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn service(kind: SchedulerKind, n: usize) -> VirtualService {
    let vip: SocketAddr = "10.96.0.1:80".parse().unwrap();
    let mut s = VirtualService::new(
        vip,
        Proto::Tcp,
        SchedulerKind::Lc,
        SchedFlags::default(),
        Sysctl::default(),
        0.0,
    );
    let mut rng = SplitMix64(42);
    use proxyscope_core::ipvs::RandomSource;
    for i in 0..n {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i as u32 + 1)), 8080);
        let w = 1 + rng.below(5).unwrap() as i32;
        let id = s.add_dest(addr, w, 0, 0, 0.0).unwrap();
        // Uneven load so least-connection scans really compare.
        for _ in 0..rng.below(4).unwrap() {
            let mut c = s.bind(id, Proto::Tcp);
            s.establish(&mut c);
        }
    }
    s.set_scheduler(kind, SchedFlags(SchedFlags::FLAG_2), 0.0);
    s
}

fn keys() -> Vec<ConnKey> {
    (0..1024u32)
        .map(|i| ConnKey {
            proto: Proto::Tcp,
            client: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(0xC633_6400 + i * 7)),
                (1024 + i * 13) as u16,
            ),
            dst: "10.96.0.1:80".parse().unwrap(),
        })
        .collect()
}

fn schedule(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("ipvs_schedule");
    g.throughput(Throughput::Elements(1));
    for kind in [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
        SchedulerKind::Mh,
    ] {
        for n in [100usize, 10_000] {
            let mut s = service(kind, n);
            let mut i = 0usize;
            g.bench_with_input(BenchmarkId::new(kind.name(), n), &n, |b, _| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    black_box(
                        s.schedule(black_box(&keys[i]), 1.0, &mut NoRandom)
                            .unwrap()
                            .dest,
                    )
                })
            });
        }
    }
    g.finish();
}

fn mh_rebuild(c: &mut Criterion) {
    let mut g = c.benchmark_group("ipvs_mh_rebuild");
    for n in [3usize, 100, 1000] {
        let mut s = service(SchedulerKind::Mh, n);
        let addr = s.dest(s.list()[0]).addr;
        let mut w = 1;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                // An edit runs upd_dest: full permutation + population of the 4093 entries.
                w = w % 7 + 1;
                s.edit_dest(addr, w, 0, 0, 1.0).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, schedule, mh_rebuild);
criterion_main!(benches);
