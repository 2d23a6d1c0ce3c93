//! Hand-written conveniences on the generated models: display names, MRNs, value and unit
//! display, effective times, component lookup, reference parts, OperationOutcome summaries and
//! Epic's codes, Bundle links, SMART endpoints in a CapabilityStatement.

mod clinical;
mod datatypes;
mod exchange;

pub use clinical::EPIC_MRN_SYSTEM;
pub use exchange::{EPIC_OUTCOME_CODE_SYSTEM, OAuthUris, SMART_OAUTH_URIS_EXTENSION};
