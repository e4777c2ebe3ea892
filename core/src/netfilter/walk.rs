//! Walking one packet through the hooks.

use super::eval::{MatchResult, PacketCtx, eval_rule, field};
use super::{CtEntry, FlowKey, IndexKey, Machine, State, ct_timeout};
use crate::rules::iptables::Statistic;
use crate::rules::iptables::print::write_probability;
use crate::rules::iptables::view::{RuleView, TargetRef};
use crate::trace::{Entry, Hook, Packet, Shared, Step, Verdict};
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
    /// A random number for a random NAT port (`--random-fully`); `None` keeps the port
    /// (outcome enumeration: the port changes no outcome).
    fn draw(&mut self) -> Option<u32> {
        None
    }
}

/// A seeded sampler that draws like the kernel: a random u32, masked to 31 bits, compared with
/// the fixed-point probability (`xt_statistic`).
pub struct Sampler<R: rand::Rng>(pub R);

impl<R: rand::Rng> Chooser for Sampler<R> {
    fn draw(&mut self) -> Option<u32> {
        Some(self.0.next_u32())
    }
    fn choose(&mut self, fixed: u32, neg: bool) -> (bool, Option<String>) {
        let r = self.0.next_u32() & 0x7fff_ffff;
        let hit = r < fixed;
        let mut note = String::with_capacity(72);
        // Numbers through itoa: a traced packet to a Service makes one draw per endpoint.
        let mut num = itoa::Buffer::new();
        note.push_str("random draw ");
        note.push_str(num.format(r));
        note.push_str(if hit { " < " } else { " >= " });
        note.push_str(num.format(fixed));
        note.push_str(" (p = ");
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
    /// br_netfilter's bridge info (`-m physdev`), when the packet came in through a bridge port.
    pub bridge: Option<super::eval::BridgeInfo>,
    /// The IPVS connection the packet belongs to (`-m ipvs`), once IPVS has handled it.
    pub ipvs: Option<super::eval::IpvsConn>,
}

#[derive(Clone, Copy)]
enum TableResult {
    /// ACCEPT (explicit, by a NAT target, or by policy): go on to the next table / hook.
    Accept,
    Drop,
    Reject,
}

struct Walker<'a, 'r> {
    m: &'a Machine,
    effects: bool,
    state: &'a mut State,
    chooser: &'a mut dyn Chooser,
    steps: Option<Vec<Step>>,
    cx: PacketCtx<'r>,
    out: Outcome,
    frames: Vec<(usize, usize)>,
    /// The conntrack entry of an established flow (its NAT is replayed).
    existing: Option<CtEntry>,
    local_origin: bool,
    /// Position in the path ([`LOCAL_PATH`] / [`ARRIVING_PATH`]).
    pc: usize,
    /// The routing decision, once made: the destination is local.
    local: Option<bool>,
    /// Exploring by forking ([`explore`]): random matches answer "matches" and leave the other
    /// answer here as a branch to resume; `None` asks the chooser instead.
    forks: Option<Vec<Fork<'r>>>,
    /// Scratch for printing a recorded rule's text.
    text_buf: String,
    /// The chain a recorded step named last: a chain's entry, its rules and its end name it in a
    /// row, so they share one lookup in the machine's (locked, hashed) text cache.
    chain_name: Option<(usize, usize, Shared)>,
    /// What the current table run wrote: [`field`] bits, plus [`OUT_DNAT`] / [`OUT_SNAT`].
    writes: u16,
    /// Exploring walks: table runs to reuse (shared by every branch of one packet).
    memo: Option<Vec<Memo<'r>>>,
    /// Exploring walks: vectors of finished branches, for the next forks to fill.
    spare: Spare,
}

/// Emptied frame and choice vectors kept for reuse: each fork needs one of each and each
/// finished branch gives them back, so a Service's n endpoints cost no allocation per branch.
#[derive(Default)]
struct Spare {
    frames: Vec<Vec<(usize, usize)>>,
    choices: Vec<Vec<Choice>>,
}

/// The run set the outcome's DNAT / SNAT (and masquerade flag).
const OUT_DNAT: u16 = 1 << 14;
const OUT_SNAT: u16 = 1 << 15;

/// At most this many table runs are kept per explored packet.
const MEMO_MAX: usize = 64;

/// A table run of an exploring walk that made no random decision, as a function of the packet
/// facts it read. Branches of one packet differ only after their random match (a different
/// endpoint's DNAT): the filter and POSTROUTING tables they all run next read the mark and
/// conntrack state but not the new destination, so one run serves every branch. Reuse is
/// sound because a run's every step depends only on the facts it read (the state is not
/// written while exploring), and every write is a constant or a function of facts it read:
/// the same read facts replay the same rules, writes, warnings and verdict.
struct Memo<'r> {
    /// Position in the path: which hook and table.
    pc: usize,
    reads: u16,
    before: PacketCtx<'r>,
    writes: u16,
    after: PacketCtx<'r>,
    dnat: Option<(IpAddr, u16)>,
    snat: Option<(IpAddr, u16)>,
    evaluated: usize,
    warnings: Vec<String>,
    result: TableResult,
}

/// The facts in `mask` are equal in both contexts.
fn same_facts(mask: u16, a: &PacketCtx, b: &PacketCtx) -> bool {
    let (p, q) = (&a.pkt, &b.pkt);
    let eq = |bit: u16, same: bool| mask & bit == 0 || same;
    eq(field::SRC, p.src == q.src)
        && eq(field::DST, p.dst == q.dst)
        && eq(field::SPORT, p.sport == q.sport)
        && eq(field::DPORT, p.dport == q.dport)
        && eq(field::PROTO, p.proto == q.proto)
        && eq(field::MARK, p.mark == q.mark)
        && eq(field::IN_IFACE, a.in_iface == b.in_iface)
        && eq(field::OUT_IFACE, a.out_iface == b.out_iface)
        && eq(
            field::CT,
            (a.ct_new, a.ct_dnat, a.ct_snat) == (b.ct_new, b.ct_dnat, b.ct_snat),
        )
        && eq(field::BRIDGE, a.bridge == b.bridge)
        && eq(field::IPVS, a.ipvs == b.ipvs)
}

/// Copy the facts in `mask` from `from` into `to`.
fn copy_facts(mask: u16, from: &PacketCtx, to: &mut PacketCtx) {
    let f = &from.pkt;
    let t = &mut to.pkt;
    if mask & field::SRC != 0 {
        t.src = f.src;
    }
    if mask & field::DST != 0 {
        t.dst = f.dst;
    }
    if mask & field::SPORT != 0 {
        t.sport = f.sport;
    }
    if mask & field::DPORT != 0 {
        t.dport = f.dport;
    }
    if mask & field::MARK != 0 {
        t.mark = f.mark;
    }
    // NAT marks the connection (`--ctstate DNAT` / `SNAT` from then on).
    if mask & OUT_DNAT != 0 {
        to.ct_dnat = true;
    }
    if mask & OUT_SNAT != 0 {
        to.ct_snat = true;
    }
}

/// A table a hook can run; the value is its slot in [`super::HOOK_TABLES`] (a test holds the
/// two in step).
#[derive(Clone, Copy, PartialEq)]
enum Table {
    Raw = 0,
    Mangle = 1,
    Nat = 2,
    Filter = 3,
    Security = 4,
}

/// One step of a packet's path through the stack.
#[derive(Clone, Copy)]
enum Op {
    /// Run a table's built-in chain for a hook (nat only for a connection's first packet).
    Table(Hook, Table),
    /// An established flow: apply the DNAT recorded in its conntrack entry.
    ReplayDnat,
    /// The routing decision on the (possibly DNATed) destination.
    Route,
    /// An established flow: apply the SNAT recorded in its conntrack entry.
    ReplaySnat,
    /// Go to this position when the destination is not local.
    IfRemote(usize),
    Done(Verdict),
}

/// A locally generated packet: OUTPUT, routing (re-done after DNAT), POSTROUTING, then INPUT
/// when it loops back to a local address.
const LOCAL_PATH: [Op; 16] = [
    Op::Table(Hook::Output, Table::Raw),
    Op::Table(Hook::Output, Table::Mangle),
    Op::Table(Hook::Output, Table::Nat),
    Op::ReplayDnat,
    Op::Route,
    Op::Table(Hook::Output, Table::Filter),
    Op::Table(Hook::Output, Table::Security),
    Op::Table(Hook::Postrouting, Table::Mangle),
    Op::Table(Hook::Postrouting, Table::Nat),
    Op::ReplaySnat,
    Op::IfRemote(15),
    Op::Table(Hook::Input, Table::Mangle),
    Op::Table(Hook::Input, Table::Filter),
    Op::Table(Hook::Input, Table::Security),
    Op::Done(Verdict::Accept),
    Op::Done(Verdict::Forwarded),
];

/// A packet arriving on an interface: PREROUTING, routing, then INPUT (with SNAT in nat INPUT)
/// or FORWARD and POSTROUTING.
const ARRIVING_PATH: [Op; 19] = [
    Op::Table(Hook::Prerouting, Table::Raw),
    Op::Table(Hook::Prerouting, Table::Mangle),
    Op::Table(Hook::Prerouting, Table::Nat),
    Op::ReplayDnat,
    Op::Route,
    Op::IfRemote(12),
    Op::Table(Hook::Input, Table::Mangle),
    Op::Table(Hook::Input, Table::Filter),
    Op::Table(Hook::Input, Table::Security),
    Op::Table(Hook::Input, Table::Nat),
    Op::ReplaySnat,
    Op::Done(Verdict::Accept),
    Op::Table(Hook::Forward, Table::Mangle),
    Op::Table(Hook::Forward, Table::Filter),
    Op::Table(Hook::Forward, Table::Security),
    Op::Table(Hook::Postrouting, Table::Mangle),
    Op::Table(Hook::Postrouting, Table::Nat),
    Op::ReplaySnat,
    Op::Done(Verdict::Forwarded),
];

/// A branch not taken at a random match: everything needed to resume the walk after that
/// rule with the other answer, instead of walking the whole path again from the start.
///
/// "Does not match" at a rule's random match ends that rule's evaluation (the kernel stops at
/// a rule's first failing match, `ipt_do_table`), and the matches before it already held in
/// the walk that forked (exploring walks change no state): so the branch needs no second
/// evaluation of the rule, only its choices and the frames pointing past it.
struct Fork<'a> {
    pc: usize,
    local: Option<bool>,
    /// Table and chain frames, the top one pointing at the rule after the forking one.
    ti: usize,
    frames: Vec<(usize, usize)>,
    cx: PacketCtx<'a>,
    out: Outcome,
}

/// Which of one rule's random matches were free choices, in order, a bit each (kube-proxy's
/// rules have one; a rule with more than [`Answers::MAX`] is explored on its first ones only,
/// with a warning).
#[derive(Debug, Clone, Copy, Default)]
struct Answers {
    bits: u64,
    len: u32,
}

impl Answers {
    const MAX: u32 = 64;
    fn get(self, k: u32) -> bool {
        k < self.len.min(Self::MAX) && self.bits >> k & 1 == 1
    }
    fn push(&mut self, v: bool) {
        if self.len < Self::MAX {
            self.bits |= u64::from(v) << self.len;
        }
        self.len += 1;
    }
    fn any(self) -> bool {
        self.bits != 0
    }
}

impl<'a, 'r> Walker<'a, 'r> {
    /// A walker at the start of the path, from [`start`]'s packet: no effects, nothing
    /// recorded, no forking (callers switch on what they need).
    fn new(
        m: &'a Machine,
        state: &'a mut State,
        chooser: &'a mut dyn Chooser,
        req: &WalkRequest,
        (existing, cx, out): (Option<CtEntry>, PacketCtx<'r>, Outcome),
    ) -> Self {
        Walker {
            m,
            effects: false,
            state,
            chooser,
            steps: None,
            cx,
            out,
            frames: Vec::with_capacity(8),
            existing,
            local_origin: req.local_origin,
            pc: 0,
            local: None,
            forks: None,
            text_buf: String::new(),
            chain_name: None,
            writes: 0,
            memo: None,
            spare: Spare::default(),
        }
    }

    fn step(&mut self, s: impl FnOnce() -> Step) {
        if let Some(v) = self.steps.as_mut() {
            v.push(s());
        }
    }

    /// A chain's name for a recorded step (see [`Walker::chain_name`]).
    fn chain_text(&mut self, ti: usize, ci: usize) -> Shared {
        match &self.chain_name {
            Some((t, c, name)) if (*t, *c) == (ti, ci) => name.clone(),
            _ => {
                let name = self.m.chain_text(ti, ci);
                self.chain_name = Some((ti, ci, name.clone()));
                name
            }
        }
    }

    /// Record entering, leaving or returning from chain `ci` (recorded walks only: exploring
    /// walks must not name chains per rule).
    fn chain_step(&mut self, ti: usize, ci: usize, make: impl FnOnce(Shared, Shared) -> Step) {
        if self.steps.is_some() {
            let chain = self.chain_text(ti, ci);
            let table = self.m.table_text(ti);
            self.step(|| make(table, chain));
        }
    }

    /// Run one table's built-in chain `(ti, ci)` for a hook.
    fn run_table(&mut self, hook: Hook, (ti, ci): (usize, usize)) -> TableResult {
        let m = self.m;
        self.step(|| Step::Hook {
            hook,
            table: m.table_text(ti),
        });
        self.run_chain(ti, ci)
    }

    fn run_chain(&mut self, ti: usize, start: usize) -> TableResult {
        // (chain, next rule) frames; a goto replaces the top frame. The vector is the walker's,
        // reused by every table the walk runs.
        let mut stack = std::mem::take(&mut self.frames);
        stack.clear();
        stack.push((start, 0));
        self.chain_step(ti, start, |table, chain| Step::Chain {
            table,
            chain,
            entry: Entry::Hook,
        });
        let r = self.run_frames(ti, &mut stack);
        self.frames = stack;
        r
    }

    fn run_frames(&mut self, ti: usize, stack: &mut Vec<(usize, usize)>) -> TableResult {
        // Names are only needed when recording (inside `step`'s closures): exploring walks must
        // not touch them per rule.
        let rec = self.steps.is_some();
        let m = self.m;
        while let Some(&(ci, pos)) = stack.last() {
            let prog = &self.m.program;
            let n_rules = prog.chain_len(ti, ci);
            let next = prog.next_candidate(ti, ci, pos, self.cx.pkt.dst, self.cx.pkt.dport);
            // Which rules an indexed chain skips depends on the indexed field.
            match prog.index_key(ti, ci) {
                Some(IndexKey::Dst) => self.cx.saw(field::DST),
                Some(IndexKey::Dport) => self.cx.saw(field::DPORT),
                None => {}
            }
            if next > pos {
                let skipped = next - pos;
                self.out.rules_evaluated += skipped;
                let reason = match (rec, prog.index_key(ti, ci)) {
                    (false, _) => String::new(),
                    (true, Some(IndexKey::Dport)) => {
                        let mut r = String::from("destination port is not ");
                        r.push_str(itoa::Buffer::new().format(self.cx.pkt.dport));
                        r
                    }
                    (true, _) => {
                        let mut r = String::from("destination is not ");
                        crate::k8s::ip::push_ip(&mut r, self.cx.pkt.dst);
                        r
                    }
                };
                self.chain_step(ti, ci, |table, chain| Step::Skipped {
                    table,
                    chain,
                    first: pos + 1,
                    last: next,
                    reason,
                });
            }
            if next >= n_rules {
                // Fell off the chain.
                stack.pop();
                if prog.builtin(ti, ci) {
                    let policy = if prog.policy_drop(ti, ci) {
                        Verdict::Drop
                    } else {
                        Verdict::Accept
                    };
                    self.chain_step(ti, ci, |table, chain| Step::ChainEnd {
                        table,
                        chain,
                        policy: Some(policy),
                    });
                    return if policy == Verdict::Drop {
                        TableResult::Drop
                    } else {
                        TableResult::Accept
                    };
                }
                self.chain_step(ti, ci, |table, chain| Step::ChainEnd {
                    table,
                    chain,
                    policy: None,
                });
                continue;
            }
            stack.last_mut().expect("non-empty").1 = next + 1;
            let rule = prog.rule(ti, ci, next);
            self.out.rules_evaluated += 1;
            let mut notes = Vec::new();
            // The random draws' explanation (recorded walks only), without a vector per rule.
            let mut coin_note: Option<String> = None;
            let chooser = &mut *self.chooser;
            let choices_before = self.out.choices.len();
            let choices = &mut self.out.choices;
            let exploring = self.forks.is_some();
            // Random matches of this rule that were free choices (forked).
            let mut branch_at = Answers::default();
            let mut coin = |fixed: u32, neg: bool| {
                let p = Statistic::probability_of(fixed);
                let p_match = if neg { 1.0 - p } else { p };
                let hit = if exploring {
                    // Take "matches" now, keep "does not match" for later (a branch).
                    branch_at.push(p_match < 1.0);
                    true
                } else {
                    let (hit, note) = chooser.choose(fixed, neg);
                    if let Some(n) = note {
                        match &mut coin_note {
                            None => coin_note = Some(n),
                            Some(c) => {
                                c.push_str("; ");
                                c.push_str(&n);
                            }
                        }
                    }
                    hit
                };
                choices.push(Choice {
                    p_match,
                    matched: hit,
                });
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
            if branch_at.any() {
                if branch_at.len > Answers::MAX {
                    self.out.warnings.push(format!(
                        "line {}: more than {} random matches in one rule: only the first {} are explored",
                        rule.line(),
                        Answers::MAX,
                        Answers::MAX
                    ));
                }
                self.fork_at(ti, stack, choices_before, branch_at);
            }
            let (matched, failed) = match res {
                MatchResult::Matched => (true, None),
                MatchResult::Failed(f) => (false, Some(f)),
                MatchResult::Random { .. } => (false, None),
                MatchResult::Unsupported(u) => {
                    self.out.warnings.push(format!(
                        "line {}: {u}; the rule was treated as not matching, so this trace may be wrong from here",
                        rule.line()
                    ));
                    (false, Some(format!("unsupported: {u}")))
                }
            };
            if self.steps.is_some() {
                let text = m.rule_text(ti, ci, next, &mut self.text_buf);
                let chain = self.chain_text(ti, ci);
                let note = match (notes.len(), coin_note) {
                    (0, c) => c,
                    (1, None) => notes.pop(),
                    (_, c) => Some(notes.into_iter().chain(c).collect::<Vec<_>>().join("; ")),
                };
                let line = (rule.line() > 0).then_some(rule.line());
                self.step(|| Step::Rule {
                    table: m.table_text(ti),
                    chain,
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
            let Some(target) = rule.target() else {
                continue;
            };
            match target {
                TargetRef::Accept => {
                    self.step(|| Step::Note {
                        text: "ACCEPT: this table lets the packet go on".into(),
                    });
                    return TableResult::Accept;
                }
                TargetRef::Drop => return TableResult::Drop,
                TargetRef::Reject { .. } => return TableResult::Reject,
                TargetRef::Return => {
                    stack.pop();
                    self.chain_step(ti, ci, |table, chain| Step::Return { table, chain });
                    if stack.is_empty() {
                        // RETURN from a built-in chain applies its policy.
                        return if self.m.program.policy_drop(ti, ci) {
                            TableResult::Drop
                        } else {
                            TableResult::Accept
                        };
                    }
                }
                TargetRef::Jump { chain, to } | TargetRef::Goto { chain, to } => {
                    let goto = matches!(target, TargetRef::Goto { .. });
                    match to {
                        Some(to) => {
                            let to = to as usize;
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
                            self.chain_step(ti, to, |table, chain| Step::Chain {
                                table,
                                chain,
                                entry,
                            });
                        }
                        None => self
                            .out
                            .warnings
                            .push(format!("jump to unknown chain {chain}: ignored")),
                    }
                }
                TargetRef::Mark { value, mask } => {
                    self.cx.saw(field::MARK);
                    self.writes |= field::MARK;
                    let from = self.cx.pkt.mark;
                    let to = (from & !mask) ^ value;
                    self.cx.pkt.mark = to;
                    self.step(|| Step::Mark { from, to });
                }
                TargetRef::Dnat { to, .. } => {
                    let Some((ip, port)) = to.dest() else {
                        self.out
                            .warnings
                            .push(format!("DNAT to `{to}` not understood"));
                        return TableResult::Accept;
                    };
                    let (old, oldp) = (self.cx.pkt.dst, self.cx.pkt.dport);
                    self.cx.pkt.dst = ip;
                    self.writes |= field::DST | OUT_DNAT;
                    if let Some(p) = port {
                        self.cx.pkt.dport = p;
                        self.writes |= field::DPORT;
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
                TargetRef::Snat { to, .. } => {
                    let Some((ip, port)) = to.dest() else {
                        self.out
                            .warnings
                            .push(format!("SNAT to `{to}` not understood"));
                        return TableResult::Accept;
                    };
                    self.snat(ip, port, false);
                    return TableResult::Accept;
                }
                TargetRef::Masquerade { random_fully, .. } => {
                    // The source address follows the route to the destination; the port
                    // class follows the old source port.
                    self.cx.saw(field::DST | field::SPORT);
                    let addr = self.m.node.masquerade_source(self.cx.pkt.dst);
                    match addr {
                        Some(a) => {
                            let old = self.cx.pkt.sport;
                            let (lo, hi) = random_port_class(old);
                            // nf_nat_l4proto_unique_tuple: with NF_NAT_RANGE_PROTO_RANDOM_FULLY
                            // and no --to-ports the port is lo + random % size within the old
                            // port's class (the next one if that tuple is taken; this model
                            // holds no competing flow). Without it the kernel keeps a free port.
                            let port = if random_fully {
                                self.chooser
                                    .draw()
                                    .map(|r| lo + (r % u32::from(hi - lo + 1)) as u16)
                            } else {
                                None
                            };
                            self.snat(a, port, true);
                            if random_fully {
                                self.step(|| Step::Note {
                                    text: match port {
                                        Some(p) => format!(
                                            "--random-fully: the source port is picked at random, not kept ({old} became {p}, drawn from {lo}-{hi})"
                                        ),
                                        None => "--random-fully: the source port is picked at random, not kept".into(),
                                    },
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
                TargetRef::Log { prefix, .. } => {
                    self.step(|| Step::Note {
                        text: format!(
                            "LOG: the kernel logs the packet{}",
                            prefix
                                .map(|p| format!(" with prefix {p:?}"))
                                .unwrap_or_default()
                        ),
                    });
                }
                TargetRef::Unknown { name, .. } => {
                    self.out.warnings.push(format!(
                        "line {}: target {name} is not modelled; assumed to let the packet continue",
                        rule.line()
                    ));
                }
            }
        }
        TableResult::Accept
    }

    /// [`Walker::run_table`] for an exploring walk: reuse an earlier branch's run of this table
    /// when the packet agrees on every fact that run read, else run it and keep it if it made
    /// no random decision.
    fn run_table_memo(&mut self, hook: Hook, at: (usize, usize)) -> TableResult {
        let pc = self.pc;
        let memo = self.memo.as_ref().expect("exploring walk");
        if let Some(e) = memo
            .iter()
            .find(|e| e.pc == pc && same_facts(e.reads, &e.before, &self.cx))
        {
            copy_facts(e.writes, &e.after, &mut self.cx);
            if e.writes & OUT_DNAT != 0 {
                self.out.dnat = e.dnat;
            }
            if e.writes & OUT_SNAT != 0 {
                self.out.snat = e.snat;
                self.out.masq = true;
            }
            self.out.rules_evaluated += e.evaluated;
            self.out.warnings.extend(e.warnings.iter().cloned());
            return e.result;
        }
        let before = self.cx.clone();
        self.cx.reads.set(0);
        self.writes = 0;
        let forks = self.forks.as_ref().map_or(0, Vec::len);
        let (choices, warnings) = (self.out.choices.len(), self.out.warnings.len());
        let evaluated = self.out.rules_evaluated;
        let result = self.run_table(hook, at);
        let memo = self.memo.as_mut().expect("exploring walk");
        let decided =
            self.forks.as_ref().map_or(0, Vec::len) != forks || self.out.choices.len() != choices;
        if !decided && memo.len() < MEMO_MAX {
            memo.push(Memo {
                pc,
                reads: self.cx.reads.get(),
                before,
                writes: self.writes,
                after: self.cx.clone(),
                dnat: self.out.dnat,
                snat: self.out.snat,
                evaluated: self.out.rules_evaluated - evaluated,
                warnings: self.out.warnings[warnings..].to_vec(),
                result,
            });
        }
        result
    }

    /// The routing decision for the (possibly DNATed) destination: local delivery or not.
    fn route(&mut self, local_origin: bool) -> bool {
        let local = self.m.node.is_local(self.cx.pkt.dst);
        let dst = self.cx.pkt.dst;
        self.step(|| Step::Route {
            local,
            note: {
                let (head, tail) = match (local_origin, local) {
                    (true, true) => (
                        "routing (re-done after DNAT): ",
                        " is local: the packet loops back to this node",
                    ),
                    (true, false) => (
                        "routing (re-done after DNAT): ",
                        " is not local: it leaves the node",
                    ),
                    (false, true) => (
                        "routing: ",
                        " is an address of this node: deliver locally (INPUT)",
                    ),
                    (false, false) => ("routing: ", " is not local: forward it (FORWARD)"),
                };
                let mut n = String::with_capacity(96);
                n.push_str(head);
                crate::k8s::ip::push_ip(&mut n, dst);
                n.push_str(tail);
                n
            },
        });
        local
    }

    fn snat(&mut self, ip: IpAddr, port: Option<u16>, masquerade: bool) {
        let (old, oldp) = (self.cx.pkt.src, self.cx.pkt.sport);
        self.cx.pkt.src = ip;
        self.writes |= field::SRC | OUT_SNAT;
        if let Some(p) = port {
            self.cx.pkt.sport = p;
            self.writes |= field::SPORT;
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

    /// Keep the untaken answers of a rule's random matches as branches: the one at match `k`
    /// took "matches" at the `k` before it and "does not match" at `k`, so the rule failed
    /// there, and it resumes at the next rule (see [`Fork`]). `stack` already points past the
    /// rule and `self.out.choices` holds this rule's answers after `choices_before`.
    fn fork_at(
        &mut self,
        ti: usize,
        stack: &[(usize, usize)],
        choices_before: usize,
        branch_at: Answers,
    ) {
        let mut frames = self.spare.frames.pop().unwrap_or_default();
        frames.clear();
        frames.extend_from_slice(stack);
        let forks = self.forks.as_mut().expect("forking walker");
        // Nearly always one branch: the last one takes the frames instead of cloning them.
        let last_k = 63 - branch_at.bits.leading_zeros();
        for k in (0..=last_k).filter(|k| branch_at.get(*k)) {
            let at = choices_before + k as usize;
            let mut choices = self.spare.choices.pop().unwrap_or_default();
            choices.clear();
            choices.extend_from_slice(&self.out.choices[..at]);
            choices.push(Choice {
                p_match: self.out.choices[at].p_match,
                matched: false,
            });
            forks.push(Fork {
                pc: self.pc,
                local: self.local,
                ti,
                frames: if k == last_k {
                    std::mem::take(&mut frames)
                } else {
                    frames.clone()
                },
                cx: self.cx.clone(),
                out: Outcome {
                    choices,
                    warnings: self.out.warnings.clone(),
                    ..self.out
                },
            });
        }
    }

    /// Run the path from `self.pc` to a verdict. `resume` continues inside the current table
    /// from saved frames (a forked branch) instead of entering it from its hook.
    fn run_path(&mut self, mut resume: Option<(usize, Vec<(usize, usize)>)>) -> Verdict {
        let path: &[Op] = if self.local_origin {
            &LOCAL_PATH
        } else {
            &ARRIVING_PATH
        };
        loop {
            match path[self.pc] {
                Op::Table(hook, table) => {
                    let r = match resume.take() {
                        Some((ti, mut frames)) => {
                            let r = self.run_frames(ti, &mut frames);
                            let done = std::mem::replace(&mut self.frames, frames);
                            self.spare.frames.push(done);
                            Some(r)
                        }
                        None if table == Table::Nat && !self.cx.ct_new => None,
                        // A table this ruleset lacks runs nothing; exploring walks look for it
                        // before their memo (most of the path's tables are absent).
                        None => match self.m.hook_chain_at(hook, table as usize) {
                            None => None,
                            Some(at) if self.memo.is_some() => Some(self.run_table_memo(hook, at)),
                            Some(at) => Some(self.run_table(hook, at)),
                        },
                    };
                    match r {
                        None | Some(TableResult::Accept) => {}
                        Some(TableResult::Drop) => return Verdict::Drop,
                        Some(TableResult::Reject) => return Verdict::Reject,
                    }
                }
                Op::ReplayDnat => self.replay_dnat(),
                Op::Route => {
                    let l = self.route(self.local_origin);
                    self.local = Some(l);
                }
                Op::ReplaySnat => self.replay_snat(),
                Op::IfRemote(to) => {
                    if self.local == Some(false) {
                        self.pc = to;
                        continue;
                    }
                }
                Op::Done(v) => return v,
            }
            self.pc += 1;
        }
    }

    fn replay_dnat(&mut self) {
        if let Some((ip, port)) = self.existing.as_ref().and_then(|e| e.dnat) {
            let (old, oldp) = (self.cx.pkt.dst, self.cx.pkt.dport);
            self.cx.pkt.dst = ip;
            self.cx.pkt.dport = port;
            self.cx.ct_dnat = true;
            self.out.dnat = Some((ip, port));
            self.step(|| Step::Dnat {
                from: join(old, oldp),
                to: join(ip, port),
            });
        }
    }

    fn replay_snat(&mut self) {
        if let Some((ip, port)) = self.existing.as_ref().and_then(|e| e.snat) {
            let (old, oldp) = (self.cx.pkt.src, self.cx.pkt.sport);
            self.cx.pkt.src = ip;
            self.cx.pkt.sport = port;
            self.cx.ct_snat = true;
            self.out.snat = Some((ip, port));
            self.out.masq = true;
            self.step(|| Step::Snat {
                from: join(old, oldp),
                to: join(ip, port),
                masquerade: true,
            });
        }
    }
}

/// The range a random source port is drawn from: the kernel never maps a port into another of
/// its three classes (below 512, 512-1023 mapped to 600-1023, 1024 and above).
fn random_port_class(port: u16) -> (u16, u16) {
    match port {
        0..=511 => (1, 511),
        512..=1023 => (600, 1023),
        _ => (1024, 65535),
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

/// [`walk`] recording its random decisions into `choices` (cleared first), so a caller can hand
/// a previous walk's vector back instead of allocating one per walk.
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
    let key = flow_key(req);
    let (existing, cx, mut out) = start(req, state);
    out.choices = choices;
    let ct_new = existing.is_none();
    let mut w = Walker::new(m, state, chooser, req, (existing, cx, out));
    w.effects = effects;
    if record {
        // A traced packet to a Service records ~50 steps; growing the vector was a visible cost.
        w.steps = Some(Vec::with_capacity(64));
        w.text_buf = String::with_capacity(512);
    }
    let dnat = w.existing.as_ref().map(|e| e.dnat);
    w.step(|| Step::Conntrack {
        established: !ct_new,
        note: match dnat {
            Some(dnat) => format!(
                "conntrack: this flow is already tracked (ESTABLISHED); its NAT{} is replayed and the nat table is skipped",
                dnat.map(|(a, p)| format!(" (DNAT to {})", join(a, p)))
                    .unwrap_or_default()
            ),
            None => "conntrack: first packet of a new connection (NEW): the nat table decides its NAT"
                .into(),
        },
    });
    let verdict = w.run_path(None);
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

/// A packet entering the stack: its conntrack entry if the flow is established (and not timed
/// out), the context the matches see, and an outcome with nothing done yet.
fn start<'r>(req: &'r WalkRequest, state: &State) -> (Option<CtEntry>, PacketCtx<'r>, Outcome) {
    let existing = state
        .conntrack
        .get(&flow_key(req))
        .filter(|e| req.now - e.last_seen <= ct_timeout(req.pkt.proto))
        .cloned();
    let ct_new = existing.is_none();
    let cx = PacketCtx {
        pkt: req.pkt,
        in_iface: req.in_iface.as_deref(),
        out_iface: None,
        ct_new,
        ct_dnat: false,
        ct_snat: false,
        now: req.now,
        reads: Default::default(),
        bridge: req.bridge.as_ref(),
        ipvs: req.ipvs,
    };
    let out = Outcome {
        verdict: Verdict::Accept,
        packet: req.pkt,
        dnat: None,
        snat: None,
        masq: false,
        rules_evaluated: 0,
        choices: Vec::new(),
        warnings: Vec::new(),
        established: !ct_new,
    };
    (existing, cx, out)
}

fn flow_key(req: &WalkRequest) -> FlowKey {
    FlowKey {
        proto: req.pkt.proto,
        src: req.pkt.src,
        sport: req.pkt.sport,
        dst: req.pkt.dst,
        dport: req.pkt.dport,
    }
}

/// Every walk the packet can take, depth-first with "matches" first at each random match, so
/// the walks come in rule order: `visit` gets each finished walk and returns false to stop.
/// Nothing is recorded and `state` is only read. A branch resumes at the random match that
/// created it rather than walking the shared prefix again: a Service with n endpoints costs one
/// walk to its KUBE-SVC chain plus n short continuations, not n full walks each re-evaluating
/// the probabilities before its own.
pub fn explore(
    m: &Machine,
    req: &WalkRequest,
    state: &mut State,
    visit: &mut dyn FnMut(&Outcome) -> bool,
) {
    let (existing, cx, mut out) = start(req, state);
    // Room for a typical Service's draws and branches without regrowing.
    out.choices.reserve(16);
    let mut unused = Scripted {
        script: Vec::new(),
        pos: 0,
    };
    // One walker for every branch: its frames, memo and spare vectors carry over, and a branch
    // only replaces the packet, the outcome and the position.
    let mut w = Walker::new(m, state, &mut unused, req, (existing, cx, out));
    w.forks = Some(Vec::with_capacity(16));
    w.memo = Some(Vec::new());
    let mut resume = None;
    loop {
        // The walker's fork list is the stack of pending branches: this walk pushes its own on
        // top.
        let first_new = w.forks.as_ref().map_or(0, Vec::len);
        let verdict = w.run_path(resume.take());
        w.out.verdict = verdict;
        w.out.packet = w.cx.pkt;
        if !visit(&w.out) {
            return;
        }
        // Shallowest branch next, as a fresh walk per branch would order them: this walk's
        // branches are reversed in place (nearly always one, so nothing moves).
        let pending = w.forks.as_mut().expect("exploring walker");
        pending[first_new..].reverse();
        let Some(f) = pending.pop() else { break };
        let done = std::mem::replace(&mut w.out, f.out);
        w.spare.choices.push(done.choices);
        w.cx = f.cx;
        w.pc = f.pc;
        w.local = f.local;
        w.writes = 0;
        resume = Some((f.ti, f.frames));
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    /// The path's table slots index the machine's hook table by name order: a mismatch would run
    /// the wrong table at every hook.
    #[test]
    fn table_slots_follow_hook_tables() {
        for (t, name) in [
            (Table::Raw, "raw"),
            (Table::Mangle, "mangle"),
            (Table::Nat, "nat"),
            (Table::Filter, "filter"),
            (Table::Security, "security"),
        ] {
            assert_eq!(super::super::HOOK_TABLES[t as usize], name);
        }
    }
}
