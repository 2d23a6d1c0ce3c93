//! Deterministic synthetic patients.
