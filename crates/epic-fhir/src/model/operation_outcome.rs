//! The OperationOutcome resource: errors and warnings from the server.

use super::CodeableConcept;
use super::datatypes::non_empty;
use super::macros::fhir_struct;

/// The coding system of Epic's own error and warning codes in `OperationOutcome.issue.details`
/// (4101 "Resource request returns no results.", 59108 "required parameter missing"...).
pub const EPIC_OUTCOME_CODE_SYSTEM: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369";

/// The longest diagnostics text a summary repeats, in characters.
const SUMMARY_DIAGNOSTICS_LIMIT: usize = 200;

fhir_struct! {
    /// OperationOutcome.issue: one error, warning or note.
    backbone struct OperationOutcomeIssue {
        /// fatal | error | warning | information.
        req "severity" severity: String,
        /// The FHIR issue type, such as `processing`, `not-found` or `invalid`.
        req "code" code: String,
        /// Details, including server-specific codes such as Epic's.
        opt "details" details: CodeableConcept,
        /// Extra diagnostic information, such as a stack trace.
        opt "diagnostics" diagnostics: String,
        /// Deprecated XPath locations of the problem; `None` for JSON `null` entries.
        vec "location" location: Option<String>,
        /// FHIRPath expressions locating the problem; `None` for JSON `null` entries.
        vec "expression" expression: Option<String>,
    }
}

impl OperationOutcomeIssue {
    /// Whether the issue is `fatal` or `error`.
    pub fn is_error(&self) -> bool {
        matches!(self.severity.as_str(), "fatal" | "error")
    }

    /// Epic's code for the issue (in [`EPIC_OUTCOME_CODE_SYSTEM`]), such as `4101`.
    pub fn epic_code(&self) -> Option<&str> {
        self.details
            .as_ref()
            .and_then(|details| details.code_in(EPIC_OUTCOME_CODE_SYSTEM))
    }

    /// What went wrong, for people: the details' text or display, else the diagnostics.
    pub fn message(&self) -> Option<&str> {
        self.details
            .as_ref()
            .and_then(CodeableConcept::text_or_display)
            .or_else(|| non_empty(self.diagnostics.as_deref()))
    }

    /// The issue on one line, such as
    /// `warning (processing): Resource request returns no results. [Epic 4101]`. Long
    /// diagnostics are shortened.
    pub fn summary(&self) -> String {
        let mut text = format!("{} ({})", self.severity, self.code);
        let details = self
            .details
            .as_ref()
            .and_then(CodeableConcept::text_or_display);
        let diagnostics = non_empty(self.diagnostics.as_deref()).map(|diagnostics| {
            let mut shortened: String = diagnostics
                .chars()
                .take(SUMMARY_DIAGNOSTICS_LIMIT)
                .collect();
            if shortened.len() < diagnostics.len() {
                shortened.push('…');
            }
            shortened
        });
        if let Some(message) = details.or(diagnostics.as_deref()) {
            text.push_str(": ");
            text.push_str(message);
        }
        if let Some(code) = self.epic_code() {
            text.push_str(&format!(" [Epic {code}]"));
        }
        if let (Some(_), Some(diagnostics)) = (details, &diagnostics) {
            text.push_str(&format!(" ({diagnostics})"));
        }
        one_line(&text)
    }
}

/// Replaces runs of whitespace, line breaks included, by single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fhir_struct! {
    /// An OperationOutcome: the errors, warnings and notes a server returns about a request.
    domain_resource struct OperationOutcome("OperationOutcome") {
        /// The issues.
        vec "issue" issue: OperationOutcomeIssue,
    }
}

impl OperationOutcome {
    /// Whether any issue is `fatal` or `error`.
    pub fn is_error(&self) -> bool {
        self.issue.iter().any(OperationOutcomeIssue::is_error)
    }

    /// Whether any issue carries the Epic code `code`, such as `"4101"`.
    pub fn has_epic_code(&self, code: &str) -> bool {
        self.issue
            .iter()
            .any(|issue| issue.epic_code() == Some(code))
    }

    /// The issues with their Epic codes, for those that have one.
    pub fn epic_issues(&self) -> impl Iterator<Item = (&OperationOutcomeIssue, &str)> {
        self.issue
            .iter()
            .filter_map(|issue| issue.epic_code().map(|code| (issue, code)))
    }

    /// All issues on one line, errors first, for error messages.
    pub fn summary(&self) -> String {
        if self.issue.is_empty() {
            return "OperationOutcome without issues".to_owned();
        }
        let errors = self.issue.iter().filter(|issue| issue.is_error());
        let others = self.issue.iter().filter(|issue| !issue.is_error());
        errors
            .chain(others)
            .map(OperationOutcomeIssue::summary)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::from_value;

    fn epic_outcome() -> OperationOutcome {
        from_value(json!({
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "warning",
                    "code": "processing",
                    "details": {
                        "coding": [{"system": EPIC_OUTCOME_CODE_SYSTEM, "code": "4101", "display": "Resource request returns no results."}],
                        "text": "Resource request returns no results."
                    }
                },
                {
                    "severity": "error",
                    "code": "required",
                    "details": {"coding": [{"system": EPIC_OUTCOME_CODE_SYSTEM, "code": "59108", "display": "Required parameter missing"}]},
                    "diagnostics": "Either the category or\ncode parameter is required.",
                    "location": ["/f:category"],
                    "expression": ["category", null],
                    "_expression": [null, {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}]
                }
            ]
        }))
        .unwrap()
    }

    #[test]
    fn epic_codes_and_errors() {
        let outcome = epic_outcome();
        assert!(outcome.is_error());
        assert!(outcome.has_epic_code("4101"));
        assert!(!outcome.has_epic_code("4122"));
        let codes: Vec<_> = outcome.epic_issues().map(|(_, code)| code).collect();
        assert_eq!(codes, ["4101", "59108"]);
        assert_eq!(
            outcome.issue[1].expression,
            vec![Some("category".to_owned()), None]
        );
        let warning_only = OperationOutcome {
            issue: vec![outcome.issue[0].clone()],
            ..OperationOutcome::default()
        };
        assert!(!warning_only.is_error());
    }

    #[test]
    fn summary_is_one_line_with_errors_first() {
        let summary = epic_outcome().summary();
        assert_eq!(
            summary,
            "error (required): Required parameter missing [Epic 59108] (Either the category or code parameter is required.); \
             warning (processing): Resource request returns no results. [Epic 4101]"
        );
        assert_eq!(
            OperationOutcome::default().summary(),
            "OperationOutcome without issues"
        );
        let diagnostics_only = OperationOutcomeIssue {
            severity: "fatal".to_owned(),
            code: "exception".to_owned(),
            diagnostics: Some("x".repeat(300)),
            ..OperationOutcomeIssue::default()
        };
        let text = diagnostics_only.summary();
        assert!(text.starts_with("fatal (exception): xxx"), "{text}");
        assert!(text.ends_with("x…"), "{text}");
        assert_eq!(
            text.chars().count(),
            "fatal (exception): ".len() + SUMMARY_DIAGNOSTICS_LIMIT + 1
        );
        let long_diagnostics = OperationOutcomeIssue {
            details: Some(CodeableConcept {
                text: Some("Bad".to_owned()),
                ..CodeableConcept::default()
            }),
            ..diagnostics_only
        };
        assert!(long_diagnostics.summary().ends_with("x…)"));
    }

    #[test]
    fn issue_severity_and_code_are_required() {
        let error = from_value::<OperationOutcome>(
            json!({"resourceType": "OperationOutcome", "issue": [{"code": "x"}]}),
        )
        .unwrap_err();
        assert_eq!(error.path(), "issue[0]");
    }
}
