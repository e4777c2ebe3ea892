//! lblc and lblcr — locality-based least connection, without and with replication
//! (`ip_vs_lblc.c`, `ip_vs_lblcr.c`).
//!
//! Both keep an exact-match cache keyed by the packet's *destination* address in 1024 buckets
//! (`hash_32(fold(daddr), 10)`; the bucket only decides garbage-collection order), and a timer
//! that fires every 60 s from the moment the scheduler was bound: every 30th tick drops entries
//! idle for at least the `lblc(r)_expiration` sysctl; other ticks only collect when the cache
//! holds more than 16384 entries.

use super::hash::{fold, hash_32};
use super::sched::{Decision, View, wlc_pick};
use super::service::{ConnKey, DestId, Time};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const LBLC_TAB_BITS: u32 = 10;
const TAB_SIZE: u32 = 1 << LBLC_TAB_BITS;
const TAB_MASK: u32 = TAB_SIZE - 1;
/// `CHECK_EXPIRE_INTERVAL`: 60 s.
pub const CHECK_EXPIRE_INTERVAL: Time = 60.0;
/// `ENTRY_TIMEOUT`: idle time after which the overflow GC may drop an entry (6 min).
pub const ENTRY_TIMEOUT: Time = 360.0;
/// `COUNT_FOR_FULL_EXPIRATION`.
pub const COUNT_FOR_FULL_EXPIRATION: u32 = 30;
/// `max_size` = `IP_VS_LBLC_TAB_SIZE * 16`.
pub const MAX_SIZE: i64 = (TAB_SIZE as i64) * 16;

fn bucket_of(addr: IpAddr, v6: bool) -> u32 {
    hash_32(fold(addr, v6), LBLC_TAB_BITS)
}

/// lblc/lblcr `is_overloaded`: more active connections than weight while some server in the
/// list is below half its weight. Not the OVERLOAD flag.
fn lb_overloaded(v: &View<'_>, id: DestId) -> bool {
    let d = v.d(id);
    d.activeconns > d.weight
        && v.iter()
            .any(|(_, o)| i64::from(o.activeconns) * 2 < i64::from(o.weight))
}

/// The GC clock shared by lblc and lblcr (`periodic_timer`, `counter`, `rover`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GcClock {
    /// When the next 60 s tick fires.
    pub next_tick: Time,
    /// Starts at 1; a tick with `counter % 30 == 0` does the full expiration check.
    pub counter: u32,
    /// Bucket where the last walk stopped.
    pub rover: u32,
    /// `atomic_t entries`: what the kernel *counts*, which can exceed the real number (lblc
    /// does not decrement when it replaces an entry).
    pub entries: i64,
}

impl GcClock {
    fn new(now: Time) -> GcClock {
        GcClock {
            next_tick: now + CHECK_EXPIRE_INTERVAL,
            counter: 1,
            rover: 0,
            entries: 0,
        }
    }
}

/// Walk buckets `rover+1, rover+2, …` (wrapping) dropping entries idle since `lastuse` for at
/// least `idle`; `goal` = `Some(n)` stops after the bucket where `n` drops were reached.
fn walk<E>(
    buckets: &mut BTreeMap<u32, Vec<E>>,
    clock: &mut GcClock,
    now: Time,
    idle: Time,
    mut goal: Option<i64>,
    lastuse: impl Fn(&E) -> Time,
) {
    let mut j = clock.rover;
    for _ in 0..TAB_SIZE {
        j = (j + 1) & TAB_MASK;
        if let Some(b) = buckets.get_mut(&j) {
            let before = b.len();
            // time_before(now, lastuse + idle) keeps the entry.
            b.retain(|e| now < lastuse(e) + idle);
            let dropped = (before - b.len()) as i64;
            clock.entries -= dropped;
            if let Some(g) = goal.as_mut() {
                *g -= dropped;
            }
            if b.is_empty() {
                buckets.remove(&j);
            }
        }
        if goal.is_some_and(|g| g <= 0) {
            break;
        }
    }
    clock.rover = j;
}

/// Run every tick up to `now` (`ip_vs_lblc(r)_check_expire`).
fn run_ticks<E>(
    buckets: &mut BTreeMap<u32, Vec<E>>,
    clock: &mut GcClock,
    now: Time,
    expiration: Time,
    lastuse: impl Fn(&E) -> Time + Copy,
) {
    while clock.next_tick <= now {
        let t = clock.next_tick;
        if clock.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            walk(buckets, clock, t, expiration, None, lastuse);
            clock.counter = 1;
        } else if clock.entries <= MAX_SIZE {
            clock.counter += 1;
        } else {
            let goal = ((clock.entries - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2);
            walk(buckets, clock, t, ENTRY_TIMEOUT, Some(goal), lastuse);
        }
        clock.next_tick = t + CHECK_EXPIRE_INTERVAL;
    }
}

/// One lblc cache entry (`struct ip_vs_lblc_entry`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LblcEntry {
    pub addr: IpAddr,
    pub dest: DestId,
    pub lastuse: Time,
}

/// lblc's table: bucket → entries, newest first within a bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LblcState {
    pub clock: GcClock,
    pub buckets: BTreeMap<u32, Vec<LblcEntry>>,
}

impl LblcState {
    pub(crate) fn new(now: Time) -> LblcState {
        LblcState {
            clock: GcClock::new(now),
            buckets: BTreeMap::new(),
        }
    }

    pub(crate) fn advance(&mut self, now: Time, expiration: Time) {
        run_ticks(
            &mut self.buckets,
            &mut self.clock,
            now,
            expiration,
            |e: &LblcEntry| e.lastuse,
        );
    }

    /// The cached server for a destination address.
    pub fn lookup(&self, addr: IpAddr, v6: bool) -> Option<&LblcEntry> {
        self.buckets
            .get(&bucket_of(addr, v6))?
            .iter()
            .find(|e| e.addr == addr)
    }

    pub(crate) fn schedule(&mut self, v: &View<'_>, key: &ConnKey, now: Time) -> Decision {
        const HIT: &str = "lblc: cached server for this destination address (available, weight > \
                           0, not more active connections than weight while another server is \
                           under half its weight)";
        const MISS: &str = "lblc: no usable cache entry; picked by wlc (lowest \
                            (active*256+inactive)/weight) and cached";
        const NONE: &str = "lblc: no cache hit and every server is overloaded or has weight 0";
        let daddr = key.dst.ip();
        let b = bucket_of(daddr, v.v6);
        if let Some(en) = self
            .buckets
            .get_mut(&b)
            .and_then(|bk| bk.iter_mut().find(|e| e.addr == daddr))
        {
            en.lastuse = now;
            let id = en.dest;
            let d = v.d(id);
            if d.available && d.weight > 0 && !lb_overloaded(v, id) {
                return pick(v, id, HIT, b);
            }
        }
        let Some(id) = wlc_pick(v) else {
            return Decision {
                dest: None,
                server: None,
                reason: NONE,
                slot: Some(b),
            };
        };
        // ip_vs_lblc_new: keep an entry that already names this server, else replace it. The
        // replaced entry is unlinked without decrementing the entry counter.
        let bucket = self.buckets.entry(b).or_default();
        if let Some(pos) = bucket.iter().position(|e| e.addr == daddr) {
            if bucket[pos].dest == id {
                return pick(v, id, MISS, b);
            }
            bucket.remove(pos);
        }
        bucket.insert(
            0,
            LblcEntry {
                addr: daddr,
                dest: id,
                lastuse: now,
            },
        );
        self.clock.entries += 1;
        pick(v, id, MISS, b)
    }
}

fn pick(v: &View<'_>, id: DestId, reason: &'static str, bucket: u32) -> Decision {
    Decision {
        dest: Some(id),
        server: Some(v.d(id).addr),
        reason,
        slot: Some(bucket),
    }
}

/// One lblcr cache entry: a destination address and its server set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LblcrEntry {
    pub addr: IpAddr,
    /// The server set, newest member first.
    pub set: Vec<DestId>,
    /// Last time the set changed.
    pub lastmod: Time,
    pub lastuse: Time,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LblcrState {
    pub clock: GcClock,
    pub buckets: BTreeMap<u32, Vec<LblcrEntry>>,
}

/// `ip_vs_dest_set_min`: weighted least overhead among set members that are not OVERLOAD; the
/// seed and any replacement must be AVAILABLE (deleted members are never returned).
fn set_min(v: &View<'_>, set: &[DestId]) -> Option<DestId> {
    let mut it = set.iter();
    let mut least = loop {
        let &id = it.next()?;
        let d = v.d(id);
        if d.overloaded {
            continue;
        }
        if d.weight > 0 && d.available {
            break id;
        }
    };
    let mut loh = v.d(least).overhead();
    for &id in it {
        let d = v.d(id);
        if d.overloaded {
            continue;
        }
        let doh = d.overhead();
        if i64::from(loh) * i64::from(d.weight) > i64::from(doh) * i64::from(v.d(least).weight)
            && d.available
        {
            least = id;
            loh = doh;
        }
    }
    Some(least)
}

/// `ip_vs_dest_set_max`: weighted most overhead among members with weight > 0 (nothing else
/// is checked: a deleted or overloaded member can be the one erased).
fn set_max(v: &View<'_>, set: &[DestId]) -> Option<DestId> {
    let mut it = set.iter();
    let mut most = loop {
        let &id = it.next()?;
        if v.d(id).weight > 0 {
            break id;
        }
    };
    let mut moh = v.d(most).overhead();
    for &id in it {
        let d = v.d(id);
        let doh = d.overhead();
        if i64::from(moh) * i64::from(d.weight) < i64::from(doh) * i64::from(v.d(most).weight)
            && d.weight > 0
        {
            most = id;
            moh = doh;
        }
    }
    Some(most)
}

impl LblcrState {
    pub(crate) fn new(now: Time) -> LblcrState {
        LblcrState {
            clock: GcClock::new(now),
            buckets: BTreeMap::new(),
        }
    }

    pub(crate) fn advance(&mut self, now: Time, expiration: Time) {
        run_ticks(
            &mut self.buckets,
            &mut self.clock,
            now,
            expiration,
            |e: &LblcrEntry| e.lastuse,
        );
    }

    pub fn lookup(&self, addr: IpAddr, v6: bool) -> Option<&LblcrEntry> {
        self.buckets
            .get(&bucket_of(addr, v6))?
            .iter()
            .find(|e| e.addr == addr)
    }

    pub(crate) fn schedule(
        &mut self,
        v: &View<'_>,
        key: &ConnKey,
        now: Time,
        expiration: Time,
    ) -> Decision {
        const HIT: &str = "lblcr: least loaded server ((active*256+inactive)/weight) of this \
                           destination's server set";
        const GROW: &str = "lblcr: the set's best server is missing or too busy; picked by wlc \
                            over all servers and added to the set";
        const MISS: &str = "lblcr: no cache entry; picked by wlc (lowest \
                            (active*256+inactive)/weight) and cached as a one-server set";
        const NONE: &str = "lblcr: no usable set member and every server is overloaded or has \
                            weight 0";
        let daddr = key.dst.ip();
        let b = bucket_of(daddr, v.v6);
        if let Some(en) = self
            .buckets
            .get_mut(&b)
            .and_then(|bk| bk.iter_mut().find(|e| e.addr == daddr))
        {
            en.lastuse = now;
            let m = set_min(v, &en.set);
            // Shrink a set that has not changed for `expiration`: drop its busiest member.
            if en.set.len() > 1
                && now > en.lastmod + expiration
                && let Some(mx) = set_max(v, &en.set)
                && let Some(p) = en.set.iter().position(|&x| x == mx)
            {
                en.set.remove(p);
                en.lastmod = now;
            }
            if let Some(m) = m
                && !lb_overloaded(v, m)
            {
                return pick(v, m, HIT, b);
            }
            let Some(id) = wlc_pick(v) else {
                return Decision {
                    dest: None,
                    server: None,
                    reason: NONE,
                    slot: Some(b),
                };
            };
            if !en.set.contains(&id) {
                en.set.insert(0, id);
                en.lastmod = now;
            }
            return pick(v, id, GROW, b);
        }
        let Some(id) = wlc_pick(v) else {
            return Decision {
                dest: None,
                server: None,
                reason: NONE,
                slot: Some(b),
            };
        };
        self.buckets.entry(b).or_default().insert(
            0,
            LblcrEntry {
                addr: daddr,
                set: vec![id],
                lastmod: now,
                lastuse: now,
            },
        );
        self.clock.entries += 1;
        pick(v, id, MISS, b)
    }
}
