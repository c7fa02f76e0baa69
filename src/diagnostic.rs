//! Located diagnostics: every error and warning about a contract names the
//! file, line and column, the JSON-pointer path inside the contract, and what
//! would have been accepted.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How a command prints what it found (`--format`): for people, as JSON, or
/// as GitHub Actions workflow commands (annotations on the lines concerned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
    Github,
}

/// A 1-based position in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

impl Position {
    pub const fn new(line: usize, col: usize) -> Self {
        Self { line, col }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about one place in one contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable, machine-readable code such as `E-TOPIC-NAME` or `W-UNKNOWN-KEY`.
    pub code: &'static str,
    pub file: PathBuf,
    #[serde(flatten)]
    pub position: Position,
    /// JSON pointer inside the contract, e.g. `/event_bus/publish_topics/2`; `""` is the root.
    pub pointer: String,
    pub message: String,
    /// What would have been accepted here, when that can be said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
}

impl Diagnostic {
    pub fn new(
        severity: Severity,
        code: &'static str,
        file: &Path,
        position: Position,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            code,
            file: file.to_path_buf(),
            position,
            pointer: pointer.into(),
            message: message.into(),
            expected: None,
        }
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The diagnostic as one line of JSON (for `--format json`).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a diagnostic always serialises")
    }

    /// The diagnostic as a GitHub Actions workflow command (for `--format
    /// github`): an annotation at its file, line and column.
    pub fn to_github_line(&self) -> String {
        format!(
            "::{} file={},line={},col={},title={}::{}",
            self.severity,
            github_property(&self.file.to_string_lossy()),
            self.position.line,
            self.position.col,
            github_property(self.code),
            github_data(&self.detail())
        )
    }

    /// What the diagnostic says, without its file and position: `at POINTER:
    /// MESSAGE (expected ...)`.
    fn detail(&self) -> String {
        let pointer = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        match &self.expected {
            Some(expected) => format!("at {pointer}: {} (expected {expected})", self.message),
            None => format!("at {pointer}: {}", self.message),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}[{}] {}",
            self.file.display(),
            self.position.line,
            self.position.col,
            self.severity,
            self.code,
            self.detail()
        )
    }
}

/// Text escaped for the message of a GitHub Actions workflow command.
pub fn github_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Text escaped for a property (`file=`, `title=`) of a workflow command.
pub fn github_property(s: &str) -> String {
    github_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// An ordered collection of diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file, position and pointer so output is deterministic.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (&a.file, a.position, &a.pointer, a.code)
                .cmp(&(&b.file, b.position, &b.pointer, b.code))
        });
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}
