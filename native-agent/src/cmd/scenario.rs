//! Loading the user's scenario file, shared by every command that takes one.

use crate::error::{CliError, read_input};
use proxyscope_core::api;
use proxyscope_core::k8s::Scenario;
use std::path::Path;

/// Read and load a scenario; warnings go to stderr (nothing the user gave is dropped silently),
/// errors become exit code 2 with every problem listed.
pub fn load(path: &Path) -> Result<Scenario, CliError> {
    let text = read_input(path)?;
    match api::load_scenario(&text) {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("{}: {w}", path.display());
            }
            Ok(l.scenario)
        }
        Err(diags) => {
            let msg: Vec<String> = diags
                .iter()
                .map(|d| format!("{}: {d}", path.display()))
                .collect();
            Err(CliError::BadInput(format!(
                "the scenario has errors:\n{}",
                msg.join("\n")
            )))
        }
    }
}
