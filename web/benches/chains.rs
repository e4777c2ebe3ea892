//! The chain graph at 10,000 Services (run natively; wasm is within ~1.5-2x): building it from
//! the `iptables-save` text kube-proxy's rules give, the rows drawn with the packet's path and a
//! searched chain, and a search by Service name.
// criterion does not build for wasm32; `clippy --all-targets --target wasm32` still compiles this.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use criterion::Criterion;
    use proxyscope_core::api;
    use proxyscope_core::rules::iptables::Family;
    use proxyscope_web::chains::{ChainGraph, View};
    use std::hint::black_box;

    pub fn main() {
        let yaml = proxyscope_core::generate::large_cluster(10_000, 2);
        let s = api::load_scenario(&yaml)
            .expect("generated cluster loads")
            .scenario;
        let saved = api::iptables_rules(&s).remove(0).saved;
        let g = ChainGraph::from_text(&saved, Family::V4);
        println!(
            "chain graph: {} chains, {} rules, {} bytes of iptables-save",
            g.chain_count(),
            g.rule_count(),
            saved.len()
        );
        let svc = g.search("svc4321", 1)[0].node;
        let path = g.path_to(svc);
        let mut c = Criterion::default().configure_from_args().sample_size(10);
        c.bench_function("chains/build_10k_services", |b| {
            b.iter(|| ChainGraph::from_text(black_box(&saved), Family::V4))
        });
        c.bench_function("chains/search_10k_services", |b| {
            b.iter(|| g.search(black_box("svc4321"), 8))
        });
        c.bench_function("chains/rows_with_paths_10k_services", |b| {
            let view = View {
                packet: path.iter().copied().collect(),
                focus_path: g.path_to(svc),
                ..View::default()
            };
            b.iter(|| g.rows(black_box(&view)))
        });
        c.bench_function("chains/path_to_10k_services", |b| {
            b.iter(|| g.path_to(black_box(svc)))
        });
        c.final_summary();
    }
}
