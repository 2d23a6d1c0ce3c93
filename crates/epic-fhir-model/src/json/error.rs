//! Parse failures: where in the input, where in the document, and what.

use std::borrow::Cow;
use std::fmt;

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Member(Cow<'static, str>),
    Index(usize),
}

/// A failure while reading JSON into a model, before it is explained against the input.
///
/// The path is collected as the error travels out of the nested readers, innermost first, so
/// that a successful parse never pays for it.
#[derive(Debug, Clone)]
pub struct ParseError {
    offset: usize,
    message: Cow<'static, str>,
    /// Innermost first.
    path: Vec<Segment>,
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: Cow<'static, str>) -> Box<Self> {
        Box::new(ParseError {
            offset,
            message,
            path: Vec::new(),
        })
    }

    /// The byte offset in the input where the failure was found.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON path of the failure (`entry[3].resource.birthDate`), or `.` for the document.
    pub fn path(&self) -> String {
        render_path(self.path.iter().rev())
    }

    /// Marks the error as inside member `name` of the enclosing object.
    pub(crate) fn in_member(mut self: Box<Self>, name: impl Into<Cow<'static, str>>) -> Box<Self> {
        self.path.push(Segment::Member(name.into()));
        self
    }

    /// Marks the error as inside element `index` of the enclosing array.
    pub(crate) fn in_index(mut self: Box<Self>, index: usize) -> Box<Self> {
        self.path.push(Segment::Index(index));
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at `{}`", self.message, self.path())
    }
}

impl std::error::Error for ParseError {}

/// Writes segments outermost first: `entry[3].resource.birthDate`; `.` when there are none.
pub(crate) fn render_path<'s>(segments: impl Iterator<Item = &'s Segment>) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Member(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Segment::Index(index) => {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}
