//! FHIR R4 general-purpose and metadata datatypes used by the resource models.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, MapAccess};
use serde::ser::SerializeMap;
use serde_json::Value;

use super::macros::{ChoiceElement, fhir_choice, fhir_struct};
use super::{DateTime, Decimal, Instant, ModelError};

fhir_struct! {
    /// An Extension: additional content identified by a URL.
    ///
    /// Its `value[x]` is kept as JSON together with its member name; nested extensions
    /// (complex extensions such as US Core race) are in `extension`.
    element struct Extension {
        /// Identifies the meaning of the extension.
        req "url" url: String,
        /// The value of the extension, if it has one (`valueString`, `valueCoding`...).
        choice "value" value: ExtensionValue,
    }
}

impl Extension {
    /// Makes an extension with a value, such as
    /// `Extension::with_value(url, ExtensionValue::new("valueCode", json!("F"))?)`.
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
        self.value.as_ref().and_then(|value| value.value().as_str())
    }
}

/// The `value[x]` of an Extension: the JSON member name (which carries the type, such as
/// `valueCoding`) and the value as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionValue {
    member: String,
    value: Value,
}

impl ExtensionValue {
    /// Makes a value for member `member`, which must be `value` followed by a FHIR type name
    /// (`valueString`, `valueCodeableConcept`...).
    pub fn new(member: impl Into<String>, value: Value) -> Result<Self, ModelError> {
        let member = member.into();
        if !is_value_member(&member) {
            return Err(ModelError::at_path(
                &member,
                format_args!("`{member}` is not a value[x] member name"),
            ));
        }
        Ok(Self { member, value })
    }

    /// The JSON member name, such as `valueCoding`.
    pub fn member_name(&self) -> &str {
        &self.member
    }

    /// The FHIR type of the value, such as `Coding` (the member name without `value`).
    pub fn type_name(&self) -> &str {
        self.member.strip_prefix("value").unwrap_or(&self.member)
    }

    /// The value as JSON.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Reads the value as a typed model, such as a [`Coding`] for `valueCoding`.
    pub fn to_typed<T: de::DeserializeOwned>(&self) -> Result<T, ModelError> {
        super::from_value(self.value.clone())
    }
}

/// Whether `key` is `value` followed by a type name starting with an upper-case letter.
fn is_value_member(key: &str) -> bool {
    key.strip_prefix("value")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|first| first.is_ascii_uppercase())
}

impl ChoiceElement for ExtensionValue {
    fn match_key(key: &str) -> Option<Cow<'static, str>> {
        is_value_member(key).then(|| Cow::Owned(key.to_owned()))
    }

    fn next_variant<'de, A: MapAccess<'de>>(
        key: Cow<'static, str>,
        map: &mut A,
    ) -> Result<Self, A::Error> {
        Ok(Self {
            member: key.into_owned(),
            value: map.next_value()?,
        })
    }

    fn member(&self) -> &str {
        &self.member
    }

    fn serialize_member<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry(&self.member, &self.value)
    }
}

fhir_struct! {
    /// A Coding: a code from a code system.
    element struct Coding {
        /// The code system's URI, such as `http://loinc.org`.
        opt "system" system: String,
        /// Version of the code system.
        opt "version" version: String,
        /// The code, as the system defines it.
        opt "code" code: String,
        /// Representation of the code for people.
        opt "display" display: String,
        /// Whether the user picked this coding directly.
        opt "userSelected" user_selected: bool,
    }
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

fhir_struct! {
    /// A CodeableConcept: a concept given by codings and/or text.
    element struct CodeableConcept {
        /// Codes for the concept, from one or more systems.
        vec "coding" coding: Coding,
        /// Plain text representation of the concept.
        opt "text" text: String,
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

/// `None` for empty or blank strings.
pub(crate) fn non_empty(text: Option<&str>) -> Option<&str> {
    text.filter(|text| !text.trim().is_empty())
}

fhir_struct! {
    /// An Identifier: a business identifier such as an MRN, with the system it belongs to.
    element struct Identifier {
        /// usual | official | temp | secondary | old.
        opt "use" r#use: String,
        /// Kind of identifier, such as `MR` (medical record number).
        opt "type" r#type: CodeableConcept,
        /// The namespace of the value (a URI).
        opt "system" system: String,
        /// The identifier itself.
        opt "value" value: String,
        /// When the identifier was valid.
        opt "period" period: Period,
        /// Organization that issued the identifier.
        opt "assigner" assigner: Box<Reference>,
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

fhir_struct! {
    /// A HumanName.
    ///
    /// Repeating string parts (`given`, `prefix`, `suffix`) hold `None` where the JSON has
    /// `null`: FHIR writes a null in the value array when only the matching `_given` entry
    /// (an extension) is present.
    element struct HumanName {
        /// usual | official | temp | nickname | anonymous | old | maiden.
        opt "use" r#use: String,
        /// The whole name as text.
        opt "text" text: String,
        /// Family name (surname).
        opt "family" family: String,
        /// Given names, in order.
        vec "given" given: Option<String>,
        /// Parts before the name, such as `Dr.`.
        vec "prefix" prefix: Option<String>,
        /// Parts after the name, such as `Jr.`.
        vec "suffix" suffix: Option<String>,
        /// When the name was in use.
        opt "period" period: Period,
    }
}

impl HumanName {
    /// The given names that have a value.
    pub fn given_names(&self) -> impl Iterator<Item = &str> {
        self.given
            .iter()
            .filter_map(|given| non_empty(given.as_deref()))
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
}

fhir_struct! {
    /// An Address.
    element struct Address {
        /// home | work | temp | old | billing.
        opt "use" r#use: String,
        /// postal | physical | both.
        opt "type" r#type: String,
        /// The whole address as text.
        opt "text" text: String,
        /// Street lines; `None` where the JSON has `null` (see [`HumanName`]).
        vec "line" line: Option<String>,
        /// City or town.
        opt "city" city: String,
        /// District or county.
        opt "district" district: String,
        /// State or province.
        opt "state" state: String,
        /// Postal code.
        opt "postalCode" postal_code: String,
        /// Country (an ISO 3166 code or name).
        opt "country" country: String,
        /// When the address was in use.
        opt "period" period: Period,
    }
}

fhir_struct! {
    /// A ContactPoint: a phone number, email address or other telecom contact.
    element struct ContactPoint {
        /// phone | fax | email | pager | url | sms | other.
        opt "system" system: String,
        /// The number or address.
        opt "value" value: String,
        /// home | work | temp | old | mobile.
        opt "use" r#use: String,
        /// Preference order (1 is highest).
        opt "rank" rank: u32,
        /// When the contact point was in use.
        opt "period" period: Period,
    }
}

fhir_struct! {
    /// A Reference from one resource to another.
    ///
    /// [`Reference::id`] and [`Reference::resource_type`] read the target out of the literal
    /// reference; the `id` field is the element's own id, as everywhere in FHIR.
    element struct Reference {
        /// Literal reference: `Type/id`, an absolute URL, or `#id` for a contained resource.
        opt "reference" reference: String,
        /// Type of the target resource, such as `Patient`.
        opt "type" r#type: String,
        /// Logical reference by business identifier, when no literal reference is known. Boxed
        /// because it is rare and large, and references are everywhere.
        opt "identifier" identifier: Box<Identifier>,
        /// Text alternative for the target.
        opt "display" display: String,
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
fn is_logical_id(id: &str) -> bool {
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

fhir_struct! {
    /// A Period: a span of time with an optional start and end.
    element struct Period {
        /// Start, inclusive; open when absent.
        opt "start" start: DateTime,
        /// End, inclusive; open (ongoing) when absent.
        opt "end" end: DateTime,
    }
}

fhir_struct! {
    /// A Quantity: a measured amount with its unit (also used for Age, Duration, Distance,
    /// Count and SimpleQuantity).
    element struct Quantity {
        /// The numerical value.
        opt "value" value: Decimal,
        /// < | <= | >= | >: how to understand the value.
        opt "comparator" comparator: String,
        /// Unit for people.
        opt "unit" unit: String,
        /// System that defines the coded unit, usually UCUM.
        opt "system" system: String,
        /// Coded form of the unit.
        opt "code" code: String,
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
            formatter.write_str(comparator)?;
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

fhir_struct! {
    /// A Range of quantities.
    element struct Range {
        /// Low limit, inclusive.
        opt "low" low: Quantity,
        /// High limit, inclusive.
        opt "high" high: Quantity,
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

fhir_struct! {
    /// A Ratio of two quantities.
    element struct Ratio {
        /// Numerator.
        opt "numerator" numerator: Quantity,
        /// Denominator.
        opt "denominator" denominator: Quantity,
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

fhir_struct! {
    /// SampledData: a series of measurements taken by a device.
    element struct SampledData {
        /// Zero value and unit.
        opt "origin" origin: Quantity,
        /// Milliseconds between samples.
        opt "period" period: Decimal,
        /// Multiplier applied to each sample.
        opt "factor" factor: Decimal,
        /// Lower limit of detection.
        opt "lowerLimit" lower_limit: Decimal,
        /// Upper limit of detection.
        opt "upperLimit" upper_limit: Decimal,
        /// Number of sample points at each time point.
        opt "dimensions" dimensions: u32,
        /// Decimal values separated by spaces, or `E` (error), `L` and `U` (below and above limits).
        opt "data" data: String,
    }
}

fhir_choice! {
    /// Annotation.author\[x\]: who wrote the note.
    enum AnnotationAuthor("author") {
        /// `authorReference`.
        Reference("authorReference", Reference),
        /// `authorString`.
        String("authorString", String),
    }
}

fhir_struct! {
    /// An Annotation: a text note with its author and time.
    element struct Annotation {
        /// Who wrote the note.
        choice "author" author: AnnotationAuthor,
        /// When the note was made.
        opt "time" time: DateTime,
        /// The note (markdown).
        req "text" text: String,
    }
}

fhir_struct! {
    /// An Attachment: content in a given format, inline (`data`) or by `url`.
    element struct Attachment {
        /// MIME type of the content.
        opt "contentType" content_type: String,
        /// Human language of the content (BCP-47).
        opt "language" language: String,
        /// The content, base64 encoded.
        opt "data" data: String,
        /// Where the content can be fetched.
        opt "url" url: String,
        /// Number of bytes of content.
        opt "size" size: u32,
        /// SHA-1 of the content, base64 encoded.
        opt "hash" hash: String,
        /// Label to display in place of the content.
        opt "title" title: String,
        /// When the content was first created.
        opt "creation" creation: DateTime,
    }
}

fhir_struct! {
    /// Meta: metadata about a resource, mostly maintained by the server.
    element struct Meta {
        /// Version specific identifier.
        opt "versionId" version_id: String,
        /// When the resource last changed.
        opt "lastUpdated" last_updated: Instant,
        /// Identifies where the resource comes from.
        opt "source" source: String,
        /// Profiles the resource claims to conform to; `None` for JSON `null` entries.
        vec "profile" profile: Option<String>,
        /// Security labels.
        vec "security" security: Coding,
        /// Tags.
        vec "tag" tag: Coding,
    }
}

fhir_struct! {
    /// Narrative: the human-readable XHTML summary of a resource.
    element struct Narrative {
        /// generated | extensions | additional | empty.
        req "status" status: String,
        /// Limited XHTML content, a `<div>` element.
        req "div" div: String,
    }
}

fhir_struct! {
    /// Timing, kept loosely typed: `repeat` stays JSON.
    backbone struct Timing {
        /// When the event occurs; `None` for JSON `null` entries.
        vec "event" event: Option<DateTime>,
        /// The repetition rule (bounds, count, frequency, period, dayOfWeek, timeOfDay...), as JSON.
        opt "repeat" repeat: Value,
        /// A code for the timing schedule, such as `BID`.
        opt "code" code: CodeableConcept,
    }
}

fhir_choice! {
    /// Dosage.asNeeded\[x\]: whether the medication is taken only when needed, or for what.
    enum DosageAsNeeded("asNeeded") {
        /// `asNeededBoolean`.
        Boolean("asNeededBoolean", bool),
        /// `asNeededCodeableConcept`: the precondition for taking it.
        CodeableConcept("asNeededCodeableConcept", CodeableConcept),
    }
}

fhir_choice! {
    /// Dosage.doseAndRate.dose\[x\]: the amount per dose.
    enum DoseAmount("dose") {
        /// `doseRange`.
        Range("doseRange", Range),
        /// `doseQuantity`.
        Quantity("doseQuantity", Quantity),
    }
}

fhir_choice! {
    /// Dosage.doseAndRate.rate\[x\]: the rate of administration.
    enum DoseRate("rate") {
        /// `rateRatio`.
        Ratio("rateRatio", Ratio),
        /// `rateRange`.
        Range("rateRange", Range),
        /// `rateQuantity`.
        Quantity("rateQuantity", Quantity),
    }
}

fhir_struct! {
    /// Dosage.doseAndRate: an amount of medication per dose and/or rate.
    element struct DosageDoseAndRate {
        /// Kind of dose or rate, such as calculated or ordered.
        opt "type" r#type: CodeableConcept,
        /// Amount per dose.
        choice "dose" dose: DoseAmount,
        /// Rate of administration.
        choice "rate" rate: DoseRate,
    }
}

fhir_struct! {
    /// Dosage: how a medication is or should be taken.
    backbone struct Dosage {
        /// Order of the dosage instructions.
        opt "sequence" sequence: i32,
        /// Free text instructions.
        opt "text" text: String,
        /// Supplemental instructions, such as "with meals".
        vec "additionalInstruction" additional_instruction: CodeableConcept,
        /// Instructions in terms the patient understands.
        opt "patientInstruction" patient_instruction: String,
        /// When the medication should be given.
        opt "timing" timing: Timing,
        /// Take "as needed".
        choice "asNeeded" as_needed: DosageAsNeeded,
        /// Body site to administer to.
        opt "site" site: CodeableConcept,
        /// How the drug enters the body.
        opt "route" route: CodeableConcept,
        /// Technique for administering.
        opt "method" method: CodeableConcept,
        /// Amount and rate.
        vec "doseAndRate" dose_and_rate: DosageDoseAndRate,
        /// Upper limit per period.
        opt "maxDosePerPeriod" max_dose_per_period: Ratio,
        /// Upper limit per administration.
        opt "maxDosePerAdministration" max_dose_per_administration: Quantity,
        /// Upper limit over the patient's lifetime.
        opt "maxDosePerLifetime" max_dose_per_lifetime: Quantity,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::from_value;

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
        let concept: CodeableConcept = from_value(json!({
            "coding": [
                {"system": "http://loinc.org", "code": "8302-2"},
                {"system": "http://snomed.info/sct", "code": "50373000", "display": "Body height"}
            ]
        }))
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
    fn human_name_display_skips_null_given_names() {
        let name: HumanName = from_value(json!({
            "family": "Lin",
            "given": [null, "Derrick"],
            "_given": [{"extension": [{"url": "http://example.org/x", "valueString": "y"}]}, null]
        }))
        .unwrap();
        assert_eq!(name.given, vec![None, Some("Derrick".to_owned())]);
        assert_eq!(name.display().as_deref(), Some("Derrick Lin"));
        assert!(name.extra.contains_key("_given"));
        let text_only = HumanName {
            text: Some("Baby Girl".to_owned()),
            ..HumanName::default()
        };
        assert_eq!(text_only.display().as_deref(), Some("Baby Girl"));
    }

    #[test]
    fn extension_values_keep_member_and_json() {
        let extension: Extension = from_value(json!({
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}},
                {"url": "text", "valueString": "White"}
            ]
        }))
        .unwrap();
        assert_eq!(extension.value, None);
        let text = extension.nested("text").unwrap();
        assert_eq!(text.value_str(), Some("White"));
        let category = extension
            .nested("ombCategory")
            .unwrap()
            .value
            .as_ref()
            .unwrap();
        assert_eq!(category.member_name(), "valueCoding");
        assert_eq!(category.type_name(), "Coding");
        let coding: Coding = category.to_typed().unwrap();
        assert_eq!(coding.code.as_deref(), Some("2106-3"));
        assert!(ExtensionValue::new("valuestring", json!("x")).is_err());
        assert!(ExtensionValue::new("_valueString", json!("x")).is_err());
        let built = Extension::with_value(
            "http://x",
            ExtensionValue::new("valueCode", json!("F")).unwrap(),
        );
        assert_eq!(
            serde_json::to_value(&built).unwrap(),
            json!({"url": "http://x", "valueCode": "F"})
        );
    }

    #[test]
    fn two_extension_values_are_an_error() {
        let error =
            crate::model::from_str::<Extension>(r#"{"url":"u","valueString":"a","valueCode":"b"}"#)
                .unwrap_err();
        assert_eq!(error.path(), "valueCode");
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(
            cause.contains("`valueString` and `valueCode` are both present"),
            "{cause}"
        );
    }

    #[test]
    fn missing_required_member_is_named() {
        let error = from_value::<Extension>(json!({"valueString": "a"})).unwrap_err();
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("missing field `url`"), "{cause}");
    }

    #[test]
    fn quantity_range_and_ratio_display() {
        let quantity: Quantity =
            from_value(json!({"value": 5, "comparator": "<", "code": "mg"})).unwrap();
        assert_eq!(quantity.to_string(), "<5 mg");
        let range: Range = from_value(
            json!({"low": {"value": 1.5, "unit": "g"}, "high": {"value": 3, "unit": "g"}}),
        )
        .unwrap();
        assert_eq!(range.to_string(), "1.5 g – 3 g");
        let open = Range {
            high: range.high.clone(),
            ..Range::default()
        };
        assert_eq!(open.to_string(), "≤ 3 g");
        let ratio: Ratio =
            from_value(json!({"numerator": {"value": 1}, "denominator": {"value": 128}})).unwrap();
        assert_eq!(ratio.to_string(), "1 / 128");
    }

    #[test]
    fn dosage_choices_round_trip() {
        let input = json!({
            "sequence": 1,
            "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}, "code": {"text": "BID"}},
            "asNeededCodeableConcept": {"text": "pain"},
            "doseAndRate": [
                {"doseQuantity": {"value": 1, "unit": "tablet"}, "rateRatio": {"numerator": {"value": 1}}},
                {"doseRange": {"low": {"value": 1}}, "rateRange": {"high": {"value": 2}}},
                {"rateQuantity": {"value": 5, "unit": "mL/h"}}
            ],
            "modifierExtension": [{"url": "http://x", "valueBoolean": true}]
        });
        let dosage: Dosage = from_value(input.clone()).unwrap();
        assert!(matches!(
            dosage.as_needed,
            Some(DosageAsNeeded::CodeableConcept(_))
        ));
        assert!(matches!(
            dosage.dose_and_rate[0].dose,
            Some(DoseAmount::Quantity(_))
        ));
        assert!(matches!(
            dosage.dose_and_rate[1].rate,
            Some(DoseRate::Range(_))
        ));
        assert!(matches!(
            dosage.dose_and_rate[2].rate,
            Some(DoseRate::Quantity(_))
        ));
        assert_eq!(dosage.modifier_extension.len(), 1);
        assert_eq!(serde_json::to_value(&dosage).unwrap(), input);
        let boolean: Dosage = from_value(json!({"asNeededBoolean": true})).unwrap();
        assert_eq!(boolean.as_needed, Some(DosageAsNeeded::Boolean(true)));
    }

    #[test]
    fn wrong_type_names_the_path() {
        let error =
            from_value::<Dosage>(json!({"doseAndRate": [{"doseQuantity": {"value": "1"}}]}))
                .unwrap_err();
        assert_eq!(error.path(), "doseAndRate[0].doseQuantity.value");
    }

    #[test]
    fn modelled_names_in_extra_are_refused_when_writing() {
        let mut coding = Coding::new("http://loinc.org", "8302-2");
        coding.extra.insert("_code".to_owned(), json!({"id": "c"}));
        assert!(serde_json::to_value(&coding).is_ok());
        coding.extra.insert("code".to_owned(), json!("other"));
        let error = serde_json::to_value(&coding).unwrap_err().to_string();
        assert!(
            error.contains("`extra` holds `code`, which Coding models as a field"),
            "{error}"
        );
        let mut extension = Extension::default();
        extension.extra.insert("valueString".to_owned(), json!("x"));
        assert!(serde_json::to_value(&extension).is_err());
        let mut patient = crate::model::Patient::default();
        patient
            .extra
            .insert("resourceType".to_owned(), json!("Patient"));
        assert!(serde_json::to_value(&patient).is_err());
        patient.extra.clear();
        patient
            .extra
            .insert("deceasedBoolean".to_owned(), json!(true));
        assert!(serde_json::to_value(&patient).is_err());
    }

    #[test]
    fn duplicate_member_in_text_is_an_error() {
        let error = crate::model::from_str::<Coding>(r#"{"code":"a","code":"b"}"#).unwrap_err();
        assert_eq!(error.path(), "code");
        assert!(error.to_string().contains("near"), "{error}");
        let unknown = crate::model::from_str::<Coding>(r#"{"x":1,"x":2}"#).unwrap_err();
        assert_eq!(unknown.path(), "x");
    }
}
