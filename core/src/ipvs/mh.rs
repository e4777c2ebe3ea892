//! mh — Maglev hashing (`ip_vs_mh.c`, since v4.18).
//!
//! The lookup table has `M` = 4093 entries (`CONFIG_IP_VS_MH_TAB_INDEX` = 12). Each server gets
//! a preference walk `offset, offset+skip, offset+2*skip, … (mod M)` from two hsiphash values of
//! its own address and port under fixed keys, and the servers take turns claiming their next
//! free entry, `turns` entries per round in proportion to `last_weight`.

use super::hash::{HsipKey, fold, hsiphash_u32};
use super::sched::{Decision, View};
use super::service::{ConnKey, DestId, SchedFlags};
use serde::Serialize;
use std::net::IpAddr;

/// The primes the kernel can size the table with (`CONFIG_IP_VS_MH_TAB_INDEX` 8..=17).
pub const MH_PRIMES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];
/// Default `CONFIG_IP_VS_MH_TAB_INDEX`.
pub const MH_TAB_INDEX: u32 = 12;
/// `IP_VS_MH_TAB_SIZE` = 4093.
pub const MH_TAB_SIZE: u32 = MH_PRIMES[(MH_TAB_INDEX - 8) as usize];
/// `IP_VS_MH_TAB_BITS`: used only to scale weights down.
pub const MH_TAB_BITS: u32 = MH_TAB_INDEX / 2;
/// `generate_hash_secret`: the keys are constants, not random, so tables are reproducible.
pub const MH_KEY1: HsipKey = HsipKey(2_654_435_761, 2_654_435_761);
pub const MH_KEY2: HsipKey = HsipKey(2_654_446_892, 2_654_446_892);

/// `ip_vs_mh_hashkey`: hsiphash of the native int `offset + port + fold(addr)`.
#[inline]
pub fn mh_hashkey(addr: IpAddr, port: u16, v6: bool, key: HsipKey, offset: u32) -> u32 {
    hsiphash_u32(
        offset
            .wrapping_add(u32::from(port))
            .wrapping_add(fold(addr, v6)),
        key,
    )
}

/// One server's permutation parameters (`struct ip_vs_mh_dest_setup`), kept for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MhSetup {
    pub dest: DestId,
    pub offset: u32,
    pub skip: u32,
    /// Entries claimed per round.
    pub turns: i32,
}

/// `struct ip_vs_mh_state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MhState {
    /// gcd of the positive `last_weight`s (0 if none).
    pub gcd: i32,
    /// Right shift applied to `last_weight / gcd` so the largest fits in `MH_TAB_BITS` bits.
    pub rshift: u32,
    /// Per-server setup of the last successful rebuild, list order.
    pub setup: Vec<MhSetup>,
    /// The lookup table, `MH_TAB_SIZE` entries.
    pub table: Vec<Option<DestId>>,
}

fn fls(x: u32) -> u32 {
    32 - x.leading_zeros()
}

impl MhState {
    pub(crate) fn new(v: &View<'_>) -> MhState {
        let mut s = MhState {
            gcd: 0,
            rshift: 0,
            setup: Vec::new(),
            table: vec![None; MH_TAB_SIZE as usize],
        };
        s.rebuild(v);
        s
    }

    /// `ip_vs_mh_dest_changed` / `init_svc`: recompute gcd and shift, then permutate and
    /// populate. Runs on bind, add, delete and every edit.
    pub(crate) fn rebuild(&mut self, v: &View<'_>) {
        let mut g = 0i32;
        let mut maxw = 0i32;
        for (_, d) in v.iter() {
            let w = d.last_weight;
            if w > 0 {
                g = if g > 0 { gcd(w, g) } else { w };
            }
            maxw = maxw.max(w);
        }
        self.gcd = g;
        self.rshift = if g < 1 {
            0
        } else {
            fls((maxw / g) as u32).saturating_sub(MH_TAB_BITS)
        };
        // ip_vs_mh_reassign refuses more servers than entries; the old table stays.
        if v.list.len() > MH_TAB_SIZE as usize {
            return;
        }
        if g < 1 {
            self.setup.clear();
            self.table.iter_mut().for_each(|e| *e = None);
            return;
        }
        let m = MH_TAB_SIZE;
        self.setup = v
            .iter()
            .map(|(id, d)| {
                let offset = mh_hashkey(d.addr.ip(), d.addr.port(), v.v6, MH_KEY1, 0) % m;
                let skip = mh_hashkey(d.addr.ip(), d.addr.port(), v.v6, MH_KEY2, 0) % (m - 1) + 1;
                let t = (d.last_weight / g) >> self.rshift;
                let turns = if t != 0 {
                    t
                } else {
                    i32::from(d.last_weight != 0)
                };
                MhSetup {
                    dest: id,
                    offset,
                    skip,
                    turns,
                }
            })
            .collect();
        populate(&self.setup, &mut self.table);
    }

    pub(crate) fn schedule(&self, v: &View<'_>, flags: SchedFlags, key: &ConnKey) -> Decision {
        const PICK: &str = "mh: Maglev table entry hsiphash(source address [+ port with mh-port]) \
                            mod 4093";
        const FALLBACK: &str = "mh-fallback: the entry's server is unavailable; rehashed with \
                                offsets 0,1,2,… until a usable server";
        const NONE_EMPTY: &str = "mh: the entry is empty (no server with a non-zero last weight)";
        const NONE_BAD: &str = "mh: the entry's server is overloaded or has weight 0 (no \
                                mh-fallback)";
        const NONE_FB: &str = "mh-fallback: no usable server found while rehashing";
        let m = MH_TAB_SIZE;
        let port = if flags.port() { key.client.port() } else { 0 };
        let ip = key.client.ip();
        let ih = mh_hashkey(ip, port, v.v6, MH_KEY1, 0) % m;
        let dec = |id: DestId, r| Decision {
            dest: Some(id),
            server: Some(v.d(id).addr),
            reason: r,
            slot: Some(ih),
        };
        let none = |r| Decision {
            dest: None,
            server: None,
            reason: r,
            slot: Some(ih),
        };
        let usable = |id: DestId| {
            let d = v.d(id);
            d.weight > 0 && !d.overloaded
        };
        let Some(first) = self.table[ih as usize] else {
            return none(NONE_EMPTY);
        };
        if usable(first) {
            return dec(first, PICK);
        }
        if !flags.fallback() {
            return none(NONE_BAD);
        }
        for offset in 0..m {
            let roffset = (offset + ih) % m;
            let h = mh_hashkey(ip, port, v.v6, MH_KEY1, roffset) % m;
            match self.table[h as usize] {
                None => break,
                Some(id) if usable(id) => return dec(id, FALLBACK),
                Some(_) => {}
            }
        }
        none(NONE_FB)
    }
}

fn gcd(a: i32, b: i32) -> i32 {
    let (mut a, mut b) = (a, b);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The Maglev population step for a table of any size `m` (the kernel always uses
/// [`MH_TAB_SIZE`]); exposed so small tables can be checked by hand.
pub fn populate_table(setup: &[MhSetup], m: usize) -> Vec<Option<DestId>> {
    let mut table = vec![None; m];
    if setup.iter().any(|s| s.turns >= 1) {
        populate(setup, &mut table);
    }
    table
}

/// `ip_vs_mh_populate`: rounds over the servers in list order; each takes `turns` entries in a
/// row, each time advancing its own walk past taken entries; stop at the M-th entry.
fn populate(setup: &[MhSetup], table: &mut [Option<DestId>]) {
    let m = table.len();
    let mut taken = vec![false; m];
    let mut perm: Vec<u32> = setup.iter().map(|s| s.offset).collect();
    let mut n = 0usize;
    let mut dt_count = 0i32;
    while n < m {
        let mut i = 0;
        while i < setup.len() {
            let s = &setup[i];
            if s.turns < 1 {
                i += 1;
                continue;
            }
            let mut c = perm[i];
            while taken[c as usize] {
                perm[i] += s.skip;
                if perm[i] >= m as u32 {
                    perm[i] -= m as u32;
                }
                c = perm[i];
            }
            taken[c as usize] = true;
            table[c as usize] = Some(s.dest);
            n += 1;
            if n == m {
                return;
            }
            dt_count += 1;
            if dt_count >= s.turns {
                dt_count = 0;
                i += 1;
            }
        }
    }
}
