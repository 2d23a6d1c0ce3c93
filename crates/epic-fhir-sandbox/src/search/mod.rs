//! Search parameter parsing and evaluation.
