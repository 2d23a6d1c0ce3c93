//! The MedicationRequest resource.

use super::datatypes::non_empty;
use super::macros::{fhir_choice, fhir_struct};
use super::{
    Annotation, CodeableConcept, DateTime, Dosage, Identifier, Period, Quantity, Reference,
};

fhir_choice! {
    /// MedicationRequest.medication\[x\]: the medication, as a code or a Medication resource.
    ///
    /// FHIR requires it; it is optional here so that a request without one can still be read.
    enum MedicationRequestMedication("medication") {
        /// `medicationCodeableConcept`, usually RxNorm.
        CodeableConcept("medicationCodeableConcept", CodeableConcept),
        /// `medicationReference`, to a Medication resource.
        Reference("medicationReference", Reference),
    }
}

fhir_choice! {
    /// MedicationRequest.reported\[x\]: whether the request was reported rather than a primary
    /// record, or who reported it.
    enum MedicationRequestReported("reported") {
        /// `reportedBoolean`.
        Boolean("reportedBoolean", bool),
        /// `reportedReference`: who reported it.
        Reference("reportedReference", Reference),
    }
}

fhir_choice! {
    /// MedicationRequest.substitution.allowed\[x\]: whether substitution is allowed.
    enum SubstitutionAllowed("allowed") {
        /// `allowedBoolean`.
        Boolean("allowedBoolean", bool),
        /// `allowedCodeableConcept`: the kind of substitution allowed.
        CodeableConcept("allowedCodeableConcept", CodeableConcept),
    }
}

fhir_struct! {
    /// MedicationRequest.dispenseRequest.initialFill: the first fill.
    backbone struct MedicationRequestInitialFill {
        /// Amount of the first fill.
        opt "quantity" quantity: Quantity,
        /// Days supply of the first fill.
        opt "duration" duration: Quantity,
    }
}

fhir_struct! {
    /// MedicationRequest.dispenseRequest: how the medication is to be dispensed.
    backbone struct MedicationRequestDispenseRequest {
        /// The first fill.
        opt "initialFill" initial_fill: MedicationRequestInitialFill,
        /// Minimum time between fills.
        opt "dispenseInterval" dispense_interval: Quantity,
        /// When the prescription may be dispensed.
        opt "validityPeriod" validity_period: Period,
        /// Number of refills authorized.
        opt "numberOfRepeatsAllowed" number_of_repeats_allowed: u32,
        /// Amount per dispense.
        opt "quantity" quantity: Quantity,
        /// Days supply per dispense.
        opt "expectedSupplyDuration" expected_supply_duration: Quantity,
        /// Intended dispenser.
        opt "performer" performer: Reference,
    }
}

fhir_struct! {
    /// MedicationRequest.substitution: whether a substitute may be dispensed.
    backbone struct MedicationRequestSubstitution {
        /// Whether, or what kind of, substitution is allowed.
        choice "allowed" allowed: SubstitutionAllowed,
        /// Why substitution is or is not allowed.
        opt "reason" reason: CodeableConcept,
    }
}

fhir_struct! {
    /// A MedicationRequest: an order or prescription of a medication.
    domain_resource struct MedicationRequest("MedicationRequest") {
        /// Business identifiers.
        vec "identifier" identifier: Identifier,
        /// active | on-hold | cancelled | completed | entered-in-error | stopped | draft | unknown.
        req "status" status: String,
        /// Reason for the current status.
        opt "statusReason" status_reason: CodeableConcept,
        /// proposal | plan | order | original-order | reflex-order | filler-order | instance-order | option.
        req "intent" intent: String,
        /// Kind of request, such as inpatient or outpatient.
        vec "category" category: CodeableConcept,
        /// routine | urgent | asap | stat.
        opt "priority" priority: String,
        /// True if the request forbids the action.
        opt "doNotPerform" do_not_perform: bool,
        /// Reported rather than primary record.
        choice "reported" reported: MedicationRequestReported,
        /// The medication.
        choice "medication" medication: MedicationRequestMedication,
        /// Who the medication is for.
        req "subject" subject: Reference,
        /// Encounter of the request.
        opt "encounter" encounter: Reference,
        /// Information supporting the request.
        vec "supportingInformation" supporting_information: Reference,
        /// When the request was written.
        opt "authoredOn" authored_on: DateTime,
        /// Who asked for the medication.
        opt "requester" requester: Reference,
        /// Intended performer of administration.
        opt "performer" performer: Reference,
        /// Kind of performer wanted.
        opt "performerType" performer_type: CodeableConcept,
        /// Person who entered the request.
        opt "recorder" recorder: Reference,
        /// Reasons, coded.
        vec "reasonCode" reason_code: CodeableConcept,
        /// Reasons, as references to conditions or observations.
        vec "reasonReference" reason_reference: Reference,
        /// Protocols followed (canonical URLs); `None` for JSON `null` entries.
        vec "instantiatesCanonical" instantiates_canonical: Option<String>,
        /// External protocols followed; `None` for JSON `null` entries.
        vec "instantiatesUri" instantiates_uri: Option<String>,
        /// Requests this one fulfils.
        vec "basedOn" based_on: Reference,
        /// Identifier shared by requests made together.
        opt "groupIdentifier" group_identifier: Identifier,
        /// Continuous, acute, seasonal...
        opt "courseOfTherapyType" course_of_therapy_type: CodeableConcept,
        /// Insurance coverages.
        vec "insurance" insurance: Reference,
        /// Comments.
        vec "note" note: Annotation,
        /// How the medication is to be taken.
        vec "dosageInstruction" dosage_instruction: Dosage,
        /// Dispensing details.
        opt "dispenseRequest" dispense_request: MedicationRequestDispenseRequest,
        /// Substitution rules.
        opt "substitution" substitution: MedicationRequestSubstitution,
        /// The request this one replaces.
        opt "priorPrescription" prior_prescription: Reference,
        /// Clinical issues with the request.
        vec "detectedIssue" detected_issue: Reference,
        /// Provenance of past versions.
        vec "eventHistory" event_history: Reference,
    }
}

impl MedicationRequest {
    /// The medication as text for people: the code's text or display, else the reference's
    /// display.
    pub fn medication_display(&self) -> Option<&str> {
        match self.medication.as_ref()? {
            MedicationRequestMedication::CodeableConcept(concept) => concept.text_or_display(),
            MedicationRequestMedication::Reference(reference) => {
                non_empty(reference.display.as_deref())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::from_value;

    fn request(member: Value) -> MedicationRequest {
        let mut object = json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p"}
        });
        if let (Value::Object(target), Value::Object(source)) = (&mut object, member) {
            target.extend(source);
        }
        from_value(object).unwrap()
    }

    #[test]
    fn every_choice_variant_round_trips() {
        for member in [
            json!({"medicationCodeableConcept": {"text": "Ibuprofen 200 MG Oral Tablet"}, "reportedBoolean": false}),
            json!({"medicationReference": {"reference": "#med", "display": "Amoxicillin"}, "reportedReference": {"reference": "Patient/p"}}),
            json!({"substitution": {"allowedBoolean": true}}),
            json!({"substitution": {"allowedCodeableConcept": {"text": "generic"}, "reason": {"text": "cost"}}}),
        ] {
            let value = request(member.clone());
            let written = serde_json::to_value(&value).unwrap();
            for (name, inner) in member.as_object().unwrap() {
                assert_eq!(&written[name], inner, "{name}");
            }
        }
        assert_eq!(
            request(json!({"medicationCodeableConcept": {"coding": [{"display": "Ibuprofen"}]}}))
                .medication_display(),
            Some("Ibuprofen")
        );
        assert_eq!(
            request(json!({"medicationReference": {"display": "Amoxicillin"}}))
                .medication_display(),
            Some("Amoxicillin")
        );
        assert_eq!(request(json!({})).medication_display(), None);
    }

    #[test]
    fn dosage_and_dispense_request_are_typed() {
        let value = request(json!({
            "dosageInstruction": [{"sequence": 1, "asNeededBoolean": true, "timing": {"repeat": {"frequency": 1}}}],
            "dispenseRequest": {"numberOfRepeatsAllowed": 3, "quantity": {"value": 30}, "initialFill": {"quantity": {"value": 10}}}
        }));
        assert_eq!(value.dosage_instruction[0].sequence, Some(1));
        let dispense = value.dispense_request.as_ref().unwrap();
        assert_eq!(dispense.number_of_repeats_allowed, Some(3));
        assert!(dispense.initial_fill.is_some());
        let error = from_value::<MedicationRequest>(json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {},
            "dispenseRequest": {"numberOfRepeatsAllowed": -1}
        }))
        .unwrap_err();
        assert_eq!(error.path(), "dispenseRequest.numberOfRepeatsAllowed");
    }

    #[test]
    fn two_medications_are_an_error() {
        let error = from_value::<MedicationRequest>(json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {},
            "medicationReference": {}, "medicationCodeableConcept": {}
        }))
        .unwrap_err();
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("medication[x] allows only one"), "{cause}");
    }
}
