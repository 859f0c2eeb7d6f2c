//! What an import reports: a [`Warning`] for every directive it does not translate, an
//! [`ImportError`] for input it cannot read, each with its place in a file ([`Loc`]).

use std::{
    fmt,
    path::{Path, PathBuf},
    rc::Rc,
};

/// A place in an input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    /// The file, as it was named on the command line or by an `include`.
    pub file: Rc<Path>,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Something in the input that has no translation (or a different one than it seems).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Where the directive is.
    pub at: Loc,
    /// The directive (or the word of it) that is not translated.
    pub directive: String,
    /// Why, and what Buoy does instead.
    pub why: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: directive \"{}\" is not translated: {}",
            self.at, self.directive, self.why
        )
    }
}

/// Collects warnings while parsing and translating.
#[derive(Default, Debug)]
pub(crate) struct Warnings(Vec<Warning>);

impl Warnings {
    /// Adds a warning, once: a directive of `http` that every server inherits is said once.
    pub(crate) fn add(&mut self, at: &Loc, directive: &str, why: impl Into<String>) {
        let w = Warning {
            at: at.clone(),
            directive: directive.to_string(),
            why: why.into(),
        };
        if !self.0.contains(&w) {
            self.0.push(w);
        }
    }

    /// By file and line, as a compiler lists its diagnostics.
    pub(crate) fn sorted(self) -> Vec<Warning> {
        let mut list = self.0;
        list.sort_by(|a, b| (&a.at.file, a.at.line).cmp(&(&b.at.file, b.at.line)));
        list
    }
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Malformed or invalid input, at a place in a file.
    #[error("{at}: {message}")]
    At {
        /// Where.
        at: Loc,
        /// What is wrong there.
        message: String,
    },
    /// An input file that cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// Inputs that cannot be imported together (no file at all, two files for one node).
    #[error("{0}")]
    Usage(String),
    /// The objects do not pass the API's validation: a translation bug, or an input whose
    /// combination has no valid translation.
    #[error("the translated objects do not validate:\n{0}")]
    Invalid(String),
}

impl ImportError {
    pub(crate) fn at(at: &Loc, message: impl Into<String>) -> Self {
        ImportError::At {
            at: at.clone(),
            message: message.into(),
        }
    }
}
