//! From walks to a [`Trace`]: every reachable outcome with its exact probability (by walking every
//! branch of the random matches), plus one sampled walk with all its steps.

use super::walk::{Sampler, WalkRequest, explore, walk};
use super::{Machine, State};
use crate::trace::{Outcome, Trace, Verdict};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Enumeration stops after this many outcomes (a warning says so).
pub const MAX_OUTCOMES: usize = 4096;

/// What tells two outcomes apart: the text [`output_of`] gives, without building it for every
/// explored walk.
#[derive(Clone, Copy, PartialEq)]
enum OutputKey {
    Drop,
    Reject,
    Dnat(Option<(std::net::IpAddr, u16)>),
}

fn key_of(o: &super::walk::Outcome) -> OutputKey {
    match o.verdict {
        Verdict::Drop => OutputKey::Drop,
        Verdict::Reject => OutputKey::Reject,
        _ => OutputKey::Dnat(o.dnat),
    }
}

fn output_of(k: OutputKey) -> String {
    match k {
        OutputKey::Drop => "DROP".into(),
        OutputKey::Reject => "REJECT".into(),
        OutputKey::Dnat(d) => d
            .map(|(ip, p)| crate::k8s::ip::join_host_port(ip, p))
            .unwrap_or_default(),
    }
}

/// Trace one packet: explore all outcomes without changing `state`, then walk it for real (updating
/// `state`) with random matches drawn from a generator seeded with `seed`.
pub fn trace(m: &Machine, req: &WalkRequest, state: &mut State, seed: u64, mode: &str) -> Trace {
    // A Service's endpoints are its outcomes: room for a typical one without regrowing.
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(16);
    let mut keys: Vec<OutputKey> = Vec::with_capacity(16);
    let mut warnings = Vec::new();
    // Exploring walks see the session's state but change nothing in it.
    explore(m, req, state, &mut |o| {
        if outcomes.len() >= MAX_OUTCOMES {
            warnings.push(format!(
                "more than {MAX_OUTCOMES} outcomes: the list is cut"
            ));
            return false;
        }
        let p: f64 = o
            .choices
            .iter()
            .map(|c| {
                if c.matched {
                    c.p_match
                } else {
                    1.0 - c.p_match
                }
            })
            .product();
        if p <= 0.0 {
            return true;
        }
        let key = key_of(o);
        match outcomes
            .iter_mut()
            .zip(&keys)
            .find(|(x, k)| **k == key && x.masq == o.masq)
        {
            Some((x, _)) => x.probability += p,
            None => {
                outcomes.push(Outcome {
                    output: output_of(key),
                    probability: p,
                    masq: o.masq,
                });
                keys.push(key);
            }
        }
        true
    });
    let mut sampler = Sampler(StdRng::seed_from_u64(seed));
    let (o, steps) = walk(m, req, state, &mut sampler, true, true);
    warnings.extend(o.warnings.iter().cloned());
    // Outcomes are told apart by key (equal keys print equal texts), not by their strings.
    let key = key_of(&o);
    let chosen = match outcomes
        .iter()
        .zip(&keys)
        .find(|(x, k)| **k == key && x.masq == o.masq)
    {
        Some((x, _)) => x.clone(),
        None => Outcome {
            output: output_of(key),
            probability: 0.0,
            masq: o.masq,
        },
    };
    let mut outputs: Vec<&str> = Vec::with_capacity(outcomes.len());
    for (i, (x, k)) in outcomes.iter().zip(&keys).enumerate() {
        if !x.output.is_empty() && !keys[..i].contains(k) {
            outputs.push(&x.output);
        }
    }
    Trace {
        mode: mode.to_string(),
        packet: req.pkt,
        output: outputs.join(", "),
        masq: o.masq,
        outcomes,
        chosen,
        rules_evaluated: o.rules_evaluated,
        final_packet: (!matches!(o.verdict, Verdict::Drop | Verdict::Reject)).then_some(o.packet),
        verdict: o.verdict,
        steps,
        warnings,
    }
}
