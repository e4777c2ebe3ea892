//! One IPVS virtual service and its real servers ("dests"), kept the way the kernel keeps them.
//!
//! What is modelled (see `net/netfilter/ipvs/ip_vs_ctl.c`, `ip_vs_conn.c`):
//! * the destination list is newest-first (`list_add_rcu` at the head); editing does not move a
//!   server; deleting unlinks it and clears `AVAILABLE`;
//! * a deleted server goes to the trash with its counters and live connections; adding the same
//!   address:port again revives the same object (`ip_vs_trash_get_dest`);
//! * `weight`, `last_weight` (kept on add and on every non-zero edit), `u`/`l` thresholds and the
//!   `OVERLOAD` flag they drive, `activeconns`/`inactconns` moved by connection state;
//! * the scheduler callbacks (`init_service`, `add_dest`, `del_dest`, `upd_dest`) fire exactly
//!   when the kernel fires them.
//!
//! Not modelled here: persistence templates, forwarding methods, the packet path.

use super::sched::{Decision, RandomSource, SchedState, ScheduleError, View};
use crate::trace::Proto;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// Seconds since some fixed origin (the replay uses "since the service was created").
pub type Time = f64;

/// Index of a real server in its service's arena. Stable for the life of the service: a deleted
/// and re-added server keeps its id (the kernel revives the same object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DestId(pub u32);

impl DestId {
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The 14 schedulers of mainline Linux (`ip_vs_<name>.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Fo,
    Ovf,
    Mh,
    Twos,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Dh,
        SchedulerKind::Sh,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Mh,
        SchedulerKind::Twos,
    ];

    /// The name ipvsadm's `-s` takes.
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Twos => "twos",
        }
    }

    pub fn parse(s: &str) -> Option<SchedulerKind> {
        SchedulerKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The scheduler bits of `svc->flags` (`IP_VS_SVC_F_SCHED1..3`). ipvsadm names them per
/// scheduler (`sh-fallback` = `mh-fallback` = `flag-1`, `sh-port` = `mh-port` = `flag-2`) but
/// the kernel only stores bits; a scheduler reads them when it schedules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchedFlags(pub u32);

impl SchedFlags {
    pub const FLAG_1: u32 = 0x08;
    pub const FLAG_2: u32 = 0x10;
    pub const FLAG_3: u32 = 0x20;
    /// Every bit a scheduler may read.
    pub const MASK: u32 = Self::FLAG_1 | Self::FLAG_2 | Self::FLAG_3;

    /// `sh-fallback` / `mh-fallback`.
    #[inline]
    pub fn fallback(self) -> bool {
        self.0 & Self::FLAG_1 != 0
    }

    /// `sh-port` / `mh-port`.
    #[inline]
    pub fn port(self) -> bool {
        self.0 & Self::FLAG_2 != 0
    }

    /// The bit of one ipvsadm flag name, or `None` if ipvsadm does not know the name.
    pub fn bit_of(name: &str) -> Option<u32> {
        match name {
            "sh-fallback" | "mh-fallback" | "flag-1" => Some(Self::FLAG_1),
            "sh-port" | "mh-port" | "flag-2" => Some(Self::FLAG_2),
            "flag-3" => Some(Self::FLAG_3),
            _ => None,
        }
    }

    /// OR of the named flags; the error names the first unknown one.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<SchedFlags, String> {
        let mut v = 0;
        for n in names {
            v |= Self::bit_of(n.as_ref()).ok_or_else(|| {
                format!(
                    "unknown scheduler flag {:?} (known: sh-fallback, sh-port, mh-fallback, \
                     mh-port, flag-1, flag-2, flag-3)",
                    n.as_ref()
                )
            })?;
        }
        Ok(SchedFlags(v))
    }

    /// The names ipvsadm would print for these bits under `kind`.
    pub fn names(self, kind: SchedulerKind) -> Vec<&'static str> {
        let (one, two) = match kind {
            SchedulerKind::Sh => ("sh-fallback", "sh-port"),
            SchedulerKind::Mh => ("mh-fallback", "mh-port"),
            _ => ("flag-1", "flag-2"),
        };
        let mut out = Vec::new();
        if self.0 & Self::FLAG_1 != 0 {
            out.push(one);
        }
        if self.0 & Self::FLAG_2 != 0 {
            out.push(two);
        }
        if self.0 & Self::FLAG_3 != 0 {
            out.push("flag-3");
        }
        out
    }
}

/// Per-netns sysctls the schedulers read, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sysctl {
    /// `net.ipv4.vs.lblc_expiration` (default 24 h).
    pub lblc_expiration: Time,
    /// `net.ipv4.vs.lblcr_expiration` (default 24 h).
    pub lblcr_expiration: Time,
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl {
            lblc_expiration: 86_400.0,
            lblcr_expiration: 86_400.0,
        }
    }
}

/// One real server (`struct ip_vs_dest`), only the fields schedulers and counters touch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dest {
    pub addr: SocketAddr,
    pub weight: i32,
    /// Latest weight set on add or by a non-zero edit (`__ip_vs_update_dest`); mh reads it.
    pub last_weight: i32,
    /// `-x`: 0 = unset.
    pub u_threshold: u32,
    /// `-y`: 0 = unset.
    pub l_threshold: u32,
    pub activeconns: i32,
    pub inactconns: i32,
    /// `IP_VS_DEST_F_OVERLOAD`.
    pub overloaded: bool,
    /// `IP_VS_DEST_F_AVAILABLE`: linked in the service (false while in the trash).
    pub available: bool,
    /// Index in the newest-first list while linked (a cache; rr/wrr need it in O(1)).
    #[serde(skip)]
    pub(crate) list_index: u32,
}

impl Dest {
    /// `ip_vs_dest_conn_overhead`: `(activeconns << 8) + inactconns`, in C `int` arithmetic.
    #[inline]
    pub fn overhead(&self) -> i32 {
        (self.activeconns.wrapping_shl(8)).wrapping_add(self.inactconns)
    }

    /// `ip_vs_dest_totalconns`.
    #[inline]
    pub fn total_conns(&self) -> i64 {
        i64::from(self.activeconns) + i64::from(self.inactconns)
    }
}

/// What picked the connection and what the kernel needs to hash on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnKey {
    pub proto: Proto,
    /// Packet source (client) address and port.
    pub client: SocketAddr,
    /// Packet destination address and port (the VIP for a normal service).
    pub dst: SocketAddr,
}

/// A connection entry bound to a real server. Plain data: the caller stores it and hands it
/// back for state changes and for freeing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub dest: DestId,
    pub proto: Proto,
    /// Counted in `activeconns` (true) or `inactconns` (false).
    pub active: bool,
}

/// Administrative command refused, with the kernel's errno reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    /// `-EEXIST`: the server is already in the list.
    DestExists(SocketAddr),
    /// `-ENOENT`: no such server in the list.
    NoSuchDest(SocketAddr),
    /// `-ERANGE`: weight below zero.
    NegativeWeight(i32),
    /// `-ERANGE`: lower threshold above the upper one.
    ThresholdOrder { l: u32, u: u32 },
    /// A v4 server in a v6 service or the other way round. The kernel accepts mixed families only
    /// for tunnelling; this model does not.
    FamilyMismatch(SocketAddr),
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::DestExists(a) => write!(f, "server {a} already exists (EEXIST)"),
            ServiceError::NoSuchDest(a) => write!(f, "no server {a} in the service (ENOENT)"),
            ServiceError::NegativeWeight(w) => write!(f, "weight {w} is below zero (ERANGE)"),
            ServiceError::ThresholdOrder { l, u } => write!(
                f,
                "lower threshold {l} is higher than upper threshold {u} (ERANGE)"
            ),
            ServiceError::FamilyMismatch(a) => {
                write!(f, "server {a} is not of the service's address family")
            }
        }
    }
}

impl std::error::Error for ServiceError {}

/// An IPVS virtual service: its real servers, its scheduler and the scheduler's state.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualService {
    vip: SocketAddr,
    proto: Proto,
    flags: SchedFlags,
    sysctl: Sysctl,
    /// Every server ever added, linked or in the trash; `DestId` indexes it.
    dests: Vec<Dest>,
    /// The destination list, newest first.
    list: Vec<DestId>,
    /// What the load-based schedulers read, in list order, packed (a cache kept in step with
    /// `dests`; scanning 16-byte entries instead of whole servers is what makes a 100-server
    /// wlc decision take tens of nanoseconds).
    #[serde(skip)]
    hot: Vec<Hot>,
    sched: SchedState,
}

impl VirtualService {
    /// `ipvsadm -A -t vip -s kind -b flags` at time `now` (binds the scheduler, which starts the
    /// lblc/lblcr timer).
    pub fn new(
        vip: SocketAddr,
        proto: Proto,
        kind: SchedulerKind,
        flags: SchedFlags,
        sysctl: Sysctl,
        now: Time,
    ) -> VirtualService {
        let mut svc = VirtualService {
            vip,
            proto,
            flags,
            sysctl,
            dests: Vec::new(),
            list: Vec::new(),
            hot: Vec::new(),
            sched: SchedState::placeholder(),
        };
        svc.sched = SchedState::init(kind, &svc.view(), now);
        svc
    }

    pub fn vip(&self) -> SocketAddr {
        self.vip
    }
    pub fn proto(&self) -> Proto {
        self.proto
    }
    pub fn flags(&self) -> SchedFlags {
        self.flags
    }
    pub fn sysctl(&self) -> Sysctl {
        self.sysctl
    }
    pub fn set_sysctl(&mut self, s: Sysctl) {
        self.sysctl = s;
    }
    pub fn scheduler(&self) -> SchedulerKind {
        self.sched.kind()
    }
    /// The scheduler's private state (tables, caches, position) for display.
    pub fn sched_state(&self) -> &SchedState {
        &self.sched
    }
    /// The destination list in kernel order (newest first).
    pub fn list(&self) -> &[DestId] {
        &self.list
    }
    pub fn dest(&self, id: DestId) -> &Dest {
        &self.dests[id.index()]
    }
    /// Every server object, linked or in the trash, by id.
    pub fn all_dests(&self) -> &[Dest] {
        &self.dests
    }
    /// The linked servers in list order.
    pub fn iter(&self) -> impl Iterator<Item = (DestId, &Dest)> + '_ {
        self.list.iter().map(|&id| (id, &self.dests[id.index()]))
    }
    /// A server object by address, linked or in the trash.
    pub fn find(&self, addr: SocketAddr) -> Option<DestId> {
        self.dests
            .iter()
            .position(|d| d.addr == addr)
            .map(|i| DestId(i as u32))
    }
    /// A linked server by address.
    pub fn find_linked(&self, addr: SocketAddr) -> Option<DestId> {
        self.find(addr)
            .filter(|id| self.dests[id.index()].available)
    }

    pub(crate) fn view(&self) -> View<'_> {
        View {
            dests: &self.dests,
            list: &self.list,
            hot: &self.hot,
            v6: self.vip.is_ipv6(),
        }
    }

    fn check_udest(
        &self,
        addr: SocketAddr,
        weight: i32,
        u: u32,
        l: u32,
    ) -> Result<(), ServiceError> {
        if weight < 0 {
            return Err(ServiceError::NegativeWeight(weight));
        }
        if l > u {
            return Err(ServiceError::ThresholdOrder { l, u });
        }
        if addr.is_ipv6() != self.vip.is_ipv6() {
            return Err(ServiceError::FamilyMismatch(addr));
        }
        Ok(())
    }

    fn reindex(&mut self) {
        self.hot.clear();
        for (i, id) in self.list.iter().enumerate() {
            let d = &mut self.dests[id.index()];
            d.list_index = i as u32;
            self.hot.push(Hot::of(d));
        }
    }

    /// Refresh the packed copy of one server after its weight, flags or counters changed.
    #[inline]
    fn sync(&mut self, id: DestId) {
        let d = &self.dests[id.index()];
        if d.available {
            self.hot[d.list_index as usize] = Hot::of(d);
        }
    }

    /// The part of `__ip_vs_update_dest` that schedulers can see.
    fn update_dest(&mut self, id: DestId, weight: i32, u: u32, l: u32, add: bool) {
        let d = &mut self.dests[id.index()];
        if add || weight != 0 {
            d.last_weight = weight;
        }
        d.weight = weight;
        d.available = true;
        // Raising the upper threshold or removing it lifts OVERLOAD at once; lowering it waits
        // for the next connection bind to re-evaluate.
        if u == 0 || u > d.u_threshold {
            d.overloaded = false;
        }
        d.u_threshold = u;
        d.l_threshold = l;
    }

    /// `ipvsadm -a -r addr -w weight -x u -y l`: link at the head, reviving a trashed object.
    pub fn add_dest(
        &mut self,
        addr: SocketAddr,
        weight: i32,
        u_threshold: u32,
        l_threshold: u32,
        now: Time,
    ) -> Result<DestId, ServiceError> {
        self.check_udest(addr, weight, u_threshold, l_threshold)?;
        let id = match self.find(addr) {
            Some(id) if self.dests[id.index()].available => {
                return Err(ServiceError::DestExists(addr));
            }
            Some(id) => id,
            None => {
                self.dests.push(Dest {
                    addr,
                    weight: 0,
                    last_weight: 0,
                    u_threshold: 0,
                    l_threshold: 0,
                    activeconns: 0,
                    inactconns: 0,
                    overloaded: false,
                    available: false,
                    list_index: 0,
                });
                DestId((self.dests.len() - 1) as u32)
            }
        };
        self.update_dest(id, weight, u_threshold, l_threshold, true);
        self.list.insert(0, id);
        self.reindex();
        let view = View {
            dests: &self.dests,
            list: &self.list,
            hot: &self.hot,
            v6: self.vip.is_ipv6(),
        };
        self.sched.add_dest(&view, id, now);
        Ok(id)
    }

    /// `ipvsadm -e -r addr -w weight -x u -y l`. The server keeps its place in the list.
    pub fn edit_dest(
        &mut self,
        addr: SocketAddr,
        weight: i32,
        u_threshold: u32,
        l_threshold: u32,
        now: Time,
    ) -> Result<DestId, ServiceError> {
        self.check_udest(addr, weight, u_threshold, l_threshold)?;
        let id = self
            .find_linked(addr)
            .ok_or(ServiceError::NoSuchDest(addr))?;
        self.update_dest(id, weight, u_threshold, l_threshold, false);
        self.sync(id);
        let view = View {
            dests: &self.dests,
            list: &self.list,
            hot: &self.hot,
            v6: self.vip.is_ipv6(),
        };
        self.sched.upd_dest(&view, id, now);
        Ok(id)
    }

    /// `ipvsadm -d -r addr`: unlink into the trash; counters and connections stay.
    pub fn del_dest(&mut self, addr: SocketAddr, now: Time) -> Result<DestId, ServiceError> {
        let id = self
            .find_linked(addr)
            .ok_or(ServiceError::NoSuchDest(addr))?;
        let idx = self.dests[id.index()].list_index as usize;
        let prev = if idx == 0 {
            None
        } else {
            Some(self.list[idx - 1])
        };
        self.dests[id.index()].available = false;
        self.list.remove(idx);
        self.reindex();
        let view = View {
            dests: &self.dests,
            list: &self.list,
            hot: &self.hot,
            v6: self.vip.is_ipv6(),
        };
        self.sched.del_dest(&view, id, prev, now);
        Ok(id)
    }

    /// `ipvsadm -E -s kind -b flags`: flags are replaced; the scheduler is unbound and a fresh
    /// one bound only if the name differs (`ip_vs_edit_service`).
    pub fn set_scheduler(&mut self, kind: SchedulerKind, flags: SchedFlags, now: Time) {
        if kind != self.sched.kind() {
            self.sched = SchedState::init(kind, &self.view(), now);
        }
        self.flags = flags;
    }

    /// Force `OVERLOAD` (a test hook: in the kernel only thresholds set it).
    pub fn set_overload(&mut self, addr: SocketAddr, value: bool) -> Result<DestId, ServiceError> {
        let id = self.find(addr).ok_or(ServiceError::NoSuchDest(addr))?;
        self.dests[id.index()].overloaded = value;
        self.sync(id);
        Ok(id)
    }

    /// Run the scheduler's timers up to `now` (lblc/lblcr garbage collection). [`schedule`]
    /// does this itself; call it to see the state at a given time.
    ///
    /// [`schedule`]: VirtualService::schedule
    pub fn advance(&mut self, now: Time) {
        let sysctl = self.sysctl;
        self.sched.advance(now, sysctl);
    }

    /// Ask the scheduler for a server for a new connection. Nothing is bound: on `Some`, call
    /// [`bind`](VirtualService::bind) as the kernel's `ip_vs_conn_new` would.
    pub fn schedule(
        &mut self,
        key: &ConnKey,
        now: Time,
        rng: &mut dyn RandomSource,
    ) -> Result<Decision, ScheduleError> {
        let sysctl = self.sysctl;
        self.sched.advance(now, sysctl);
        let view = View {
            dests: &self.dests,
            list: &self.list,
            hot: &self.hot,
            v6: self.vip.is_ipv6(),
        };
        self.sched
            .schedule(&view, self.flags, sysctl, key, now, rng)
    }

    /// `ip_vs_bind_dest` of a new connection: conn flags always carry `INACTIVE`, so it counts
    /// in `inactconns`; then the upper threshold may set OVERLOAD.
    pub fn bind(&mut self, dest: DestId, proto: Proto) -> Connection {
        let d = &mut self.dests[dest.index()];
        d.inactconns += 1;
        if d.u_threshold != 0 && d.total_conns() >= i64::from(d.u_threshold) {
            d.overloaded = true;
        }
        self.sync(dest);
        Connection {
            dest,
            proto,
            active: false,
        }
    }

    /// TCP (or SCTP) reaches ESTABLISHED (`set_tcp_state`): inactive → active. No-op if
    /// already active, and always for UDP: `udp_state_transition` only refreshes the timeout,
    /// so a UDP connection stays in `inactconns` for its whole life.
    pub fn establish(&mut self, conn: &mut Connection) {
        if !conn.active && conn.proto != Proto::Udp {
            let d = &mut self.dests[conn.dest.index()];
            d.inactconns -= 1;
            d.activeconns += 1;
            conn.active = true;
            self.sync(conn.dest);
        }
    }

    /// TCP leaves ESTABLISHED (FIN/RST): active → inactive. No-op if already inactive.
    pub fn leave_established(&mut self, conn: &mut Connection) {
        if conn.active {
            let d = &mut self.dests[conn.dest.index()];
            d.activeconns -= 1;
            d.inactconns += 1;
            conn.active = false;
            self.sync(conn.dest);
        }
    }

    /// `ip_vs_unbind_dest` when the entry expires: decrement, then the lower-threshold rule.
    pub fn free(&mut self, conn: Connection) {
        let d = &mut self.dests[conn.dest.index()];
        if conn.active {
            d.activeconns -= 1;
        } else {
            d.inactconns -= 1;
        }
        let total = d.total_conns();
        if d.l_threshold != 0 {
            if total < i64::from(d.l_threshold) {
                d.overloaded = false;
            }
        } else if d.u_threshold != 0 {
            // No lower threshold: clear below 75 % of the upper one.
            if total * 4 < i64::from(d.u_threshold) * 3 {
                d.overloaded = false;
            }
        } else {
            d.overloaded = false;
        }
        self.sync(conn.dest);
    }
}

/// The fields of a linked server that the load-based schedulers scan, packed.
///
/// `weight` is the *effective* weight: 0 while the server is OVERLOAD. Every scheduler that
/// reads this treats OVERLOAD exactly like weight 0 (skipped, or unable to win a
/// `x * weight > y * best_weight` comparison), so folding the flag in removes a branch from
/// every scan without changing any decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hot {
    pub weight: i32,
    pub active: i32,
    /// `active * 256 + inactive`, precomputed.
    pub overhead: i32,
}

impl Hot {
    #[inline]
    fn of(d: &Dest) -> Hot {
        Hot {
            weight: if d.overloaded { 0 } else { d.weight },
            active: d.activeconns,
            overhead: d.overhead(),
        }
    }

    /// As [`Dest::overhead`].
    #[inline]
    pub fn overhead(&self) -> i32 {
        self.overhead
    }

    /// Not OVERLOAD and weight > 0.
    #[inline]
    pub fn usable(&self) -> bool {
        self.weight > 0
    }
}
