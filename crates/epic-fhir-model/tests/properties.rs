//! Round-trip properties: decimals keep their exact text, dates and times keep their text and
//! precision, and primitive extensions (`_field`, with nulls in lists) survive parse and write.

use epic_fhir_model::{self as model, Date, DateTime, Decimal, Instant, Precision, Resource};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Parses `value` as a typed resource, writes it back, and returns the written JSON.
fn round_trip(value: &Value) -> Value {
    let text = serde_json::to_vec(value).expect("test JSON");
    let resource: Resource = model::from_slice(&text)
        .unwrap_or_else(|error| panic!("{error} in {}", String::from_utf8_lossy(&text)));
    let written = model::to_vec(&resource);
    serde_json::from_slice(&written).expect("written JSON parses")
}

/// FHIR decimals as JSON numbers: sign, integer part, fraction with trailing zeros, exponent.
fn decimal_text() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,17})(\\.[0-9]{1,12})?([eE][+-]?[1-9][0-9]?)?"
}

fn year() -> impl Strategy<Value = u32> {
    1000u32..=2999
}

fn offset() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Z".to_owned()),
        (
            prop_oneof![Just('+'), Just('-')],
            0u32..=13,
            prop_oneof![Just(0u32), Just(30), Just(45)]
        )
            .prop_map(|(sign, h, m)| format!("{sign}{h:02}:{m:02}")),
    ]
}

/// A date at year, month or day precision, and the precision it has.
fn date_text() -> impl Strategy<Value = (String, Precision)> {
    (year(), 1u32..=12, 1u32..=28, 0usize..3).prop_map(|(y, m, d, parts)| match parts {
        0 => (format!("{y:04}"), Precision::Year),
        1 => (format!("{y:04}-{m:02}"), Precision::Month),
        _ => (format!("{y:04}-{m:02}-{d:02}"), Precision::Day),
    })
}

/// A dateTime with seconds, optional fraction and an offset.
fn instant_text() -> impl Strategy<Value = String> {
    (
        year(),
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        proptest::option::of("[0-9]{1,9}"),
        offset(),
    )
        .prop_map(|(y, mo, d, h, mi, s, fraction, offset)| {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}{offset}")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decimals_keep_their_exact_text(text in decimal_text()) {
        let decimal = Decimal::parse(&text).expect("a JSON number is a decimal");
        prop_assert_eq!(decimal.as_str(), text.as_str());

        // Inside a resource, written as the same JSON number token.
        let json = format!(
            r#"{{"resourceType":"Observation","status":"final","code":{{"text":"x"}},"valueQuantity":{{"value":{text},"unit":"mmol/L"}}}}"#
        );
        let resource: Resource = model::from_str(&json).expect("observation");
        let written = model::to_string(&resource);
        prop_assert!(written.contains(&format!(r#""value":{text}"#)), "{} lost {}", written, text);
        prop_assert_eq!(written, json);
    }

    #[test]
    fn dates_keep_their_text_and_precision((text, precision) in date_text()) {
        let date = Date::parse(&text).expect("date");
        prop_assert_eq!(date.as_str(), text.as_str());
        prop_assert_eq!(date.precision(), precision);
        let as_date_time = DateTime::parse(&text).expect("a date is a dateTime");
        prop_assert_eq!(as_date_time.precision(), precision);

        let patient = json!({"resourceType": "Patient", "birthDate": text});
        prop_assert_eq!(round_trip(&patient), patient);
    }

    #[test]
    fn date_times_and_instants_keep_their_text(text in instant_text()) {
        let date_time = DateTime::parse(&text).expect("dateTime");
        prop_assert_eq!(date_time.as_str(), text.as_str());
        let instant = Instant::parse(&text).expect("instant");
        prop_assert_eq!(instant.as_str(), text.as_str());
        // The same moment however it is written.
        prop_assert_eq!(instant.to_offset_date_time(), date_time.to_offset_date_time().expect("full precision"));

        let observation = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "effectiveDateTime": text,
            "issued": text,
        });
        prop_assert_eq!(round_trip(&observation), observation);
    }

    #[test]
    fn primitive_extensions_survive_with_nulls_in_lists(
        given in proptest::collection::vec(proptest::option::of("[A-Za-z]{1,12}"), 1..6),
        extended in proptest::collection::vec(any::<bool>(), 1..6),
        family_id in proptest::option::of("[a-z0-9]{1,8}"),
    ) {
        // `given` and `_given` line up; a position may have a value, an extension, or both.
        let count = given.len().max(extended.len());
        let mut values = Vec::with_capacity(count);
        let mut extensions = Vec::with_capacity(count);
        for index in 0..count {
            let value = given.get(index).cloned().flatten();
            let has_extension = extended.get(index).copied().unwrap_or(false) || value.is_none();
            values.push(value.map_or(Value::Null, Value::String));
            extensions.push(if has_extension {
                json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier", "valueCode": "CL"}]})
            } else {
                Value::Null
            });
        }
        let mut name = json!({"family": "Lopez", "given": values});
        // A `_given` of nulls only carries nothing; FHIR omits it.
        if extensions.iter().any(|extension| !extension.is_null()) {
            name["_given"] = Value::Array(extensions);
        }
        if let Some(id) = family_id {
            name["_family"] = json!({"id": id});
        }
        let patient = json!({"resourceType": "Patient", "name": [name]});
        prop_assert_eq!(round_trip(&patient), patient);
    }
}
