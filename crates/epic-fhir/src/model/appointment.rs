//! The Appointment resource.

use super::macros::fhir_struct;
use super::{CodeableConcept, DateTime, Identifier, Instant, Period, Reference};

fhir_struct! {
    /// Appointment.participant: a person, location or device taking part in the appointment.
    backbone struct AppointmentParticipant {
        /// Role of the participant.
        vec "type" r#type: CodeableConcept,
        /// The participant.
        opt "actor" actor: Reference,
        /// required | optional | information-only.
        opt "required" required: String,
        /// accepted | declined | tentative | needs-action.
        req "status" status: String,
        /// When the participant takes part.
        opt "period" period: Period,
    }
}

fhir_struct! {
    /// An Appointment: a booking of care for a patient at a given time.
    domain_resource struct Appointment("Appointment") {
        /// Business identifiers.
        vec "identifier" identifier: Identifier,
        /// proposed | pending | booked | arrived | fulfilled | cancelled | noshow | entered-in-error | checked-in | waitlist.
        req "status" status: String,
        /// Why the appointment was cancelled.
        opt "cancelationReason" cancelation_reason: CodeableConcept,
        /// Broad category of service.
        vec "serviceCategory" service_category: CodeableConcept,
        /// Specific service.
        vec "serviceType" service_type: CodeableConcept,
        /// Specialty of the practitioner.
        vec "specialty" specialty: CodeableConcept,
        /// Style of appointment, such as a follow-up.
        opt "appointmentType" appointment_type: CodeableConcept,
        /// Reasons, coded.
        vec "reasonCode" reason_code: CodeableConcept,
        /// Reasons, as references.
        vec "reasonReference" reason_reference: Reference,
        /// Priority (0 is undefined, 1 highest).
        opt "priority" priority: u32,
        /// Shown in a list of appointments.
        opt "description" description: String,
        /// Additional information for the appointment.
        vec "supportingInformation" supporting_information: Reference,
        /// When the appointment starts.
        opt "start" start: Instant,
        /// When the appointment ends.
        opt "end" end: Instant,
        /// Length in minutes.
        opt "minutesDuration" minutes_duration: u32,
        /// Slots the appointment fills.
        vec "slot" slot: Reference,
        /// When the appointment was created.
        opt "created" created: DateTime,
        /// Comments.
        opt "comment" comment: String,
        /// Instructions for the patient.
        opt "patientInstruction" patient_instruction: String,
        /// Requests this appointment fulfils.
        vec "basedOn" based_on: Reference,
        /// Participants.
        vec "participant" participant: AppointmentParticipant,
        /// Preferred periods, for a request.
        vec "requestedPeriod" requested_period: Period,
    }
}

impl Appointment {
    /// The participant whose actor is `Patient/…`, if any.
    pub fn patient_participant(&self) -> Option<&AppointmentParticipant> {
        self.participant.iter().find(|participant| {
            participant
                .actor
                .as_ref()
                .and_then(|actor| actor.resource_type())
                == Some("Patient")
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::from_value;

    #[test]
    fn appointment_round_trips() {
        let input = json!({
            "resourceType": "Appointment",
            "status": "booked",
            "start": "2024-05-01T09:00:00-05:00",
            "end": "2024-05-01T09:30:00-05:00",
            "minutesDuration": 30,
            "participant": [
                {"actor": {"reference": "Practitioner/x", "display": "Dr. X"}, "status": "accepted"},
                {"actor": {"reference": "Patient/eq081-VQEgP8drUUqCWzHfw3"}, "status": "accepted", "required": "required"}
            ],
            "_status": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
        });
        let appointment: Appointment = from_value(input.clone()).unwrap();
        let patient = appointment.patient_participant().unwrap();
        assert_eq!(patient.required.as_deref(), Some("required"));
        assert_eq!(
            appointment.start.as_ref().unwrap().as_str(),
            "2024-05-01T09:00:00-05:00"
        );
        assert!(appointment.extra.contains_key("_status"));
        assert_eq!(serde_json::to_value(&appointment).unwrap(), input);
    }

    #[test]
    fn start_must_be_an_instant() {
        let error = from_value::<Appointment>(
            json!({"resourceType": "Appointment", "status": "booked", "start": "2024-05-01"}),
        )
        .unwrap_err();
        assert_eq!(error.path(), "start");
    }
}
