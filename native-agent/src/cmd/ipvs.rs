//! `proxyscope ipvs ...`
use crate::error::CliError;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum IpvsCommand {
    /// Replay an `ipvs-scheduler-vectors/1` stream through the simulated kernel schedulers.
    Replay {
        /// The replay JSON file.
        file: std::path::PathBuf,
        /// Compare with the expectations in the file; exit 1 with a diff on mismatch.
        #[arg(long)]
        check: bool,
    },
}

pub fn run(cmd: IpvsCommand) -> Result<(), CliError> {
    match cmd {
        IpvsCommand::Replay { file, .. } => {
            let _ = crate::error::read_input(&file)?;
            Err(CliError::Internal("ipvs replay: not implemented yet".into()))
        }
    }
}
