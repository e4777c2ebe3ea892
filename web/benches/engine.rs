//! How long the browser-side work takes for big inputs (run natively; wasm is within ~1.5-2x):
//! building the debugger timeline of a 10,000-rule walk, narrating every step, and the share-link
//! codec with a full history and a 100 kB scenario.
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
    use proxyscope_core::trace::*;
    use proxyscope_web::state::Action;
    use proxyscope_web::{engine, i18n, share};
    use std::hint::black_box;

    fn big_trace(rules: usize) -> Trace {
        let ip = |s: &str| s.parse().unwrap();
        let packet = Packet {
            src: ip("10.0.1.5"),
            sport: 40000,
            dst: ip("10.104.14.67"),
            dport: 80,
            proto: Proto::Tcp,
            mark: 0,
        };
        let mut steps = vec![
            Step::Hook {
                hook: Hook::Prerouting,
                table: "nat".into(),
            },
            Step::Chain {
                table: "nat".into(),
                chain: "KUBE-SERVICES".into(),
                entry: Entry::Hook,
            },
        ];
        for i in 0..rules {
            steps.push(Step::Rule {
                table: "nat".into(),
                chain: "KUBE-SERVICES".into(),
                index: i + 1,
                text: format!("-A KUBE-SERVICES -d 172.30.{}.{}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-{i:016}", i / 256, i % 256).into(),
                line: Some(i + 10),
                matched: false,
                failed: Some(format!("-d 172.30.{}.{}/32", i / 256, i % 256)),
                note: None,
            });
        }
        steps.push(Step::Dnat {
            from: "10.104.14.67:80".into(),
            to: "10.0.0.2:8080".into(),
        });
        steps.push(Step::Verdict {
            verdict: Verdict::Forwarded,
        });
        let chosen = Outcome {
            output: "10.0.0.2:8080".into(),
            probability: 1.0,
            masq: false,
        };
        Trace {
            mode: "iptables".into(),
            packet,
            output: chosen.output.clone(),
            masq: false,
            outcomes: vec![chosen.clone()],
            chosen,
            rules_evaluated: rules,
            final_packet: None,
            verdict: Verdict::Forwarded,
            steps,
            warnings: vec![],
        }
    }

    fn bench(c: &mut Criterion) {
        let t = big_trace(10_000);
        c.bench_function("timeline/10k-rule walk", |b| {
            b.iter(|| engine::timeline(black_box(&t)))
        });
        c.bench_function("narrate/10k steps zh", |b| {
            b.iter(|| {
                t.steps
                    .iter()
                    .map(|s| i18n::narrate(i18n::Lang::Zh, s, &i18n::NarrCtx::default()).len())
                    .sum::<usize>()
            })
        });
        let sent: Vec<share::SentPacket> = (0..32)
            .map(|i| share::SentPacket {
                src: "10.0.1.5".parse().unwrap(),
                dst: "10.104.14.67".parse().unwrap(),
                dport: 80,
                proto: Proto::Tcp,
                sport: None,
                seed: 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i + 1),
                now: 1000.0 + i as f64,
            })
            .collect();
        let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\nspec:\n  clusterIP: 10.96.0.1\n".repeat(1500);
        let st = share::ShareState {
            scenario: Some(yaml),
            sent,
            step: 40,
            ..Default::default()
        };
        let enc = share::encode(&st);
        println!(
            "share link for a 100 kB scenario + 32 packets: {} characters",
            enc.len()
        );
        c.bench_function("app/initial state (load demo, list Pods)", |b| {
            b.iter(|| proxyscope_web::state::State::new(proxyscope_web::i18n::Lang::En, false))
        });
        c.bench_function("core/load_scenario demo", |b| {
            b.iter(|| proxyscope_web::model::load(black_box(proxyscope_web::model::DEMO)).unwrap())
        });
        c.bench_function("share/encode 100kB", |b| {
            b.iter(|| share::encode(black_box(&st)))
        });
        c.bench_function("share/decode 100kB", |b| {
            b.iter(|| share::decode(black_box(&enc)).unwrap())
        });

        // One step of the scale view (it blocks the page for this long per size), and "send
        // many" with an IPVS scheduler that keeps per-connection state.
        let mut g = c.benchmark_group("scale");
        g.sample_size(10);
        for n in [300usize, 1000] {
            g.bench_function(format!("measure {n} Services x 4 endpoints"), |b| {
                b.iter(|| proxyscope_core::scale::measure(black_box(n), 4).unwrap())
            });
        }
        g.finish();
        let mut s = proxyscope_web::state::State::new(proxyscope_web::i18n::Lang::En, false);
        s.apply(Action::SetMode(proxyscope_web::model::Mode::Ipvs));
        s.apply(Action::SetScheduler(
            proxyscope_web::model::SchedulerKind::Wlc,
        ));
        let mut g = c.benchmark_group("send many");
        g.sample_size(10);
        g.bench_function("1000 connections, IPVS wlc", |b| {
            b.iter(|| {
                s.apply(Action::SendMany {
                    n: 1000,
                    seed: 7,
                    now: 0.0,
                })
            })
        });
        g.finish();
    }

    pub fn main() {
        let mut c = Criterion::default().configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
}
