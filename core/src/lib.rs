//! proxyscope-core: kube-proxy, netfilter and IPVS as plain data in, plain data out.
//!
//! Architecture invariant: this crate never reads a file, a socket, a clock or OS randomness.
//! Time and randomness are parameters. It builds natively and for `wasm32-unknown-unknown`.

pub mod ipvs;
pub mod generate;
pub mod trace;
