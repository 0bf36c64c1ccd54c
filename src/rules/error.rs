//! Everything that can be wrong with a rule set, each naming the place to fix: the file
//! (with line and column when known), the rule, the field, and for expressions the
//! position inside the expression.

use std::fmt;
use std::path::PathBuf;

/// A place in a rule file; line and column are 1-based, 0 when unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub path: PathBuf,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.path.display())
        } else {
            write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
        }
    }
}

/// One problem of a rule set. `RuleSet::load` reports all it finds, not just the first.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{}: cannot read rule file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config's GeoJSON zone file (it names its path and line).
    #[error(transparent)]
    ZoneFile(#[from] crate::geofence::GeoJsonError),
    #[error("{}: no rule file matches `{pattern}`", config.display())]
    NoMatch { config: PathBuf, pattern: String },
    /// YAML syntax, unknown keys, wrong value types.
    #[error("{place}: {message}")]
    Yaml { place: Place, message: String },
    #[error("{place}: rule `{rule}` is defined twice (first at {first})")]
    Duplicate {
        place: Place,
        rule: String,
        first: Place,
    },
    /// A field with a bad value: duration, schedule, zone, channel, name...
    #[error("{place}: rule `{rule}`: {field}: {message}")]
    Invalid {
        place: Place,
        rule: String,
        field: String,
        message: String,
    },
    /// A Rhai expression that does not compile, or reads what does not exist.
    #[error(
        "{place}: rule `{rule}`: {field}: {message} (line {expr_line}, column {expr_column} of the expression)"
    )]
    Script {
        place: Place,
        rule: String,
        field: String,
        expr_line: usize,
        expr_column: usize,
        message: String,
    },
}

impl RuleError {
    /// Where the error is, when it is in a rule file.
    pub fn place(&self) -> Option<&Place> {
        match self {
            RuleError::Yaml { place, .. }
            | RuleError::Duplicate { place, .. }
            | RuleError::Invalid { place, .. }
            | RuleError::Script { place, .. } => Some(place),
            _ => None,
        }
    }

    /// The rule the error is about, when there is one.
    pub fn rule(&self) -> Option<&str> {
        match self {
            RuleError::Duplicate { rule, .. }
            | RuleError::Invalid { rule, .. }
            | RuleError::Script { rule, .. } => Some(rule),
            _ => None,
        }
    }
}
