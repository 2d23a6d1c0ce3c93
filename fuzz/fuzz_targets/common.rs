//! A small store shared by the search targets: one resource of each kind the sandbox's search
//! evaluates, with values of every parameter kind (string, token, reference, date, quantity).

use epic_fhir_sandbox::store::Store;
use serde_json::json;

/// The resource types the targets search.
pub const TYPES: &[&str] = &[
    "Patient",
    "Observation",
    "Condition",
    "Encounter",
    "MedicationRequest",
    "AllergyIntolerance",
    "Procedure",
    "Immunization",
    "DiagnosticReport",
    "DocumentReference",
    "Practitioner",
    "Organization",
    "Group",
    "Provenance",
    "Binary",
];

/// A store holding a few linked resources.
pub fn small_store() -> Store {
    let store = Store::new();
    for resource in [
        json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1987-09-12",
            "name": [{"family": "Lopez", "given": ["Camila", "Maria"]}],
            "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0", "value": "E4007"}],
            "address": [{"city": "Madison", "postalCode": "53703", "state": "WI"}],
            "telecom": [{"system": "phone", "value": "608-555-0100"}]}),
        json!({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1973-06-03",
            "name": [{"family": "Lin", "given": ["Derrick"]}]}),
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Kildare"}]}),
        json!({"resourceType": "Organization", "id": "org1", "name": "Clinic"}),
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-01-02T10:00:00Z", "end": "2024-01-02T11:00:00Z"},
            "participant": [{"individual": {"reference": "Practitioner/dr1"}}]}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "Heart rate"},
            "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
            "effectiveDateTime": "2024-01-02T10:15:00-05:00",
            "valueQuantity": {"value": 72.5, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"resourceType": "Observation", "id": "o2", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
            "subject": {"reference": "Patient/p2"}, "effectivePeriod": {"start": "2023-05", "end": "2023-06"},
            "valueString": "positive"}),
        json!({"resourceType": "Condition", "id": "c1",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "category": [{"coding": [{"code": "problem-list-item"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001", "display": "Asthma"}]},
            "subject": {"reference": "Patient/p1"}, "onsetDateTime": "2010"}),
        json!({"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"text": "albuterol"}, "subject": {"reference": "Patient/p1"},
            "authoredOn": "2024-01-02", "requester": {"reference": "Practitioner/dr1"}}),
        json!({"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"},
            "code": {"text": "peanut"}, "recordedDate": "2020-02-02T00:00:00Z"}),
        json!({"resourceType": "Procedure", "id": "pr1", "status": "completed", "subject": {"reference": "Patient/p2"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "80146002"}]}, "performedDateTime": "2019-07-01"}),
        json!({"resourceType": "Immunization", "id": "i1", "status": "completed", "patient": {"reference": "Patient/p1"},
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]}, "occurrenceDateTime": "2023-10-01"}),
        json!({"resourceType": "DiagnosticReport", "id": "d1", "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"text": "CBC"}, "result": [{"reference": "Observation/o1"}], "effectiveDateTime": "2024-01-02"}),
        json!({"resourceType": "DocumentReference", "id": "doc1", "status": "current", "subject": {"reference": "Patient/p1"},
            "type": {"text": "Note"}, "date": "2024-01-03T00:00:00Z", "content": [{"attachment": {"contentType": "text/plain"}}]}),
        json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
            "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}}]}),
        json!({"resourceType": "Provenance", "id": "prov1", "target": [{"reference": "Observation/o1"}],
            "recorded": "2024-01-02T10:16:00Z", "agent": [{"who": {"reference": "Practitioner/dr1"}}]}),
    ] {
        store.upsert(resource).expect("a valid resource");
    }
    store
}
