//! Walking one packet through the hooks.

use super::eval::{MatchResult, PacketCtx, eval_rule};
use super::{CtEntry, FlowKey, IndexKey, Machine, State, ct_timeout, ip_key, parse_nat_to};
use crate::rules::iptables::print::{rule_text, write_probability};
use crate::rules::iptables::{Statistic, Target};
use crate::trace::{Entry, Hook, Packet, Step, Verdict};
use std::fmt::Write;
use std::net::IpAddr;

/// One random decision made by a `-m statistic --mode random` match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// Probability that the match matches (already accounting for `!`).
    pub p_match: f64,
    pub matched: bool,
}

/// Supplies the outcome of random matches.
pub trait Chooser {
    /// Decide a `statistic --mode random` match with the kernel's fixed-point probability.
    /// Returns whether the match matches, and a note for the trace.
    fn choose(&mut self, fixed: u32, neg: bool) -> (bool, Option<String>);
}

/// A seeded sampler that draws like the kernel: a random u32, masked to 31 bits, compared with
/// the fixed-point probability (`xt_statistic`).
pub struct Sampler<R: rand::Rng>(pub R);

impl<R: rand::Rng> Chooser for Sampler<R> {
    fn choose(&mut self, fixed: u32, neg: bool) -> (bool, Option<String>) {
        let r = self.0.next_u32() & 0x7fff_ffff;
        let hit = r < fixed;
        let mut note = String::with_capacity(72);
        let _ = write!(
            note,
            "random draw {r} {} {fixed} (p = ",
            if hit { "<" } else { ">=" }
        );
        write_probability(&mut note, fixed, 10);
        note.push_str(if hit != neg {
            "): matches"
        } else {
            "): does not match"
        });
        (hit != neg, Some(note))
    }
}

/// Follows a given list of decisions, then answers "matches" (used to enumerate every branch).
pub struct Scripted {
    pub script: Vec<bool>,
    pub pos: usize,
}

impl Chooser for Scripted {
    fn choose(&mut self, _fixed: u32, _neg: bool) -> (bool, Option<String>) {
        let v = self.script.get(self.pos).copied().unwrap_or(true);
        self.pos += 1;
        (v, None)
    }
}

/// What happened to the packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub packet: Packet,
    pub dnat: Option<(IpAddr, u16)>,
    pub snat: Option<(IpAddr, u16)>,
    pub masq: bool,
    pub rules_evaluated: usize,
    pub choices: Vec<Choice>,
    pub warnings: Vec<String>,
    /// The walk went through an established conntrack entry.
    pub established: bool,
}

/// A packet to walk.
#[derive(Debug, Clone)]
pub struct WalkRequest {
    pub pkt: Packet,
    /// Generated on the node (OUTPUT path) rather than arriving (PREROUTING path).
    pub local_origin: bool,
    pub in_iface: Option<String>,
    pub now: f64,
}

enum TableResult {
    /// ACCEPT (explicit, by a NAT target, or by policy): go on to the next table / hook.
    Accept,
    Drop,
    Reject,
}

struct Walker<'a> {
    m: &'a Machine,
    effects: bool,
    state: &'a mut State,
    chooser: &'a mut dyn Chooser,
    steps: Option<Vec<Step>>,
    cx: PacketCtx<'a>,
    out: Outcome,
    frames: Vec<(usize, usize)>,
}

impl Walker<'_> {
    fn step(&mut self, s: impl FnOnce() -> Step) {
        if let Some(v) = self.steps.as_mut() {
            v.push(s());
        }
    }

    /// Run one table's built-in chain for a hook.
    fn run_table(&mut self, hook: Hook, table: &str) -> Option<TableResult> {
        let (ti, ci) = self.m.hook_chain(hook, table)?;
        self.step(|| Step::Hook {
            hook,
            table: table.to_string(),
        });
        Some(self.run_chain(ti, ci))
    }

    fn next_candidate(&self, ti: usize, ci: usize, from: usize) -> usize {
        let c = &self.m.chains[ti][ci];
        let Some(idx) = &c.index else { return from };
        let key = match idx.key {
            IndexKey::Dst => ip_key(self.cx.pkt.dst),
            IndexKey::Dport => self.cx.pkt.dport as u64,
        };
        let from32 = from as u32;
        let a = idx
            .by_value
            .get(&key)
            .and_then(|v| v.get(v.partition_point(|x| *x < from32)).copied());
        let b = idx
            .wildcard
            .get(idx.wildcard.partition_point(|x| *x < from32))
            .copied();
        match (a, b) {
            (Some(x), Some(y)) => x.min(y) as usize,
            (Some(x), None) | (None, Some(x)) => x as usize,
            (None, None) => self.m.rules.tables[ti].chains[ci].rules.len(),
        }
    }

    fn run_chain(&mut self, ti: usize, start: usize) -> TableResult {
        // (chain, next rule) frames; a goto replaces the top frame. The vector is the walker's,
        // reused by every table the walk runs.
        let mut stack = std::mem::take(&mut self.frames);
        stack.clear();
        stack.push((start, 0));
        let r = self.run_frames(ti, start, &mut stack);
        self.frames = stack;
        r
    }

    fn run_frames(
        &mut self,
        ti: usize,
        start: usize,
        stack: &mut Vec<(usize, usize)>,
    ) -> TableResult {
        let tname = &self.m.rules.tables[ti].name;
        // Names are only needed when recording; exploring walks must not allocate per rule.
        let rec = self.steps.is_some();
        let m = self.m;
        let chain_name = move |ci: usize| {
            if rec {
                m.rules.tables[ti].chains[ci].name.clone()
            } else {
                String::new()
            }
        };
        let first = chain_name(start);
        self.step(|| Step::Chain {
            table: tname.clone(),
            chain: first,
            entry: Entry::Hook,
        });
        while let Some(&(ci, pos)) = stack.last() {
            let rules = &self.m.rules.tables[ti].chains[ci].rules;
            let next = self.next_candidate(ti, ci, pos);
            if next > pos {
                let skipped = next - pos;
                self.out.rules_evaluated += skipped;
                let reason = match (rec, self.m.chains[ti][ci].index.as_ref().map(|i| i.key)) {
                    (false, _) => String::new(),
                    (true, Some(IndexKey::Dport)) => {
                        format!("destination port is not {}", self.cx.pkt.dport)
                    }
                    (true, _) => format!("destination is not {}", self.cx.pkt.dst),
                };
                let cn = chain_name(ci);
                self.step(|| Step::Skipped {
                    table: tname.clone(),
                    chain: cn,
                    first: pos + 1,
                    last: next,
                    reason,
                });
            }
            if next >= rules.len() {
                // Fell off the chain.
                stack.pop();
                let cc = &self.m.chains[ti][ci];
                if cc.builtin {
                    let policy = if cc.policy_drop {
                        Verdict::Drop
                    } else {
                        Verdict::Accept
                    };
                    let cn = chain_name(ci);
                    self.step(|| Step::ChainEnd {
                        table: tname.clone(),
                        chain: cn,
                        policy: Some(policy),
                    });
                    return if policy == Verdict::Drop {
                        TableResult::Drop
                    } else {
                        TableResult::Accept
                    };
                }
                let cn = chain_name(ci);
                self.step(|| Step::ChainEnd {
                    table: tname.clone(),
                    chain: cn,
                    policy: None,
                });
                continue;
            }
            stack.last_mut().expect("non-empty").1 = next + 1;
            let rule = &rules[next];
            self.out.rules_evaluated += 1;
            let mut notes = Vec::new();
            let mut coin_notes: Vec<String> = Vec::new();
            let chooser = &mut *self.chooser;
            let choices = &mut self.out.choices;
            let mut coin = |fixed: u32, neg: bool| {
                let (hit, note) = chooser.choose(fixed, neg);
                let p = Statistic::probability_of(fixed);
                choices.push(Choice {
                    p_match: if neg { 1.0 - p } else { p },
                    matched: hit,
                });
                if let Some(n) = note {
                    coin_notes.push(n);
                }
                hit
            };
            let res = eval_rule(
                self.m,
                rule,
                &self.cx,
                self.state,
                self.effects,
                (ti, ci, next),
                &mut coin,
                &mut notes,
                rec,
            );
            notes.extend(coin_notes);
            let (matched, failed) = match res {
                MatchResult::Matched => (true, None),
                MatchResult::Failed(f) => (false, Some(f)),
                MatchResult::Random { .. } => (false, None),
                MatchResult::Unsupported(u) => {
                    self.out.warnings.push(format!(
                        "line {}: {u}; the rule was treated as not matching, so this trace may be wrong from here",
                        rule.line
                    ));
                    (false, Some(format!("unsupported: {u}")))
                }
            };
            if self.steps.is_some() {
                let cn = chain_name(ci);
                let text = rule_text(&cn, rule);
                let note = match notes.len() {
                    0 => None,
                    1 => notes.pop(),
                    _ => Some(notes.join("; ")),
                };
                let line = (rule.line > 0).then_some(rule.line);
                self.step(|| Step::Rule {
                    table: tname.clone(),
                    chain: cn,
                    index: next + 1,
                    text,
                    line,
                    matched,
                    failed,
                    note,
                });
            }
            if !matched {
                continue;
            }
            let Some(target) = &rule.target else { continue };
            match target {
                Target::Accept => {
                    self.step(|| Step::Note {
                        text: "ACCEPT: this table lets the packet go on".into(),
                    });
                    return TableResult::Accept;
                }
                Target::Drop => return TableResult::Drop,
                Target::Reject { .. } => return TableResult::Reject,
                Target::Return => {
                    stack.pop();
                    let cn = chain_name(ci);
                    self.step(|| Step::Return {
                        table: tname.clone(),
                        chain: cn,
                    });
                    if stack.is_empty() {
                        // RETURN from a built-in chain applies its policy.
                        let cc = &self.m.chains[ti][ci];
                        return if cc.policy_drop {
                            TableResult::Drop
                        } else {
                            TableResult::Accept
                        };
                    }
                }
                Target::Jump { chain } | Target::Goto { chain } => {
                    let goto = matches!(target, Target::Goto { .. });
                    match self.m.chains[ti][ci].jump(next) {
                        Some(to) => {
                            if stack.len() > 64 {
                                self.out.warnings.push(
                                    "more than 64 nested jumps: stopped (the kernel would loop)"
                                        .into(),
                                );
                                return TableResult::Drop;
                            }
                            if goto {
                                stack.pop();
                            }
                            stack.push((to, 0));
                            let entry = if goto { Entry::Goto } else { Entry::Jump };
                            self.step(|| Step::Chain {
                                table: tname.clone(),
                                chain: chain.clone(),
                                entry,
                            });
                        }
                        None => self
                            .out
                            .warnings
                            .push(format!("jump to unknown chain {chain}: ignored")),
                    }
                }
                Target::Mark { value, mask } => {
                    let from = self.cx.pkt.mark;
                    let to = (from & !mask) ^ value;
                    self.cx.pkt.mark = to;
                    self.step(|| Step::Mark { from, to });
                }
                Target::Dnat { to, .. } => {
                    let Some((ip, port)) = parse_nat_to(to) else {
                        self.out
                            .warnings
                            .push(format!("DNAT to `{to}` not understood"));
                        return TableResult::Accept;
                    };
                    let (old, oldp) = (self.cx.pkt.dst, self.cx.pkt.dport);
                    self.cx.pkt.dst = ip;
                    if let Some(p) = port {
                        self.cx.pkt.dport = p;
                    }
                    self.cx.ct_dnat = true;
                    self.out.dnat = Some((self.cx.pkt.dst, self.cx.pkt.dport));
                    let (nd, np) = (self.cx.pkt.dst, self.cx.pkt.dport);
                    self.step(|| Step::Dnat {
                        from: join(old, oldp),
                        to: join(nd, np),
                    });
                    return TableResult::Accept;
                }
                Target::Snat { to, .. } => {
                    let Some((ip, port)) = parse_nat_to(to) else {
                        self.out
                            .warnings
                            .push(format!("SNAT to `{to}` not understood"));
                        return TableResult::Accept;
                    };
                    self.snat(ip, port, false);
                    return TableResult::Accept;
                }
                Target::Masquerade { random_fully, .. } => {
                    let addr = self.m.node.masquerade_source(self.cx.pkt.dst);
                    match addr {
                        Some(a) => {
                            self.snat(a, None, true);
                            if *random_fully {
                                self.step(|| Step::Note {
                                    text: "--random-fully: the source port is picked at random, not kept".into(),
                                });
                            }
                        }
                        None => self
                            .out
                            .warnings
                            .push("MASQUERADE: the node has no address of this family".into()),
                    }
                    return TableResult::Accept;
                }
                Target::Log { prefix, .. } => {
                    self.step(|| Step::Note {
                        text: format!(
                            "LOG: the kernel logs the packet{}",
                            prefix
                                .as_ref()
                                .map(|p| format!(" with prefix {p:?}"))
                                .unwrap_or_default()
                        ),
                    });
                }
                Target::Unknown { name, .. } => {
                    self.out.warnings.push(format!(
                        "line {}: target {name} is not modelled; assumed to let the packet continue",
                        rule.line
                    ));
                }
            }
        }
        TableResult::Accept
    }

    /// The routing decision for the (possibly DNATed) destination: local delivery or not.
    fn route(&mut self, local_origin: bool) -> bool {
        let local = self.m.node.is_local(self.cx.pkt.dst);
        let dst = self.cx.pkt.dst;
        self.step(|| Step::Route {
            local,
            note: match (local_origin, local) {
                (true, true) => format!("routing (re-done after DNAT): {dst} is local: the packet loops back to this node"),
                (true, false) => format!("routing (re-done after DNAT): {dst} is not local: it leaves the node"),
                (false, true) => format!("routing: {dst} is an address of this node: deliver locally (INPUT)"),
                (false, false) => format!("routing: {dst} is not local: forward it (FORWARD)"),
            },
        });
        local
    }

    fn snat(&mut self, ip: IpAddr, port: Option<u16>, masquerade: bool) {
        let (old, oldp) = (self.cx.pkt.src, self.cx.pkt.sport);
        self.cx.pkt.src = ip;
        if let Some(p) = port {
            self.cx.pkt.sport = p;
        }
        self.cx.ct_snat = true;
        self.out.snat = Some((self.cx.pkt.src, self.cx.pkt.sport));
        self.out.masq = true;
        let (ns, np) = (self.cx.pkt.src, self.cx.pkt.sport);
        self.step(|| Step::Snat {
            from: join(old, oldp),
            to: join(ns, np),
            masquerade,
        });
    }

    /// Run the tables of a hook in priority order; `nat` only for a new connection.
    fn run_hook(&mut self, hook: Hook, tables: &[&str]) -> Option<Verdict> {
        for t in tables {
            if *t == "nat" && !self.cx.ct_new {
                continue;
            }
            match self.run_table(hook, t) {
                None | Some(TableResult::Accept) => {}
                Some(TableResult::Drop) => return Some(Verdict::Drop),
                Some(TableResult::Reject) => return Some(Verdict::Reject),
            }
        }
        None
    }
}

fn join(ip: IpAddr, port: u16) -> String {
    crate::k8s::ip::join_host_port(ip, port)
}

/// Walk one packet. `record` collects the steps; `effects` applies what the packet changes
/// (conntrack entry, `-m recent` lists, nth counters) to `state` — exploring walks leave it off.
pub fn walk(
    m: &Machine,
    req: &WalkRequest,
    state: &mut State,
    chooser: &mut dyn Chooser,
    record: bool,
    effects: bool,
) -> (Outcome, Vec<Step>) {
    // kube-proxy's endpoint chains draw once per endpoint but the last.
    walk_reusing(
        m,
        req,
        state,
        chooser,
        record,
        effects,
        Vec::with_capacity(16),
    )
}

/// [`walk`] recording its random decisions into `choices` (cleared first): the outcome
/// enumeration hands the previous walk's vector back instead of allocating one per walk.
pub(crate) fn walk_reusing(
    m: &Machine,
    req: &WalkRequest,
    state: &mut State,
    chooser: &mut dyn Chooser,
    record: bool,
    effects: bool,
    mut choices: Vec<Choice>,
) -> (Outcome, Vec<Step>) {
    choices.clear();
    let key = FlowKey {
        proto: req.pkt.proto,
        src: req.pkt.src,
        sport: req.pkt.sport,
        dst: req.pkt.dst,
        dport: req.pkt.dport,
    };
    let existing = state
        .conntrack
        .get(&key)
        .filter(|e| req.now - e.last_seen <= ct_timeout(req.pkt.proto))
        .cloned();
    let ct_new = existing.is_none();
    let mut w = Walker {
        m,
        effects,
        state,
        chooser,
        // A traced packet to a Service records ~50 steps; growing the vector was a visible cost.
        steps: record.then(|| Vec::with_capacity(64)),
        cx: PacketCtx {
            pkt: req.pkt,
            in_iface: req.in_iface.as_deref(),
            out_iface: None,
            ct_new,
            ct_dnat: false,
            ct_snat: false,
            now: req.now,
        },
        out: Outcome {
            verdict: Verdict::Accept,
            packet: req.pkt,
            dnat: None,
            snat: None,
            masq: false,
            rules_evaluated: 0,
            choices,
            warnings: Vec::new(),
            established: !ct_new,
        },
        frames: Vec::with_capacity(8),
    };
    w.step(|| Step::Conntrack {
        established: !ct_new,
        note: match &existing {
            Some(e) => format!(
                "conntrack: this flow is already tracked (ESTABLISHED); its NAT{} is replayed and the nat table is skipped",
                e.dnat
                    .map(|(a, p)| format!(" (DNAT to {})", join(a, p)))
                    .unwrap_or_default()
            ),
            None => "conntrack: first packet of a new connection (NEW): the nat table decides its NAT"
                .into(),
        },
    });

    let replay_dnat = |w: &mut Walker| {
        if let Some((ip, port)) = existing.as_ref().and_then(|e| e.dnat) {
            let (old, oldp) = (w.cx.pkt.dst, w.cx.pkt.dport);
            w.cx.pkt.dst = ip;
            w.cx.pkt.dport = port;
            w.cx.ct_dnat = true;
            w.out.dnat = Some((ip, port));
            w.step(|| Step::Dnat {
                from: join(old, oldp),
                to: join(ip, port),
            });
        }
    };
    let replay_snat = |w: &mut Walker| {
        if let Some((ip, port)) = existing.as_ref().and_then(|e| e.snat) {
            let (old, oldp) = (w.cx.pkt.src, w.cx.pkt.sport);
            w.cx.pkt.src = ip;
            w.cx.pkt.sport = port;
            w.cx.ct_snat = true;
            w.out.snat = Some((ip, port));
            w.out.masq = true;
            w.step(|| Step::Snat {
                from: join(old, oldp),
                to: join(ip, port),
                masquerade: true,
            });
        }
    };

    let verdict = 'path: {
        if req.local_origin {
            if let Some(v) = w.run_hook(Hook::Output, &["raw", "mangle", "nat"]) {
                break 'path v;
            }
            replay_dnat(&mut w);
            let local = w.route(true);
            if let Some(v) = w.run_hook(Hook::Output, &["filter", "security"]) {
                break 'path v;
            }
            if let Some(v) = w.run_hook(Hook::Postrouting, &["mangle", "nat"]) {
                break 'path v;
            }
            replay_snat(&mut w);
            if local {
                if let Some(v) = w.run_hook(Hook::Input, &["mangle", "filter", "security"]) {
                    break 'path v;
                }
                Verdict::Accept
            } else {
                Verdict::Forwarded
            }
        } else {
            if let Some(v) = w.run_hook(Hook::Prerouting, &["raw", "mangle", "nat"]) {
                break 'path v;
            }
            replay_dnat(&mut w);
            let local = w.route(false);
            if local {
                if let Some(v) = w.run_hook(Hook::Input, &["mangle", "filter", "security", "nat"]) {
                    break 'path v;
                }
                replay_snat(&mut w);
                Verdict::Accept
            } else {
                if let Some(v) = w.run_hook(Hook::Forward, &["mangle", "filter", "security"]) {
                    break 'path v;
                }
                if let Some(v) = w.run_hook(Hook::Postrouting, &["mangle", "nat"]) {
                    break 'path v;
                }
                replay_snat(&mut w);
                Verdict::Forwarded
            }
        }
    };
    w.step(|| Step::Verdict { verdict });
    w.out.verdict = verdict;
    w.out.packet = w.cx.pkt;
    let accepted = !matches!(verdict, Verdict::Drop | Verdict::Reject);
    // Conntrack confirms an entry only when the first packet leaves the stack.
    if accepted && effects {
        let entry = w.state.conntrack.entry(key).or_insert(CtEntry {
            dnat: w.out.dnat,
            snat: w.out.snat,
            created_at: req.now,
            last_seen: req.now,
            mark: w.cx.pkt.mark,
        });
        entry.last_seen = req.now;
    }
    let steps = w.steps.take().unwrap_or_default();
    (w.out, steps)
}
