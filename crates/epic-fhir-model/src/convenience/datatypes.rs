//! Conveniences on the common datatypes: codings and concepts, identifiers, names,
//! references, quantities and extensions.

use std::fmt;

use crate::{
    CodeableConcept, Coding, Extension, ExtensionValue, HumanName, Identifier, NameUse, Quantity,
    Range, Ratio, Reference,
};

/// `None` for empty or blank strings.
pub(crate) fn non_empty(text: Option<&str>) -> Option<&str> {
    text.filter(|text| !text.trim().is_empty())
}

impl Coding {
    /// Makes a coding from a system and a code.
    pub fn new(system: impl Into<String>, code: impl Into<String>) -> Self {
        Self {
            system: Some(system.into()),
            code: Some(code.into()),
            ..Self::default()
        }
    }

    /// Whether the coding has exactly this system and code.
    pub fn is(&self, system: &str, code: &str) -> bool {
        self.system.as_deref() == Some(system) && self.code.as_deref() == Some(code)
    }
}

impl CodeableConcept {
    /// Makes a concept with one coding.
    pub fn from_coding(coding: Coding) -> Self {
        Self {
            coding: vec![coding],
            ..Self::default()
        }
    }

    /// Whether any coding has exactly this system and code.
    pub fn has_coding(&self, system: &str, code: &str) -> bool {
        self.coding.iter().any(|coding| coding.is(system, code))
    }

    /// The code of the first coding in `system`.
    pub fn code_in(&self, system: &str) -> Option<&str> {
        self.coding
            .iter()
            .find(|coding| coding.system.as_deref() == Some(system))
            .and_then(|coding| coding.code.as_deref())
    }

    /// Text for people: `text`, else the first coding's `display`.
    pub fn text_or_display(&self) -> Option<&str> {
        non_empty(self.text.as_deref()).or_else(|| {
            self.coding
                .iter()
                .find_map(|coding| non_empty(coding.display.as_deref()))
        })
    }
}

impl Identifier {
    /// Makes an identifier from a system and a value.
    pub fn new(system: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            system: Some(system.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }
}

impl HumanName {
    /// The given names that have text.
    pub fn given_names(&self) -> impl Iterator<Item = &str> {
        self.given
            .iter()
            .filter_map(|given| non_empty(Some(given.as_str())))
    }

    /// The name for display: the given names and the family name, else `text`.
    pub fn display(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .given_names()
            .chain(non_empty(self.family.as_deref()))
            .map(str::trim)
            .collect();
        if parts.is_empty() {
            non_empty(self.text.as_deref()).map(|text| text.trim().to_owned())
        } else {
            Some(parts.join(" "))
        }
    }

    /// Whether the name's `use` is `use_`.
    pub fn has_use(&self, use_: &NameUse) -> bool {
        self.r#use.as_ref() == Some(use_)
    }
}

/// The parts of a literal reference that names a resource on a server.
struct ReferenceTarget<'a> {
    resource_type: &'a str,
    id: &'a str,
    version: Option<&'a str>,
}

/// Whether `name` looks like a FHIR resource type name.
fn is_resource_type_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|first| first.is_ascii_uppercase())
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric())
}

/// Whether `id` is a valid FHIR logical id.
pub(crate) fn is_logical_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '-' || character == '.'
        })
}

impl Reference {
    /// A reference to `resource_type/id`, such as `Reference::to("Patient", "123")`.
    pub fn to(resource_type: &str, id: &str) -> Self {
        Self {
            reference: Some(format!("{resource_type}/{id}")),
            ..Self::default()
        }
    }

    /// Splits `Type/id`, `Type/id/_history/v` and absolute URLs ending in those; `None` for
    /// contained (`#id`) and URN references and anything else.
    fn target(&self) -> Option<ReferenceTarget<'_>> {
        let literal = self.reference.as_deref()?;
        if literal.starts_with('#') || literal.starts_with("urn:") {
            return None;
        }
        let literal = literal.split(['?', '#']).next().unwrap_or(literal);
        let mut segments = literal.rsplit('/');
        let mut last = segments.next()?;
        let mut before = segments.next()?;
        let mut version = None;
        if before == "_history" {
            version = Some(last);
            last = segments.next()?;
            before = segments.next()?;
        }
        (is_resource_type_name(before) && is_logical_id(last)).then_some(ReferenceTarget {
            resource_type: before,
            id: last,
            version,
        })
    }

    /// The logical id of the target, read from the literal reference (`Patient/123` gives
    /// `123`; so do `https://host/fhir/Patient/123` and `Patient/123/_history/2`).
    ///
    /// The `id` field is the element's own id, as everywhere in FHIR.
    pub fn id(&self) -> Option<&str> {
        self.target().map(|target| target.id)
    }

    /// The type of the target: from the literal reference, else from `type`.
    pub fn resource_type(&self) -> Option<&str> {
        self.target()
            .map(|target| target.resource_type)
            .or(self.r#type.as_deref())
    }

    /// The version in a `…/_history/v` reference.
    pub fn version(&self) -> Option<&str> {
        self.target().and_then(|target| target.version)
    }

    /// The id of a contained resource for a local reference `#id`.
    pub fn contained_id(&self) -> Option<&str> {
        self.reference.as_deref()?.strip_prefix('#')
    }
}

impl Quantity {
    /// The unit for display: `unit`, else the coded `code`.
    pub fn unit_or_code(&self) -> Option<&str> {
        non_empty(self.unit.as_deref()).or(non_empty(self.code.as_deref()))
    }
}

impl fmt::Display for Quantity {
    /// Writes the comparator, value and unit, such as `<5 mg/dL`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(comparator) = &self.comparator {
            formatter.write_str(comparator.code())?;
        }
        if let Some(value) = &self.value {
            write!(formatter, "{value}")?;
        }
        if let Some(unit) = self.unit_or_code() {
            if self.value.is_some() {
                formatter.write_str(" ")?;
            }
            formatter.write_str(unit)?;
        }
        Ok(())
    }
}

impl fmt::Display for Range {
    /// Writes `low – high`, or `≥ low` / `≤ high` for half-open ranges.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.low, &self.high) {
            (Some(low), Some(high)) => write!(formatter, "{low} – {high}"),
            (Some(low), None) => write!(formatter, "≥ {low}"),
            (None, Some(high)) => write!(formatter, "≤ {high}"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Display for Ratio {
    /// Writes `numerator / denominator`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(numerator) = &self.numerator {
            write!(formatter, "{numerator}")?;
        }
        formatter.write_str(" / ")?;
        if let Some(denominator) = &self.denominator {
            write!(formatter, "{denominator}")?;
        }
        Ok(())
    }
}

impl Extension {
    /// Makes an extension with a value, such as
    /// `Extension::with_value(url, ExtensionValue::Code("F".into()))`.
    pub fn with_value(url: impl Into<String>, value: ExtensionValue) -> Self {
        Self {
            url: url.into(),
            value: Some(value),
            ..Self::default()
        }
    }

    /// Finds the first extension with `url` among `extensions`.
    pub fn find<'a>(extensions: &'a [Extension], url: &str) -> Option<&'a Extension> {
        extensions.iter().find(|extension| extension.url == url)
    }

    /// The nested extension with `url`, for complex extensions.
    pub fn nested(&self, url: &str) -> Option<&Extension> {
        Self::find(&self.extension, url)
    }

    /// The value as a string, for `valueString`, `valueCode`, `valueUri` and the other
    /// string-valued types.
    pub fn value_str(&self) -> Option<&str> {
        self.value.as_ref().and_then(ExtensionValue::as_str)
    }
}

impl ExtensionValue {
    /// The value as a string, for the string-valued types (`string`, `code`, `uri`, `url`,
    /// `canonical`, `id`, `oid`, `uuid`, `markdown`, `base64Binary`) and the date and time
    /// types (as written).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text)
            | Self::Code(text)
            | Self::Uri(text)
            | Self::Url(text)
            | Self::Canonical(text)
            | Self::Id(text)
            | Self::Oid(text)
            | Self::Uuid(text)
            | Self::Markdown(text)
            | Self::Base64Binary(text) => Some(text),
            Self::Date(date) => Some(date.as_str()),
            Self::DateTime(date_time) => Some(date_time.as_str()),
            Self::Instant(instant) => Some(instant.as_str()),
            Self::Time(time) => Some(time.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dosage, DosageAsNeeded, DosageDoseAndRateDose, DosageDoseAndRateRate, from_str};

    fn reference(literal: &str) -> Reference {
        Reference {
            reference: Some(literal.to_owned()),
            ..Reference::default()
        }
    }

    #[test]
    fn reference_parts_are_read_from_every_literal_form() {
        for (literal, resource_type, id, version) in [
            ("Patient/123", Some("Patient"), Some("123"), None),
            (
                "Patient/eq081-VQEgP8drUUqCWzHfw3",
                Some("Patient"),
                Some("eq081-VQEgP8drUUqCWzHfw3"),
                None,
            ),
            (
                "https://x/fhir/R4/Observation/a.b-c",
                Some("Observation"),
                Some("a.b-c"),
                None,
            ),
            (
                "Patient/123/_history/7",
                Some("Patient"),
                Some("123"),
                Some("7"),
            ),
            (
                "http://x/fhir/Patient/1/_history/2",
                Some("Patient"),
                Some("1"),
                Some("2"),
            ),
            ("#med1", None, None, None),
            (
                "urn:uuid:1c0ae5d4-8e0c-4f49-9d75-59ab2bcb8a88",
                None,
                None,
                None,
            ),
            ("123", None, None, None),
            ("patient/123", None, None, None),
            ("Patient/", None, None, None),
            ("Patient/a_b", None, None, None),
        ] {
            let reference = reference(literal);
            assert_eq!(reference.resource_type(), resource_type, "{literal}");
            assert_eq!(reference.id(), id, "{literal}");
            assert_eq!(reference.version(), version, "{literal}");
        }
        let typed = Reference {
            r#type: Some("Practitioner".to_owned()),
            display: Some("Dr. X".to_owned()),
            ..Reference::default()
        };
        assert_eq!(typed.resource_type(), Some("Practitioner"));
        assert_eq!(typed.id(), None);
        assert_eq!(reference("#med1").contained_id(), Some("med1"));
        let built = Reference::to("Patient", "abc");
        assert_eq!(built.reference.as_deref(), Some("Patient/abc"));
        assert_eq!(built.id(), Some("abc"));
    }

    #[test]
    fn codeable_concept_conveniences() {
        let concept: CodeableConcept = from_str(
            r#"{"coding": [
                {"system": "http://loinc.org", "code": "8302-2"},
                {"system": "http://snomed.info/sct", "code": "50373000", "display": "Body height"}
            ]}"#,
        )
        .unwrap();
        assert!(concept.has_coding("http://loinc.org", "8302-2"));
        assert!(!concept.has_coding("http://loinc.org", "50373000"));
        assert_eq!(concept.text_or_display(), Some("Body height"));
        assert_eq!(concept.code_in("http://snomed.info/sct"), Some("50373000"));
        let with_text = CodeableConcept {
            text: Some("Height".to_owned()),
            ..concept.clone()
        };
        assert_eq!(with_text.text_or_display(), Some("Height"));
        assert_eq!(CodeableConcept::default().text_or_display(), None);
    }

    #[test]
    fn human_name_display_and_null_given_names_with_extensions() {
        let text = r#"{"family":"Lin","given":[null,"Derrick"],"_given":[{"extension":[{"url":"http://example.org/x","valueString":"y"}]},null]}"#;
        let name: HumanName = from_str(text).unwrap();
        assert_eq!(name.given, vec!["Derrick".to_owned()]);
        assert_eq!(name.display().as_deref(), Some("Derrick Lin"));
        let ext = name.given_ext.as_ref().unwrap();
        assert_eq!(ext.absent, vec![0]);
        assert_eq!(ext.elements.len(), 2);
        // The extension belongs to the absent first item, not to "Derrick".
        assert!(ext.for_value(0).is_none());
        assert_eq!(crate::to_string(&name), text);
        let text_only = HumanName {
            text: Some("Baby Girl".to_owned()),
            ..HumanName::default()
        };
        assert_eq!(text_only.display().as_deref(), Some("Baby Girl"));
    }

    #[test]
    fn extension_values_are_typed() {
        let extension: Extension = from_str(
            r#"{
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}},
                {"url": "text", "valueString": "White"}
            ]
        }"#,
        )
        .unwrap();
        assert_eq!(extension.value, None);
        assert_eq!(extension.nested("text").unwrap().value_str(), Some("White"));
        let category = extension
            .nested("ombCategory")
            .unwrap()
            .value
            .as_ref()
            .unwrap();
        assert_eq!(category.member_name(), "valueCoding");
        assert_eq!(category.type_name(), "Coding");
        let ExtensionValue::Coding(coding) = category else {
            panic!("{category:?}");
        };
        assert_eq!(coding.code.as_deref(), Some("2106-3"));
        let built = Extension::with_value("http://x", ExtensionValue::Code("F".into()));
        assert_eq!(
            crate::to_string(&built),
            r#"{"url":"http://x","valueCode":"F"}"#
        );
    }

    #[test]
    fn two_extension_values_are_an_error() {
        let error =
            from_str::<Extension>(r#"{"url":"u","valueString":"a","valueCode":"b"}"#).unwrap_err();
        assert_eq!(error.path(), "valueCode");
        assert!(
            error
                .message()
                .contains("`valueString` and `valueCode` are both present"),
            "{error}"
        );
    }

    #[test]
    fn missing_required_member_is_named() {
        let error = from_str::<Extension>(r#"{"valueString": "a"}"#).unwrap_err();
        assert!(
            error.message().contains("missing required member `url`"),
            "{error}"
        );
    }

    #[test]
    fn quantity_range_and_ratio_display() {
        let quantity: Quantity =
            from_str(r#"{"value": 5, "comparator": "<", "code": "mg"}"#).unwrap();
        assert_eq!(quantity.to_string(), "<5 mg");
        let range: Range =
            from_str(r#"{"low": {"value": 1.50, "unit": "g"}, "high": {"value": 3, "unit": "g"}}"#)
                .unwrap();
        assert_eq!(range.to_string(), "1.50 g – 3 g");
        let open = Range {
            high: range.high.clone(),
            ..Range::default()
        };
        assert_eq!(open.to_string(), "≤ 3 g");
        let ratio: Ratio =
            from_str(r#"{"numerator": {"value": 1}, "denominator": {"value": 128}}"#).unwrap();
        assert_eq!(ratio.to_string(), "1 / 128");
    }

    #[test]
    fn dosage_choices_round_trip() {
        let input = r#"{"modifierExtension":[{"url":"http://x","valueBoolean":true}],"sequence":1,"timing":{"repeat":{"frequency":2,"period":1,"periodUnit":"d"},"code":{"text":"BID"}},"asNeededCodeableConcept":{"text":"pain"},"doseAndRate":[{"doseQuantity":{"value":1,"unit":"tablet"},"rateRatio":{"numerator":{"value":1}}},{"doseRange":{"low":{"value":1}},"rateRange":{"high":{"value":2}}},{"rateQuantity":{"value":5,"unit":"mL/h"}}]}"#;
        let dosage: Dosage = from_str(input).unwrap();
        assert!(matches!(
            dosage.as_needed,
            Some(DosageAsNeeded::CodeableConcept(_))
        ));
        assert!(matches!(
            dosage.dose_and_rate[0].dose,
            Some(DosageDoseAndRateDose::Quantity(_))
        ));
        assert!(matches!(
            dosage.dose_and_rate[1].rate,
            Some(DosageDoseAndRateRate::Range(_))
        ));
        assert_eq!(dosage.modifier_extension.len(), 1);
        assert_eq!(crate::to_string(&dosage), input);
        let boolean: Dosage = from_str(r#"{"asNeededBoolean": true}"#).unwrap();
        assert_eq!(boolean.as_needed, Some(DosageAsNeeded::Boolean(true)));
    }

    #[test]
    fn wrong_type_names_the_path() {
        let error = from_str::<Dosage>(r#"{"doseAndRate": [{"doseQuantity": {"value": "1"}}]}"#)
            .unwrap_err();
        assert_eq!(error.path(), "doseAndRate[0].doseQuantity.value");
        assert!(
            error
                .message()
                .contains("expected a number, found a string"),
            "{error}"
        );
    }

    #[test]
    fn modelled_names_in_extra_are_not_written_twice() {
        let mut coding = Coding::new("http://loinc.org", "8302-2");
        coding
            .extra
            .insert("code", crate::RawJson::parse("\"other\"").unwrap());
        coding
            .extra
            .insert("newerElement", crate::RawJson::parse("true").unwrap());
        assert_eq!(
            crate::to_string(&coding),
            r#"{"system":"http://loinc.org","code":"8302-2","newerElement":true}"#
        );
    }

    #[test]
    fn duplicate_members_are_errors() {
        let error = from_str::<Coding>(r#"{"code":"a","code":"b"}"#).unwrap_err();
        assert_eq!(error.path(), "code");
        assert!(error.to_string().contains("near"), "{error}");
        let unknown = from_str::<Coding>(r#"{"x":1,"x":2}"#).unwrap_err();
        assert_eq!(unknown.path(), "x");
    }

    #[test]
    fn null_and_empty_arrays_read_as_absent() {
        let coding: Coding = from_str(r#"{"code":null,"extension":[],"display":"x"}"#).unwrap();
        assert_eq!(coding.code, None);
        assert!(coding.extension.is_empty());
        assert!(coding.extra.is_empty());
        assert_eq!(crate::to_string(&coding), r#"{"display":"x"}"#);
    }
}
