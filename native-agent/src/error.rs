use std::fmt;

/// What went wrong, sorted by who has to act: the user (bad input, exit 2) or us (exit 1).
#[derive(Debug)]
pub enum CliError {
    /// The user's input is wrong: a file that can't be read or parsed, a bad flag value. Exit 2.
    BadInput(String),
    /// A check the user asked for did not pass (e.g. `ipvs replay --check`). Exit 1.
    CheckFailed(String),
    /// A bug or an environment failure on our side. Exit 1.
    Internal(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::BadInput(_) => 2,
            CliError::CheckFailed(_) | CliError::Internal(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::BadInput(m) | CliError::CheckFailed(m) | CliError::Internal(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for CliError {}

/// Read a file the user named, mapping failure to a bad-input error that names the file.
pub fn read_input(path: &std::path::Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::BadInput(format!("{}: {e}", path.display())))
}
