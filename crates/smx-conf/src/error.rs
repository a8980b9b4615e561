//! Configuration errors: every error names the file, line and column it
//! refers to and says what was expected.
//!
//! The display form is `file:line:column: message`, the convention of
//! compilers, so editors can jump to the place. Errors that concern a value
//! taken from the compiled-in defaults (no place in the file) point at the
//! section that holds the option, or at `file:1:1`.

use crate::syntax::Span;

/// A place in a configuration source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The source name: a path, or `<embedded>` for the built-in default.
    pub file: String,
    /// Line and column.
    pub span: Span,
}

impl Location {
    /// A location in `file`.
    pub fn new(file: &str, span: Span) -> Self {
        Location {
            file: file.to_owned(),
            span,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.span.line, self.span.col)
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The text does not follow the grammar.
    #[error("{0}")]
    Syntax(String),
    /// An option name that the section does not have.
    #[error("unknown option '{name}' in {section}{hint}")]
    UnknownOption {
        /// The name as written.
        name: String,
        /// The section path, e.g. `qmgr` or `smtps MTA`.
        section: String,
        /// A ", did you mean ..." suggestion, or empty.
        hint: String,
    },
    /// A section keyword that is not valid where it is.
    #[error("unknown section '{name}' in {section}{hint}")]
    UnknownSection {
        /// The keyword as written.
        name: String,
        /// Where it was found.
        section: String,
        /// A ", did you mean ..." suggestion, or empty.
        hint: String,
    },
    /// An option written as a section or the other way round.
    #[error("'{name}' in {section} is {expected}, not {found}")]
    WrongEntryKind {
        /// The name as written.
        name: String,
        /// The section path.
        section: String,
        /// "an option" or "a section".
        expected: &'static str,
        /// What was written.
        found: &'static str,
    },
    /// The same option or single section given twice.
    #[error("'{name}' is set twice in {section} (first at line {first_line})")]
    Duplicate {
        /// The name.
        name: String,
        /// The section path.
        section: String,
        /// Line of the first occurrence.
        first_line: u32,
    },
    /// A value that does not fit the option's type.
    #[error("invalid value for '{option}': {message}")]
    InvalidValue {
        /// The option name.
        option: String,
        /// What was expected and what was found.
        message: String,
    },
    /// A semantic rule across options is broken.
    #[error("{0}")]
    Check(String),
}

/// One configuration error at one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct ConfError {
    /// Where.
    pub location: Location,
    /// What.
    pub kind: ErrorKind,
}

impl ConfError {
    /// An error at a location.
    pub fn new(location: Location, kind: ErrorKind) -> Self {
        ConfError { location, kind }
    }
}

/// All errors found in one configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfErrors(pub Vec<ConfError>);

impl std::fmt::Display for ConfErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfErrors {}
