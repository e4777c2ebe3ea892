//! `proxyscope ipvs ...`
use crate::error::CliError;
use clap::Subcommand;
use proxyscope_core::ipvs::replay;

#[derive(Subcommand)]
pub enum IpvsCommand {
    /// Replay an `ipvs-scheduler-vectors/1` stream through the simulated kernel schedulers.
    ///
    /// Without --check, prints the document with every conn's "expect" and every scenario's
    /// "final_servers" filled in by the simulator (JSON on stdout). With --check, compares with
    /// the expectations already in the file.
    #[command(after_help = "\
Examples:
  proxyscope ipvs replay wrr.json            # print the document with the simulator's answers
  proxyscope ipvs replay wrr.json --check    # exit 0 if the kernel's answers match, 1 with a diff

Exit codes: 0 ok, 1 a --check mismatch, 2 bad input (unreadable file, bad JSON, an event that
the kernel would refuse); the error names the scenario, event index and field.")]
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
        IpvsCommand::Replay { file, check } => {
            let text = crate::error::read_input(&file)?;
            let bad =
                |e: replay::ReplayError| CliError::BadInput(format!("{}: {e}", file.display()));
            let doc = replay::parse(&text).map_err(bad)?;
            if check {
                let report = replay::check(&doc).map_err(bad)?;
                if report.ok() {
                    println!("{}: {report}", file.display());
                    Ok(())
                } else {
                    Err(CliError::CheckFailed(format!(
                        "{}: check failed\n{report}",
                        file.display()
                    )))
                }
            } else {
                let filled = replay::fill(&doc).map_err(bad)?;
                print!("{}", replay::to_json(&filled));
                Ok(())
            }
        }
    }
}
