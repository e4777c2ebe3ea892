//! proxyscope-core: kube-proxy, netfilter and IPVS as plain data in, plain data out.
//!
//! Architecture invariant: this crate never reads a file, a socket, a clock or OS randomness.
//! Time and randomness are parameters. It builds natively and for `wasm32-unknown-unknown`.
//!
//! The modules follow the packet's story: Kubernetes objects ([`k8s`]) → what each kube-proxy
//! mode programs ([`proxier`]) → the rule text formats ([`rules`]) → the kernel machines that run
//! them ([`netfilter`], [`ipvs`]) → the [`trace`] the CLI and the web app render.

pub mod api;
pub mod diag;
pub mod generate;
pub mod ipvs;
pub mod k8s;
pub mod netfilter;
pub mod proxier;
pub mod rules;
pub mod scale;
pub mod trace;
