//! The typed-resource trait, the `Resource` enum that dispatches on `resourceType`, and
//! `RawResource` for resource types without a model.

use std::any::Any;
use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::macros::{MapDeserialize, duplicate_member, reject_member};
use super::{
    Appointment, Bundle, CapabilityStatement, Condition, Encounter, MedicationRequest, ModelError,
    Observation, OperationOutcome, Patient,
};

/// A FHIR resource type with a Rust model.
///
/// Implemented by the models of this crate ([`Patient`], [`Observation`]...) and open to
/// users' own models: anything that serializes as the resource's JSON can implement it. Resource
/// types without a model are read as [`RawResource`], which has the same accessors but a
/// type known only at run time.
pub trait FhirResource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The `resourceType` of this model, such as `"Patient"`.
    const TYPE: &'static str;

    /// The logical id of the resource, when it has one.
    fn id(&self) -> Option<&str>;
}

/// A resource of a type this crate has no model for, kept as its JSON object.
///
/// The `resourceType` is held apart from the other members so that it cannot go missing.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResource {
    resource_type: String,
    members: Map<String, Value>,
}

impl RawResource {
    /// Takes a JSON object, which must have a string `resourceType`.
    pub fn from_object(mut object: Map<String, Value>) -> Result<Self, ModelError> {
        match object.remove("resourceType") {
            Some(Value::String(resource_type)) if !resource_type.is_empty() => Ok(Self {
                resource_type,
                members: object,
            }),
            Some(_) => Err(ModelError::at_path(
                "resourceType",
                "resourceType must be a non-empty string",
            )),
            None => Err(ModelError::at_path(".", "missing member `resourceType`")),
        }
    }

    /// Takes a JSON value, which must be an object with a string `resourceType`.
    pub fn from_value(value: Value) -> Result<Self, ModelError> {
        match value {
            Value::Object(object) => Self::from_object(object),
            _ => Err(ModelError::at_path(".", "a resource must be a JSON object")),
        }
    }

    /// The `resourceType`, such as `"AllergyIntolerance"`.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The logical id, when the resource has a string `id`.
    pub fn id(&self) -> Option<&str> {
        self.members.get("id").and_then(Value::as_str)
    }

    /// The member `name`, such as `"code"`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.members.get(name)
    }

    /// All members except `resourceType`.
    pub fn members(&self) -> &Map<String, Value> {
        &self.members
    }

    /// All members except `resourceType`, for changes. A `resourceType` member added here is
    /// ignored when the resource is written.
    pub fn members_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.members
    }

    /// The whole resource as a JSON value, `resourceType` included.
    pub fn into_value(self) -> Value {
        let mut object = Map::with_capacity(self.members.len() + 1);
        object.insert("resourceType".to_owned(), Value::String(self.resource_type));
        for (key, value) in self.members {
            if key != "resourceType" {
                object.insert(key, value);
            }
        }
        Value::Object(object)
    }

    /// Reads the resource into its model when this crate has one; `Resource::Other` otherwise.
    pub fn into_resource(self) -> Result<Resource, ModelError> {
        Resource::from_value(self.into_value())
    }

    /// Reads the rest of an object whose `resourceType` was already read.
    fn from_map<'de, A: MapAccess<'de>>(
        resource_type: String,
        mut map: A,
    ) -> Result<Self, A::Error> {
        let mut members = Map::new();
        read_members(&mut map, &mut members, true)?;
        Ok(Self {
            resource_type,
            members,
        })
    }
}

/// How a resource object begins: with its `resourceType`, as servers write it, or with other
/// members, which are then read into JSON because the type is not known yet.
enum ResourceStart {
    /// The non-empty `resourceType`, read as the first member; the rest is still unread.
    ResourceType(String),
    /// The whole object, `resourceType` included if present.
    Buffered(Map<String, Value>),
}

/// Reads the first member of a resource object, and the whole object when that member is not
/// `resourceType`, so that `Resource` and `RawResource` decide in the same way.
fn read_resource_start<'de, A: MapAccess<'de>>(map: &mut A) -> Result<ResourceStart, A::Error> {
    let Some(first) = map.next_key::<String>()? else {
        return Err(de::Error::custom("missing member `resourceType`"));
    };
    if first == "resourceType" {
        let resource_type: String = map.next_value()?;
        if resource_type.is_empty() {
            return Err(de::Error::custom("resourceType must be a non-empty string"));
        }
        return Ok(ResourceStart::ResourceType(resource_type));
    }
    let mut object = Map::new();
    object.insert(first, map.next_value()?);
    read_members(map, &mut object, false)?;
    Ok(ResourceStart::Buffered(object))
}

/// Reads the members left in `map` into `members`, refusing a name that is already there, and
/// `resourceType` too when the caller has read it apart from `members`.
fn read_members<'de, A: MapAccess<'de>>(
    map: &mut A,
    members: &mut Map<String, Value>,
    resource_type_read: bool,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key::<String>()? {
        if members.contains_key(&key) || (resource_type_read && key == "resourceType") {
            return reject_member(map, duplicate_member(&key));
        }
        let value = map.next_value()?;
        members.insert(key, value);
    }
    Ok(())
}

impl Serialize for RawResource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("resourceType", &self.resource_type)?;
        for (key, value) in &self.members {
            if key != "resourceType" {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RawResource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;

        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawResource;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a FHIR resource object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawResource, A::Error> {
                match read_resource_start(&mut map)? {
                    ResourceStart::ResourceType(resource_type) => {
                        RawResource::from_map(resource_type, map)
                    }
                    ResourceStart::Buffered(object) => RawResource::from_object(object)
                        .map_err(|error| de::Error::custom(error.nested_message())),
                }
            }
        }

        deserializer.deserialize_map(RawVisitor)
    }
}

/// Declares the `Resource` enum over the typed models, with its dispatch and accessors.
macro_rules! resource_enum {
    ($( $variant:ident, $as_ref:ident ),* $(,)?) => {
        /// Any FHIR resource: a typed model for the types this crate models, else a
        /// [`RawResource`].
        ///
        /// Deserializing dispatches on `resourceType`. When `resourceType` is the first member,
        /// as servers write it, the resource is read in one pass; otherwise the object is read
        /// into JSON first and then into its model. A missing `resourceType` is an error.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Resource {
            $(
                #[doc = concat!("A ", stringify!($variant), ".")]
                $variant(Box<$variant>),
            )*
            /// A resource of a type without a model.
            Other(RawResource),
        }

        impl Resource {
            /// The `resourceType`, such as `"Patient"`.
            pub fn resource_type(&self) -> &str {
                match self {
                    $( Self::$variant(_) => <$variant as FhirResource>::TYPE, )*
                    Self::Other(raw) => raw.resource_type(),
                }
            }

            /// The logical id, when the resource has one.
            pub fn id(&self) -> Option<&str> {
                match self {
                    $( Self::$variant(resource) => resource.id.as_deref(), )*
                    Self::Other(raw) => raw.id(),
                }
            }

            $(
                #[doc = concat!("The ", stringify!($variant), ", if this is one.")]
                pub fn $as_ref(&self) -> Option<&$variant> {
                    match self {
                        Self::$variant(resource) => Some(resource),
                        _ => None,
                    }
                }
            )*

            /// The typed model `T`, if the resource was read into it.
            pub fn downcast_ref<T: FhirResource>(&self) -> Option<&T> {
                let any: &dyn Any = match self {
                    $( Self::$variant(resource) => resource.as_ref(), )*
                    Self::Other(_) => return None,
                };
                any.downcast_ref()
            }

            /// Moves the model out when `T` is the model this resource was read into.
            fn take<T: FhirResource>(self) -> Option<T> {
                let any: Box<dyn Any> = match self {
                    $( Self::$variant(resource) => resource, )*
                    Self::Other(_) => return None,
                };
                any.downcast::<T>().ok().map(|typed| *typed)
            }

            /// Dispatches on `resource_type` for an object whose `resourceType` was already read.
            fn from_map<'de, A: MapAccess<'de>>(resource_type: String, map: A) -> Result<Self, A::Error> {
                match resource_type.as_str() {
                    $(
                        <$variant as FhirResource>::TYPE => {
                            <$variant as MapDeserialize>::from_map(map, true)
                                .map(|resource| Self::$variant(Box::new(resource)))
                        }
                    )*
                    _ => RawResource::from_map(resource_type, map).map(Self::Other),
                }
            }

            /// Dispatches a whole JSON object on its `resourceType`.
            fn from_object(object: Map<String, Value>) -> Result<Self, ModelError> {
                let resource_type = match object.get("resourceType") {
                    Some(Value::String(resource_type)) => resource_type.as_str(),
                    Some(_) => {
                        return Err(ModelError::at_path("resourceType", "resourceType must be a string"));
                    }
                    None => return Err(ModelError::at_path(".", "missing member `resourceType`")),
                };
                match resource_type {
                    $(
                        <$variant as FhirResource>::TYPE => super::from_value::<$variant>(Value::Object(object))
                            .map(|resource| Self::$variant(Box::new(resource))),
                    )*
                    _ => RawResource::from_object(object).map(Self::Other),
                }
            }
        }

        impl Serialize for Resource {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Self::$variant(resource) => resource.serialize(serializer), )*
                    Self::Other(raw) => raw.serialize(serializer),
                }
            }
        }

        $(
            impl From<$variant> for Resource {
                fn from(resource: $variant) -> Self {
                    Self::$variant(Box::new(resource))
                }
            }

            impl TryFrom<Resource> for $variant {
                type Error = ResourceTypeMismatch;

                fn try_from(resource: Resource) -> Result<Self, ResourceTypeMismatch> {
                    match resource {
                        Resource::$variant(typed) => Ok(*typed),
                        other => Err(ResourceTypeMismatch {
                            expected: <$variant as FhirResource>::TYPE,
                            resource: other,
                        }),
                    }
                }
            }
        )*
    };
}

resource_enum!(
    Appointment,
    as_appointment,
    Bundle,
    as_bundle,
    CapabilityStatement,
    as_capability_statement,
    Condition,
    as_condition,
    Encounter,
    as_encounter,
    MedicationRequest,
    as_medication_request,
    Observation,
    as_observation,
    OperationOutcome,
    as_operation_outcome,
    Patient,
    as_patient,
);

impl Resource {
    /// Reads a JSON value into its model, dispatching on `resourceType`.
    pub fn from_value(value: Value) -> Result<Self, ModelError> {
        match value {
            Value::Object(object) => Self::from_object(object),
            _ => Err(ModelError::at_path(".", "a resource must be a JSON object")),
        }
    }

    /// The raw resource, if this resource type has no model.
    pub fn as_raw(&self) -> Option<&RawResource> {
        match self {
            Self::Other(raw) => Some(raw),
            _ => None,
        }
    }

    /// Converts the resource into the model `T`.
    ///
    /// This works for every [`FhirResource`], including users' own models of types this crate
    /// reads as [`RawResource`]: those are converted through JSON. It fails when the resource
    /// is of another type or does not fit `T`.
    pub fn into_typed<T: FhirResource>(self) -> Result<T, ModelError> {
        if self.resource_type() != T::TYPE {
            return Err(ModelError::at_path(
                "resourceType",
                format_args!(
                    "expected a {} resource, found {}",
                    T::TYPE,
                    self.resource_type()
                ),
            ));
        }
        if self.downcast_ref::<T>().is_none() {
            // A model of the users' own, or a raw resource: convert through JSON.
            let value = serde_json::to_value(&self).map_err(|error| {
                ModelError::at_path(".", format_args!("cannot write resource: {error}"))
            })?;
            return super::from_value(value);
        }
        self.take::<T>().ok_or_else(|| {
            ModelError::at_path(
                "resourceType",
                format_args!("cannot convert the resource into {}", T::TYPE),
            )
        })
    }
}

impl From<RawResource> for Resource {
    /// Wraps a raw resource as it is, without reading it into a model; see
    /// [`RawResource::into_resource`] for that.
    fn from(raw: RawResource) -> Self {
        Self::Other(raw)
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResourceVisitor)
    }
}

/// Reads a resource object, dispatching on its `resourceType`.
struct ResourceVisitor;

impl<'de> Visitor<'de> for ResourceVisitor {
    type Value = Resource;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a FHIR resource object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Resource, A::Error> {
        match read_resource_start(&mut map)? {
            ResourceStart::ResourceType(resource_type) => Resource::from_map(resource_type, map),
            // `resourceType` comes later: the object was read as JSON, now into its model.
            ResourceStart::Buffered(object) => Resource::from_object(object)
                .map_err(|error| de::Error::custom(error.nested_message())),
        }
    }
}

impl ModelError {
    /// The cause alone, without the path.
    fn cause_message(&self) -> String {
        std::error::Error::source(self)
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The cause with the path inside the resource, for errors found after buffering a
    /// resource, where the enclosing deserializer knows only the path to the resource.
    fn nested_message(&self) -> String {
        if self.path() == "." {
            self.cause_message()
        } else {
            format!("at `{}`: {}", self.path(), self.cause_message())
        }
    }
}

/// A resource of another type than the one asked for; it gives the resource back.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceTypeMismatch {
    expected: &'static str,
    resource: Resource,
}

impl ResourceTypeMismatch {
    /// The resource type that was asked for.
    pub fn expected(&self) -> &'static str {
        self.expected
    }

    /// The resource, unchanged.
    pub fn into_resource(self) -> Resource {
        self.resource
    }
}

impl fmt::Display for ResourceTypeMismatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "expected a {} resource, found {}",
            self.expected,
            self.resource.resource_type()
        )
    }
}

impl std::error::Error for ResourceTypeMismatch {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{from_slice, from_value};

    #[test]
    fn dispatches_on_resource_type_first_or_later() {
        let first: Resource =
            from_slice(br#"{"resourceType":"Patient","id":"p1","gender":"female"}"#).unwrap();
        let later: Resource =
            from_slice(br#"{"id":"p1","gender":"female","resourceType":"Patient"}"#).unwrap();
        assert_eq!(first, later);
        assert_eq!(first.resource_type(), "Patient");
        assert_eq!(first.id(), Some("p1"));
        assert_eq!(
            first.as_patient().unwrap().gender.as_deref(),
            Some("female")
        );
        assert!(first.as_observation().is_none());
        assert!(first.downcast_ref::<Patient>().is_some());
        assert!(first.downcast_ref::<Observation>().is_none());
    }

    #[test]
    fn unknown_types_are_raw() {
        let input =
            json!({"resourceType": "AllergyIntolerance", "id": "a1", "code": {"text": "Peanut"}});
        let resource: Resource = from_value(input.clone()).unwrap();
        let raw = resource.as_raw().unwrap();
        assert_eq!(raw.resource_type(), "AllergyIntolerance");
        assert_eq!(raw.id(), Some("a1"));
        assert_eq!(raw.get("code"), Some(&json!({"text": "Peanut"})));
        assert!(resource.downcast_ref::<Patient>().is_none());
        assert_eq!(serde_json::to_value(&resource).unwrap(), input);
    }

    #[test]
    fn missing_resource_type_is_an_error() {
        let error = from_slice::<Resource>(br#"{"id":"p1"}"#).unwrap_err();
        assert_eq!(error.path(), ".");
        assert!(
            error
                .source_message()
                .contains("missing member `resourceType`")
        );
        let empty = from_slice::<Resource>(b"{}").unwrap_err();
        assert!(
            empty
                .source_message()
                .contains("missing member `resourceType`")
        );
        let raw = RawResource::from_value(json!({"id": "x"})).unwrap_err();
        assert!(
            raw.source_message()
                .contains("missing member `resourceType`")
        );
        let not_string = from_slice::<Resource>(br#"{"resourceType":7}"#).unwrap_err();
        assert_eq!(not_string.path(), "resourceType");
        let later_not_string =
            from_slice::<Resource>(br#"{"id":"x","resourceType":7}"#).unwrap_err();
        assert!(
            later_not_string
                .source_message()
                .contains("resourceType must be a string")
        );
        let array = from_slice::<Resource>(b"[]").unwrap_err();
        assert!(array.source_message().contains("a FHIR resource object"));
    }

    #[test]
    fn empty_resource_type_is_an_error_first_or_later() {
        for text in [
            &br#"{"resourceType":"","id":"x"}"#[..],
            br#"{"id":"x","resourceType":""}"#,
        ] {
            let error = from_slice::<Resource>(text).unwrap_err();
            assert!(
                error
                    .source_message()
                    .contains("resourceType must be a non-empty string"),
                "{error}"
            );
            let raw = from_slice::<RawResource>(text).unwrap_err();
            assert!(
                raw.source_message()
                    .contains("resourceType must be a non-empty string"),
                "{raw}"
            );
        }
        let contained = from_slice::<Patient>(
            br#"{"resourceType":"Patient","contained":[{"resourceType":""}]}"#,
        )
        .unwrap_err();
        assert_eq!(contained.path(), "contained[0]");
    }

    #[test]
    fn errors_inside_buffered_resources_keep_the_inner_path() {
        let error = from_slice::<Resource>(
            br#"{"id":"x","birthDate":"1990-02-30","resourceType":"Patient"}"#,
        )
        .unwrap_err();
        let message = error.source_message();
        assert!(message.contains("at `birthDate`"), "{message}");
        assert!(message.contains("that day does not exist"), "{message}");
    }

    #[test]
    fn typed_resource_checks_its_resource_type() {
        let wrong = from_slice::<Patient>(br#"{"resourceType":"Observation"}"#).unwrap_err();
        assert_eq!(wrong.path(), "resourceType");
        assert!(
            wrong
                .source_message()
                .contains("resourceType is \"Observation\", expected \"Patient\"")
        );
        let missing = from_slice::<Patient>(br#"{"id":"x"}"#).unwrap_err();
        assert!(
            missing
                .source_message()
                .contains("missing member `resourceType` (expected \"Patient\")")
        );
        let twice =
            from_slice::<Resource>(br#"{"resourceType":"Patient","resourceType":"Patient"}"#)
                .unwrap_err();
        assert_eq!(twice.path(), "resourceType");
        let raw_twice =
            from_slice::<Resource>(br#"{"resourceType":"Foo","a":1,"a":2}"#).unwrap_err();
        assert_eq!(raw_twice.path(), "a");
    }

    #[test]
    fn conversions_between_resource_and_models() {
        let patient = Patient {
            id: Some("p1".to_owned()),
            ..Patient::default()
        };
        let resource = Resource::from(patient.clone());
        assert_eq!(resource.clone().into_typed::<Patient>().unwrap(), patient);
        assert_eq!(Patient::try_from(resource.clone()).unwrap(), patient);
        let mismatch = Observation::try_from(resource.clone()).unwrap_err();
        assert_eq!(
            mismatch.to_string(),
            "expected a Observation resource, found Patient"
        );
        assert_eq!(mismatch.expected(), "Observation");
        assert_eq!(mismatch.into_resource(), resource);
        let error = resource.into_typed::<Observation>().unwrap_err();
        assert_eq!(error.path(), "resourceType");

        // A model of the users' own is filled from a raw resource through JSON.
        #[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
        #[serde(tag = "resourceType", rename = "AllergyIntolerance")]
        struct Allergy {
            id: Option<String>,
        }
        impl FhirResource for Allergy {
            const TYPE: &'static str = "AllergyIntolerance";
            fn id(&self) -> Option<&str> {
                self.id.as_deref()
            }
        }
        let raw: Resource =
            from_value(json!({"resourceType": "AllergyIntolerance", "id": "a"})).unwrap();
        assert_eq!(
            raw.into_typed::<Allergy>().unwrap(),
            Allergy {
                id: Some("a".to_owned())
            }
        );
    }

    #[test]
    fn raw_resource_edits_cannot_break_resource_type() {
        let mut raw = RawResource::from_value(json!({"resourceType": "Goal", "id": "g"})).unwrap();
        raw.members_mut()
            .insert("resourceType".to_owned(), json!("Patient"));
        raw.members_mut()
            .insert("status".to_owned(), json!("active"));
        let value = serde_json::to_value(&raw).unwrap();
        assert_eq!(
            value,
            json!({"resourceType": "Goal", "id": "g", "status": "active"})
        );
        assert_eq!(raw.clone().into_value(), value);
        let typed = RawResource::from_value(json!({"resourceType": "Patient", "id": "p"}))
            .unwrap()
            .into_resource()
            .unwrap();
        assert!(typed.as_patient().is_some());
        assert!(RawResource::from_value(json!({"resourceType": ""})).is_err());
        assert!(RawResource::from_value(json!([1])).is_err());
        let contained = from_slice::<Patient>(
            br#"{"resourceType":"Patient","contained":[{"id":"a","resourceType":"Organization","id":"b"}]}"#,
        )
        .unwrap_err();
        assert_eq!(contained.path(), "contained[0].id");
        let untyped =
            from_slice::<Patient>(br#"{"resourceType":"Patient","contained":[{"id":"a"}]}"#)
                .unwrap_err();
        assert_eq!(untyped.path(), "contained[0]");
        assert!(
            untyped
                .source_message()
                .contains("missing member `resourceType`")
        );
    }

    impl ModelError {
        fn source_message(&self) -> String {
            self.cause_message()
        }
    }
}
