//! The 14 IPVS schedulers: their visible state and their `schedule` functions.
//!
//! Each function mirrors `net/netfilter/ipvs/ip_vs_<name>.c` of mainline ~v6.17: the same scan
//! order (the destination list, newest first), the same skip tests, the same tie rules, the same
//! integer arithmetic. Every decision carries a short reason in the kernel's terms.

use super::hash::{fold, hash_32};
use super::lblc::{LblcState, LblcrState};
use super::mh::MhState;
use super::service::{ConnKey, Dest, DestId, Hot, SchedFlags, SchedulerKind, Sysctl, Time};
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;

/// The destination list as schedulers see it.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub dests: &'a [Dest],
    pub list: &'a [DestId],
    /// `list`'s servers packed in the same order (weights, counters, OVERLOAD).
    pub hot: &'a [Hot],
    /// The service is IPv6 (decides the address fold).
    pub v6: bool,
}

impl<'a> View<'a> {
    #[inline]
    pub fn d(&self, id: DestId) -> &'a Dest {
        &self.dests[id.index()]
    }
    /// The packed load view in list order.
    #[inline]
    pub fn hot_iter(&self) -> impl Iterator<Item = (DestId, &'a Hot)> + 'a {
        self.list.iter().copied().zip(self.hot.iter())
    }
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (DestId, &'a Dest)> + 'a {
        let dests = self.dests;
        self.list.iter().map(move |&id| (id, &dests[id.index()]))
    }
}

/// A scheduler's answer for one new connection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    /// The chosen server, or `None`: "no destination available" (the packet is then dropped
    /// with an ICMP port unreachable).
    pub dest: Option<DestId>,
    /// Its address, for display.
    pub server: Option<SocketAddr>,
    /// Why, in the kernel's terms.
    pub reason: &'static str,
    /// The table entry looked up first (sh/dh/mh bucket), if the scheduler has a table.
    pub slot: Option<u32>,
}

impl Decision {
    /// The trace event the packet walk records for this decision.
    pub fn trace_step(&self, scheduler: SchedulerKind) -> crate::trace::Step {
        crate::trace::Step::IpvsSchedule {
            scheduler: scheduler.name().to_string(),
            server: self.server.map(|a| a.to_string()),
            reason: self.reason.to_string(),
        }
    }

    fn pick(v: &View<'_>, id: DestId, reason: &'static str) -> Decision {
        Decision {
            dest: Some(id),
            server: Some(v.d(id).addr),
            reason,
            slot: None,
        }
    }
    fn none(reason: &'static str) -> Decision {
        Decision {
            dest: None,
            server: None,
            reason,
            slot: None,
        }
    }
    fn with_slot(mut self, slot: u32) -> Decision {
        self.slot = Some(slot);
        self
    }
}

/// The random source twos draws from: `get_random_u32_below(bound)` in the kernel.
pub trait RandomSource {
    /// A value in `0..bound`.
    fn below(&mut self, bound: u32) -> Result<u32, RandomError>;
}

/// The random source could not answer as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RandomError {
    /// More values were asked for than recorded.
    Exhausted { asked_bound: u32, supplied: usize },
    /// The recorded value was drawn for another bound.
    WrongBound {
        index: usize,
        recorded: u32,
        asked: u32,
    },
    /// A recorded value is not below its bound.
    OutOfRange {
        index: usize,
        value: u32,
        bound: u32,
    },
    /// No random source was given and a scheduler needed one.
    Unavailable { asked_bound: u32 },
}

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RandomError::Exhausted {
                asked_bound,
                supplied,
            } => write!(
                f,
                "the scheduler asked for random value #{} (below {asked_bound}) but only \
                 {supplied} were recorded",
                supplied + 1
            ),
            RandomError::WrongBound {
                index,
                recorded,
                asked,
            } => write!(
                f,
                "random value #{} was recorded for bound {recorded} but the scheduler asked \
                 for a value below {asked}",
                index + 1
            ),
            RandomError::OutOfRange {
                index,
                value,
                bound,
            } => write!(
                f,
                "random value #{} is {value}, not below its bound {bound}",
                index + 1
            ),
            RandomError::Unavailable { asked_bound } => write!(
                f,
                "the scheduler needs a random value below {asked_bound} and none was supplied"
            ),
        }
    }
}

impl std::error::Error for RandomError {}

/// Answers every draw with an error: for schedulers that must not draw.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRandom;

impl RandomSource for NoRandom {
    fn below(&mut self, bound: u32) -> Result<u32, RandomError> {
        Err(RandomError::Unavailable { asked_bound: bound })
    }
}

/// Replays recorded `(bound, value)` draws in order and insists on the same bounds.
#[derive(Debug, Clone, Default)]
pub struct RecordedRandom {
    pub draws: Vec<(u32, u32)>,
    pub next: usize,
}

impl RecordedRandom {
    pub fn new(draws: Vec<(u32, u32)>) -> RecordedRandom {
        RecordedRandom { draws, next: 0 }
    }
    /// Values not consumed.
    pub fn remaining(&self) -> usize {
        self.draws.len() - self.next
    }
}

impl RandomSource for RecordedRandom {
    fn below(&mut self, bound: u32) -> Result<u32, RandomError> {
        let index = self.next;
        let Some(&(recorded, value)) = self.draws.get(index) else {
            return Err(RandomError::Exhausted {
                asked_bound: bound,
                supplied: self.draws.len(),
            });
        };
        if recorded != bound {
            return Err(RandomError::WrongBound {
                index,
                recorded,
                asked: bound,
            });
        }
        if value >= bound {
            return Err(RandomError::OutOfRange {
                index,
                value,
                bound,
            });
        }
        self.next += 1;
        Ok(value)
    }
}

/// A small deterministic generator (SplitMix64) for simulations and benchmarks; the caller
/// seeds it. Not the kernel's stream (that one is not reproducible anyway).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl RandomSource for SplitMix64 {
    fn below(&mut self, bound: u32) -> Result<u32, RandomError> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Lemire's multiply-shift, as get_random_u32_below does (without its rejection step).
        Ok((((z as u32) as u64 * u64::from(bound)) >> 32) as u32)
    }
}

/// Scheduling failed for a reason other than "no destination".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    Random(RandomError),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::Random(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ScheduleError {}

impl From<RandomError> for ScheduleError {
    fn from(e: RandomError) -> Self {
        ScheduleError::Random(e)
    }
}

/// The scheduler bound to a service and its private data (`svc->sched_data`), as plain data.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "scheduler", rename_all = "lowercase")]
pub enum SchedState {
    /// `sched_data` points at the list head (`None`) or at the last server returned.
    Rr {
        position: Option<DestId>,
    },
    /// `struct ip_vs_wrr_mark`.
    Wrr {
        /// Current server (`cl`), `None` = list head.
        position: Option<DestId>,
        /// Current weight threshold of the pass.
        cw: i32,
        /// Max weight reduced by `di - 1`.
        mw: i32,
        /// gcd of the positive weights.
        di: i32,
    },
    Lc,
    Wlc,
    Sed,
    Nq,
    Fo,
    Ovf,
    Twos,
    /// 256 buckets, bucket i = the server at position i mod n.
    Dh {
        table: Vec<Option<DestId>>,
    },
    /// 256 buckets filled by weight.
    Sh {
        table: Vec<Option<DestId>>,
    },
    Mh(MhState),
    Lblc(LblcState),
    Lblcr(LblcrState),
}

/// Size of the dh and sh tables (`1 << IP_VS_DH_TAB_BITS`, `CONFIG_IP_VS_SH_TAB_BITS` = 8).
pub const DH_TAB_BITS: u32 = 8;
pub const SH_TAB_BITS: u32 = 8;
const DH_TAB_SIZE: usize = 1 << DH_TAB_BITS;
const SH_TAB_SIZE: usize = 1 << SH_TAB_BITS;

fn gcd(a: i32, b: i32) -> i32 {
    let (mut a, mut b) = (a, b);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `ip_vs_wrr_gcd_weight`: gcd of the positive weights, 1 if none.
fn wrr_gcd(v: &View<'_>) -> i32 {
    let mut g = 0;
    for (_, d) in v.iter() {
        if d.weight > 0 {
            g = if g > 0 { gcd(d.weight, g) } else { d.weight };
        }
    }
    if g > 0 { g } else { 1 }
}

fn max_weight(v: &View<'_>) -> i32 {
    v.iter().map(|(_, d)| d.weight).fold(0, i32::max)
}

fn dh_build(v: &View<'_>) -> Vec<Option<DestId>> {
    let n = v.list.len();
    (0..DH_TAB_SIZE)
        .map(|i| if n == 0 { None } else { Some(v.list[i % n]) })
        .collect()
}

/// `ip_vs_sh_reassign`: walk the buckets while cycling through the list; a server stays for
/// `weight` buckets (at least one), the counter is not reset when the list wraps.
fn sh_build(v: &View<'_>) -> Vec<Option<DestId>> {
    let n = v.list.len();
    if n == 0 {
        return vec![None; SH_TAB_SIZE];
    }
    let mut table = Vec::with_capacity(SH_TAB_SIZE);
    let (mut p, mut count) = (0usize, 0i32);
    for _ in 0..SH_TAB_SIZE {
        let id = v.list[p];
        table.push(Some(id));
        count += 1;
        if count >= v.d(id).weight {
            p = (p + 1) % n;
            count = 0;
        }
    }
    table
}

impl SchedState {
    pub(crate) fn placeholder() -> SchedState {
        SchedState::Lc
    }

    pub fn kind(&self) -> SchedulerKind {
        match self {
            SchedState::Rr { .. } => SchedulerKind::Rr,
            SchedState::Wrr { .. } => SchedulerKind::Wrr,
            SchedState::Lc => SchedulerKind::Lc,
            SchedState::Wlc => SchedulerKind::Wlc,
            SchedState::Sed => SchedulerKind::Sed,
            SchedState::Nq => SchedulerKind::Nq,
            SchedState::Fo => SchedulerKind::Fo,
            SchedState::Ovf => SchedulerKind::Ovf,
            SchedState::Twos => SchedulerKind::Twos,
            SchedState::Dh { .. } => SchedulerKind::Dh,
            SchedState::Sh { .. } => SchedulerKind::Sh,
            SchedState::Mh(_) => SchedulerKind::Mh,
            SchedState::Lblc(_) => SchedulerKind::Lblc,
            SchedState::Lblcr(_) => SchedulerKind::Lblcr,
        }
    }

    /// `init_service`: the scheduler is bound to the service at `now`.
    pub(crate) fn init(kind: SchedulerKind, v: &View<'_>, now: Time) -> SchedState {
        match kind {
            SchedulerKind::Rr => SchedState::Rr { position: None },
            SchedulerKind::Wrr => {
                let di = wrr_gcd(v);
                let mw = max_weight(v) - (di - 1);
                SchedState::Wrr {
                    position: None,
                    cw: mw,
                    mw,
                    di,
                }
            }
            SchedulerKind::Lc => SchedState::Lc,
            SchedulerKind::Wlc => SchedState::Wlc,
            SchedulerKind::Sed => SchedState::Sed,
            SchedulerKind::Nq => SchedState::Nq,
            SchedulerKind::Fo => SchedState::Fo,
            SchedulerKind::Ovf => SchedState::Ovf,
            SchedulerKind::Twos => SchedState::Twos,
            SchedulerKind::Dh => SchedState::Dh { table: dh_build(v) },
            SchedulerKind::Sh => SchedState::Sh { table: sh_build(v) },
            SchedulerKind::Mh => SchedState::Mh(MhState::new(v)),
            SchedulerKind::Lblc => SchedState::Lblc(LblcState::new(now)),
            SchedulerKind::Lblcr => SchedState::Lblcr(LblcrState::new(now)),
        }
    }

    /// `ip_vs_wrr_dest_changed`: restart at the head, recompute di/mw, keep cw where possible.
    fn wrr_changed(&mut self, v: &View<'_>) {
        if let SchedState::Wrr {
            position,
            cw,
            mw,
            di,
        } = self
        {
            *position = None;
            *di = wrr_gcd(v);
            *mw = max_weight(v) - (*di - 1);
            if *cw > *mw || *cw == 0 {
                *cw = *mw;
            } else if *di > 1 {
                *cw = (*cw / *di) * *di + 1;
            }
        }
    }

    pub(crate) fn add_dest(&mut self, v: &View<'_>, _id: DestId, _now: Time) {
        match self {
            SchedState::Wrr { .. } => self.wrr_changed(v),
            SchedState::Dh { table } => *table = dh_build(v),
            SchedState::Sh { table } => *table = sh_build(v),
            SchedState::Mh(s) => s.rebuild(v),
            _ => {}
        }
    }

    pub(crate) fn upd_dest(&mut self, v: &View<'_>, _id: DestId, _now: Time) {
        match self {
            SchedState::Wrr { .. } => self.wrr_changed(v),
            // dh has no upd_dest callback: its table ignores weights.
            SchedState::Sh { table } => *table = sh_build(v),
            SchedState::Mh(s) => s.rebuild(v),
            _ => {}
        }
    }

    /// `prev` is the server that preceded the deleted one in the list (`None` = head).
    pub(crate) fn del_dest(&mut self, v: &View<'_>, id: DestId, prev: Option<DestId>, _now: Time) {
        match self {
            // ip_vs_rr_del_dest: a position on the unlinked server steps back to its predecessor.
            SchedState::Rr { position } if *position == Some(id) => *position = prev,
            SchedState::Wrr { .. } => self.wrr_changed(v),
            SchedState::Dh { table } => *table = dh_build(v),
            SchedState::Sh { table } => *table = sh_build(v),
            SchedState::Mh(s) => s.rebuild(v),
            _ => {}
        }
    }

    pub(crate) fn advance(&mut self, now: Time, sysctl: Sysctl) {
        match self {
            SchedState::Lblc(s) => s.advance(now, sysctl.lblc_expiration),
            SchedState::Lblcr(s) => s.advance(now, sysctl.lblcr_expiration),
            _ => {}
        }
    }

    pub(crate) fn schedule(
        &mut self,
        v: &View<'_>,
        flags: SchedFlags,
        sysctl: Sysctl,
        key: &ConnKey,
        now: Time,
        rng: &mut dyn RandomSource,
    ) -> Result<Decision, ScheduleError> {
        Ok(match self {
            SchedState::Rr { position } => rr(v, position),
            SchedState::Wrr {
                position,
                cw,
                mw,
                di,
            } => wrr(v, position, cw, *mw, *di),
            SchedState::Lc => lc(v),
            SchedState::Wlc => match wlc_pick(v) {
                Some(id) => Decision::pick(v, id, WLC_REASON),
                None => Decision::none(WLC_NONE),
            },
            SchedState::Sed => sed(v),
            SchedState::Nq => nq(v),
            SchedState::Fo => fo(v),
            SchedState::Ovf => ovf(v),
            SchedState::Twos => twos(v, rng)?,
            SchedState::Dh { table } => dh(v, table, key),
            SchedState::Sh { table } => sh(v, table, flags, key),
            SchedState::Mh(s) => s.schedule(v, flags, key),
            SchedState::Lblc(s) => s.schedule(v, key, now),
            SchedState::Lblcr(s) => s.schedule(v, key, now, sysctl.lblcr_expiration),
        })
    }
}

#[inline]
fn usable(d: &Dest) -> bool {
    !d.overloaded && d.weight > 0
}

/// `ip_vs_rr_schedule`: from the server after the position to the end, then from the start up to
/// and including the position; the first server not OVERLOAD with weight > 0 wins.
fn rr(v: &View<'_>, position: &mut Option<DestId>) -> Decision {
    const PICK: &str = "rr: next server after the last one picked (list order, newest first) \
                        that is not overloaded and has weight > 0";
    const NONE: &str = "rr: every server is overloaded or has weight 0";
    let n = v.list.len();
    let start = position
        .map(|p| v.d(p).list_index as usize + 1)
        .unwrap_or(0);
    let wrap_end = position.map(|_| start).unwrap_or(0);
    for i in (start..n).chain(0..wrap_end) {
        if v.hot[i].usable() {
            let id = v.list[i];
            *position = Some(id);
            return Decision::pick(v, id, PICK);
        }
    }
    Decision::none(NONE)
}

/// `ip_vs_wrr_schedule`: passes over the list with a falling weight threshold `cw`.
fn wrr(v: &View<'_>, position: &mut Option<DestId>, cw: &mut i32, mw: i32, di: i32) -> Decision {
    const PICK: &str = "wrr: next server (list order, from the last pick) whose weight >= the \
                        current weight cw; cw drops by gcd after each pass";
    const NONE_W: &str = "wrr: every weight is 0";
    const NONE_O: &str = "wrr: all destinations are overloaded";
    if mw == 0 {
        return Decision::none(NONE_W);
    }
    let n = v.list.len();
    let last = *position;
    let mut from = last.map(|p| v.d(p).list_index as usize + 1).unwrap_or(0);
    let mut stop: Option<DestId> = None;
    let (mut last_pass, mut restarted) = (false, false);
    loop {
        for i in from..n {
            let id = v.list[i];
            let d = &v.hot[i];
            // cw >= 1 here, so an OVERLOAD server (packed weight 0) never passes.
            if d.weight >= *cw {
                *position = Some(id);
                return Decision::pick(v, id, PICK);
            }
            if Some(id) == stop {
                *position = Some(id);
                return Decision::none(NONE_O);
            }
        }
        *cw -= di;
        if *cw <= 0 {
            *cw = mw;
            if last_pass || last.is_none() {
                *position = None;
                return Decision::none(NONE_O);
            }
            restarted = true;
        }
        last_pass = *cw <= di;
        if last_pass && restarted && last.is_some() {
            stop = last;
        }
        from = 0;
    }
}

/// `ip_vs_lc_schedule`: least `active*256 + inactive`, weight only as a 0/non-0 switch.
fn lc(v: &View<'_>) -> Decision {
    const PICK: &str = "lc: lowest active*256+inactive among servers not overloaded with \
                        weight != 0; ties keep the first in list order";
    const NONE: &str = "lc: every server is overloaded or has weight 0";
    let hot = v.hot;
    let Some(seed) = hot.iter().position(|d| d.weight != 0) else {
        return Decision::none(NONE);
    };
    let (mut best, mut boh) = (seed, hot[seed].overhead());
    for (i, d) in hot.iter().enumerate().skip(seed + 1) {
        let oh = d.overhead();
        // Strictly smaller wins (ties keep the first); weight 0 / OVERLOAD never counts.
        if d.weight != 0 && oh < boh {
            best = i;
            boh = oh;
        }
    }
    Decision::pick(v, v.list[best], PICK)
}

pub(crate) const WLC_REASON: &str = "wlc: lowest (active*256+inactive)/weight; ties keep the \
                                     first in list order";
pub(crate) const WLC_NONE: &str = "wlc: every server is overloaded or has weight 0";

/// Weighted least-overhead scan shared by wlc, sed and the lblc/lblcr fallback: the seed is the
/// first server not OVERLOAD with weight > 0; a later non-OVERLOAD server replaces it when
/// `best_oh * its_weight > its_oh * best_weight` (64-bit products), so ties keep the earlier one
/// and a later weight-0 server can never win.
#[inline]
fn weighted_least(v: &View<'_>, overhead: impl Fn(&Hot) -> i32) -> Option<DestId> {
    let hot = v.hot;
    let seed = hot.iter().position(Hot::usable)?;
    let (mut best, mut boh, mut bw) = (seed, overhead(&hot[seed]), hot[seed].weight);
    // `better(d)`: the kernel's strict `loh * weight > doh * least_weight`. An OVERLOAD server
    // has packed weight 0, so `x * 0 > y` never holds: skipped, as the kernel skips it.
    let rest = &hot[seed + 1..];
    let mut chunks = rest.chunks_exact(4);
    let mut base = seed + 1;
    for c in &mut chunks {
        // Replacements are rare once a low load is found, so test four servers against the
        // current best at once and replay them one by one only when one of them wins. The
        // result is the same as the kernel's sequential scan.
        let b =
            |d: &Hot| i64::from(boh) * i64::from(d.weight) > i64::from(overhead(d)) * i64::from(bw);
        if b(&c[0]) | b(&c[1]) | b(&c[2]) | b(&c[3]) {
            for (j, d) in c.iter().enumerate() {
                let oh = overhead(d);
                if i64::from(boh) * i64::from(d.weight) > i64::from(oh) * i64::from(bw) {
                    best = base + j;
                    boh = oh;
                    bw = d.weight;
                }
            }
        }
        base += 4;
    }
    for (j, d) in chunks.remainder().iter().enumerate() {
        let oh = overhead(d);
        if i64::from(boh) * i64::from(d.weight) > i64::from(oh) * i64::from(bw) {
            best = base + j;
            boh = oh;
            bw = d.weight;
        }
    }
    Some(v.list[best])
}

/// `ip_vs_wlc_schedule` (also `__ip_vs_lblc_schedule` / `__ip_vs_lblcr_schedule`).
pub(crate) fn wlc_pick(v: &View<'_>) -> Option<DestId> {
    weighted_least(v, Hot::overhead)
}

/// `ip_vs_sed_schedule`: as wlc with overhead `activeconns + 1`.
fn sed(v: &View<'_>) -> Decision {
    const PICK: &str = "sed: lowest (active+1)/weight (inactive ignored); ties keep the first \
                        in list order";
    const NONE: &str = "sed: every server is overloaded or has weight 0";
    match weighted_least(v, |d| d.active.wrapping_add(1)) {
        Some(id) => Decision::pick(v, id, PICK),
        None => Decision::none(NONE),
    }
}

/// `ip_vs_nq_schedule`: an idle server (no active connections) is taken at once; otherwise sed.
fn nq(v: &View<'_>) -> Decision {
    const IDLE: &str = "nq: first server in list order with no active connection";
    const PICK: &str = "nq: no idle server; lowest (active+1)/weight, ties keep the first in \
                        list order";
    const NONE: &str = "nq: every server is overloaded or has weight 0";
    let mut best: Option<(DestId, i32, i32)> = None;
    for (i, d) in v.hot.iter().enumerate() {
        if d.weight == 0 {
            continue;
        }
        let id = v.list[i];
        let oh = d.active.wrapping_add(1);
        if d.active == 0 {
            return Decision::pick(v, id, IDLE);
        }
        if best.is_none_or(|(_, boh, bw)| {
            i64::from(boh) * i64::from(d.weight) > i64::from(oh) * i64::from(bw)
        }) {
            best = Some((id, oh, d.weight));
        }
    }
    match best {
        Some((id, _, _)) => Decision::pick(v, id, PICK),
        None => Decision::none(NONE),
    }
}

/// `ip_vs_fo_schedule`: highest weight among non-OVERLOAD servers; ties keep the first.
fn fo(v: &View<'_>) -> Decision {
    const PICK: &str = "fo: highest weight among servers not overloaded; ties keep the first in \
                        list order";
    const NONE: &str = "fo: every server is overloaded or has weight 0";
    let mut best: Option<(DestId, i32)> = None;
    let mut hw = 0;
    for (id, d) in v.hot_iter() {
        if d.weight > hw {
            best = Some((id, d.weight));
            hw = d.weight;
        }
    }
    match best {
        Some((id, _)) => Decision::pick(v, id, PICK),
        None => Decision::none(NONE),
    }
}

/// `ip_vs_ovf_schedule`: highest weight among servers holding at most `weight` active
/// connections.
fn ovf(v: &View<'_>) -> Decision {
    const PICK: &str = "ovf: highest weight among servers not overloaded with active <= weight; \
                        ties keep the first in list order";
    const NONE: &str = "ovf: every server is overloaded, has weight 0 or holds more active \
                        connections than its weight";
    let mut best: Option<(DestId, i32)> = None;
    for (id, d) in v.hot_iter() {
        let w = d.weight;
        if w == 0 || d.active > w {
            continue;
        }
        if best.is_none_or(|(_, bw)| w > bw) {
            best = Some((id, w));
        }
    }
    match best {
        Some((id, _)) => Decision::pick(v, id, PICK),
        None => Decision::none(NONE),
    }
}

/// `ip_vs_twos_schedule`: two weighted random picks, keep the less loaded by weight.
fn twos(v: &View<'_>, rng: &mut dyn RandomSource) -> Result<Decision, ScheduleError> {
    const ONE: &str = "twos: two weighted random picks; kept the first (its \
                       (active*256+inactive)/weight is not higher)";
    const TWO: &str = "twos: two weighted random picks; took the second (lower \
                       (active*256+inactive)/weight)";
    const NONE: &str = "twos: every server is overloaded or has weight 0";
    let mut total: i32 = 0;
    let mut any = false;
    for (_, d) in v.hot_iter() {
        if d.usable() {
            total = total.wrapping_add(d.weight);
            any = true;
        }
    }
    if !any {
        return Ok(Decision::none(NONE));
    }
    // get_random_u32_below(total + 1): both ends of [0, total] are possible.
    let bound = total.wrapping_add(1) as u32;
    let mut r1 = rng.below(bound)? as i32;
    let mut r2 = rng.below(bound)? as i32;
    let mut c1: Option<(DestId, i32, i32)> = None;
    let mut c2: Option<(DestId, i32, i32)> = None;
    for (id, d) in v.hot_iter() {
        if !d.usable() {
            continue;
        }
        r1 = r1.wrapping_sub(d.weight);
        r2 = r2.wrapping_sub(d.weight);
        if r1 <= 0 && c1.is_none() {
            c1 = Some((id, d.weight, d.overhead()));
        }
        if r2 <= 0 && c2.is_none() {
            c2 = Some((id, d.weight, d.overhead()));
        }
        if c1.is_some() && c2.is_some() {
            break;
        }
    }
    // r <= total always hits a server; the kernel's choice1 default (the last eligible server)
    // is unreachable.
    let (id1, w1, oh1) = c1.expect("r1 <= total");
    let (id2, w2, oh2) = c2.expect("r2 <= total");
    // C int arithmetic: the kernel ignores overflow here.
    if w2.wrapping_mul(oh1) > w1.wrapping_mul(oh2) {
        Ok(Decision::pick(v, id2, TWO))
    } else {
        Ok(Decision::pick(v, id1, ONE))
    }
}

/// `ip_vs_dh_schedule`: bucket `hash_32(fold(daddr), 8)`; no fallback.
fn dh(v: &View<'_>, table: &[Option<DestId>], key: &ConnKey) -> Decision {
    const PICK: &str = "dh: bucket hash_32(destination address, 8) of a 256-bucket table filled \
                        round-robin in list order";
    const NONE_EMPTY: &str = "dh: no server in the bucket (empty service)";
    const NONE_BAD: &str = "dh: the bucket's server is overloaded, has weight 0 or was deleted; \
                            dh has no fallback";
    let b = hash_32(fold(key.dst.ip(), v.v6), DH_TAB_BITS);
    let dec = match table[b as usize] {
        None => Decision::none(NONE_EMPTY),
        Some(id) => {
            let d = v.d(id);
            if !d.available || d.weight <= 0 || d.overloaded {
                Decision::none(NONE_BAD)
            } else {
                Decision::pick(v, id, PICK)
            }
        }
    };
    dec.with_slot(b)
}

/// `ip_vs_sh_hashkey`.
#[inline]
fn sh_hash(v: &View<'_>, key: &ConnKey, port: u16, offset: u32) -> u32 {
    let h = hash_32(
        u32::from(port).wrapping_add(fold(key.client.ip(), v.v6)),
        SH_TAB_BITS,
    );
    offset.wrapping_add(h) & (SH_TAB_SIZE as u32 - 1)
}

/// `ip_vs_sh_schedule` with `ip_vs_sh_get` / `ip_vs_sh_get_fallback`.
fn sh(v: &View<'_>, table: &[Option<DestId>], flags: SchedFlags, key: &ConnKey) -> Decision {
    const PICK: &str = "sh: bucket hash_32(source address [+ port with sh-port], 8) of a \
                        256-bucket table filled by weight";
    const FALLBACK: &str = "sh-fallback: the bucket's server is unavailable; probed buckets \
                            (2*first + offset) mod 256 for the next usable server";
    const NONE_EMPTY: &str = "sh: the bucket is empty (no servers)";
    const NONE_BAD: &str = "sh: the bucket's server is overloaded or has weight 0 (no \
                            sh-fallback)";
    const NONE_FB: &str = "sh-fallback: no usable server found while probing";
    // ip_vs_sh_get_port: TCP, UDP and SCTP all carry a source port.
    let port = if flags.port() { key.client.port() } else { 0 };
    let ih = sh_hash(v, key, port, 0);
    let Some(first) = table[ih as usize] else {
        return Decision::none(NONE_EMPTY).with_slot(ih);
    };
    if usable(v.d(first)) {
        return Decision::pick(v, first, PICK).with_slot(ih);
    }
    if !flags.fallback() {
        return Decision::none(NONE_BAD).with_slot(ih);
    }
    for offset in 0..SH_TAB_SIZE as u32 {
        // The kernel adds ihash to the offset and then hashes again (adding ihash a second time).
        let roffset = (offset + ih) % SH_TAB_SIZE as u32;
        let h = sh_hash(v, key, port, roffset);
        match table[h as usize] {
            None => break,
            Some(id) if usable(v.d(id)) => return Decision::pick(v, id, FALLBACK).with_slot(ih),
            Some(_) => {}
        }
    }
    Decision::none(NONE_FB).with_slot(ih)
}
