//! Conveniences on the clinical resources an Epic client reads most: Patient, Observation,
//! Condition, Encounter, MedicationRequest and Appointment.

use super::datatypes::non_empty;
use crate::{
    Appointment, AppointmentParticipant, Condition, Encounter, EncounterStatus, HumanName,
    MedicationRequest, MedicationRequestMedication, NameUse, Observation, ObservationComponent,
    ObservationComponentValue, ObservationEffective, ObservationValue, Patient, PatientDeceased,
};

/// The identifier system of MRNs in Epic's public sandbox.
pub const EPIC_MRN_SYSTEM: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0";

/// The code system of Condition's clinical status.
const CLINICAL_STATUS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";

impl Patient {
    /// The patient's name for display: the `official` name, else the `usual` one, else the
    /// first current name, as given names and family name (or the name's `text`).
    pub fn display_name(&self) -> Option<String> {
        let with_use = |wanted: NameUse| {
            self.name
                .iter()
                .filter(|name| name.has_use(&wanted))
                .find_map(HumanName::display)
        };
        with_use(NameUse::Official)
            .or_else(|| with_use(NameUse::Usual))
            .or_else(|| {
                self.name
                    .iter()
                    .filter(|name| !matches!(name.r#use, Some(NameUse::Old | NameUse::Maiden)))
                    .find_map(HumanName::display)
            })
            .or_else(|| self.name.iter().find_map(HumanName::display))
    }

    /// The value of the first identifier in `system`.
    pub fn identifier_value(&self, system: &str) -> Option<&str> {
        self.identifier
            .iter()
            .filter(|identifier| identifier.system.as_deref() == Some(system))
            .find_map(|identifier| non_empty(identifier.value.as_deref()))
    }

    /// The medical record number in Epic's sandbox MRN system ([`EPIC_MRN_SYSTEM`]).
    pub fn mrn(&self) -> Option<&str> {
        self.identifier_value(EPIC_MRN_SYSTEM)
    }

    /// Whether the patient is recorded as deceased (a `true` flag or a date of death).
    pub fn is_deceased(&self) -> bool {
        match &self.deceased {
            Some(PatientDeceased::Boolean(deceased)) => *deceased,
            Some(PatientDeceased::DateTime(_)) => true,
            None => false,
        }
    }
}

/// An observation's or a component's value as text for people.
macro_rules! value_display {
    ($value:expr, $enum:ident) => {{
        let text = match $value {
            $enum::Quantity(quantity) => quantity.to_string(),
            $enum::CodeableConcept(concept) => concept.text_or_display()?.to_owned(),
            $enum::String(text) => text.clone(),
            $enum::Time(time) => time.as_str().to_owned(),
            $enum::Boolean(value) => value.to_string(),
            $enum::Integer(value) => value.to_string(),
            $enum::Range(range) => range.to_string(),
            $enum::Ratio(ratio) => ratio.to_string(),
            $enum::SampledData(_) => return None,
            $enum::DateTime(value) => value.as_str().to_owned(),
            $enum::Period(period) => format!(
                "{} – {}",
                period.start.as_ref().map_or("…", |start| start.as_str()),
                period.end.as_ref().map_or("…", |end| end.as_str())
            ),
        };
        (!text.trim().is_empty()).then_some(text)
    }};
}

impl ObservationValue {
    /// The value as text for people, such as `166.5 cm`, `Positive` or `120 / 80`.
    /// `None` for sampled data and for values with nothing to show.
    pub fn display(&self) -> Option<String> {
        value_display!(self, ObservationValue)
    }

    /// The numeric value and its unit (`unit`, else the unit code), for a quantity with a value.
    pub fn quantity(&self) -> Option<(f64, Option<&str>)> {
        match self {
            Self::Quantity(quantity) => quantity
                .value
                .as_ref()
                .map(|value| (value.as_f64(), quantity.unit_or_code())),
            _ => None,
        }
    }
}

impl ObservationComponentValue {
    /// The value as text for people; see [`ObservationValue::display`].
    pub fn display(&self) -> Option<String> {
        value_display!(self, ObservationComponentValue)
    }

    /// The numeric value and its unit, for a quantity with a value.
    pub fn quantity(&self) -> Option<(f64, Option<&str>)> {
        match self {
            Self::Quantity(quantity) => quantity
                .value
                .as_ref()
                .map(|value| (value.as_f64(), quantity.unit_or_code())),
            _ => None,
        }
    }
}

impl ObservationComponent {
    /// The component's value as text for people; see [`ObservationValue::display`].
    pub fn value_display(&self) -> Option<String> {
        self.value
            .as_ref()
            .and_then(ObservationComponentValue::display)
    }

    /// The component's numeric value and its unit.
    pub fn value_quantity(&self) -> Option<(f64, Option<&str>)> {
        self.value
            .as_ref()
            .and_then(ObservationComponentValue::quantity)
    }
}

impl Observation {
    /// What was observed, as text for people (`code.text`, else a coding's display).
    pub fn code_display(&self) -> Option<&str> {
        self.code.text_or_display()
    }

    /// The result as text for people, such as `166.5 cm`; see [`ObservationValue::display`].
    pub fn value_display(&self) -> Option<String> {
        self.value.as_ref().and_then(ObservationValue::display)
    }

    /// The numeric result and its unit, for a quantity result with a value.
    pub fn value_quantity(&self) -> Option<(f64, Option<&str>)> {
        self.value.as_ref().and_then(ObservationValue::quantity)
    }

    /// When the observation was made, as written: the dateTime or instant, or a Period's
    /// start (its end when it has no start).
    pub fn effective_display(&self) -> Option<&str> {
        match self.effective.as_ref()? {
            ObservationEffective::DateTime(at) => Some(at.as_str()),
            ObservationEffective::Instant(at) => Some(at.as_str()),
            ObservationEffective::Period(period) => period
                .start
                .as_ref()
                .or(period.end.as_ref())
                .map(|at| at.as_str()),
            ObservationEffective::Timing(_) => None,
        }
    }

    /// Whether any category has the code `code` (in any system), such as `vital-signs`.
    pub fn has_category(&self, code: &str) -> bool {
        self.category
            .iter()
            .flat_map(|category| &category.coding)
            .any(|coding| coding.code.as_deref() == Some(code))
    }

    /// The component with the coding `system`/`code`, such as LOINC 8480-6 (systolic pressure).
    pub fn component(&self, system: &str, code: &str) -> Option<&ObservationComponent> {
        self.component
            .iter()
            .find(|component| component.code.has_coding(system, code))
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

impl Encounter {
    /// The class code, such as `AMB`, `EMER` or `IMP`.
    pub fn class_code(&self) -> Option<&str> {
        self.class.code.as_deref()
    }

    /// Whether the encounter is in progress.
    pub fn is_in_progress(&self) -> bool {
        self.status == Some(EncounterStatus::InProgress)
    }
}

impl MedicationRequest {
    /// The medication as text for people: the code's text or display, else the reference's
    /// display.
    pub fn medication_display(&self) -> Option<&str> {
        match &self.medication {
            MedicationRequestMedication::CodeableConcept(concept) => concept.text_or_display(),
            MedicationRequestMedication::Reference(reference) => {
                non_empty(reference.display.as_deref())
            }
        }
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
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        ObservationStatus, PatientMultipleBirth, Resource, from_str, from_value, to_value,
    };

    fn patient(value: Value) -> Patient {
        from_value(&value).unwrap()
    }

    #[test]
    fn display_name_prefers_official_then_usual_then_current() {
        let official = patient(json!({
            "resourceType": "Patient",
            "name": [
                {"use": "maiden", "family": "Barrios", "given": ["Mayte"]},
                {"use": "usual", "given": ["May"], "family": "Escobar"},
                {"use": "official", "family": "Escobar", "given": ["Mayte", "Ana"], "prefix": ["Mrs."]}
            ]
        }));
        assert_eq!(
            official.display_name().as_deref(),
            Some("Mayte Ana Escobar")
        );
        let usual = patient(json!({
            "resourceType": "Patient",
            "name": [{"use": "old", "text": "Old Name"}, {"use": "usual", "text": "Camila Lopez"}]
        }));
        assert_eq!(usual.display_name().as_deref(), Some("Camila Lopez"));
        let current = patient(json!({
            "resourceType": "Patient",
            "name": [{"use": "maiden", "family": "Ross"}, {"family": "McGinnis", "given": ["Warren"]}]
        }));
        assert_eq!(current.display_name().as_deref(), Some("Warren McGinnis"));
        let only_old =
            patient(json!({"resourceType": "Patient", "name": [{"use": "old", "family": "Lin"}]}));
        assert_eq!(only_old.display_name().as_deref(), Some("Lin"));
        let empty_official = patient(json!({
            "resourceType": "Patient",
            "name": [{"use": "official"}, {"use": "nickname", "given": ["Jay"]}]
        }));
        assert_eq!(empty_official.display_name().as_deref(), Some("Jay"));
        assert_eq!(Patient::default().display_name(), None);
    }

    #[test]
    fn identifiers_and_mrn() {
        let value = patient(json!({
            "resourceType": "Patient",
            "identifier": [
                {"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14", "value": "203713"},
                {"use": "usual", "system": EPIC_MRN_SYSTEM, "value": "E4005"}
            ]
        }));
        assert_eq!(value.mrn(), Some("E4005"));
        assert_eq!(
            value.identifier_value("urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"),
            Some("203713")
        );
        assert_eq!(
            value.identifier_value("http://hl7.org/fhir/sid/us-ssn"),
            None
        );
    }

    #[test]
    fn deceased_and_multiple_birth_choices() {
        let boolean = patient(
            json!({"resourceType": "Patient", "deceasedBoolean": false, "multipleBirthInteger": 2}),
        );
        assert_eq!(boolean.deceased, Some(PatientDeceased::Boolean(false)));
        assert!(!boolean.is_deceased());
        assert_eq!(
            boolean.multiple_birth,
            Some(PatientMultipleBirth::Integer(2))
        );
        let input = json!({
            "resourceType": "Patient",
            "deceasedDateTime": "2020-04-01T10:00:00-05:00",
            "multipleBirthBoolean": true
        });
        let date = patient(input.clone());
        assert!(date.is_deceased());
        assert_eq!(
            date.multiple_birth,
            Some(PatientMultipleBirth::Boolean(true))
        );
        assert_eq!(to_value(&date), input);
        let error = from_str::<Patient>(
            r#"{"resourceType":"Patient","deceasedBoolean":true,"deceasedDateTime":"2020"}"#,
        )
        .unwrap_err();
        assert_eq!(error.path(), "deceasedDateTime");
        assert!(
            error.message().contains(
                "`deceasedBoolean` and `deceasedDateTime` are both present, but deceased[x] allows only one"
            ),
            "{error}"
        );
    }

    #[test]
    fn wrong_type_in_nested_member_names_the_path() {
        let error = from_str::<Patient>(
            r#"{"resourceType":"Patient","communication":[{"language":{"coding":[{"code":7}]}}]}"#,
        )
        .unwrap_err();
        assert_eq!(error.path(), "communication[0].language.coding[0].code");
        assert!(error.excerpt().unwrap().contains("\"code\":7"), "{error}");
    }

    #[test]
    fn contained_resources_are_typed_and_found_by_local_reference() {
        let value = patient(json!({
            "resourceType": "Patient",
            "contained": [{"resourceType": "Organization", "id": "org1", "name": "Clinic"}],
            "managingOrganization": {"reference": "#org1"}
        }));
        let reference = value.managing_organization.as_ref().unwrap();
        let organization = value
            .contained_resource(reference.reference.as_deref().unwrap())
            .unwrap();
        let Resource::Organization(organization) = organization else {
            panic!("{organization:?}");
        };
        assert_eq!(organization.name.as_deref(), Some("Clinic"));
        assert!(value.contained_resource("#other").is_none());
    }

    fn observation(value: Value) -> Observation {
        let mut object =
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "Test"}});
        if let (Value::Object(target), Value::Object(source)) = (&mut object, value) {
            target.extend(source);
        }
        from_value(&object).unwrap()
    }

    #[test]
    fn every_value_variant_round_trips_and_displays() {
        let cases = [
            (
                r#"{"valueQuantity":{"value":166.50,"unit":"cm"}}"#,
                Some("166.50 cm"),
            ),
            (
                r#"{"valueCodeableConcept":{"coding":[{"code":"10828004","display":"Positive"}]}}"#,
                Some("Positive"),
            ),
            (r#"{"valueString":"Never smoker"}"#, Some("Never smoker")),
            (r#"{"valueBoolean":false}"#, Some("false")),
            (r#"{"valueInteger":3}"#, Some("3")),
            (
                r#"{"valueRange":{"low":{"value":1},"high":{"value":2}}}"#,
                Some("1 – 2"),
            ),
            (
                r#"{"valueRatio":{"numerator":{"value":1},"denominator":{"value":64}}}"#,
                Some("1 / 64"),
            ),
            (
                r#"{"valueSampledData":{"origin":{"value":0},"period":10,"dimensions":1,"data":"1 2 3"}}"#,
                None,
            ),
            (r#"{"valueTime":"10:15:00"}"#, Some("10:15:00")),
            (r#"{"valueDateTime":"2024-03"}"#, Some("2024-03")),
            (
                r#"{"valuePeriod":{"start":"2024-01-01"}}"#,
                Some("2024-01-01 – …"),
            ),
        ];
        for (member, display) in cases {
            let text = format!(
                r#"{{"resourceType":"Observation","status":"final","code":{{"text":"Test"}},{}"#,
                &member[1..]
            );
            let value: Observation = from_str(&text).unwrap();
            assert_eq!(value.value_display().as_deref(), display, "{member}");
            assert_eq!(crate::to_string(&value), text);
            let name = member[2..].split('"').next().unwrap();
            assert_eq!(value.value.as_ref().unwrap().member_name(), name);
        }
    }

    #[test]
    fn every_effective_variant_round_trips() {
        for member in [
            json!({"effectiveDateTime": "2013-01-13T21:45:04+00:00"}),
            json!({"effectivePeriod": {"start": "2013-01-13T21:45:04+00:00", "end": "2013-01-13T22:00:00+00:00"}}),
            json!({"effectiveTiming": {"event": ["2013-01-13T21:45:04Z", null], "_event": [null, {"extension": [{"url": "http://x", "valueString": "y"}]}]}}),
            json!({"effectiveInstant": "2013-01-13T21:45:04.123Z"}),
        ] {
            let value = observation(member.clone());
            let written = to_value(&value);
            let (name, inner) = member.as_object().unwrap().iter().next().unwrap();
            assert_eq!(&written[name], inner, "{member}");
            assert!(value.effective.is_some());
        }
    }

    #[test]
    fn quantity_value_and_code_display() {
        let value = observation(json!({
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]},
            "valueQuantity": {"value": 166.54196928074128, "system": "http://unitsofmeasure.org", "code": "cm"}
        }));
        assert_eq!(value.code_display(), Some("Body Height"));
        assert_eq!(
            value.value_quantity(),
            Some((166.54196928074128, Some("cm")))
        );
        assert_eq!(value.status, Some(ObservationStatus::Final));
        let text = observation(json!({"valueString": "x"}));
        assert_eq!(text.value_quantity(), None);
        let no_value = observation(json!({"valueQuantity": {"unit": "cm"}}));
        assert_eq!(no_value.value_quantity(), None);
    }

    #[test]
    fn components_and_categories() {
        let value = observation(json!({
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}
            ]
        }));
        assert!(value.has_category("vital-signs"));
        assert!(!value.has_category("laboratory"));
        let systolic = value.component("http://loinc.org", "8480-6").unwrap();
        assert_eq!(systolic.value_display().as_deref(), Some("120 mm[Hg]"));
        assert_eq!(systolic.value_quantity(), Some((120.0, Some("mm[Hg]"))));
        assert!(value.component("http://loinc.org", "0000-0").is_none());
    }

    #[test]
    fn two_values_are_an_error_with_the_path() {
        let error = from_str::<Observation>(
            r#"{"resourceType":"Observation","status":"final","code":{},"component":[{"code":{},"valueString":"a","valueInteger":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(error.path(), "component[0].valueInteger");
        assert!(
            error
                .message()
                .contains("`valueString` and `valueInteger` are both present"),
            "{error}"
        );
    }

    #[test]
    fn required_complex_members_are_enforced_and_primitives_may_carry_only_extensions() {
        let error = from_str::<Observation>(r#"{"resourceType":"Observation","status":"final"}"#)
            .unwrap_err();
        assert!(
            error.message().contains("missing required member `code`"),
            "{error}"
        );
        let component = from_str::<Observation>(
            r#"{"resourceType":"Observation","status":"final","code":{},"component":[{"valueInteger":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(component.path(), "component[0]");
        // A required primitive may be absent when its extension says why.
        let absent = r#"{"resourceType":"Observation","_status":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]},"code":{}}"#;
        let value: Observation = from_str(absent).unwrap();
        assert_eq!(value.status, None);
        assert_eq!(crate::to_string(&value), absent);
    }

    #[test]
    fn condition_encounter_medication_and_appointment() {
        let condition: Condition = from_str(r#"{"resourceType":"Condition","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"relapse"}]},"code":{"text":"Asthma"},"subject":{"reference":"Patient/p"}}"#).unwrap();
        assert!(condition.is_active());
        assert_eq!(condition.code_display(), Some("Asthma"));
        assert_eq!(condition.clinical_status_code(), Some("relapse"));
        let encounter: Encounter = from_str(r#"{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"}}"#).unwrap();
        assert!(encounter.is_in_progress());
        assert_eq!(encounter.class_code(), Some("AMB"));
        let request: MedicationRequest = from_str(r#"{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationReference":{"reference":"Medication/m","display":"Lisinopril 10 mg"},"subject":{"reference":"Patient/p"}}"#).unwrap();
        assert_eq!(request.medication_display(), Some("Lisinopril 10 mg"));
        let appointment: Appointment = from_str(r#"{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Practitioner/d"},"status":"accepted"},{"actor":{"reference":"Patient/p"},"status":"accepted"}]}"#).unwrap();
        let participant = appointment.patient_participant().unwrap();
        assert_eq!(participant.actor.as_ref().and_then(|a| a.id()), Some("p"));
    }
}
