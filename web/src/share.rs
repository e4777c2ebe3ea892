//! The shareable view state, carried in the URL fragment as `#s=<base64url(deflate(json))>`.
//!
//! A link must reproduce the view exactly, so it stores inputs, not outputs: the scenario text
//! (only when it is not the built-in demo), every packet sent so far with its seed and time (core
//! is deterministic given those, and replaying them in order rebuilds conntrack and `-m recent`
//! state), and the step the learner was looking at. Decoding is defensive: the fragment is
//! untrusted input, so size is capped before and after inflating and every failure is an error
//! value, never a panic.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proxyscope_core::trace::Proto;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

use crate::i18n::Lang;

/// Version of the fragment format; bump when a field changes meaning.
pub const VERSION: u32 = 1;
/// Longest fragment accepted (before decoding); browsers cope with far longer URLs, but a share
/// link bigger than this is not something a person pastes.
pub const MAX_FRAGMENT: usize = 256 * 1024;
/// Largest inflated JSON accepted (guards against deflate bombs).
pub const MAX_JSON: usize = 2 * 1024 * 1024;

/// One packet as sent: everything core needs to reproduce its trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub dport: u16,
    pub proto: Proto,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    pub seed: u64,
    pub now: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareState {
    pub v: u32,
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Scenario YAML; None = the built-in demo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    #[serde(default)]
    pub sent: Vec<SentPacket>,
    /// Frame index within the last packet's trace.
    #[serde(default)]
    pub step: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<Lang>,
    /// IPVS scheduler name (`rr` … `twos`); None = the scenario's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keepalive: bool,
    /// Side-by-side iptables / IPVS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compare: bool,
    /// A pasted node dump traced instead of the generated rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump: Option<String>,
    /// Destination typed by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<std::net::SocketAddr>,
    /// The scale view is open with this many endpoints per Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<usize>,
}

fn default_mode() -> String {
    "iptables".into()
}

impl Default for ShareState {
    fn default() -> Self {
        ShareState {
            v: VERSION,
            mode: default_mode(),
            scenario: None,
            sent: vec![],
            step: 0,
            lang: None,
            sched: None,
            keepalive: false,
            compare: false,
            dump: None,
            dst: None,
            scale: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ShareError {
    TooLong(usize),
    Base64(String),
    Inflate(String),
    Json(String),
    Version(u32),
}

impl fmt::Display for ShareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareError::TooLong(n) => write!(
                f,
                "URL fragment: {n} characters is longer than the {MAX_FRAGMENT} allowed"
            ),
            ShareError::Base64(e) => write!(f, "URL fragment: not base64url: {e}"),
            ShareError::Inflate(e) => write!(f, "URL fragment: not deflate data: {e}"),
            ShareError::Json(e) => write!(f, "URL fragment: {e}"),
            ShareError::Version(v) => write!(
                f,
                "URL fragment: format version {v} is not supported (expected {VERSION})"
            ),
        }
    }
}

impl std::error::Error for ShareError {}

pub fn encode(state: &ShareState) -> String {
    let json = serde_json::to_vec(state).expect("ShareState serializes: plain data only");
    let packed = miniz_oxide::deflate::compress_to_vec(&json, 9);
    URL_SAFE_NO_PAD.encode(packed)
}

pub fn decode(fragment: &str) -> Result<ShareState, ShareError> {
    if fragment.len() > MAX_FRAGMENT {
        return Err(ShareError::TooLong(fragment.len()));
    }
    let packed = URL_SAFE_NO_PAD
        .decode(fragment.trim_end_matches('='))
        .map_err(|e| ShareError::Base64(e.to_string()))?;
    let json = miniz_oxide::inflate::decompress_to_vec_with_limit(&packed, MAX_JSON)
        .map_err(|e| ShareError::Inflate(format!("{:?}", e.status)))?;
    // Check the version before the full shape so a future link gets a clear message.
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        v: u32,
    }
    let probe: Probe =
        serde_json::from_slice(&json).map_err(|e| ShareError::Json(e.to_string()))?;
    if probe.v != VERSION {
        return Err(ShareError::Version(probe.v));
    }
    serde_json::from_slice(&json).map_err(|e| ShareError::Json(e.to_string()))
}

/// Extract our state from a full `location.hash` (`#s=...`); other fragments are not ours.
pub fn from_hash(hash: &str) -> Option<Result<ShareState, ShareError>> {
    let h = hash.strip_prefix('#').unwrap_or(hash);
    h.split('&')
        .find_map(|kv| kv.strip_prefix("s="))
        .map(decode)
}

pub fn to_hash(state: &ShareState) -> String {
    format!("#s={}", encode(state))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> ShareState {
        ShareState {
            sent: vec![SentPacket {
                src: "10.0.1.5".parse().unwrap(),
                dst: "10.104.14.67".parse().unwrap(),
                dport: 80,
                proto: Proto::Tcp,
                sport: Some(40000),
                seed: 42,
                now: 1000.5,
            }],
            step: 7,
            lang: Some(Lang::Zh),
            ..ShareState::default()
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(decode(&encode(&s)).unwrap(), s);
        assert_eq!(from_hash(&to_hash(&s)).unwrap().unwrap(), s);
        assert!(from_hash("#section-2").is_none());
    }

    #[test]
    fn compressed_scenario_is_smaller_than_the_yaml() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: my-service\n".repeat(40);
        let s = ShareState {
            scenario: Some(yaml.clone()),
            ..ShareState::default()
        };
        assert!(encode(&s).len() < yaml.len() / 4);
    }

    #[test]
    fn bad_fragments_are_errors_naming_the_problem() {
        assert!(matches!(decode("!!!"), Err(ShareError::Base64(_))));
        assert!(matches!(decode("aGVsbG8"), Err(ShareError::Inflate(_))));
        let future =
            URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec(br#"{"v":99}"#, 9));
        assert_eq!(decode(&future), Err(ShareError::Version(99)));
        let bad_ip = URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec(
            br#"{"v":1,"sent":[{"src":"300.1.1.1","dst":"1.1.1.1","dport":1,"proto":"tcp","seed":1,"now":0}]}"#,
            9,
        ));
        assert!(matches!(decode(&bad_ip), Err(ShareError::Json(m)) if m.contains("invalid IP")));
        assert!(matches!(
            decode(&"A".repeat(MAX_FRAGMENT + 1)),
            Err(ShareError::TooLong(_))
        ));
    }

    #[test]
    fn deflate_bomb_is_refused() {
        let big = vec![b' '; MAX_JSON * 2];
        let frag = URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec(&big, 9));
        assert!(matches!(decode(&frag), Err(ShareError::Inflate(_))));
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,400}") {
            let _ = decode(&s);
        }

        #[test]
        fn decode_never_panics_on_valid_base64(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&URL_SAFE_NO_PAD.encode(&bytes));
        }

        #[test]
        fn round_trips(step in 0usize..1000, seed in any::<u64>(), dport in any::<u16>(), text in "[ -~\n]{0,200}") {
            let mut s = sample();
            s.step = step;
            s.sent[0].seed = seed;
            s.sent[0].dport = dport;
            s.scenario = Some(text);
            prop_assert_eq!(decode(&encode(&s)).unwrap(), s);
        }
    }
}
