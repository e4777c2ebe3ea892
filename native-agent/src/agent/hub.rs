//! The current snapshot, its revision, and the fan-out of diffs to clients.
//!
//! Diffs name parts by their snapshot path (`iptables.v4`, `ipsets`, `errors`, ...): a client
//! replaces that field. A client gets the whole snapshot at revision N and then every diff N+1, N+2, ... in order;
//! subscribing happens under the same lock as publishing, so no diff falls between the two. Each
//! diff names its `base` revision: a client whose last revision differs has missed something and
//! reconnects with `/ws?since=REV&instance=ID`.
//!
//! Resume: the hub keeps the last few diffs (bounded by count and bytes). A reconnecting client
//! that names the agent instance it saw and a revision still covered by that history gets a
//! `resume` message and then exactly the diffs it missed; otherwise it gets the full snapshot
//! marked `resync` with the reason. Revisions restart at 1 with every agent process, so a
//! revision number alone cannot be trusted across a restart: the `instance` id (random per
//! process) tells the client its numbering no longer applies.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::snapshot::{Collected, DumpMarks, Fingerprints, VERSION, collect_with};
use super::sys::Sys;
use super::wire::Json;

/// How many diffs a client may fall behind before it is dropped. The buffer is per receiver
/// position in one shared ring, so a slow client costs the others nothing.
pub const CLIENT_BACKLOG: usize = 16;

/// At most this many past diffs are kept for resuming clients...
pub const HISTORY_DIFFS: usize = 64;
/// ...and at most this many bytes of them (plain JSON). A diff that carries a whole 10k-Service
/// `iptables-save` (tens of MB) is not worth keeping: resending it costs as much as the
/// snapshot, and once the part changes again its blocks would be held for it alone.
pub const HISTORY_BYTES: usize = 4 << 20;

/// A message as sent: composed JSON, shared by every client that gets it.
pub type Message = Arc<Json>;

struct State {
    revision: u64,
    /// Each part's JSON and fingerprint. Parts are not kept in any other form: on a big node
    /// this is the agent's only copy of a tens-of-MB dump, packed.
    parts: BTreeMap<&'static str, (Json, String)>,
    /// The snapshot at `revision`, composed from `parts` (sharing their blocks), shared by every
    /// new client and `/snapshot` until the next change.
    snapshot: Message,
    /// Recent diffs, oldest first, contiguous up to `revision`; the same messages the broadcast
    /// sent.
    history: VecDeque<(u64, Message)>,
    history_bytes: usize,
}

pub struct Hub {
    node: Value,
    /// `node` serialized once.
    node_json: String,
    instance: String,
    state: Mutex<State>,
    tx: broadcast::Sender<Message>,
}

/// What a (re)connecting client gets first.
pub enum Start {
    /// The full snapshot (`resync` set when the client asked to resume and could not).
    Snapshot(Message),
    /// A `resume` message, then these diffs in order.
    Resume(Message, Vec<Message>),
}

/// A random id per agent process. Not a secret, only has to differ between restarts; the
/// clock and pid are mixed so two agents started in the same nanosecond still differ.
fn new_instance() -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let stack_addr = &h as *const _ as usize;
    h.update(stack_addr.to_le_bytes());
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Appends `"key":` (a JSON string key).
fn push_key(out: &mut Json, key: &str) {
    out.push_str(&json!(key).to_string());
    out.push_str(":");
}

/// The snapshot message: `head` (e.g. `"resync":"expired",`), the fixed fields, then each part
/// (sorted by name, as [`Collected`] is). Dotted names (`iptables.v4`) become fields of an object
/// (`"iptables":{"v4":...}`); their siblings are adjacent in the sorted order. Parts are shared,
/// not copied.
fn snapshot_json(
    head: &str,
    node_json: &str,
    instance: &str,
    revision: u64,
    parts: &BTreeMap<&'static str, (Json, String)>,
) -> Json {
    let mut out = Json::default();
    out.push_str(&format!(
        "{{{head}\"type\":\"snapshot\",\"version\":{VERSION},\"instance\":{},\"revision\":{revision},\"node\":{node_json}",
        json!(instance)
    ));
    let mut open: Option<&str> = None;
    for (k, (j, _)) in parts {
        let (outer, field) = match k.split_once('.') {
            Some((o, f)) => (Some(o), f),
            None => (None, *k),
        };
        if open != outer {
            if open.is_some() {
                out.push_str("}");
            }
            out.push_str(",");
            // Opening an object: its first field follows `{` directly.
            if let Some(o) = outer {
                push_key(&mut out, o);
                out.push_str("{");
            }
            open = outer;
        } else {
            out.push_str(",");
        }
        push_key(&mut out, field);
        out.append(j);
    }
    if open.is_some() {
        out.push_str("}");
    }
    out.push_str("}");
    out
}

impl Hub {
    /// Start at revision 1 with a first collection (the agent never serves an empty snapshot).
    pub fn new(node: Value, first: Collected) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(CLIENT_BACKLOG);
        let instance = new_instance();
        let node_json = node.to_string();
        let parts: BTreeMap<_, _> = first
            .into_iter()
            .map(|(k, p)| (k, (p.json, p.fingerprint)))
            .collect();
        let snapshot = Arc::new(snapshot_json("", &node_json, &instance, 1, &parts));
        Arc::new(Hub {
            state: Mutex::new(State {
                revision: 1,
                snapshot,
                parts,
                history: VecDeque::new(),
                history_bytes: 0,
            }),
            node,
            node_json,
            instance,
            tx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Message {
        self.lock().snapshot.clone()
    }

    /// What a client that last saw `since` of `instance` needs to catch up, and a receiver for
    /// every diff after that. `since: None` is a fresh client. Decided under the publishing
    /// lock, so nothing falls between the catch-up and the receiver.
    pub fn resume(
        &self,
        since: Option<u64>,
        instance: Option<&str>,
    ) -> (Start, broadcast::Receiver<Message>) {
        let st = self.lock();
        let rx = self.tx.subscribe();
        let Some(since) = since else {
            return (Start::Snapshot(st.snapshot.clone()), rx);
        };
        let why = if instance != Some(self.instance.as_str()) {
            // Another process numbered those revisions (or the client did not say which).
            Some("instance")
        } else if since > st.revision {
            Some("ahead")
        } else if since < st.revision
            && st
                .history
                .front()
                .is_none_or(|(first, _)| *first > since + 1)
        {
            Some("expired")
        } else {
            None
        };
        if let Some(why) = why {
            let snap = snapshot_json(
                &format!("\"resync\":\"{why}\","),
                &self.node_json,
                &self.instance,
                st.revision,
                &st.parts,
            );
            return (Start::Snapshot(Arc::new(snap)), rx);
        }
        let missed = st
            .history
            .iter()
            .filter(|(r, _)| *r > since)
            .map(|(_, d)| d.clone())
            .collect();
        let hello = json!({
            "type": "resume",
            "version": VERSION,
            "instance": self.instance,
            "base": since,
            "revision": st.revision,
        });
        (
            Start::Resume(Arc::new(Json::new(&hello.to_string())), missed),
            rx,
        )
    }

    /// What [`collect`](super::snapshot::collect) needs to skip re-parsing unchanged parts.
    pub fn fingerprints(&self) -> Fingerprints {
        self.lock()
            .parts
            .iter()
            .map(|(k, (_, fp))| (*k, fp.clone()))
            .collect()
    }

    /// Fold in a new collection. Returns the new revision when some part's fingerprint changed.
    pub fn apply(&self, new: Collected) -> Option<u64> {
        let mut st = self.lock();
        let changed: Vec<(&'static str, Json, String)> = new
            .into_iter()
            .filter(|(k, p)| st.parts.get(k).is_none_or(|(_, fp)| *fp != p.fingerprint))
            .map(|(k, p)| (k, p.json, p.fingerprint))
            .collect();
        if changed.is_empty() {
            return None;
        }
        st.revision += 1;
        let rev = st.revision;
        let mut diff = Json::default();
        diff.push_str(&format!(
            "{{\"type\":\"diff\",\"version\":{VERSION},\"instance\":{},\"revision\":{rev},\"base\":{},\"changed\":{{",
            json!(self.instance),
            rev - 1
        ));
        for (i, (k, j, fp)) in changed.into_iter().enumerate() {
            if i > 0 {
                diff.push_str(",");
            }
            push_key(&mut diff, k);
            diff.append(&j);
            // The replaced part's blocks are freed here unless a client is still sending them.
            st.parts.insert(k, (j, fp));
        }
        diff.push_str("}}");
        st.snapshot = Arc::new(snapshot_json(
            "",
            &self.node_json,
            &self.instance,
            rev,
            &st.parts,
        ));
        let diff = Arc::new(diff);
        remember(&mut st, rev, &diff);
        // No receivers is fine: nobody is connected.
        let _ = self.tx.send(diff);
        Some(rev)
    }
}

/// Keep `diff` for resuming clients. History stays contiguous: a diff too big to keep empties
/// it, since a gap would make every older revision unresumable anyway.
fn remember(st: &mut State, rev: u64, diff: &Message) {
    if diff.len() > HISTORY_BYTES {
        st.history.clear();
        st.history_bytes = 0;
        return;
    }
    st.history.push_back((rev, diff.clone()));
    st.history_bytes += diff.len();
    while st.history.len() > HISTORY_DIFFS || st.history_bytes > HISTORY_BYTES {
        if let Some((_, d)) = st.history.pop_front() {
            st.history_bytes -= d.len();
        }
    }
}

/// Inputs of the last Kubernetes context: the API objects' generation, the API error, and the
/// fingerprints of the node parts the context reads.
pub type KubeInputs = (u64, Option<String>, Vec<String>);

/// Node parts the Kubernetes context reads.
const KUBE_NODE_PARTS: [&str; 4] = ["iptables.v4", "iptables.v6", "ipvs", "interfaces"];

impl Hub {
    /// One part's current value, parsed back from its JSON.
    fn part_value(&self, k: &str) -> Value {
        let Some(json) = self.lock().parts.get(k).map(|(j, _)| j.clone()) else {
            return Value::Null;
        };
        json.to_text()
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// Recompute the `kubernetes` part when the API objects or the node's rules changed since
    /// `last`. Returns the new revision if the part changed. CPU-heavy on big clusters (core
    /// regenerates every Service's rules): call it off the async workers.
    pub fn refresh_kube(
        &self,
        store: &Mutex<super::kube::Store>,
        last: &mut Option<KubeInputs>,
    ) -> Option<u64> {
        let fps: Vec<String> = {
            let st = self.lock();
            KUBE_NODE_PARTS
                .iter()
                .map(|k| st.parts.get(k).map_or(String::new(), |(_, fp)| fp.clone()))
                .collect()
        };
        let s = store.lock().unwrap_or_else(|p| p.into_inner());
        let inputs = (s.generation, s.error.clone(), fps);
        if last.as_ref() == Some(&inputs) {
            return None;
        }
        // Copies of the node's texts: computing under the hub's lock would stall new clients
        // for as long as the regeneration takes.
        let (v4, v6, ipvs, ifs) = (
            self.part_value("iptables.v4"),
            self.part_value("iptables.v6"),
            self.part_value("ipvs"),
            self.part_value("interfaces"),
        );
        let text = |v: &Value| v.get("text").and_then(Value::as_str).map(str::to_string);
        let (v4, v6, ipvs) = (text(&v4), text(&v6), text(&ipvs));
        let ctx = super::kube::context(
            &s,
            &super::kube::NodeSide {
                node_name: self.node["name"].as_str().unwrap_or(""),
                interfaces: &ifs,
                iptables_v4: v4.as_deref(),
                iptables_v6: v6.as_deref(),
                ipvs: ipvs.as_deref(),
            },
        );
        drop(s);
        *last = Some(inputs);
        let mut c = Collected::new();
        c.insert("kubernetes", super::snapshot::summary_part(&ctx));
        self.apply(c)
    }
}

/// Poll every `interval` until `stop` resolves. Tools run on the blocking pool: a slow
/// `iptables-save` on a huge node must not stall the websocket tasks.
pub async fn poll_loop(
    hub: Arc<Hub>,
    sys: Arc<dyn Sys>,
    kube: Option<Arc<Mutex<super::kube::Store>>>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut kube_last: Option<KubeInputs> = None;
    // The last poll's prefix digests of the dumps: an unchanged dump is then not parsed.
    let mut marks = DumpMarks::default();
    let mut tick = tokio::time::interval(interval);
    // A poll that takes longer than the interval delays the next one instead of bunching them:
    // the update rate stays bounded by the interval.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let s = sys.clone();
        let known = hub.fingerprints();
        let mut m = std::mem::take(&mut marks);
        let Ok((c, m)) = tokio::task::spawn_blocking(move || {
            let c = collect_with(s.as_ref(), &known, &mut m);
            (c, m)
        })
        .await
        else {
            continue;
        };
        marks = m;
        hub.apply(c);
        if let Some(store) = &kube {
            let (h, s, mut last) = (hub.clone(), store.clone(), kube_last.take());
            kube_last = tokio::task::spawn_blocking(move || {
                h.refresh_kube(&s, &mut last);
                last
            })
            .await
            .unwrap_or_default();
        }
        super::sys::release_freed_memory();
    }
}
