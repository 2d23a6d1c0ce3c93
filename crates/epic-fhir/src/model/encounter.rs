//! The Encounter resource.

use super::macros::fhir_struct;
use super::{CodeableConcept, Coding, Identifier, Period, Quantity, Reference};

fhir_struct! {
    /// Encounter.statusHistory: a past status of the encounter.
    backbone struct EncounterStatusHistory {
        /// The status.
        req "status" status: String,
        /// When the encounter had it.
        req "period" period: Period,
    }
}

fhir_struct! {
    /// Encounter.classHistory: a past class of the encounter.
    backbone struct EncounterClassHistory {
        /// The class, such as inpatient.
        req "class" class: Coding,
        /// When the encounter had it.
        req "period" period: Period,
    }
}

fhir_struct! {
    /// Encounter.participant: someone involved in the encounter other than the patient.
    backbone struct EncounterParticipant {
        /// Role of the participant.
        vec "type" r#type: CodeableConcept,
        /// When the participant took part.
        opt "period" period: Period,
        /// The participant.
        opt "individual" individual: Reference,
    }
}

fhir_struct! {
    /// Encounter.diagnosis: a diagnosis relevant to the encounter.
    backbone struct EncounterDiagnosis {
        /// The diagnosis or procedure.
        req "condition" condition: Reference,
        /// Role of the diagnosis, such as admission or discharge diagnosis.
        opt "use" r#use: CodeableConcept,
        /// Ranking of the diagnosis for each use.
        opt "rank" rank: u32,
    }
}

fhir_struct! {
    /// Encounter.hospitalization: details of an admission.
    backbone struct EncounterHospitalization {
        /// Pre-admission identifier.
        opt "preAdmissionIdentifier" pre_admission_identifier: Identifier,
        /// Where the patient came from.
        opt "origin" origin: Reference,
        /// From where the patient was admitted, such as a physician referral.
        opt "admitSource" admit_source: CodeableConcept,
        /// Whether this is a readmission, and why.
        opt "reAdmission" re_admission: CodeableConcept,
        /// Diet preferences.
        vec "dietPreference" diet_preference: CodeableConcept,
        /// Special courtesies, such as VIP.
        vec "specialCourtesy" special_courtesy: CodeableConcept,
        /// Special arrangements, such as a wheelchair.
        vec "specialArrangement" special_arrangement: CodeableConcept,
        /// Where the patient went after discharge.
        opt "destination" destination: Reference,
        /// Category or kind of location after discharge.
        opt "dischargeDisposition" discharge_disposition: CodeableConcept,
    }
}

fhir_struct! {
    /// Encounter.location: a location where the patient was during the encounter.
    backbone struct EncounterLocation {
        /// The location.
        req "location" location: Reference,
        /// planned | active | reserved | completed.
        opt "status" status: String,
        /// Kind of location, such as a room or a ward.
        opt "physicalType" physical_type: CodeableConcept,
        /// When the patient was there.
        opt "period" period: Period,
    }
}

fhir_struct! {
    /// An Encounter: an interaction between the patient and care providers, such as a visit
    /// or an admission.
    domain_resource struct Encounter("Encounter") {
        /// Business identifiers.
        vec "identifier" identifier: Identifier,
        /// planned | arrived | triaged | in-progress | onleave | finished | cancelled | entered-in-error | unknown.
        req "status" status: String,
        /// Past statuses.
        vec "statusHistory" status_history: EncounterStatusHistory,
        /// Classification, such as ambulatory (`AMB`), emergency (`EMER`) or inpatient (`IMP`).
        req "class" class: Coding,
        /// Past classes.
        vec "classHistory" class_history: EncounterClassHistory,
        /// Specific kinds of encounter.
        vec "type" r#type: CodeableConcept,
        /// Broad service category.
        opt "serviceType" service_type: CodeableConcept,
        /// Urgency.
        opt "priority" priority: CodeableConcept,
        /// The patient.
        opt "subject" subject: Reference,
        /// Episodes of care this encounter belongs to.
        vec "episodeOfCare" episode_of_care: Reference,
        /// Referrals or requests this encounter fulfils.
        vec "basedOn" based_on: Reference,
        /// People involved.
        vec "participant" participant: EncounterParticipant,
        /// Appointments that scheduled the encounter.
        vec "appointment" appointment: Reference,
        /// Start and end.
        opt "period" period: Period,
        /// Duration.
        opt "length" length: Quantity,
        /// Reasons, coded.
        vec "reasonCode" reason_code: CodeableConcept,
        /// Reasons, as references.
        vec "reasonReference" reason_reference: Reference,
        /// Diagnoses relevant to the encounter.
        vec "diagnosis" diagnosis: EncounterDiagnosis,
        /// Accounts for billing.
        vec "account" account: Reference,
        /// Admission details.
        opt "hospitalization" hospitalization: EncounterHospitalization,
        /// Locations the patient was at.
        vec "location" location: EncounterLocation,
        /// Organization responsible for the encounter.
        opt "serviceProvider" service_provider: Reference,
        /// Larger encounter this one is part of.
        opt "partOf" part_of: Reference,
    }
}

impl Encounter {
    /// The class code, such as `AMB`, `EMER` or `IMP`.
    pub fn class_code(&self) -> Option<&str> {
        self.class.code.as_deref()
    }

    /// Whether the encounter is in progress.
    pub fn is_in_progress(&self) -> bool {
        self.status == "in-progress"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::from_value;

    #[test]
    fn encounter_round_trips_with_backbone_elements() {
        let input = json!({
            "resourceType": "Encounter",
            "id": "e1",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "statusHistory": [{"status": "arrived", "period": {"start": "2024-01-01T10:00:00Z"}}],
            "classHistory": [{"class": {"code": "EMER"}, "period": {"start": "2024-01-01T09:00:00Z"}}],
            "participant": [{"type": [{"text": "attender"}], "individual": {"reference": "Practitioner/1"}}],
            "diagnosis": [{"condition": {"reference": "Condition/c"}, "use": {"text": "AD"}, "rank": 1}],
            "hospitalization": {"admitSource": {"text": "ER"}, "dischargeDisposition": {"text": "home"}},
            "location": [{"location": {"reference": "Location/l"}, "status": "active"}],
            "length": {"value": 30, "unit": "min"}
        });
        let encounter: Encounter = from_value(input.clone()).unwrap();
        assert_eq!(encounter.class_code(), Some("IMP"));
        assert!(encounter.is_in_progress());
        assert_eq!(encounter.diagnosis[0].rank, Some(1));
        assert_eq!(serde_json::to_value(&encounter).unwrap(), input);
    }

    #[test]
    fn class_is_required() {
        let error =
            from_value::<Encounter>(json!({"resourceType": "Encounter", "status": "finished"}))
                .unwrap_err();
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("missing field `class`"), "{cause}");
    }
}
