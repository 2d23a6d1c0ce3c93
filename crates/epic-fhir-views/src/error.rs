//! The crate's one error type.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The ViewDefinition is malformed: the message names the element (`select[0].column[2].path`).
    Definition,
    /// A view could not be evaluated on a resource (several values in a column that is not a
    /// collection, a `where` that is not boolean, a value that does not fit its column type);
    /// the message names the view, the element, the input and the line.
    Evaluation,
    /// An input could not be read, or a line is not a FHIR resource in JSON.
    Input,
    /// A table could not be written (encoding, local files).
    Output,
    /// The object store failed (credentials, network, the bucket).
    Storage,
    /// The caller stopped the run (e.g. the export feeding it failed).
    Cancelled,
}

/// An error from reading, evaluating or writing views.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn definition(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Definition, message)
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// An error that stops a run whose inputs are handed over as they arrive: yield it from
    /// the input iterator and the run stops, publishing nothing.
    pub fn cancelled(reason: impl Into<String>) -> Self {
        Error::new(ErrorKind::Cancelled, reason)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the source's.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_message_and_the_source_is_kept() {
        let io = std::io::Error::other("disk full");
        let error = Error::new(ErrorKind::Output, "cannot write out/patient/part-00000.csv")
            .with_source(io);
        assert_eq!(error.to_string(), "cannot write out/patient/part-00000.csv");
        assert_eq!(
            std::error::Error::source(&error).unwrap().to_string(),
            "disk full"
        );
        assert_eq!(error.kind(), ErrorKind::Output);
    }
}
