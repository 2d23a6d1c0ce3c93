//! ViewDefinitions: reading and checking them ([`ViewDefinition`]), and their rows for one
//! resource.

mod definition;
mod eval;

pub use definition::{Column, ViewDefinition};
pub(crate) use eval::Cell;
