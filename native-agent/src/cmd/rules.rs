//! `proxyscope rules`: what kube-proxy programs for a scenario.

use crate::error::CliError;
use clap::{Args, ValueEnum};
use proxyscope_core::api;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Iptables,
    Ipvs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// What kube-proxy writes: the iptables-restore payload, in kube-proxy's argument order.
    Restore,
    /// What `iptables-save` shows on the node afterwards: the kernel's canonical order, /32,
    /// --set-xmark, 11-decimal probabilities, built-in chains with kube-proxy's jump rules.
    Saved,
}

/// Print the rules kube-proxy programs for a scenario.
///
/// Example: proxyscope rules --mode iptables examples/demo.yaml --format saved
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  proxyscope rules --mode iptables examples/demo.yaml\n  proxyscope rules --mode iptables examples/dual-stack.yaml --format saved\n  proxyscope rules --mode ipvs examples/ipvs-demo.yaml   (ipvsadm -Sn, ipset save, iptables-save, kube-ipvs0; --format does not apply)"
)]
pub struct RulesArgs {
    /// Proxy mode.
    #[arg(long, value_enum, default_value = "iptables")]
    pub mode: Mode,
    /// Scenario file (YAML or JSON: KubeProxyConfiguration, Node, Services, EndpointSlices, ...).
    pub scenario: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "restore")]
    pub format: Format,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: RulesArgs) -> Result<(), CliError> {
    let s = super::scenario::load(&a.scenario)?;
    match a.mode {
        Mode::Iptables => {
            let rules = api::iptables_rules(&s);
            if a.json {
                let v = serde_json::to_string_pretty(&rules)
                    .map_err(|e| CliError::Internal(e.to_string()))?;
                println!("{v}");
                return Ok(());
            }
            let dual = rules.len() > 1;
            for r in &rules {
                if dual {
                    // A `#` line is a comment for iptables-restore, so the output stays loadable.
                    let tool = match (r.family, a.format) {
                        (proxyscope_core::rules::iptables::Family::V4, Format::Restore) => {
                            "iptables-restore"
                        }
                        (proxyscope_core::rules::iptables::Family::V6, Format::Restore) => {
                            "ip6tables-restore"
                        }
                        (proxyscope_core::rules::iptables::Family::V4, Format::Saved) => {
                            "iptables-save"
                        }
                        (proxyscope_core::rules::iptables::Family::V6, Format::Saved) => {
                            "ip6tables-save"
                        }
                    };
                    println!("# {tool}");
                }
                print!(
                    "{}",
                    if a.format == Format::Restore {
                        &r.restore
                    } else {
                        &r.saved
                    }
                );
            }
            Ok(())
        }
        Mode::Ipvs => {
            // IPVS mode has one text form: the node's dumps (--format does not apply).
            let r = api::ipvs_rules(&s);
            if a.json {
                let v = serde_json::to_string_pretty(&r)
                    .map_err(|e| CliError::Internal(e.to_string()))?;
                println!("{v}");
            } else {
                print!("{}", r.text());
            }
            Ok(())
        }
    }
}
