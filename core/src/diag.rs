//! Diagnostics: how every analysis of user input reports problems (STYLE.md #3: the result plus a
//! list of diagnostics with their place, instead of failing on the first problem).

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The input is wrong; the thing it describes was not (fully) used.
    Error,
    /// The input is accepted but something in it is not modelled or was ignored on purpose.
    Warning,
}

/// One problem with the user's input, with its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// 1-based line in the input, when known.
    pub line: Option<usize>,
    /// Where: e.g. `document 2 (Service default/my-service), field spec.ports[0].port`.
    pub location: String,
    pub message: String,
}

impl Diagnostic {
    pub fn error(
        line: Option<usize>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            line,
            location: location.into(),
            message: message.into(),
        }
    }
    pub fn warning(
        line: Option<usize>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            line,
            location: location.into(),
            message: message.into(),
        }
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.line {
            Some(l) => write!(f, "{sev}: line {l}: ")?,
            None => write!(f, "{sev}: ")?,
        }
        if !self.location.is_empty() {
            write!(f, "{}: ", self.location)?;
        }
        f.write_str(&self.message)
    }
}
