//! A config problem: the file, the line where YAML knows it, and what is
//! wrong — what `psrtd -t` and a failed reload print.

use std::fmt;
use std::path::Path;

/// A config problem, with the file (and line, where YAML knows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in (or `<embedded>`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.display().to_string(),
            line: None,
            message: message.into(),
        }
    }

    /// Maps a YAML error to file:line: message.
    pub(crate) fn yaml(file: &Path, err: &serde_yaml::Error) -> Self {
        let mut message = err.to_string();
        // The YAML error already says "at line L column C"; keep only the text.
        if let Some(at) = message.find(" at line ") {
            message.truncate(at);
        }
        Self {
            file: file.display().to_string(),
            line: err.location().map(|l| l.line()),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}
