//! The machinery behind every model type: one declarative macro writes the struct, its
//! `Serialize` impl and a streaming `Deserialize` impl.
//!
//! serde's `#[serde(flatten)]` would keep unknown members too, but it buffers every object into
//! an intermediate tree before matching fields, which makes parsing several times slower. The
//! generated visitor here reads each member once: a known name is parsed straight into its typed
//! field, a choice member (`valueQuantity`) into its enum variant, and anything else into the
//! `extra` map as a `serde_json::Value`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;

/// Deserialization of a model object from an already opened JSON object.
///
/// `Resource` uses this to continue reading an object after it has consumed the
/// `resourceType` member, so that a resource in a Bundle is parsed in one pass.
pub(crate) trait MapDeserialize: Sized {
    /// Reads the remaining members of `map`. `resource_type_seen` tells a resource model
    /// that its `resourceType` member was already read and checked by the caller.
    fn from_map<'de, A: MapAccess<'de>>(map: A, resource_type_seen: bool)
    -> Result<Self, A::Error>;
}

/// A FHIR choice element (`value[x]`, `effective[x]`...) stored as a Rust enum.
pub(crate) trait ChoiceElement: Sized {
    /// Returns the member name when `key` is one of this choice's JSON members.
    fn match_key(key: &str) -> Option<Cow<'static, str>>;

    /// Reads the value of member `key` (a name returned by `match_key`, handed over so that an
    /// owned name is not copied again) from `map`.
    fn next_variant<'de, A: MapAccess<'de>>(
        key: Cow<'static, str>,
        map: &mut A,
    ) -> Result<Self, A::Error>;

    /// The JSON member name of the present variant, such as `valueQuantity`.
    fn member(&self) -> &str;

    /// Writes the present variant as one member of the enclosing object.
    fn serialize_member<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error>;
}

/// A value seed that fails at once with `message`.
///
/// Errors about a member (a duplicate, a second choice member, a wrong `resourceType`) are
/// raised through the member's value so that `serde_path_to_error` puts the member's name in
/// the reported path.
struct Reject(String);

impl<'de> DeserializeSeed<'de> for Reject {
    type Value = Infallible;

    fn deserialize<D: Deserializer<'de>>(self, _deserializer: D) -> Result<Infallible, D::Error> {
        Err(de::Error::custom(self.0))
    }
}

/// Fails the current member of `map` with `message`, attributing the error to that member.
pub(crate) fn reject_member<'de, A: MapAccess<'de>, T>(
    map: &mut A,
    message: String,
) -> Result<T, A::Error> {
    match map.next_value_seed(Reject(message)) {
        Ok(never) => match never {},
        Err(error) => Err(error),
    }
}

/// The message for a member that occurs twice in one object.
pub(crate) fn duplicate_member(name: &str) -> String {
    format!("duplicate member `{name}`")
}

/// The message for a second member of the same choice element.
pub(crate) fn duplicate_choice(prefix: &str, first: &str, second: &str) -> String {
    format!("`{first}` and `{second}` are both present, but {prefix}[x] allows only one")
}

/// A value seed that accepts only the string `expected`, for the `resourceType` member.
pub(crate) struct ExpectResourceType(pub(crate) &'static str);

impl<'de> DeserializeSeed<'de> for ExpectResourceType {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for ExpectResourceType {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "the string \"{}\"", self.0)
    }

    fn visit_str<E: de::Error>(self, found: &str) -> Result<(), E> {
        if found == self.0 {
            Ok(())
        } else {
            Err(E::custom(format_args!(
                "resourceType is \"{found}\", expected \"{}\"",
                self.0
            )))
        }
    }
}

/// The Rust type of a model field, by kind.
macro_rules! field_type {
    (opt $t:ty) => { Option<$t> };
    (vec $t:ty) => { Vec<$t> };
    (req $t:ty) => { $t };
    (choice $t:ty) => { Option<$t> };
}

/// The type of the slot that collects a field while its object is read.
macro_rules! slot_type {
    (vec $t:ty) => { Option<Vec<$t>> };
    ($kind:ident $t:ty) => { Option<$t> };
}

/// Whether JSON member `$key` belongs to a field, and the member name to remember if so.
macro_rules! match_member {
    (choice $json:literal $t:ty, $key:expr) => {
        <$t as $crate::model::macros::ChoiceElement>::match_key($key)
    };
    ($kind:ident $json:literal $t:ty, $key:expr) => {
        if $key == $json {
            Some(::std::borrow::Cow::Borrowed($json))
        } else {
            None
        }
    };
}

/// Reads the value of one known member into its slot, refusing duplicates.
macro_rules! read_member {
    ($map:ident, $slot:expr, choice $json:literal $t:ty, $key:ident) => {{
        if let Some(previous) = &$slot {
            let message = $crate::model::macros::duplicate_choice(
                $json,
                $crate::model::macros::ChoiceElement::member(previous),
                &$key,
            );
            return $crate::model::macros::reject_member(&mut $map, message);
        }
        $slot = Some(<$t as $crate::model::macros::ChoiceElement>::next_variant(
            $key, &mut $map,
        )?);
    }};
    ($map:ident, $slot:expr, $kind:ident $json:literal $t:ty, $key:ident) => {{
        // Only choice elements need the member name; for other fields it is `$json`.
        let _ = $key;
        if $slot.is_some() {
            let message = $crate::model::macros::duplicate_member($json);
            return $crate::model::macros::reject_member(&mut $map, message);
        }
        $slot = Some($map.next_value()?);
    }};
}

/// Turns a filled slot into the field value, enforcing required members.
macro_rules! finish_member {
    ($slot:expr, vec $json:literal, $err:ty) => {
        $slot.unwrap_or_default()
    };
    ($slot:expr, req $json:literal, $err:ty) => {
        match $slot {
            Some(value) => value,
            None => return Err(<$err as ::serde::de::Error>::missing_field($json)),
        }
    };
    ($slot:expr, $kind:ident $json:literal, $err:ty) => {
        $slot
    };
}

/// Writes one field as a JSON member, omitting absent and empty ones.
macro_rules! write_member {
    ($map:ident, opt $json:literal, $value:expr) => {
        if let Some(value) = $value {
            ::serde::ser::SerializeMap::serialize_entry(&mut $map, $json, value)?;
        }
    };
    ($map:ident, vec $json:literal, $value:expr) => {
        if !$value.is_empty() {
            ::serde::ser::SerializeMap::serialize_entry(&mut $map, $json, $value)?;
        }
    };
    ($map:ident, req $json:literal, $value:expr) => {
        ::serde::ser::SerializeMap::serialize_entry(&mut $map, $json, $value)?;
    };
    ($map:ident, choice $json:literal, $value:expr) => {
        if let Some(value) = $value {
            $crate::model::macros::ChoiceElement::serialize_member(value, &mut $map)?;
        }
    };
}

/// `Some(literal)` or `None`, for the optional resource type of a model.
macro_rules! optional_literal {
    () => {
        None
    };
    ($value:literal) => {
        Some($value)
    };
}

/// Declares a FHIR model type.
///
/// Forms: `element struct` (adds `id` and `extension`), `backbone struct` (adds
/// `modifierExtension` too), `resource struct Name("Type")` (adds the Resource members) and
/// `domain_resource struct Name("Type")` (adds the DomainResource members). Each field is
/// written `kind "jsonName" rust_name: Type` where kind is `opt` (0..1), `vec` (0..*), `req`
/// (1..1, an error when missing) or `choice` (a `[x]` element; the literal is its prefix).
macro_rules! fhir_struct {
    (
        $(#[$meta:meta])*
        element struct $name:ident { $($body:tt)* }
    ) => {
        $crate::model::macros::fhir_struct! { @emit [] $(#[$meta])* $name {
            /// Unique id of this element within the resource, for internal references.
            opt "id" id: String,
            /// Additional content defined by implementations, kept as given.
            vec "extension" extension: $crate::model::Extension,
            $($body)*
        } }
    };
    (
        $(#[$meta:meta])*
        backbone struct $name:ident { $($body:tt)* }
    ) => {
        $crate::model::macros::fhir_struct! { $(#[$meta])* element struct $name {
            /// Extensions that change the meaning of this element and cannot be ignored.
            vec "modifierExtension" modifier_extension: $crate::model::Extension,
            $($body)*
        } }
    };
    (
        $(#[$meta:meta])*
        resource struct $name:ident ($rtype:literal) { $($body:tt)* }
    ) => {
        $crate::model::macros::fhir_struct! { @emit [$rtype] $(#[$meta])* $name {
            /// Logical id of the resource on its server.
            opt "id" id: String,
            /// Metadata maintained by the server: version, last update, profiles, tags.
            opt "meta" meta: $crate::model::Meta,
            /// Reference to rules the content was created under, which readers must understand.
            opt "implicitRules" implicit_rules: String,
            /// Language of the resource content (a BCP-47 code).
            opt "language" language: String,
            $($body)*
        } }
        $crate::model::macros::impl_fhir_resource!($name, $rtype);
    };
    (
        $(#[$meta:meta])*
        domain_resource struct $name:ident ($rtype:literal) { $($body:tt)* }
    ) => {
        $crate::model::macros::fhir_struct! { $(#[$meta])* resource struct $name ($rtype) {
            /// Human-readable summary of the resource (XHTML narrative).
            opt "text" text: $crate::model::Narrative,
            /// Resources contained inline, kept as raw JSON objects; referenced as `#id`.
            vec "contained" contained: $crate::model::RawResource,
            /// Additional content defined by implementations, kept as given.
            vec "extension" extension: $crate::model::Extension,
            /// Extensions that change the meaning of the resource and cannot be ignored.
            vec "modifierExtension" modifier_extension: $crate::model::Extension,
            $($body)*
        } }

        impl $name {
            /// Finds the contained resource that the local reference `#id` (or bare `id`)
            /// points at.
            pub fn contained_resource(&self, local_reference: &str) -> Option<&$crate::model::RawResource> {
                let wanted = local_reference.strip_prefix('#').unwrap_or(local_reference);
                self.contained.iter().find(|resource| resource.id() == Some(wanted))
            }
        }
    };
    (
        @emit [$($rtype:literal)?]
        $(#[$meta:meta])*
        $name:ident {
            $(
                $(#[$fmeta:meta])*
                $kind:ident $json:literal $field:ident : $fty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: $crate::model::macros::field_type!($kind $fty),
            )*
            /// Members this model does not name, kept verbatim and written back unchanged:
            /// primitive extensions such as `_birthDate`, elements of newer FHIR versions,
            /// and anything else. Writing fails if it holds a name the model has a field for.
            pub extra: ::serde_json::Map<String, ::serde_json::Value>,
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeMap as _;
                let mut map = serializer.serialize_map(None)?;
                $( map.serialize_entry("resourceType", $rtype)?; )?
                $( $crate::model::macros::write_member!(map, $kind $json, &self.$field); )*
                for (key, value) in &self.extra {
                    // A modelled name in `extra` would be written twice: refuse it rather than
                    // write JSON with a duplicate member.
                    let modelled = $( $crate::model::macros::match_member!($kind $json $fty, key.as_str()).is_some() || )*
                        ($crate::model::macros::optional_literal!($($rtype)?) as Option<&str>).is_some() && key == "resourceType";
                    if modelled {
                        return Err(<S::Error as ::serde::ser::Error>::custom(format_args!(
                            "`extra` holds `{key}`, which {} models as a field",
                            stringify!($name)
                        )));
                    }
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;

                impl<'de> ::serde::de::Visitor<'de> for ObjectVisitor {
                    type Value = $name;

                    fn expecting(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        formatter.write_str(concat!("a FHIR ", stringify!($name), " object"))
                    }

                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, map: A) -> Result<$name, A::Error> {
                        <$name as $crate::model::macros::MapDeserialize>::from_map(map, false)
                    }
                }

                deserializer.deserialize_map(ObjectVisitor)
            }
        }

        impl $crate::model::macros::MapDeserialize for $name {
            #[allow(unused_mut, unused_assignments)]
            fn from_map<'de, A: ::serde::de::MapAccess<'de>>(
                mut map: A,
                mut resource_type_seen: bool,
            ) -> Result<Self, A::Error> {
                const RESOURCE_TYPE: Option<&'static str> =
                    $crate::model::macros::optional_literal!($($rtype)?);

                // One variant per field, named after it; the payload is the member name,
                // which differs from the field's JSON name only for choice elements.
                #[allow(non_camel_case_types)]
                enum Member {
                    $( $field(::std::borrow::Cow<'static, str>), )*
                    ResourceType,
                    Other(String),
                }

                struct MemberSeed;

                impl<'de> ::serde::de::DeserializeSeed<'de> for MemberSeed {
                    type Value = Member;

                    fn deserialize<D: ::serde::Deserializer<'de>>(self, deserializer: D) -> Result<Member, D::Error> {
                        deserializer.deserialize_str(self)
                    }
                }

                impl ::serde::de::Visitor<'_> for MemberSeed {
                    type Value = Member;

                    fn expecting(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        formatter.write_str("a member name")
                    }

                    fn visit_str<E: ::serde::de::Error>(self, key: &str) -> Result<Member, E> {
                        $(
                            if let Some(name) = $crate::model::macros::match_member!($kind $json $fty, key) {
                                return Ok(Member::$field(name));
                            }
                        )*
                        if RESOURCE_TYPE.is_some() && key == "resourceType" {
                            return Ok(Member::ResourceType);
                        }
                        Ok(Member::Other(key.to_owned()))
                    }
                }

                #[derive(Default)]
                struct Slots {
                    $( $field: $crate::model::macros::slot_type!($kind $fty), )*
                }

                let mut slots = Slots::default();
                let mut extra = ::serde_json::Map::new();
                while let Some(member) = map.next_key_seed(MemberSeed)? {
                    match member {
                        $(
                            Member::$field(key) => {
                                $crate::model::macros::read_member!(map, slots.$field, $kind $json $fty, key);
                            }
                        )*
                        Member::ResourceType => {
                            if resource_type_seen {
                                let message = $crate::model::macros::duplicate_member("resourceType");
                                return $crate::model::macros::reject_member(&mut map, message);
                            }
                            if let Some(expected) = RESOURCE_TYPE {
                                map.next_value_seed($crate::model::macros::ExpectResourceType(expected))?;
                            }
                            resource_type_seen = true;
                        }
                        Member::Other(key) => {
                            if extra.contains_key(&key) {
                                let message = $crate::model::macros::duplicate_member(&key);
                                return $crate::model::macros::reject_member(&mut map, message);
                            }
                            let value = map.next_value()?;
                            extra.insert(key, value);
                        }
                    }
                }
                if let Some(expected) = RESOURCE_TYPE {
                    if !resource_type_seen {
                        return Err(<A::Error as ::serde::de::Error>::custom(format_args!(
                            "missing member `resourceType` (expected \"{expected}\")"
                        )));
                    }
                }
                Ok($name {
                    $( $field: $crate::model::macros::finish_member!(slots.$field, $kind $json, A::Error), )*
                    extra,
                })
            }
        }
    };
}

/// Implements `FhirResource` for a resource model.
macro_rules! impl_fhir_resource {
    ($name:ident, $rtype:literal) => {
        impl $crate::model::FhirResource for $name {
            const TYPE: &'static str = $rtype;

            fn id(&self) -> Option<&str> {
                self.id.as_deref()
            }
        }
    };
}

/// Declares a choice element enum: one variant per allowed type, each tied to its JSON
/// member name (`valueQuantity`, `valueString`...).
macro_rules! fhir_choice {
    (
        $(#[$meta:meta])*
        enum $name:ident ($prefix:literal) {
            $(
                $(#[$vmeta:meta])*
                $variant:ident ($json:literal, $ty:ty)
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        // Variants are not boxed: a choice is stored inline in a struct that is larger anyway,
        // and boxing would cost an allocation for the common variants (a Quantity value).
        #[allow(clippy::large_enum_variant)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant($ty),
            )*
        }

        impl $name {
            /// The JSON member name this value is written under.
            pub fn member_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $json, )*
                }
            }
        }

        impl $crate::model::macros::ChoiceElement for $name {
            fn match_key(key: &str) -> Option<::std::borrow::Cow<'static, str>> {
                if !key.starts_with($prefix) {
                    return None;
                }
                match key {
                    $( $json => Some(::std::borrow::Cow::Borrowed($json)), )*
                    _ => None,
                }
            }

            fn next_variant<'de, A: ::serde::de::MapAccess<'de>>(
                key: ::std::borrow::Cow<'static, str>,
                map: &mut A,
            ) -> Result<Self, A::Error> {
                match key.as_ref() {
                    $( $json => map.next_value().map(Self::$variant), )*
                    other => Err(<A::Error as ::serde::de::Error>::custom(format_args!(
                        "`{other}` is not a member of {}[x]",
                        $prefix
                    ))),
                }
            }

            fn member(&self) -> &str {
                self.member_name()
            }

            fn serialize_member<M: ::serde::ser::SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
                match self {
                    $( Self::$variant(value) => map.serialize_entry($json, value), )*
                }
            }
        }
    };
}

pub(crate) use fhir_choice;
pub(crate) use fhir_struct;
pub(crate) use field_type;
pub(crate) use finish_member;
pub(crate) use impl_fhir_resource;
pub(crate) use match_member;
pub(crate) use optional_literal;
pub(crate) use read_member;
pub(crate) use slot_type;
pub(crate) use write_member;
