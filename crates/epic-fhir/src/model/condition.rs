//! The Condition resource.

use super::macros::{fhir_choice, fhir_struct};
use super::{
    Annotation, CodeableConcept, DateTime, Identifier, Period, Quantity, Range, Reference,
};

/// The code system of `Condition.clinicalStatus`.
const CLINICAL_STATUS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";

fhir_choice! {
    /// Condition.onset\[x\]: when the condition began.
    enum ConditionOnset("onset") {
        /// `onsetDateTime`.
        DateTime("onsetDateTime", DateTime),
        /// `onsetAge`: the patient's age at onset.
        Age("onsetAge", Quantity),
        /// `onsetPeriod`.
        Period("onsetPeriod", Period),
        /// `onsetRange`: an age range at onset.
        Range("onsetRange", Range),
        /// `onsetString`.
        String("onsetString", String),
    }
}

fhir_choice! {
    /// Condition.abatement\[x\]: when the condition resolved or went into remission.
    enum ConditionAbatement("abatement") {
        /// `abatementDateTime`.
        DateTime("abatementDateTime", DateTime),
        /// `abatementAge`: the patient's age at abatement.
        Age("abatementAge", Quantity),
        /// `abatementPeriod`.
        Period("abatementPeriod", Period),
        /// `abatementRange`: an age range at abatement.
        Range("abatementRange", Range),
        /// `abatementString`.
        String("abatementString", String),
    }
}

fhir_struct! {
    /// Condition.stage: the stage or grade of the condition.
    backbone struct ConditionStage {
        /// Simple summary of the stage.
        opt "summary" summary: CodeableConcept,
        /// Formal record of the assessment.
        vec "assessment" assessment: Reference,
        /// Kind of staging.
        opt "type" r#type: CodeableConcept,
    }
}

fhir_struct! {
    /// Condition.evidence: what supports the condition.
    backbone struct ConditionEvidence {
        /// Manifestations or symptoms.
        vec "code" code: CodeableConcept,
        /// Supporting information found elsewhere.
        vec "detail" detail: Reference,
    }
}

fhir_struct! {
    /// A Condition: a problem, diagnosis or other clinical concern.
    domain_resource struct Condition("Condition") {
        /// Business identifiers.
        vec "identifier" identifier: Identifier,
        /// active | recurrence | relapse | inactive | remission | resolved.
        opt "clinicalStatus" clinical_status: CodeableConcept,
        /// unconfirmed | provisional | differential | confirmed | refuted | entered-in-error.
        opt "verificationStatus" verification_status: CodeableConcept,
        /// problem-list-item | encounter-diagnosis, and others.
        vec "category" category: CodeableConcept,
        /// Subjective severity.
        opt "severity" severity: CodeableConcept,
        /// What the condition is, such as a SNOMED CT or ICD-10 code.
        opt "code" code: CodeableConcept,
        /// Anatomical locations.
        vec "bodySite" body_site: CodeableConcept,
        /// Who has the condition.
        req "subject" subject: Reference,
        /// Encounter where the condition was first asserted.
        opt "encounter" encounter: Reference,
        /// When it began.
        choice "onset" onset: ConditionOnset,
        /// When it resolved.
        choice "abatement" abatement: ConditionAbatement,
        /// When it was first recorded.
        opt "recordedDate" recorded_date: DateTime,
        /// Who recorded it.
        opt "recorder" recorder: Reference,
        /// Who asserted it.
        opt "asserter" asserter: Reference,
        /// Stage or grade.
        vec "stage" stage: ConditionStage,
        /// Supporting evidence.
        vec "evidence" evidence: ConditionEvidence,
        /// Comments.
        vec "note" note: Annotation,
    }
}

impl Condition {
    /// What the condition is, as text for people.
    pub fn code_display(&self) -> Option<&str> {
        self.code.as_ref().and_then(|code| code.text_or_display())
    }

    /// The clinical status code, such as `active` or `resolved`.
    pub fn clinical_status_code(&self) -> Option<&str> {
        self.clinical_status
            .as_ref()
            .and_then(|status| status.code_in(CLINICAL_STATUS_SYSTEM))
    }

    /// Whether the clinical status is active, recurrence or relapse.
    pub fn is_active(&self) -> bool {
        matches!(
            self.clinical_status_code(),
            Some("active" | "recurrence" | "relapse")
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::from_value;

    fn condition(member: Value) -> Condition {
        let mut object =
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/p"}});
        if let (Value::Object(target), Value::Object(source)) = (&mut object, member) {
            target.extend(source);
        }
        from_value(object).unwrap()
    }

    #[test]
    fn every_onset_and_abatement_variant_round_trips() {
        for (onset, abatement) in [
            (
                json!({"onsetDateTime": "1996-03-17T21:45:04+00:00"}),
                json!({"abatementDateTime": "2001"}),
            ),
            (
                json!({"onsetAge": {"value": 52, "unit": "a"}}),
                json!({"abatementAge": {"value": 53, "unit": "a"}}),
            ),
            (
                json!({"onsetPeriod": {"start": "2020"}}),
                json!({"abatementPeriod": {"end": "2021"}}),
            ),
            (
                json!({"onsetRange": {"low": {"value": 10}}}),
                json!({"abatementRange": {"high": {"value": 12}}}),
            ),
            (
                json!({"onsetString": "childhood"}),
                json!({"abatementString": "adulthood"}),
            ),
        ] {
            let mut both = onset.as_object().unwrap().clone();
            both.extend(abatement.as_object().unwrap().clone());
            let value = condition(Value::Object(both.clone()));
            let written = serde_json::to_value(&value).unwrap();
            for (name, inner) in &both {
                assert_eq!(&written[name], inner, "{name}");
            }
            assert!(value.onset.is_some() && value.abatement.is_some());
        }
        let both = crate::model::from_str::<Condition>(
            r#"{"resourceType":"Condition","subject":{},"onsetString":"a","onsetAge":{"value":1}}"#,
        )
        .unwrap_err();
        assert_eq!(both.path(), "onsetAge");
    }

    #[test]
    fn clinical_status_helpers() {
        let value = condition(json!({
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "relapse"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "15777000", "display": "Prediabetes"}]}
        }));
        assert_eq!(value.clinical_status_code(), Some("relapse"));
        assert!(value.is_active());
        assert_eq!(value.code_display(), Some("Prediabetes"));
        assert!(!condition(json!({})).is_active());
    }

    #[test]
    fn subject_is_required() {
        let error = from_value::<Condition>(json!({"resourceType": "Condition"})).unwrap_err();
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("missing field `subject`"), "{cause}");
    }
}
