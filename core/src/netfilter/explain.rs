//! From walks to a [`Trace`]: every reachable outcome with its exact probability (by walking every
//! branch of the random matches), plus one sampled walk with all its steps.

use super::walk::{Sampler, Scripted, WalkRequest, walk, walk_reusing};
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
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut keys: Vec<OutputKey> = Vec::new();
    let mut warnings = Vec::new();
    // Depth-first over the random decisions, "matches" first, so outcomes come in rule order.
    // The pending prefixes live in one buffer as (start, len): the one popped is always the
    // last pushed, so it is the buffer's tail and is cut off once copied into the script.
    let mut prefixes: Vec<bool> = Vec::new();
    let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
    let mut script: Vec<bool> = Vec::new();
    let mut choices = Vec::with_capacity(16);
    while let Some((start, n)) = stack.pop() {
        if outcomes.len() >= MAX_OUTCOMES {
            warnings.push(format!(
                "more than {MAX_OUTCOMES} outcomes: the list is cut"
            ));
            break;
        }
        script.clear();
        script.extend_from_slice(&prefixes[start..start + n]);
        prefixes.truncate(start);
        let mut ch = Scripted { script, pos: 0 };
        // Exploring walks see the session's state but change nothing in it.
        let (mut o, _) = walk_reusing(m, req, state, &mut ch, false, false, choices);
        script = ch.script;
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
        // Push the untaken "does not match" branches, deepest last so the shallowest is next.
        for i in (n..o.choices.len()).rev() {
            if o.choices[i].matched && o.choices[i].p_match < 1.0 {
                let at = prefixes.len();
                prefixes.extend(o.choices[..i].iter().map(|c| c.matched));
                prefixes.push(false);
                stack.push((at, i + 1));
            }
        }
        choices = std::mem::take(&mut o.choices);
        if p <= 0.0 {
            continue;
        }
        let key = key_of(&o);
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
    }
    let mut sampler = Sampler(StdRng::seed_from_u64(seed));
    let (o, steps) = walk(m, req, state, &mut sampler, true, true);
    warnings.extend(o.warnings.iter().cloned());
    let chosen = Outcome {
        output: output_of(key_of(&o)),
        probability: 0.0,
        masq: o.masq,
    };
    let chosen = outcomes
        .iter()
        .find(|x| x.output == chosen.output && x.masq == chosen.masq)
        .cloned()
        .unwrap_or(chosen);
    let mut outputs: Vec<&str> = Vec::new();
    for x in &outcomes {
        if !outputs.contains(&x.output.as_str()) && !x.output.is_empty() {
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
