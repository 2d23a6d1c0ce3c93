//! serde's `Serialize` and `Deserialize` for the models, through their own reader and writer.
//!
//! A model is written as a serde_json raw value (so `serde_json::to_string` gives exactly what
//! [`crate::to_string`] gives, decimals included) and read from one (so `serde_json::from_str`,
//! `from_slice`, `from_reader` and `from_value` all work). These impls serve code that embeds
//! models in its own serde types; FHIR JSON is JSON, and other serde formats are not supported.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::json::{FromJson, ToJson};

/// Serializes a model as the JSON text its writer produces.
pub(crate) fn serialize<T: ToJson + ?Sized, S: Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let raw = RawValue::from_string(crate::to_string(value))
        .map_err(<S::Error as serde::ser::Error>::custom)?;
    raw.serialize(serializer)
}

/// Deserializes a model from the JSON text of a serde_json value.
pub(crate) fn deserialize<'de, T: FromJson, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    crate::from_str(raw.get()).map_err(D::Error::custom)
}

/// Implements `Serialize` and `Deserialize` for each listed model.
macro_rules! serde_via_json {
    ($($model:ty),* $(,)?) => {
        $(
            impl ::serde::Serialize for $model {
                fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                    $crate::serde_support::serialize(self, serializer)
                }
            }

            impl<'de> ::serde::Deserialize<'de> for $model {
                fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    $crate::serde_support::deserialize(deserializer)
                }
            }
        )*
    };
}

pub(crate) use serde_via_json;

serde_via_json!(crate::Resource, crate::RawResource);
