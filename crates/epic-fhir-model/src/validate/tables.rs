//! The shapes of the generated definition tables (`generated/tables.rs`).

/// A FHIR primitive type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prim {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

impl Prim {
    /// The FHIR type code.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Prim::Base64Binary => "base64Binary",
            Prim::Boolean => "boolean",
            Prim::Canonical => "canonical",
            Prim::Code => "code",
            Prim::Date => "date",
            Prim::DateTime => "dateTime",
            Prim::Decimal => "decimal",
            Prim::Id => "id",
            Prim::Instant => "instant",
            Prim::Integer => "integer",
            Prim::Markdown => "markdown",
            Prim::Oid => "oid",
            Prim::PositiveInt => "positiveInt",
            Prim::String => "string",
            Prim::Time => "time",
            Prim::UnsignedInt => "unsignedInt",
            Prim::Uri => "uri",
            Prim::Url => "url",
            Prim::Uuid => "uuid",
            Prim::Xhtml => "xhtml",
        }
    }
}

/// What a value of an element is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeKind {
    /// A primitive, which may have a `_name` companion.
    Prim(Prim),
    /// `Element.id` or `Extension.url`: a string with no `_name` companion.
    Attribute,
    /// A complex datatype or backbone element: the index of its table.
    Complex(usize),
    /// Any resource.
    Resource,
}

/// One allowed type of an element.
#[derive(Debug)]
pub(crate) struct ElementType {
    /// For a choice element, the type's part of the member name (`Quantity` in
    /// `valueQuantity`); empty otherwise.
    pub(crate) suffix: &'static str,
    pub(crate) kind: TypeKind,
    /// For references: the resource types the reference may point at (empty: any).
    pub(crate) targets: &'static [&'static str],
}

/// One element of a type.
#[derive(Debug)]
pub(crate) struct ElementDef {
    /// The JSON member name; for a choice, its prefix (`value`).
    pub(crate) name: &'static str,
    pub(crate) min: u32,
    /// `u32::MAX` for `*`.
    pub(crate) max: u32,
    pub(crate) choice: bool,
    /// The index of its required binding's value set in `VALUE_SETS`, when its codes are
    /// listed there.
    pub(crate) binding: Option<usize>,
    pub(crate) types: &'static [ElementType],
}

/// What a type is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeRole {
    Resource,
    Datatype,
    Backbone,
}

/// A resource, datatype or backbone element with its elements.
#[derive(Debug)]
pub(crate) struct TypeDef {
    /// `Patient`, `Patient.contact`, `Quantity`.
    pub(crate) name: &'static str,
    pub(crate) role: TypeRole,
    pub(crate) elements: &'static [ElementDef],
}

/// A value set's codes with their systems, sorted by code.
#[derive(Debug)]
pub(crate) struct ValueSetDef {
    pub(crate) url: &'static str,
    pub(crate) codes: &'static [(&'static str, &'static str)],
}

impl ValueSetDef {
    /// Whether `code` is in the value set (in any of its systems).
    pub(crate) fn has_code(&self, code: &str) -> bool {
        self.codes.binary_search_by(|(c, _)| (*c).cmp(code)).is_ok()
    }

    /// Whether the value set has `code` in `system`.
    pub(crate) fn has_coding(&self, system: &str, code: &str) -> bool {
        let start = self.codes.partition_point(|(c, _)| *c < code);
        self.codes[start..]
            .iter()
            .take_while(|(c, _)| *c == code)
            .any(|(_, s)| *s == system)
    }

    /// Whether any code of the value set is in `system`.
    pub(crate) fn has_system(&self, system: &str) -> bool {
        self.codes.iter().any(|(_, s)| *s == system)
    }
}
