//! What every resource model shares: the [`FhirResource`] trait, reading a [`Resource`] of any
//! type in one pass, and [`RawResource`] for types FHIR R4 does not define.

use std::fmt;

use crate::json::{FromJson, PResult, Parser, RawJson, ToJson, Writer};
use crate::{Meta, ModelError, Resource};

/// A typed FHIR resource model (`Patient`, `Observation`...).
pub trait FhirResource:
    FromJson + ToJson + Clone + fmt::Debug + PartialEq + Send + Sync + Into<Resource> + 'static
{
    /// The resource type, such as `"Patient"`.
    const TYPE: &'static str;

    /// The logical id.
    fn id(&self) -> Option<&str>;

    /// The metadata (version, last update, profiles, tags).
    fn meta(&self) -> Option<&Meta>;

    /// The typed model inside `resource`, or `resource` back when it holds another type.
    fn from_resource(resource: Resource) -> Result<Self, Resource>;

    /// The typed model inside `resource`, when it holds this type.
    fn downcast_ref(resource: &Resource) -> Option<&Self>;
}

/// What a [`Resource`] can be converted into: a typed model (any [`FhirResource`]), or
/// `Resource` itself. Generic code that handles resources of a type named at compile time or
/// at run time (such as a page of search results) takes this bound.
pub trait FromResource: Sized {
    /// Converts `resource`, failing when it holds another type.
    fn convert(resource: Resource) -> Result<Self, ModelError>;
}

impl<T: FhirResource> FromResource for T {
    fn convert(resource: Resource) -> Result<Self, ModelError> {
        T::from_resource(resource).map_err(|other| {
            ModelError::at_path(
                ".",
                format_args!(
                    "expected resource type {}, found {}",
                    T::TYPE,
                    other.resource_type()
                ),
            )
        })
    }
}

impl FromResource for Resource {
    fn convert(resource: Resource) -> Result<Self, ModelError> {
        Ok(resource)
    }
}

/// A resource of a type FHIR R4 does not define (a newer version's type, or a vendor's), kept
/// as its JSON object.
#[derive(Clone, PartialEq)]
pub struct RawResource {
    resource_type: String,
    id: Option<String>,
    json: RawJson,
}

impl RawResource {
    /// Reads a resource object from JSON text; it must have a non-empty string `resourceType`.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        crate::from_str(text)
    }

    /// Makes a raw resource from a `serde_json` object with a `resourceType`.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ModelError> {
        crate::from_value(value)
    }

    /// The resource type.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The logical id, when the object has a string `id`.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The object's JSON text, exactly as read.
    pub fn json(&self) -> &RawJson {
        &self.json
    }

    /// The object as a `serde_json::Value`.
    pub fn to_value(&self) -> serde_json::Value {
        self.json.to_value().unwrap_or(serde_json::Value::Null)
    }

    /// The value of member `name` of the object.
    pub fn get(&self, name: &str) -> Option<RawJson> {
        let mut p = Parser::from_text(self.json.as_str());
        p.begin_object().ok()?;
        let mut first = true;
        while let Ok(Some(key)) = p.next_key(&mut first) {
            let value = p.raw_value().ok()?;
            if key == name {
                return RawJson::parse(value).ok();
            }
        }
        None
    }

    /// Reads the object at the parser's position, whose `resourceType` is known to be
    /// `resource_type`.
    fn read(p: &mut Parser<'_>, resource_type: &str) -> PResult<Self> {
        let text = p.raw_value()?;
        let mut inner = Parser::from_text(text);
        inner.begin_object()?;
        let mut first = true;
        let mut id = None;
        while let Some(key) = inner.next_key(&mut first)? {
            if key == "id" && inner.peek() == Some(b'"') {
                id = Some(inner.string()?);
            } else {
                inner.skip_value()?;
            }
        }
        Ok(RawResource {
            resource_type: resource_type.to_owned(),
            id,
            json: RawJson::parse(text).map_err(|_| p.error("invalid JSON"))?,
        })
    }
}

impl fmt::Debug for RawResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawResource")
            .field("resource_type", &self.resource_type)
            .field("id", &self.id)
            .field("json", &self.json)
            .finish()
    }
}

impl FromJson for RawResource {
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        let (start, depth) = (p.position(), p.depth());
        let resource_type = find_resource_type(p)?;
        p.rewind(start, depth);
        RawResource::read(p, &resource_type)
    }
}

impl ToJson for RawResource {
    fn write_json(&self, w: &mut Writer) {
        w.raw(self.json.as_str())
    }
}

/// Reads `resourceType`'s value as a non-empty string.
fn read_type_name(p: &mut Parser<'_>) -> PResult<String> {
    let start = p.position();
    if p.peek() != Some(b'"') {
        return Err(p
            .error("resourceType must be a string")
            .in_member("resourceType"));
    }
    let name = p.string().map_err(|e| e.in_member("resourceType"))?;
    if name.is_empty() {
        return Err(p
            .error_at(start, "resourceType is empty")
            .in_member("resourceType"));
    }
    Ok(name)
}

/// Scans the object at the parser's position for its `resourceType`, leaving the parser after
/// the object.
fn find_resource_type(p: &mut Parser<'_>) -> PResult<String> {
    p.begin_object()?;
    let mut first = true;
    let mut found = None;
    while let Some(key) = p.next_key(&mut first)? {
        if key == "resourceType" {
            if found.is_some() {
                return Err(p
                    .error("duplicate member `resourceType`")
                    .in_member("resourceType"));
            }
            found = Some(read_type_name(p)?);
        } else {
            p.skip_value()?;
        }
    }
    found.ok_or_else(|| p.error("missing member `resourceType`"))
}

impl FromJson for Resource {
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        let (start, depth) = (p.position(), p.depth());
        p.begin_object()?;
        let mut first = true;
        // Servers write `resourceType` first: then the object is read in one pass.
        if let Some(key) = p.next_key(&mut first)? {
            if key == "resourceType" {
                let resource_type = read_type_name(p)?;
                if let Some(resource) = Resource::read_typed(p, &resource_type, false, true)? {
                    return Ok(resource);
                }
                p.rewind(start, depth);
                return RawResource::read(p, &resource_type)
                    .map(|raw| Resource::Unknown(Box::new(raw)));
            }
        }
        // Otherwise find it first, then read the object again with the right model.
        p.rewind(start, depth);
        let resource_type = find_resource_type(p)?;
        p.rewind(start, depth);
        p.begin_object()?;
        if let Some(resource) = Resource::read_typed(p, &resource_type, true, false)? {
            return Ok(resource);
        }
        p.rewind(start, depth);
        RawResource::read(p, &resource_type).map(|raw| Resource::Unknown(Box::new(raw)))
    }
}

impl ToJson for Resource {
    fn write_json(&self, w: &mut Writer) {
        self.write_typed(w)
    }
}

impl Resource {
    /// The typed model inside, when it holds a `T`.
    ///
    /// ```
    /// use epic_fhir_model::{self as model, Patient, Resource};
    ///
    /// let resource: Resource = model::from_str(r#"{"resourceType":"Patient","id":"p1"}"#)?;
    /// assert_eq!(resource.downcast_ref::<Patient>().and_then(|p| p.id.as_deref()), Some("p1"));
    /// # Ok::<(), model::ModelError>(())
    /// ```
    pub fn downcast_ref<T: FhirResource>(&self) -> Option<&T> {
        T::downcast_ref(self)
    }

    /// The typed model inside, or the resource back when it holds another type.
    pub fn into_typed<T: FhirResource>(self) -> Result<T, Resource> {
        T::from_resource(self)
    }

    /// The raw JSON of a resource whose type FHIR R4 does not define.
    pub fn as_unknown(&self) -> Option<&RawResource> {
        match self {
            Resource::Unknown(raw) => Some(raw),
            _ => None,
        }
    }

    /// Whether this is a resource of type `T`.
    pub fn is<T: FhirResource>(&self) -> bool {
        self.resource_type() == T::TYPE
    }
}

impl From<RawResource> for Resource {
    /// Wraps a raw resource; a raw resource of an R4 type stays raw (use
    /// [`Resource::from_raw`] to type it).
    fn from(raw: RawResource) -> Self {
        Resource::Unknown(Box::new(raw))
    }
}

impl Resource {
    /// Reads a raw resource's JSON with the model of its type.
    pub fn from_raw(raw: &RawResource) -> Result<Resource, ModelError> {
        crate::from_str(raw.json.as_str())
    }
}
