//! iptables mode at cluster scale (issue 3): generating kube-proxy's restore payload, parsing an
//! `iptables-save` dump of it, and tracing one packet to the first and the last Service.
//!
//! `cargo bench -p proxyscope-core --bench iptables`. The cluster is `generate::large_cluster`
//! (N Services x 10 endpoints, N = 1,000 and 10,000), the one `proxyscope bench` measures.
//! Targets at 10,000 Services: generate < 100 ms, parse (to the model, and to the compact
//! program a session keeps) < 150 ms, a traced packet (every
//! outcome plus the recorded walk) < 15 µs. `proxyscope bench` prints the same numbers next to
//! their references (a line count, iptables-restore) and the retained memory.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use proxyscope_core::api::{self, Session, TraceRequest};
use proxyscope_core::netfilter::program::Program;
use proxyscope_core::proxier::iptables as ipt_mode;
use proxyscope_core::rules::iptables::{Family, parse};
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("iptables");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    for n in [1000usize, 10_000] {
        let yaml = proxyscope_core::generate::large_cluster(n, 10);
        let s = api::load_scenario(&yaml)
            .expect("generated cluster")
            .scenario;
        g.bench_with_input(BenchmarkId::new("generate", n), &s, |b, s| {
            b.iter(|| black_box(ipt_mode::generate(s, Family::V4)))
        });
        let saved = ipt_mode::saved_text(&ipt_mode::generate(&s, Family::V4));
        g.bench_with_input(BenchmarkId::new("parse", n), &saved, |b, t| {
            b.iter(|| black_box(parse(t, Family::V4)))
        });
        // The same dump straight into the compact program a session keeps.
        g.bench_with_input(BenchmarkId::new("parse_program", n), &saved, |b, t| {
            b.iter(|| black_box(Program::parse(t, Family::V4)))
        });
        let targets = api::service_targets(&s);
        let src = api::client_presets(&s)
            .first()
            .map(|c| c.src)
            .expect("a client preset");
        let mut sess = Session::new(&s);
        for (label, t) in [
            (
                "trace_first",
                targets.iter().find(|t| t.kind == "cluster_ip"),
            ),
            (
                "trace_last",
                targets.iter().rfind(|t| t.kind == "cluster_ip"),
            ),
        ] {
            let t = t.expect("a ClusterIP").clone();
            let req = TraceRequest {
                src,
                dst: t.dst,
                dport: t.dport,
                proto: t.proto,
                sport: Some(40000),
                seed: 1,
                now: 0.0,
            };
            g.bench_function(BenchmarkId::new(label, n), |b| {
                b.iter(|| {
                    // Every packet is a connection's first: the nat table runs.
                    sess.state = Default::default();
                    black_box(sess.trace(&req))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
