//! The Patient resource.

use super::datatypes::non_empty;
use super::macros::{fhir_choice, fhir_struct};
use super::{
    Address, Attachment, CodeableConcept, ContactPoint, Date, DateTime, HumanName, Identifier,
    Period, Reference,
};

/// The identifier system of medical record numbers (MRNs) in Epic's public sandbox.
///
/// Each Epic organisation has its own MRN system OID in production; look it up in the
/// organisation's data and use [`Patient::identifier_value`] there.
pub const EPIC_MRN_SYSTEM: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0";

fhir_choice! {
    /// Patient.deceased\[x\]: whether, or when, the patient died.
    enum PatientDeceased("deceased") {
        /// `deceasedBoolean`.
        Boolean("deceasedBoolean", bool),
        /// `deceasedDateTime`.
        DateTime("deceasedDateTime", DateTime),
    }
}

fhir_choice! {
    /// Patient.multipleBirth\[x\]: whether the patient is part of a multiple birth, or their
    /// birth order.
    enum PatientMultipleBirth("multipleBirth") {
        /// `multipleBirthBoolean`.
        Boolean("multipleBirthBoolean", bool),
        /// `multipleBirthInteger`: the birth order.
        Integer("multipleBirthInteger", i32),
    }
}

fhir_struct! {
    /// Patient.contact: a guardian, partner or other contact for the patient.
    backbone struct PatientContact {
        /// The kind of relationship.
        vec "relationship" relationship: CodeableConcept,
        /// Name of the contact.
        opt "name" name: HumanName,
        /// Phone numbers and addresses of the contact.
        vec "telecom" telecom: ContactPoint,
        /// Address of the contact.
        opt "address" address: Address,
        /// male | female | other | unknown.
        opt "gender" gender: String,
        /// Organization the contact works for.
        opt "organization" organization: Reference,
        /// When the contact is valid for the patient.
        opt "period" period: Period,
    }
}

fhir_struct! {
    /// Patient.communication: a language the patient speaks.
    backbone struct PatientCommunication {
        /// The language (BCP-47 coded).
        req "language" language: CodeableConcept,
        /// Whether this is the preferred language.
        opt "preferred" preferred: bool,
    }
}

fhir_struct! {
    /// Patient.link: another Patient or RelatedPerson record for the same person.
    backbone struct PatientLink {
        /// The other record.
        req "other" other: Reference,
        /// replaced-by | replaces | refer | seealso.
        req "type" r#type: String,
    }
}

fhir_struct! {
    /// A Patient: demographics of a person receiving care.
    domain_resource struct Patient("Patient") {
        /// Identifiers such as the MRN.
        vec "identifier" identifier: Identifier,
        /// Whether the record is in active use.
        opt "active" active: bool,
        /// Names of the patient.
        vec "name" name: HumanName,
        /// Phone numbers, email addresses and other contacts.
        vec "telecom" telecom: ContactPoint,
        /// male | female | other | unknown.
        opt "gender" gender: String,
        /// Date of birth.
        opt "birthDate" birth_date: Date,
        /// Whether, or when, the patient died.
        choice "deceased" deceased: PatientDeceased,
        /// Addresses.
        vec "address" address: Address,
        /// Marital status.
        opt "maritalStatus" marital_status: CodeableConcept,
        /// Part of a multiple birth, or birth order.
        choice "multipleBirth" multiple_birth: PatientMultipleBirth,
        /// Photos of the patient.
        vec "photo" photo: Attachment,
        /// Guardians, partners and other contacts.
        vec "contact" contact: PatientContact,
        /// Languages the patient speaks.
        vec "communication" communication: PatientCommunication,
        /// The patient's nominated care providers.
        vec "generalPractitioner" general_practitioner: Reference,
        /// Organization that is the custodian of the record.
        opt "managingOrganization" managing_organization: Reference,
        /// Other records of the same person.
        vec "link" link: PatientLink,
    }
}

impl Patient {
    /// The patient's name for display: the `official` name, else the `usual` one, else the
    /// first current name, as given names and family name (or the name's `text`).
    pub fn display_name(&self) -> Option<String> {
        let with_use = |wanted: &str| {
            self.name
                .iter()
                .filter(|name| name.r#use.as_deref() == Some(wanted))
                .find_map(HumanName::display)
        };
        with_use("official")
            .or_else(|| with_use("usual"))
            .or_else(|| {
                self.name
                    .iter()
                    .filter(|name| !matches!(name.r#use.as_deref(), Some("old" | "maiden")))
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::from_value;

    fn patient(value: serde_json::Value) -> Patient {
        from_value(value).unwrap()
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
        let date = patient(json!({
            "resourceType": "Patient",
            "deceasedDateTime": "2020-04-01T10:00:00-05:00",
            "multipleBirthBoolean": true
        }));
        assert!(date.is_deceased());
        assert_eq!(
            date.multiple_birth,
            Some(PatientMultipleBirth::Boolean(true))
        );
        assert_eq!(
            serde_json::to_value(&date).unwrap(),
            json!({
                "resourceType": "Patient",
                "deceasedDateTime": "2020-04-01T10:00:00-05:00",
                "multipleBirthBoolean": true
            })
        );
        let error = from_value::<Patient>(json!({
            "resourceType": "Patient",
            "deceasedBoolean": true,
            "deceasedDateTime": "2020"
        }))
        .unwrap_err();
        assert_eq!(error.path(), "deceasedDateTime");
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(
            cause.contains("`deceasedBoolean` and `deceasedDateTime` are both present, but deceased[x] allows only one"),
            "{cause}"
        );
    }

    #[test]
    fn wrong_type_in_nested_member_names_the_path() {
        let error = crate::model::from_str::<Patient>(
            r#"{"resourceType":"Patient","communication":[{"language":{"coding":[{"code":7}]}}]}"#,
        )
        .unwrap_err();
        assert_eq!(error.path(), "communication[0].language.coding[0].code");
        assert!(error.excerpt().unwrap().contains("\"code\":7"), "{error}");
    }

    #[test]
    fn contained_resources_are_found_by_local_reference() {
        let value = patient(json!({
            "resourceType": "Patient",
            "contained": [{"resourceType": "Organization", "id": "org1", "name": "Clinic"}],
            "managingOrganization": {"reference": "#org1"}
        }));
        let reference = value.managing_organization.as_ref().unwrap();
        let organization = value
            .contained_resource(reference.reference.as_deref().unwrap())
            .unwrap();
        assert_eq!(organization.resource_type(), "Organization");
        assert_eq!(organization.get("name"), Some(&json!("Clinic")));
        assert!(value.contained_resource("#other").is_none());
    }
}
