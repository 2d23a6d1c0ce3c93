//! In-memory resource store.

pub mod load;
