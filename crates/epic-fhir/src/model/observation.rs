//! The Observation resource.

use super::macros::{fhir_choice, fhir_struct};
use super::{
    Annotation, CodeableConcept, DateTime, Identifier, Instant, Period, Quantity, Range, Ratio,
    Reference, SampledData, Timing,
};

fhir_choice! {
    /// Observation.value\[x\] (and Observation.component.value\[x\]): the result.
    enum ObservationValue("value") {
        /// `valueQuantity`: a measurement, such as a vital sign or a numeric lab result.
        Quantity("valueQuantity", Quantity),
        /// `valueCodeableConcept`: a coded result.
        CodeableConcept("valueCodeableConcept", CodeableConcept),
        /// `valueString`: a text result.
        String("valueString", String),
        /// `valueBoolean`.
        Boolean("valueBoolean", bool),
        /// `valueInteger`.
        Integer("valueInteger", i32),
        /// `valueRange`.
        Range("valueRange", Range),
        /// `valueRatio`, such as a titer.
        Ratio("valueRatio", Ratio),
        /// `valueSampledData`: a series of device measurements.
        SampledData("valueSampledData", SampledData),
        /// `valueTime`: a time of day, `hh:mm:ss`.
        Time("valueTime", String),
        /// `valueDateTime`.
        DateTime("valueDateTime", DateTime),
        /// `valuePeriod`.
        Period("valuePeriod", Period),
    }
}

impl ObservationValue {
    /// The value as text for people, such as `166.5 cm`, `Positive` or `120 / 80`.
    /// `None` for sampled data and for values with nothing to show.
    pub fn display(&self) -> Option<String> {
        let text = match self {
            Self::Quantity(quantity) => quantity.to_string(),
            Self::CodeableConcept(concept) => concept.text_or_display()?.to_owned(),
            Self::String(text) | Self::Time(text) => text.clone(),
            Self::Boolean(value) => value.to_string(),
            Self::Integer(value) => value.to_string(),
            Self::Range(range) => range.to_string(),
            Self::Ratio(ratio) => ratio.to_string(),
            Self::SampledData(_) => return None,
            Self::DateTime(value) => value.as_str().to_owned(),
            Self::Period(period) => format!(
                "{} – {}",
                period.start.as_ref().map_or("…", |start| start.as_str()),
                period.end.as_ref().map_or("…", |end| end.as_str())
            ),
        };
        (!text.trim().is_empty()).then_some(text)
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

fhir_choice! {
    /// Observation.effective\[x\]: when the observation was made (clinically relevant time).
    enum ObservationEffective("effective") {
        /// `effectiveDateTime`.
        DateTime("effectiveDateTime", DateTime),
        /// `effectivePeriod`.
        Period("effectivePeriod", Period),
        /// `effectiveTiming`.
        Timing("effectiveTiming", Timing),
        /// `effectiveInstant`.
        Instant("effectiveInstant", Instant),
    }
}

fhir_struct! {
    /// Observation.referenceRange: the normal or recommended range for the value.
    backbone struct ObservationReferenceRange {
        /// Low limit, inclusive.
        opt "low" low: Quantity,
        /// High limit, inclusive.
        opt "high" high: Quantity,
        /// What the range means, such as normal or therapeutic.
        opt "type" r#type: CodeableConcept,
        /// Populations the range applies to.
        vec "appliesTo" applies_to: CodeableConcept,
        /// Age range the range applies to.
        opt "age" age: Range,
        /// The range as text, such as `< 200 mg/dL`.
        opt "text" text: String,
    }
}

fhir_struct! {
    /// Observation.component: one part of a multi-part result, such as the systolic pressure
    /// of a blood pressure.
    backbone struct ObservationComponent {
        /// What the component is.
        req "code" code: CodeableConcept,
        /// The component's result.
        choice "value" value: ObservationValue,
        /// Why the value is missing.
        opt "dataAbsentReason" data_absent_reason: CodeableConcept,
        /// High, low, normal...
        vec "interpretation" interpretation: CodeableConcept,
        /// Ranges for the component's value.
        vec "referenceRange" reference_range: ObservationReferenceRange,
    }
}

impl ObservationComponent {
    /// The component's value as text for people; see [`ObservationValue::display`].
    pub fn value_display(&self) -> Option<String> {
        self.value.as_ref().and_then(ObservationValue::display)
    }
}

fhir_struct! {
    /// An Observation: a measurement or simple assertion, such as a vital sign or lab result.
    domain_resource struct Observation("Observation") {
        /// Business identifiers.
        vec "identifier" identifier: Identifier,
        /// Plans or orders this observation fulfils.
        vec "basedOn" based_on: Reference,
        /// The event this observation is part of.
        vec "partOf" part_of: Reference,
        /// registered | preliminary | final | amended | corrected | cancelled | entered-in-error | unknown.
        req "status" status: String,
        /// Kind of observation, such as `vital-signs` or `laboratory`.
        vec "category" category: CodeableConcept,
        /// What was observed, usually a LOINC code.
        req "code" code: CodeableConcept,
        /// Who or what the observation is about, usually the patient.
        opt "subject" subject: Reference,
        /// What the observation is about when not the subject itself.
        vec "focus" focus: Reference,
        /// The encounter during which it was made.
        opt "encounter" encounter: Reference,
        /// Clinically relevant time.
        choice "effective" effective: ObservationEffective,
        /// When this version was made available.
        opt "issued" issued: Instant,
        /// Who is responsible for the observation.
        vec "performer" performer: Reference,
        /// The result.
        choice "value" value: ObservationValue,
        /// Why the result is missing.
        opt "dataAbsentReason" data_absent_reason: CodeableConcept,
        /// High, low, normal...
        vec "interpretation" interpretation: CodeableConcept,
        /// Comments.
        vec "note" note: Annotation,
        /// Body part observed.
        opt "bodySite" body_site: CodeableConcept,
        /// How it was done.
        opt "method" method: CodeableConcept,
        /// Specimen used.
        opt "specimen" specimen: Reference,
        /// Device used.
        opt "device" device: Reference,
        /// Normal or recommended ranges.
        vec "referenceRange" reference_range: ObservationReferenceRange,
        /// Related observations that make up a group (a panel).
        vec "hasMember" has_member: Reference,
        /// Resources the value was derived from.
        vec "derivedFrom" derived_from: Reference,
        /// Parts of a multi-part result.
        vec "component" component: ObservationComponent,
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::from_value;

    fn observation(value: Value) -> Observation {
        let mut object =
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "Test"}});
        if let (Value::Object(target), Value::Object(source)) = (&mut object, value) {
            target.extend(source);
        }
        from_value(object).unwrap()
    }

    #[test]
    fn every_value_variant_round_trips_and_displays() {
        let cases = [
            (
                json!({"valueQuantity": {"value": 166.5, "unit": "cm"}}),
                Some("166.5 cm"),
            ),
            (
                json!({"valueCodeableConcept": {"coding": [{"code": "10828004", "display": "Positive"}]}}),
                Some("Positive"),
            ),
            (json!({"valueString": "Never smoker"}), Some("Never smoker")),
            (json!({"valueBoolean": false}), Some("false")),
            (json!({"valueInteger": 3}), Some("3")),
            (
                json!({"valueRange": {"low": {"value": 1}, "high": {"value": 2}}}),
                Some("1 – 2"),
            ),
            (
                json!({"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 64}}}),
                Some("1 / 64"),
            ),
            (
                json!({"valueSampledData": {"origin": {"value": 0}, "period": 10, "dimensions": 1, "data": "1 2 3"}}),
                None,
            ),
            (json!({"valueTime": "10:15:00"}), Some("10:15:00")),
            (json!({"valueDateTime": "2024-03"}), Some("2024-03")),
            (
                json!({"valuePeriod": {"start": "2024-01-01"}}),
                Some("2024-01-01 – …"),
            ),
        ];
        for (member, display) in cases {
            let value = observation(member.clone());
            assert_eq!(value.value_display().as_deref(), display, "{member}");
            let written = serde_json::to_value(&value).unwrap();
            let (name, inner) = member.as_object().unwrap().iter().next().unwrap();
            assert_eq!(&written[name], inner);
            assert_eq!(value.value.as_ref().unwrap().member_name(), name);
        }
    }

    #[test]
    fn every_effective_variant_round_trips() {
        for member in [
            json!({"effectiveDateTime": "2013-01-13T21:45:04+00:00"}),
            json!({"effectivePeriod": {"start": "2013-01-13T21:45:04+00:00", "end": "2013-01-13T22:00:00+00:00"}}),
            json!({"effectiveTiming": {"event": ["2013-01-13T21:45:04Z", null], "_event": [null, {"extension": []}]}}),
            json!({"effectiveInstant": "2013-01-13T21:45:04.123Z"}),
        ] {
            let value = observation(member.clone());
            let written = serde_json::to_value(&value).unwrap();
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
        assert!(value.component("http://loinc.org", "0000-0").is_none());
    }

    #[test]
    fn two_values_are_an_error_with_the_path() {
        let error = crate::model::from_str::<Observation>(
            r#"{"resourceType":"Observation","status":"final","code":{},"component":[{"code":{},"valueString":"a","valueInteger":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(error.path(), "component[0].valueInteger");
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(
            cause.contains("`valueString` and `valueInteger` are both present"),
            "{cause}"
        );
    }

    #[test]
    fn required_members_are_enforced() {
        let error = from_value::<Observation>(json!({"resourceType": "Observation", "code": {}}))
            .unwrap_err();
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("missing field `status`"), "{cause}");
        let component = from_value::<Observation>(json!({
            "resourceType": "Observation", "status": "final", "code": {}, "component": [{"valueInteger": 1}]
        }))
        .unwrap_err();
        assert_eq!(component.path(), "component[0]");
    }
}
