//! The step engine: turns a core [`Trace`] into debugger frames.
//!
//! A frame is what the learner sees after one step: where the packet is (hook, table, chain stack),
//! what its header looks like at that moment (DNAT/SNAT/MARK applied in order), and which rule was
//! just evaluated. Frames are derived from the trace only; this module never invents behaviour,
//! so what the animation shows is exactly what core computed.
//!
//! Architecture invariant: pure data in, data out — no DOM, no clock, no randomness.

use proxyscope_core::trace::{Entry, Hook, Packet, Shared, Step, Trace, Verdict};
use std::net::{IpAddr, SocketAddr};

/// Where the packet is drawn in the node diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// Not yet inside the node's netfilter path.
    Client,
    Hook(Hook),
    /// The routing decision after PREROUTING.
    Routing,
    /// A route lookup on the output path: a locally generated packet re-routed after nat
    /// OUTPUT, or IPVS routing the packet it rewrote at LOCAL_IN before sending it through
    /// LOCAL_OUT.
    Reroute,
    /// Delivered to a socket on the node.
    LocalProcess,
    /// Left the node (towards a Pod or another node).
    Out,
    /// Dropped or rejected where it stood.
    Dropped,
}

/// A rule evaluation as shown in the rule panel.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleView {
    pub table: Shared,
    pub chain: Shared,
    pub index: usize,
    pub text: Shared,
    pub line: Option<usize>,
    pub matched: bool,
    pub failed: Option<String>,
    pub note: Option<String>,
}

/// Which header fields the current step rewrote (drawn highlighted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    pub src: bool,
    pub dst: bool,
    pub mark: bool,
}

/// The view after one step of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Index of the step in `trace.steps`.
    pub step: usize,
    pub place: Place,
    /// The hook whose chains are running (None before the first hook).
    pub hook: Option<Hook>,
    pub table: Option<Shared>,
    /// Chain call stack, outermost first (a `-j` pushes, RETURN / chain end pops, `-g` replaces).
    pub chains: Vec<Shared>,
    /// The packet header as it is after this step.
    pub packet: Packet,
    pub changed: Changed,
    pub rule: Option<RuleView>,
    /// Core's plain-words notes that follow this step.
    pub notes: Vec<String>,
}

/// One visit of the packet to a hook: the tables it ran there, in the kernel's priority order
/// (raw, mangle, nat, filter, security), and the frame where the visit starts.
#[derive(Debug, Clone, PartialEq)]
pub struct HookVisit {
    pub hook: Hook,
    pub tables: Vec<Shared>,
    pub frame: usize,
}

/// All frames of a trace plus the per-hook index used by "jump to hook".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline {
    pub frames: Vec<Frame>,
    /// Hook visits in the order the packet met them. A locally generated packet visits OUTPUT
    /// twice (nat before the re-route, filter after it), so a hook can appear more than once.
    pub hooks: Vec<HookVisit>,
}

impl Timeline {
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// First frame of the next hook strictly after `cursor`, if any.
    pub fn next_hook(&self, cursor: usize) -> Option<usize> {
        self.hooks.iter().map(|h| h.frame).find(|&i| i > cursor)
    }

    /// First frame of the hook before the one `cursor` is in (or of the current one when the cursor
    /// is past its first frame), like a debugger's "step back out".
    pub fn prev_hook(&self, cursor: usize) -> Option<usize> {
        self.hooks
            .iter()
            .map(|h| h.frame)
            .rev()
            .find(|&i| i < cursor)
    }
}

/// Parse the `to`/`from` strings of DNAT/SNAT steps: `ip:port`, `[v6]:port` or a bare address.
pub fn parse_endpoint(s: &str) -> Option<(IpAddr, Option<u16>)> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| (ip, None))
}

/// Build the timeline of a trace. Note steps do not get a frame of their own: they are narration
/// for the step before them, so stepping never lands on a "nothing happened" frame.
pub fn timeline(trace: &Trace) -> Timeline {
    let mut frames: Vec<Frame> = Vec::with_capacity(trace.steps.len());
    let mut hooks: Vec<HookVisit> = Vec::new();
    let mut packet = trace.packet;
    let mut place = Place::Client;
    let mut hook = None;
    let mut table: Option<Shared> = None;
    let mut chains: Vec<Shared> = Vec::new();
    let mut pending_notes: Vec<String> = Vec::new();
    // Consecutive Hook steps of one hook (its tables) form one visit; routing ends a visit.
    let mut visit_open = false;

    for (i, step) in trace.steps.iter().enumerate() {
        let mut changed = Changed::default();
        let mut rule = None;
        match step {
            Step::Note { text } => {
                match frames.last_mut() {
                    Some(f) => f.notes.push(text.clone()),
                    None => pending_notes.push(text.clone()),
                }
                continue;
            }
            Step::Hook { hook: h, table: t } => {
                // A built-in chain's walk begins afresh at each hook/table pair.
                hook = Some(*h);
                table = Some(t.clone());
                chains.clear();
                place = Place::Hook(*h);
                match hooks.last_mut() {
                    Some(v) if visit_open && v.hook == *h => v.tables.push(t.clone()),
                    _ => hooks.push(HookVisit {
                        hook: *h,
                        tables: vec![t.clone()],
                        frame: frames.len(),
                    }),
                }
                visit_open = true;
            }
            Step::Conntrack { .. } => {}
            Step::Route { .. } => {
                let output_path = hooks
                    .iter()
                    .any(|v| matches!(v.hook, Hook::Input | Hook::Output));
                place = if output_path {
                    Place::Reroute
                } else {
                    Place::Routing
                };
                visit_open = false;
            }
            Step::Chain {
                table: t,
                chain,
                entry,
            } => {
                table = Some(t.clone());
                match entry {
                    Entry::Hook => {
                        chains.clear();
                        chains.push(chain.clone());
                    }
                    Entry::Jump => chains.push(chain.clone()),
                    // -g: the called chain replaces the caller on the return path.
                    Entry::Goto => {
                        chains.pop();
                        chains.push(chain.clone());
                    }
                }
            }
            Step::Rule {
                table: t,
                chain,
                index,
                text,
                line,
                matched,
                failed,
                note,
            } => {
                rule = Some(RuleView {
                    table: t.clone(),
                    chain: chain.clone(),
                    index: *index,
                    text: text.clone(),
                    line: *line,
                    matched: *matched,
                    failed: failed.clone(),
                    note: note.clone(),
                });
            }
            Step::ChainEnd { chain, .. } | Step::Return { chain, .. } => {
                if chains.last() == Some(chain) {
                    chains.pop();
                }
            }
            Step::Mark { to, .. } => {
                changed.mark = packet.mark != *to;
                packet.mark = *to;
            }
            Step::Dnat { to, .. } => {
                if let Some((ip, port)) = parse_endpoint(to) {
                    packet.dst = ip;
                    if let Some(p) = port {
                        packet.dport = p;
                    }
                    changed.dst = true;
                }
            }
            Step::Snat { to, .. } => {
                if let Some((ip, port)) = parse_endpoint(to) {
                    packet.src = ip;
                    if let Some(p) = port {
                        packet.sport = p;
                    }
                    changed.src = true;
                }
            }
            Step::Skipped { .. }
            | Step::Recent { .. }
            | Step::IpvsLookup { .. }
            | Step::IpvsSchedule { .. }
            | Step::IpvsConnection { .. } => {}
            Step::Verdict { verdict } => {
                place = match verdict {
                    Verdict::Accept => Place::LocalProcess,
                    Verdict::Forwarded => Place::Out,
                    Verdict::Drop | Verdict::Reject => Place::Dropped,
                };
                chains.clear();
            }
        }
        frames.push(Frame {
            step: i,
            place,
            hook,
            table: table.clone(),
            chains: chains.clone(),
            packet,
            changed,
            rule,
            notes: std::mem::take(&mut pending_notes),
        });
    }
    Timeline { frames, hooks }
}

/// Every place the packet passes through up to and including frame `upto` (for drawing the
/// travelled path).
pub fn visited(tl: &Timeline, upto: usize) -> Vec<Place> {
    let mut out: Vec<Place> = vec![Place::Client];
    for f in tl.frames.iter().take(upto + 1) {
        if out.last() != Some(&f.place) {
            out.push(f.place);
        }
    }
    out
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proxyscope_core::trace::{Outcome, Proto};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A hand-written trace of the textbook ClusterIP flow from a Pod on another node:
    /// nat PREROUTING -> KUBE-SERVICES -> KUBE-SVC-X -> KUBE-SEP-Y (DNAT), route (not local),
    /// filter FORWARD, nat POSTROUTING -> KUBE-POSTROUTING (RETURN: no mark), forwarded.
    pub(crate) fn sample_trace() -> Trace {
        let packet = Packet {
            src: ip("10.0.1.5"),
            sport: 40000,
            dst: ip("10.104.14.67"),
            dport: 80,
            proto: Proto::Tcp,
            mark: 0,
        };
        let rule = |chain: &str, index: usize, text: &str, matched: bool, failed: Option<&str>| {
            Step::Rule {
                table: "nat".into(),
                chain: chain.into(),
                index,
                text: text.into(),
                line: None,
                matched,
                failed: failed.map(Into::into),
                note: None,
            }
        };
        let steps = vec![
            Step::Conntrack {
                established: false,
                note: "new".into(),
            },
            Step::Hook {
                hook: Hook::Prerouting,
                table: "nat".into(),
            },
            Step::Chain {
                table: "nat".into(),
                chain: "PREROUTING".into(),
                entry: Entry::Hook,
            },
            rule(
                "PREROUTING",
                1,
                "-A PREROUTING -j KUBE-SERVICES",
                true,
                None,
            ),
            Step::Chain {
                table: "nat".into(),
                chain: "KUBE-SERVICES".into(),
                entry: Entry::Jump,
            },
            rule(
                "KUBE-SERVICES",
                1,
                "-A KUBE-SERVICES -d 10.104.14.67/32 -p tcp --dport 80 -j KUBE-SVC-X",
                true,
                None,
            ),
            Step::Chain {
                table: "nat".into(),
                chain: "KUBE-SVC-X".into(),
                entry: Entry::Jump,
            },
            rule(
                "KUBE-SVC-X",
                1,
                "-A KUBE-SVC-X ! -s 10.0.0.0/16 -j KUBE-MARK-MASQ",
                false,
                Some("! -s 10.0.0.0/16"),
            ),
            Step::Note {
                text: "source is a pod: no masquerade".into(),
            },
            rule(
                "KUBE-SVC-X",
                2,
                "-A KUBE-SVC-X -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-Y",
                true,
                None,
            ),
            Step::Chain {
                table: "nat".into(),
                chain: "KUBE-SEP-Y".into(),
                entry: Entry::Jump,
            },
            rule(
                "KUBE-SEP-Y",
                2,
                "-A KUBE-SEP-Y -p tcp -j DNAT --to-destination 10.0.0.2:8080",
                true,
                None,
            ),
            Step::Dnat {
                from: "10.104.14.67:80".into(),
                to: "10.0.0.2:8080".into(),
            },
            Step::Route {
                local: false,
                note: "10.0.0.2 via cni0".into(),
            },
            Step::Hook {
                hook: Hook::Forward,
                table: "filter".into(),
            },
            Step::Hook {
                hook: Hook::Postrouting,
                table: "nat".into(),
            },
            Step::Chain {
                table: "nat".into(),
                chain: "POSTROUTING".into(),
                entry: Entry::Hook,
            },
            rule(
                "POSTROUTING",
                1,
                "-A POSTROUTING -j KUBE-POSTROUTING",
                true,
                None,
            ),
            Step::Chain {
                table: "nat".into(),
                chain: "KUBE-POSTROUTING".into(),
                entry: Entry::Jump,
            },
            rule(
                "KUBE-POSTROUTING",
                1,
                "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
                true,
                None,
            ),
            Step::Return {
                table: "nat".into(),
                chain: "KUBE-POSTROUTING".into(),
            },
            Step::Verdict {
                verdict: Verdict::Forwarded,
            },
        ];
        let chosen = Outcome {
            output: "10.0.0.2:8080".into(),
            probability: 1.0 / 3.0,
            masq: false,
        };
        Trace {
            mode: "iptables".into(),
            packet,
            output: "10.0.0.2:8080, 10.0.0.3:8080, 10.0.0.4:8080".into(),
            masq: false,
            outcomes: vec![chosen.clone()],
            chosen,
            rules_evaluated: 6,
            final_packet: None,
            verdict: Verdict::Forwarded,
            steps,
            warnings: vec![],
        }
    }

    #[test]
    fn notes_attach_to_the_step_before_and_get_no_frame() {
        let t = sample_trace();
        let tl = timeline(&t);
        // 22 steps, one of which is a Note.
        assert_eq!(tl.len(), t.steps.len() - 1);
        let f = tl.frames.iter().find(|f| !f.notes.is_empty()).unwrap();
        assert_eq!(
            f.rule.as_ref().unwrap().failed.as_deref(),
            Some("! -s 10.0.0.0/16")
        );
    }

    #[test]
    fn dnat_rewrites_destination_from_that_frame_on() {
        let tl = timeline(&sample_trace());
        let i = tl.frames.iter().position(|f| f.changed.dst).unwrap();
        assert_eq!(tl.frames[i - 1].packet.dst, ip("10.104.14.67"));
        assert_eq!(tl.frames[i].packet.dst, ip("10.0.0.2"));
        assert_eq!(tl.frames[i].packet.dport, 8080);
        // The source is untouched: a pod source is not masqueraded for a ClusterIP.
        assert_eq!(tl.frames.last().unwrap().packet.src, ip("10.0.1.5"));
    }

    #[test]
    fn chain_stack_follows_jumps_and_returns() {
        let tl = timeline(&sample_trace());
        let dnat = tl.frames.iter().find(|f| f.changed.dst).unwrap();
        let names: Vec<&str> = dnat.chains.iter().map(|c| &**c).collect();
        assert_eq!(
            names,
            ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X", "KUBE-SEP-Y"]
        );
        let ret = tl.frames.iter().find(|f| {
            f.rule.is_none()
                && f.hook == Some(Hook::Postrouting)
                && f.chains == [Shared::from("POSTROUTING")]
        });
        assert!(ret.is_some());
    }

    #[test]
    fn hooks_in_order_and_jumps() {
        let tl = timeline(&sample_trace());
        let order: Vec<Hook> = tl.hooks.iter().map(|h| h.hook).collect();
        assert_eq!(order, [Hook::Prerouting, Hook::Forward, Hook::Postrouting]);
        let fwd = tl.hooks[1].frame;
        assert_eq!(tl.next_hook(0), Some(tl.hooks[0].frame));
        assert_eq!(tl.next_hook(tl.hooks[0].frame), Some(fwd));
        assert_eq!(tl.prev_hook(fwd), Some(tl.hooks[0].frame));
        assert_eq!(tl.frames.last().unwrap().place, Place::Out);
    }

    /// A locally generated packet (kernel path: OUTPUT raw/mangle/nat, re-route, OUTPUT filter,
    /// POSTROUTING) visits OUTPUT twice; the tables of one visit are grouped.
    #[test]
    fn local_origin_visits_output_twice() {
        let mut t = sample_trace();
        let h = |hook, table: &str| Step::Hook {
            hook,
            table: table.into(),
        };
        t.steps = vec![
            h(Hook::Output, "raw"),
            h(Hook::Output, "nat"),
            Step::Route {
                local: false,
                note: String::new(),
            },
            h(Hook::Output, "filter"),
            h(Hook::Postrouting, "nat"),
            Step::Verdict {
                verdict: Verdict::Forwarded,
            },
        ];
        let tl = timeline(&t);
        let v: Vec<(Hook, Vec<&str>, usize)> = tl
            .hooks
            .iter()
            .map(|v| (v.hook, v.tables.iter().map(|t| &**t).collect(), v.frame))
            .collect();
        assert_eq!(
            v,
            [
                (Hook::Output, vec!["raw", "nat"], 0),
                (Hook::Output, vec!["filter"], 3),
                (Hook::Postrouting, vec!["nat"], 4),
            ]
        );
    }

    #[test]
    fn a_route_after_local_in_is_an_output_route() {
        let mut t = sample_trace();
        let h = |hook, table: &str| Step::Hook {
            hook,
            table: table.into(),
        };
        t.steps = vec![
            h(Hook::Prerouting, "nat"),
            Step::Route {
                local: true,
                note: String::new(),
            },
            h(Hook::Input, "filter"),
            Step::Route {
                local: false,
                note: String::new(),
            },
            h(Hook::Output, "filter"),
        ];
        let places: Vec<Place> = timeline(&t).frames.iter().map(|f| f.place).collect();
        assert_eq!(places[1], Place::Routing);
        assert_eq!(places[3], Place::Reroute);
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("10.0.0.2:8080"),
            Some((ip("10.0.0.2"), Some(8080)))
        );
        assert_eq!(
            parse_endpoint("[fd00::2]:80"),
            Some((ip("fd00::2"), Some(80)))
        );
        assert_eq!(
            parse_endpoint("192.168.0.2"),
            Some((ip("192.168.0.2"), None))
        );
        assert_eq!(parse_endpoint("nonsense"), None);
    }
}
