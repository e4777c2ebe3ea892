//! IPVS: the kernel schedulers and the virtual-server machine.
//!
//! Code map, top-down:
//! * [`replay`] — the `ipvs-scheduler-vectors/1` format: run a recorded stream of admin
//!   operations and connections, fill in or check which server the kernel picks.
//! * [`service`] — one virtual service: the newest-first destination list, the trash, weights,
//!   thresholds, OVERLOAD, connection counters; the API the IPVS-mode proxier builds on
//!   (add/edit/del servers, `schedule`, then `bind` / `establish` / `free` connections).
//! * [`sched`] — the 14 schedulers' state (plain serialisable data for the web app) and their
//!   decisions, each with a reason in the kernel's terms; [`mh`] and [`lblc`] hold the two
//!   larger ones.
//! * [`dump`] — a node's IPVS-mode dumps (ipvsadm, ipset, iptables, kube-ipvs0) in one text.
//! * [`hash`] — `hash_32`, the address fold and the 64-bit kernel's `hsiphash`.
//! * [`ipvsadm`] — `ipvsadm -Sn` / `-Ln` text, printed byte for byte and parsed back.
//! * [`ipset`] — `ipset save` / `ipset list` text, printed byte for byte and parsed back.
//! * [`mode`] — kube-proxy's IPVS mode packet by packet: netfilter, IPVS, netfilter again.
//! * [`path`] — a node's IPVS table at work: connection entries, persistence templates, timers,
//!   and what IPVS does to one packet (lookup, template, scheduling, connection).
//!
//! Architecture invariant: nothing here reads a clock or OS randomness. Time is a parameter
//! (seconds, `f64`); twos draws from a caller-supplied [`sched::RandomSource`].
//!
//! Reference: Linux mainline ~v6.17, 64-bit little-endian, default Kconfig
//! (`CONFIG_IP_VS_SH_TAB_BITS` = 8, `CONFIG_IP_VS_MH_TAB_INDEX` = 12).

pub mod dump;
pub mod hash;
pub mod ipset;
pub mod ipvsadm;
pub mod lblc;
pub mod mh;
pub mod mode;
pub mod path;
pub mod replay;
pub mod sched;
pub mod service;

pub use sched::{
    Decision, NoRandom, RandomError, RandomSource, RecordedRandom, SchedState, ScheduleError,
    SplitMix64,
};
pub use service::{
    ConnKey, Connection, Dest, DestId, SchedFlags, SchedulerKind, ServiceError, Sysctl, Time,
    VirtualService,
};
