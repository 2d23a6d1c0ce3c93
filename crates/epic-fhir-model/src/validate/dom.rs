//! A small JSON tree for the validator, borrowing strings and numbers from the input.
//!
//! The validator must see what the typed models smooth over (member order, `null`s, empty
//! arrays, duplicate members, a number's exact text), so it reads JSON into this tree rather
//! than into the models.

use std::borrow::Cow;

use crate::json::{PResult, Parser};

/// One JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    /// The number's text.
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Members in the order written (duplicates kept, for the validator to report).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Reads one value.
    pub(crate) fn read(p: &mut Parser<'a>) -> PResult<Node<'a>> {
        match p.peek() {
            Some(b'{') => {
                p.begin_object()?;
                let mut first = true;
                let mut members = Vec::new();
                while let Some(key) = p.next_key(&mut first)? {
                    let value = Node::read(p)?;
                    members.push((key, value));
                }
                Ok(Node::Object(members))
            }
            Some(b'[') => {
                p.begin_array()?;
                let mut first = true;
                let mut items = Vec::new();
                while p.next_element(&mut first)? {
                    items.push(Node::read(p)?);
                }
                Ok(Node::Array(items))
            }
            Some(b'"') => p.str().map(Node::String),
            Some(b't' | b'f') => p.boolean().map(Node::Bool),
            Some(b'n') => p.take_null().map(|_| Node::Null),
            _ => p.number().map(Node::Number),
        }
    }

    /// What kind of JSON value this is, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }

    /// The value of member `name`, for an object.
    pub(crate) fn get(&self, name: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, for a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(text) => Some(text),
            _ => None,
        }
    }
}
