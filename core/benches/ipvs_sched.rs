//! Scheduling decisions per second and the mh table rebuild.
//!
//! `cargo bench -p proxyscope-core --bench ipvs_sched` prints time per decision and
//! decisions/s (criterion "thrpt"). Targets: >= 10 M decisions/s with 100 servers for
//! rr/wrr/lc/wlc/sh/mh; mh 4093-entry rebuild < 1 ms.
//!
//! mh with 10,000 servers: more servers than the 4093 table entries, so the kernel refuses the
//! rebuild and the table stays empty (see `ip_vs_mh_reassign`); that figure is the empty-table
//! lookup. On a loaded machine wall-clock figures inflate; `--bench ipvs_cpu` reports CPU time.

#[path = "common/sched.rs"]
mod sched;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use proxyscope_core::ipvs::{NoRandom, SchedulerKind};
use std::hint::black_box;

fn schedule(c: &mut Criterion) {
    let keys = sched::keys();
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
            let mut s = sched::service(kind, n);
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
        let mut s = sched::service(SchedulerKind::Mh, n);
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
