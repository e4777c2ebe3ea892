//! The current snapshot, its revision, and the fan-out of diffs to clients.
//!
//! Diffs name parts by their snapshot path (`iptables.v4`, `ipsets`, `errors`, ...): a client
//! replaces that field. A client gets the whole snapshot at revision N and then every diff N+1, N+2, ... in order;
//! subscribing happens under the same lock as publishing, so no diff falls between the two. Each
//! diff names its `base` revision: a client whose last revision differs has missed something and
//! must fetch `/snapshot` again (or reconnect).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::snapshot::{Collected, Fingerprints, Part, VERSION, collect};
use super::sys::Sys;

/// How many diffs a client may fall behind before it is dropped. The buffer is per receiver
/// position in one shared ring, so a slow client costs the others nothing.
pub const CLIENT_BACKLOG: usize = 16;

struct State {
    revision: u64,
    parts: Collected,
    /// The serialized snapshot, shared by every client and `/snapshot` until the next change.
    snapshot: Utf8Bytes,
}

pub struct Hub {
    node: Value,
    state: Mutex<State>,
    tx: broadcast::Sender<Utf8Bytes>,
}

fn snapshot_json(node: &Value, revision: u64, parts: &Collected) -> Utf8Bytes {
    let mut m = Map::new();
    m.insert("type".into(), "snapshot".into());
    m.insert("version".into(), VERSION.into());
    m.insert("revision".into(), revision.into());
    m.insert("node".into(), node.clone());
    for (k, p) in parts {
        match k.split_once('.') {
            Some((outer, inner)) => {
                let o = m.entry(outer).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(o) = o {
                    o.insert(inner.into(), p.value.clone());
                }
            }
            None => {
                m.insert((*k).into(), p.value.clone());
            }
        }
    }
    Value::Object(m).to_string().into()
}

impl Hub {
    /// Start at revision 1 with a first collection (the agent never serves an empty snapshot).
    pub fn new(node: Value, first: Collected) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(CLIENT_BACKLOG);
        Arc::new(Hub {
            state: Mutex::new(State {
                revision: 1,
                snapshot: snapshot_json(&node, 1, &first),
                parts: first,
            }),
            node,
            tx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Utf8Bytes {
        self.lock().snapshot.clone()
    }

    /// The current snapshot and a receiver for every diff after it.
    pub fn subscribe(&self) -> (Utf8Bytes, broadcast::Receiver<Utf8Bytes>) {
        let st = self.lock();
        (st.snapshot.clone(), self.tx.subscribe())
    }

    /// What [`collect`] needs to skip re-parsing unchanged parts.
    pub fn fingerprints(&self) -> Fingerprints {
        self.lock()
            .parts
            .iter()
            .map(|(k, p)| (*k, p.fingerprint.clone()))
            .collect()
    }

    /// Fold in a new collection. Returns the new revision when some part's fingerprint changed.
    pub fn apply(&self, new: Collected) -> Option<u64> {
        let mut st = self.lock();
        let mut changed = Map::new();
        for (k, p) in new {
            let same = st
                .parts
                .get(k)
                .is_some_and(|old: &Part| old.fingerprint == p.fingerprint);
            if !same {
                changed.insert(k.into(), p.value.clone());
                st.parts.insert(k, p);
            }
        }
        if changed.is_empty() {
            return None;
        }
        st.revision += 1;
        let rev = st.revision;
        st.snapshot = snapshot_json(&self.node, rev, &st.parts);
        let diff = json!({
            "type": "diff",
            "version": VERSION,
            "revision": rev,
            "base": rev - 1,
            "changed": changed,
        });
        // No receivers is fine: nobody is connected.
        let _ = self.tx.send(diff.to_string().into());
        Some(rev)
    }
}

/// Poll every `interval` until `stop` resolves. Tools run on the blocking pool: a slow
/// `iptables-save` on a huge node must not stall the websocket tasks.
pub async fn poll_loop(
    hub: Arc<Hub>,
    sys: Arc<dyn Sys>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
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
        let Ok(c) = tokio::task::spawn_blocking(move || collect(s.as_ref(), &known)).await else {
            continue;
        };
        hub.apply(c);
        super::sys::release_freed_memory();
    }
}
