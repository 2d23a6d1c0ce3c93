//! The SDK's model reader on any bytes: `epic_fhir::model::from_slice` as `Resource` and as
//! `Bundle` either refuses with an error or reads a value that
//! - writes JSON (`model::to_vec`) which reads back, and writes again to the same bytes (the
//!   round trip is stable), and
//! - loses nothing: the written JSON is the input JSON, up to what the model documents as
//!   normalisation (`null` and `[]` members read as absent; whitespace).
#![no_main]

use epic_fhir::model::json::{FromJson, ToJson};
use epic_fhir::model::{self, Bundle, Resource};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `value` without the members a model reads as absent: `null`, `[]`, and (in an object that
/// held only such members) the object they leave empty is kept as `{}`. Array items stay in
/// place, `null`s included, since their positions pair primitives with their extensions.
fn normalised(value: &Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .filter(|(_, v)| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
                .map(|(k, v)| (k.clone(), normalised(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalised).collect()),
        other => other.clone(),
    }
}

fn round_trip<T: FromJson + ToJson>(data: &[u8]) {
    let Ok(value) = model::from_slice::<T>(data) else {
        return;
    };
    let written = model::to_vec(&value);
    let again = model::from_slice::<T>(&written).unwrap_or_else(|e| {
        panic!(
            "its own output does not read back: {e}\n{}",
            String::from_utf8_lossy(&written)
        )
    });
    let rewritten = model::to_vec(&again);
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(&rewritten),
        "the round trip changed the value"
    );
    // Lossless: compare as JSON values. Inputs serde_json cannot hold as a `Value` (a number
    // beyond `f64`) and inputs that repeat a member (a `Value` keeps the last; the model may
    // keep either) are left out.
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let output = serde_json::from_slice::<Value>(&written).unwrap_or_else(|e| {
        panic!(
            "the model wrote what is not JSON ({e}): {}",
            String::from_utf8_lossy(&written)
        )
    });
    if has_repeated_members(data) {
        return;
    }
    assert_eq!(
        normalised(&input),
        normalised(&output),
        "the model lost or changed data\n input: {}\noutput: {}",
        String::from_utf8_lossy(data),
        String::from_utf8_lossy(&written)
    );
}

/// Whether some object in `data` names a member twice (serde_json's `Value` keeps the last).
fn has_repeated_members(data: &[u8]) -> bool {
    use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};
    struct Check;
    impl<'de> Visitor<'de> for Check {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut repeated = false;
            while let Some(key) = map.next_key::<String>()? {
                repeated |= !seen.insert(key);
                repeated |= map.next_value_seed(CheckSeed)?;
            }
            Ok(repeated)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut repeated = false;
            while let Some(inner) = seq.next_element_seed(CheckSeed)? {
                repeated |= inner;
            }
            Ok(repeated)
        }
        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    struct CheckSeed;
    impl<'de> serde::de::DeserializeSeed<'de> for CheckSeed {
        type Value = bool;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(Check)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(data);
    deserializer.deserialize_any(Check).unwrap_or(true)
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Resource>(data);
    round_trip::<Bundle>(data);
});
