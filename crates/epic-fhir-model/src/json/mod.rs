//! The JSON layer under the models: a pull [`Parser`], a [`Writer`], the [`FromJson`] and
//! [`ToJson`] traits every model implements, and [`RawJson`]/[`Extra`] for members the models
//! do not name.

mod error;
mod parse;
mod write;

use std::borrow::Cow;
use std::fmt;

pub use error::ParseError;
pub(crate) use error::{Segment, render_path};
pub(crate) use parse::describe_value_start;
pub use parse::{MAX_DEPTH, PResult, Parser};
pub use write::Writer;

/// A type read from FHIR JSON by this crate's parser.
pub trait FromJson: Sized {
    /// Reads one value at the parser's position.
    fn from_json(p: &mut Parser<'_>) -> PResult<Self>;
}

/// A type written as FHIR JSON by this crate's writer.
pub trait ToJson {
    /// Writes the value at the writer's position.
    fn write_json(&self, w: &mut Writer);
}

impl<T: FromJson> FromJson for Box<T> {
    #[inline]
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        T::from_json(p).map(Box::new)
    }
}

impl<T: ToJson + ?Sized> ToJson for Box<T> {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        (**self).write_json(w)
    }
}

impl FromJson for String {
    #[inline]
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        p.string()
    }
}

impl ToJson for String {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        w.string(self)
    }
}

impl ToJson for str {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        w.string(self)
    }
}

impl FromJson for bool {
    #[inline]
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        p.boolean()
    }
}

impl ToJson for bool {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        w.boolean(*self)
    }
}

impl FromJson for i32 {
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        let start = p.position();
        let text = p.number()?;
        text.parse().map_err(|_| {
            p.error_at(
                start,
                format!("`{text}` is not an integer from -2147483648 to 2147483647"),
            )
        })
    }
}

impl ToJson for i32 {
    fn write_json(&self, w: &mut Writer) {
        w.integer(i64::from(*self))
    }
}

impl FromJson for u32 {
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        let start = p.position();
        let text = p.number()?;
        text.parse().map_err(|_| {
            p.error_at(
                start,
                format!("`{text}` is not a non-negative integer up to 4294967295"),
            )
        })
    }
}

impl ToJson for u32 {
    fn write_json(&self, w: &mut Writer) {
        w.integer(i64::from(*self))
    }
}

/// A JSON value kept as its text, exactly as it was read.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// Checks that `text` is one JSON value and keeps it (surrounding whitespace removed).
    pub fn parse(text: &str) -> Result<Self, crate::ModelError> {
        let mut p = Parser::from_text(text);
        let result = p.raw_value().and_then(|raw| p.end().map(|()| raw));
        match result {
            Ok(raw) => Ok(RawJson(raw.into())),
            Err(error) => Err(crate::ModelError::from_parse(&error, text.as_bytes())),
        }
    }

    /// The JSON text of a `serde_json` value.
    pub fn from_value(value: &serde_json::Value) -> Self {
        RawJson(value.to_string().into())
    }

    /// Trusted constructor for text the parser has just checked.
    pub(crate) fn from_checked(text: &str) -> Self {
        RawJson(text.into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the value is `null`.
    pub fn is_null(&self) -> bool {
        &*self.0 == "null"
    }

    /// The value as a `serde_json::Value` (decimals become `f64`s there).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromJson for RawJson {
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        p.raw_value().map(RawJson::from_checked)
    }
}

impl ToJson for RawJson {
    fn write_json(&self, w: &mut Writer) {
        w.raw(&self.0)
    }
}

/// The members of a JSON object that its model does not name, in the order read.
///
/// FHIR forbids unknown elements, but servers send them (elements of newer FHIR versions,
/// vendor additions, primitive extensions of choice elements such as `_valueString`), and a
/// client must not drop what it does not understand: they are kept here and written back
/// unchanged. A member the model names is never kept here: when writing, a name the model
/// has a field for is skipped, so the output never has a member twice. (A modelled member
/// whose value is `null` or `[]`, which FHIR forbids and which means the same as an absent
/// member, leaves its field empty; the validator reports it.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    members: Vec<(String, RawJson)>,
}

impl Extra {
    /// Whether there are no such members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The value of member `name`.
    pub fn get(&self, name: &str) -> Option<&RawJson> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Whether member `name` is here.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets member `name`, returning its previous value.
    pub fn insert(&mut self, name: impl Into<String>, value: RawJson) -> Option<RawJson> {
        let name = name.into();
        match self.members.iter_mut().find(|(n, _)| *n == name) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.members.push((name, value));
                None
            }
        }
    }

    /// Removes member `name`.
    pub fn remove(&mut self, name: &str) -> Option<RawJson> {
        let index = self.members.iter().position(|(n, _)| n == name)?;
        Some(self.members.remove(index).1)
    }

    /// The members in the order they were read or inserted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawJson)> {
        self.members.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Reads the value of member `key` (already consumed) and keeps it, refusing a duplicate.
    pub(crate) fn read(&mut self, p: &mut Parser<'_>, key: Cow<'_, str>) -> PResult<()> {
        if self.contains_key(&key) {
            let owned: String = key.into_owned();
            return Err(p
                .error(format!("duplicate member `{owned}`"))
                .in_member(owned));
        }
        let value = p
            .raw_value()
            .map_err(|e| e.in_member(key.clone().into_owned()))?;
        self.members
            .push((key.into_owned(), RawJson::from_checked(value)));
        Ok(())
    }

    /// Writes the members into the enclosing object, except those `modelled` names (which the
    /// model writes from its fields).
    pub(crate) fn write_members(&self, w: &mut Writer, modelled: &crate::rt::KeyTable) {
        for (name, value) in &self.members {
            if crate::rt::lookup(modelled, name) != 0 {
                continue;
            }
            w.key(name);
            w.raw(value.as_str());
        }
    }
}

impl<'a> IntoIterator for &'a Extra {
    type Item = (&'a str, &'a RawJson);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a RawJson)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// The `Segment` type is used by the validator's paths.
#[allow(dead_code)]
pub(crate) fn path_of(segments: &[Segment]) -> String {
    render_path(segments.iter())
}
