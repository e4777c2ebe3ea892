//! IPVS mode at cluster scale: generating what kube-proxy programs (virtual servers, ipsets,
//! iptables) and tracing packets through a session (netfilter → IPVS → netfilter).
//!
//! `cargo bench -p proxyscope-core --bench ipvs_mode`. The cluster: N ClusterIP+NodePort
//! Services with 3 endpoints each (N = 100 and 1,000), one node with one address.
//! Targets: generation of 1,000 Services well under 100 ms; a traced packet (all outcomes plus
//! the recorded walk) under 100 µs whatever the number of Services, because IPVS mode's
//! iptables rules do not grow with the Services (the ipsets do).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use proxyscope_core::api::{self, Session, TraceRequest};
use proxyscope_core::k8s::Scenario;
use proxyscope_core::proxier::ipvs::generate_all;
use proxyscope_core::trace::Proto;
use std::fmt::Write;
use std::hint::black_box;

fn cluster(n: usize) -> Scenario {
    let mut y = String::from(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nclusterCIDR: 10.0.0.0/16\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 192.168.0.2}]}\n",
    );
    for i in 0..n {
        let (a, b) = (i / 250, i % 250 + 1);
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.{a}.{b}\n  ports: [{{name: http, port: 80, protocol: TCP, nodePort: {}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-x, namespace: default, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nendpoints:\n- {{addresses: [10.1.{a}.{b}], nodeName: node-2}}\n- {{addresses: [10.2.{a}.{b}], nodeName: node-3}}\n- {{addresses: [10.3.{a}.{b}], nodeName: node-4}}\nports: [{{name: http, port: 8080, protocol: TCP}}]\n",
            30000 + i
        );
    }
    api::load_scenario(&y).expect("synthetic cluster").scenario
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ipvs_mode");
    g.sample_size(20);
    for n in [100usize, 1000] {
        let s = cluster(n);
        g.bench_with_input(BenchmarkId::new("generate", n), &s, |b, s| {
            b.iter(|| black_box(generate_all(s)))
        });
        g.bench_with_input(BenchmarkId::new("session_new", n), &s, |b, s| {
            b.iter(|| black_box(Session::new_ipvs(s)))
        });
        let mut sess = Session::new_ipvs(&s);
        let mut sport = 1024u16;
        g.bench_function(BenchmarkId::new("trace_new_connection", n), |b| {
            b.iter(|| {
                sport = if sport == u16::MAX { 1024 } else { sport + 1 };
                black_box(sess.trace(&TraceRequest {
                    src: "203.0.113.10".parse().unwrap(),
                    dst: "10.96.0.1".parse().unwrap(),
                    dport: 80,
                    proto: Proto::Tcp,
                    sport: Some(sport),
                    seed: 1,
                    now: 0.0,
                }))
            })
        });
        g.bench_function(BenchmarkId::new("trace_established", n), |b| {
            b.iter(|| {
                black_box(sess.trace(&TraceRequest {
                    src: "203.0.113.10".parse().unwrap(),
                    dst: "10.96.0.1".parse().unwrap(),
                    dport: 80,
                    proto: Proto::Tcp,
                    sport: Some(1025),
                    seed: 1,
                    now: 0.0,
                }))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
