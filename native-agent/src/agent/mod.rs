//! `proxyscope agent`: a node's real netfilter / IPVS / conntrack state, read-only, as a
//! versioned JSON snapshot plus diffs over a websocket.
//!
//! Layers, outside in: [`server`] (HTTP, websocket, token and origin checks) → [`hub`] (current
//! snapshot, revision counter, diff fan-out, the polling loop) → [`snapshot`] (one poll: run the
//! tools, parse with core's parsers, fingerprint each part) → [`sys`] (the only code that runs
//! programs). [`wire`] is how JSON is held and sent: packed blocks that messages share, sent as
//! bounded websocket fragments. Architecture invariant: nothing below `sys` touches the OS, so every part of the
//! logic is tested with captured tool output; and `sys` runs only the dumps listed in
//! [`sys::READ_ONLY_COMMANDS`] — the agent never changes the node.

pub mod conntrack;
pub mod hub;
pub mod kube;
pub mod server;
pub mod snapshot;
pub mod sys;
pub mod wire;
