//! Search parameter parsing and evaluation.

pub(crate) mod date;
mod escape;
pub(crate) mod reference;
pub mod registry;
pub(crate) mod text;
