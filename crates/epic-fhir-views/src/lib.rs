//! SQL on FHIR v2 views over FHIR NDJSON: from a bulk export to Parquet, CSV or NDJSON tables.
//!
//! A [`ViewDefinition`] (FHIRPath columns, `forEach`, `unionAll`, `where`, constants) turns
//! each resource into rows. This crate reads and checks ViewDefinitions (errors name the
//! element), evaluates them with its own FHIRPath subset directly over each NDJSON line
//! (a flat JSON tape, no object tree), and streams the rows into tables laid out as
//! `<out>/<view name>/part-00000.<ext>` on a local disk or an object store (S3, GCS, Azure),
//! published only when the whole run succeeded.
//!
//! It knows nothing of HTTP or of the SDK: the `epic-fhir` command line wires it to bulk
//! exports.
//!
//! ```
//! use epic_fhir_views::{ViewDefinition, rows_as_json};
//!
//! let view = ViewDefinition::from_json(&serde_json::json!({
//!     "resource": "Patient",
//!     "name": "patient_names",
//!     "select": [{"column": [{"name": "id", "path": "getResourceKey()"}]},
//!                {"forEach": "name", "column": [{"name": "family", "path": "family"}]}]
//! }))?;
//! let patient = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Lin"},{"family":"Lopez"}]}"#;
//! let rows = rows_as_json(&view, patient)?;
//! assert_eq!(rows, vec![
//!     serde_json::json!({"id": "p1", "family": "Lin"}),
//!     serde_json::json!({"id": "p1", "family": "Lopez"}),
//! ]);
//! # Ok::<(), epic_fhir_views::Error>(())
//! ```

pub mod conformance;
mod error;
mod fhirpath;
mod input;
mod json;
mod output;
mod run;
mod sink;
mod view;

pub use error::{Error, ErrorKind, Result};
pub use input::{EXPORT_STATE_FILE, InputFile, Source, expand as expand_inputs};
pub use output::{Compression, Format};
pub use run::{Progress, RunOptions, RunSummary, ViewSummary, run};
pub use sink::Destination;
pub use view::{Column, ViewDefinition};

/// The rows of `view` for one resource (JSON text), as JSON objects keyed by column name,
/// with values as the NDJSON output writes them. Resources of another type give no rows.
///
/// # Errors
/// [`ErrorKind::Input`] when the text is not a JSON object; [`ErrorKind::Evaluation`] when
/// the view cannot be evaluated on it.
pub fn rows_as_json(view: &ViewDefinition, resource: &str) -> Result<Vec<serde_json::Value>> {
    let mut tape = json::Tape::new();
    let doc = tape
        .parse(resource)
        .map_err(|e| Error::new(ErrorKind::Input, format!("the resource is not JSON: {e}")))?;
    if doc.kind(doc.root()) != json::Kind::Object {
        return Err(Error::new(
            ErrorKind::Input,
            "the resource is not a JSON object",
        ));
    }
    let matches = doc
        .get(doc.root(), "resourceType")
        .is_some_and(|t| doc.raw(t) == view.resource());
    if !matches {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    view.rows(doc, &mut rows).map_err(|e| {
        Error::new(
            ErrorKind::Evaluation,
            format!("{}: {}", e.element, e.message),
        )
    })?;
    Ok(rows.iter().map(|row| output::json_row(view, row)).collect())
}
