//! The generator's view of the specification: Rust structs, choice enums and code enums,
//! with their names decided, before any text is written.

use std::collections::{BTreeMap, BTreeSet};

use crate::load::{Concept, Definitions, ElementDef, Kind, StructureDef, ValueSetDef};

/// A FHIR primitive type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
    pub(crate) fn from_code(code: &str) -> Option<Prim> {
        Some(match code {
            "base64Binary" => Prim::Base64Binary,
            "boolean" => Prim::Boolean,
            "canonical" => Prim::Canonical,
            "code" => Prim::Code,
            "date" => Prim::Date,
            "dateTime" => Prim::DateTime,
            "decimal" => Prim::Decimal,
            "id" => Prim::Id,
            "instant" => Prim::Instant,
            "integer" => Prim::Integer,
            "markdown" => Prim::Markdown,
            "oid" => Prim::Oid,
            "positiveInt" => Prim::PositiveInt,
            "string" => Prim::String,
            "time" => Prim::Time,
            "unsignedInt" => Prim::UnsignedInt,
            "uri" => Prim::Uri,
            "url" => Prim::Url,
            "uuid" => Prim::Uuid,
            "xhtml" => Prim::Xhtml,
            _ => return None,
        })
    }

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

    /// The Rust type that holds a value of this primitive.
    pub(crate) fn rust_type(self) -> &'static str {
        match self {
            Prim::Boolean => "bool",
            Prim::Integer => "i32",
            Prim::PositiveInt | Prim::UnsignedInt => "u32",
            Prim::Decimal => "Decimal",
            Prim::Date => "Date",
            Prim::DateTime => "DateTime",
            Prim::Instant => "Instant",
            Prim::Time => "Time",
            _ => "String",
        }
    }

    /// The variant name of the validator's `Prim` enum.
    pub(crate) fn variant(self) -> String {
        upper_camel(self.code())
    }
}

/// What a struct stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StructKind {
    Resource,
    Datatype,
    Backbone,
}

/// The type of a field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FieldType {
    /// `Element.id`, `Extension.url`: a plain string with no `_name` extension member.
    Attribute,
    /// A primitive; `code_enum` names the generated enum of a required binding.
    Primitive {
        prim: Prim,
        code_enum: Option<String>,
    },
    /// A complex datatype or a backbone element, by Rust name.
    Struct(String),
    /// Any resource (`contained`, `Bundle.entry.resource`).
    Resource,
    /// A choice element, by enum name.
    Choice(String),
}

/// One field of a generated struct.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// The JSON member name; for a choice, its prefix (`value`).
    pub(crate) json: String,
    /// The Rust field name (raw identifiers included, such as `r#type`).
    pub(crate) rust: String,
    pub(crate) min: u32,
    pub(crate) max: Option<u32>,
    pub(crate) ty: FieldType,
    pub(crate) short: String,
    /// Whether a single value is boxed (to break a cycle of inline types).
    pub(crate) boxed: bool,
    /// A required binding's value set URL, also for value sets without an enum.
    pub(crate) binding: Option<String>,
    /// For references: the allowed target types (empty: any).
    pub(crate) targets: Vec<String>,
    pub(crate) is_modifier: bool,
}

impl Field {
    /// Whether the field holds a list.
    pub(crate) fn is_list(&self) -> bool {
        self.max != Some(1)
    }

    /// Whether a missing value makes the typed model fail: single complex and choice elements
    /// with `min` 1. Primitives stay optional, since a primitive may legally carry only an
    /// extension in place of its value.
    pub(crate) fn is_required_value(&self) -> bool {
        self.min >= 1
            && !self.is_list()
            && matches!(
                self.ty,
                FieldType::Struct(_)
                    | FieldType::Choice(_)
                    | FieldType::Resource
                    | FieldType::Attribute
            )
    }

    /// Whether the field has a companion `_name` member for primitive extensions.
    pub(crate) fn has_extension_slot(&self) -> bool {
        matches!(self.ty, FieldType::Primitive { .. })
    }
}

/// A generated struct: a datatype, a resource or a backbone element.
#[derive(Clone, Debug)]
pub(crate) struct Struct {
    pub(crate) name: String,
    /// `Patient`, `Patient.contact`.
    pub(crate) path: String,
    pub(crate) kind: StructKind,
    pub(crate) doc: String,
    pub(crate) fields: Vec<Field>,
    /// The file the struct is written to (`datatypes` or a resource's snake-case name).
    pub(crate) module: String,
    pub(crate) derives_default: bool,
}

/// One variant of a choice enum.
#[derive(Clone, Debug)]
pub(crate) struct Variant {
    /// The FHIR type code (`Quantity`, `dateTime`).
    pub(crate) code: String,
    /// `Quantity`, `DateTime`.
    pub(crate) rust: String,
    /// `valueQuantity`.
    pub(crate) json: String,
    /// The Rust type of the payload.
    pub(crate) ty: String,
    pub(crate) prim: Option<Prim>,
    pub(crate) boxed: bool,
    /// For references: the allowed target types.
    pub(crate) targets: Vec<String>,
}

/// A choice element's enum.
#[derive(Clone, Debug)]
pub(crate) struct Choice {
    pub(crate) name: String,
    /// The element path, such as `Observation.value[x]`.
    pub(crate) path: String,
    pub(crate) prefix: String,
    pub(crate) variants: Vec<Variant>,
    pub(crate) module: String,
}

/// An enum for the codes of a required binding.
#[derive(Clone, Debug)]
pub(crate) struct CodeEnum {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) title: String,
    /// (variant name, concept), in the value set's order.
    pub(crate) variants: Vec<(String, Concept)>,
}

/// A datatype that is another one by another name (`Age` is a `Quantity`).
#[derive(Clone, Debug)]
pub(crate) struct Alias {
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) doc: String,
}

/// Everything the emitters write.
pub(crate) struct Model {
    pub(crate) structs: Vec<Struct>,
    pub(crate) choices: Vec<Choice>,
    pub(crate) codes: Vec<CodeEnum>,
    pub(crate) aliases: Vec<Alias>,
    /// Concrete resource names, sorted.
    pub(crate) resources: Vec<String>,
}

impl Model {
    pub(crate) fn struct_named(&self, name: &str) -> Option<&Struct> {
        self.structs.iter().find(|s| s.name == name)
    }
}

/// `referenceRange` → `ReferenceRange`.
pub(crate) fn upper_camel(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
    "static", "struct", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

/// `birthDate` → `birth_date`; keywords become raw identifiers.
pub(crate) fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) => {
                    p.is_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
                }
                None => false,
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    if matches!(out.as_str(), "self" | "super" | "crate") {
        panic!("`{name}` cannot be a Rust identifier");
    }
    if KEYWORDS.contains(&out.as_str()) {
        format!("r#{out}")
    } else {
        out
    }
}

/// The Rust name of the struct for a backbone element path: `Patient.contact` → `PatientContact`.
fn path_name(path: &str) -> String {
    path.split('.').map(upper_camel).collect()
}

/// Builds the model from the definitions.
pub(crate) fn build(defs: &Definitions) -> Model {
    let by_name: BTreeMap<&str, &StructureDef> = defs
        .structures
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();

    // Datatypes that only rename another one without changing its elements become aliases.
    let mut aliases = Vec::new();
    let mut complex = Vec::new();
    for sd in &defs.structures {
        if sd.kind != Kind::Complex || matches!(sd.name.as_str(), "Element" | "BackboneElement") {
            continue;
        }
        let base = sd.base.as_deref().and_then(|b| by_name.get(b));
        match base {
            Some(base) if base.kind == Kind::Complex && same_elements(sd, base) => {
                aliases.push(Alias {
                    name: sd.name.clone(),
                    target: base.name.clone(),
                    doc: sd.description.clone(),
                });
            }
            _ => complex.push(sd),
        }
    }
    let mut resources: Vec<&StructureDef> = defs
        .structures
        .iter()
        .filter(|s| s.kind == Kind::Resource && !s.is_abstract)
        .collect();
    resources.sort_by(|a, b| a.name.cmp(&b.name));

    // Code enums, one per required-binding value set that can be listed.
    let mut codes = Vec::new();
    let mut code_names: BTreeMap<String, String> = BTreeMap::new();
    let type_names: BTreeSet<String> = defs.structures.iter().map(|s| s.name.clone()).collect();
    let mut bound: BTreeSet<String> = BTreeSet::new();
    for sd in complex.iter().copied().chain(resources.iter().copied()) {
        for element in &sd.elements {
            if let Some(url) = &element.required_binding {
                let code_like =
                    element.types.len() == 1 && matches!(element.types[0].code.as_str(), "code");
                if code_like {
                    bound.insert(url.clone());
                }
            }
        }
    }
    let mut used_names: BTreeSet<String> = type_names.clone();
    for url in &bound {
        let Some(vs) = defs.value_sets.get(url) else {
            continue;
        };
        let mut name = sanitize_type_name(&vs.name);
        if used_names.contains(&name) {
            name.push_str("Code");
        }
        let mut n = 2;
        let base = name.clone();
        while used_names.contains(&name) {
            name = format!("{base}{n}");
            n += 1;
        }
        used_names.insert(name.clone());
        code_names.insert(url.clone(), name.clone());
        codes.push(code_enum(name, vs));
    }

    let mut structs = Vec::new();
    let mut choices = Vec::new();
    for sd in &complex {
        lower_type(
            sd,
            "datatypes",
            StructKind::Datatype,
            &code_names,
            &mut structs,
            &mut choices,
        );
    }
    for sd in &resources {
        let module = snake(&sd.name).trim_start_matches("r#").to_owned();
        lower_type(
            sd,
            &module,
            StructKind::Resource,
            &code_names,
            &mut structs,
            &mut choices,
        );
    }
    // Element: the base of every datatype, which primitive extensions use.
    structs.push(Struct {
        name: "Element".into(),
        path: "Element".into(),
        kind: StructKind::Datatype,
        doc: "Base definition for all elements: here, the `id` and `extension` of a primitive \
              value, written as the `_name` member beside it."
            .into(),
        fields: vec![
            attribute_id("Element"),
            extension_field("Element", "extension", false),
        ],
        module: "datatypes".into(),
        derives_default: true,
    });

    let mut names = BTreeSet::new();
    for name in structs
        .iter()
        .map(|s| &s.name)
        .chain(choices.iter().map(|c| &c.name))
        .chain(codes.iter().map(|c| &c.name))
        .chain(aliases.iter().map(|a| &a.name))
    {
        assert!(
            names.insert(name.clone()),
            "two generated types are named {name}"
        );
    }

    let mut model = Model {
        structs,
        choices,
        codes,
        aliases,
        resources: resources.iter().map(|s| s.name.clone()).collect(),
    };
    resolve_aliases(&mut model);
    decide_boxes(&mut model);
    decide_size_boxes(&mut model);
    decide_defaults(&mut model);
    model
}

fn sanitize_type_name(name: &str) -> String {
    let cleaned: String = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(upper_camel)
        .collect();
    if cleaned.starts_with(|c: char| c.is_ascii_digit()) {
        format!("Codes{cleaned}")
    } else {
        cleaned
    }
}

fn same_elements(a: &StructureDef, b: &StructureDef) -> bool {
    let strip = |sd: &StructureDef| -> Vec<(String, u32, Option<u32>, Vec<String>)> {
        sd.elements
            .iter()
            .skip(1)
            .map(|e| {
                (
                    e.path
                        .split_once('.')
                        .map(|(_, rest)| rest.to_owned())
                        .unwrap_or_default(),
                    e.min,
                    e.max,
                    e.types.iter().map(|t| t.code.clone()).collect(),
                )
            })
            .collect()
    };
    strip(a) == strip(b)
}

fn code_enum(name: String, vs: &ValueSetDef) -> CodeEnum {
    let mut variants: Vec<(String, Concept)> = Vec::new();
    let mut taken = BTreeSet::new();
    for (index, concept) in vs.concepts.iter().enumerate() {
        let mut variant = variant_name(&concept.code)
            .or_else(|| concept.display.as_deref().and_then(variant_name))
            .unwrap_or_else(|| format!("Code{index}"));
        if variant == "Unrecognized" || variant == "Self" {
            variant.push_str("Code");
        }
        let base = variant.clone();
        let mut n = 2;
        while taken.contains(&variant) {
            variant = format!("{base}{n}");
            n += 1;
        }
        taken.insert(variant.clone());
        variants.push((variant, concept.clone()));
    }
    CodeEnum {
        name,
        url: vs.url.clone(),
        title: vs.title.clone().unwrap_or_else(|| vs.name.clone()),
        variants,
    }
}

/// `entered-in-error` → `EnteredInError`, `1.0.2` → `V1_0_2`; `None` for codes made of symbols.
fn variant_name(code: &str) -> Option<String> {
    let parts: Vec<&str> = code
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return None;
    }
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let digits = part.starts_with(|c: char| c.is_ascii_digit());
        if i > 0 && digits && out.ends_with(|c: char| c.is_ascii_digit()) {
            out.push('_');
        }
        // All-capital codes (`AMB`, `EMER`) read better as `Amb` only when long; keep them.
        out.push_str(&upper_camel(part));
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    Some(out)
}

fn attribute_id(owner: &str) -> Field {
    Field {
        json: "id".into(),
        rust: "id".into(),
        min: 0,
        max: Some(1),
        ty: FieldType::Attribute,
        short: format!("Unique id for inter-element referencing in this {owner}"),
        boxed: false,
        binding: None,
        targets: Vec::new(),
        is_modifier: false,
    }
}

fn extension_field(owner: &str, json: &str, modifier: bool) -> Field {
    Field {
        json: json.into(),
        rust: snake(json),
        min: 0,
        max: None,
        ty: FieldType::Struct("Extension".into()),
        short: if modifier {
            format!("Extensions on this {owner} that cannot be ignored")
        } else {
            format!("Additional content defined by implementations, on this {owner}")
        },
        boxed: false,
        binding: None,
        targets: Vec::new(),
        is_modifier: modifier,
    }
}

/// Lowers one StructureDefinition into its struct, backbone structs and choice enums.
fn lower_type(
    sd: &StructureDef,
    module: &str,
    kind: StructKind,
    code_names: &BTreeMap<String, String>,
    structs: &mut Vec<Struct>,
    choices: &mut Vec<Choice>,
) {
    // Children of each path, in snapshot order.
    let mut children: BTreeMap<&str, Vec<&ElementDef>> = BTreeMap::new();
    for element in sd.elements.iter().skip(1) {
        if let Some((parent, _)) = element.path.rsplit_once('.') {
            children.entry(parent).or_default().push(element);
        }
    }
    let root = &sd.elements[0];
    let mut queue: Vec<(String, StructKind, String)> =
        vec![(root.path.clone(), kind, sd.description.clone())];
    while let Some((path, kind, doc)) = queue.pop() {
        let struct_name = if path == sd.name {
            sd.name.clone()
        } else {
            path_name(&path)
        };
        let mut fields = Vec::new();
        for element in children.get(path.as_str()).into_iter().flatten() {
            let name = element.path.rsplit('.').next().unwrap_or_default();
            let (json, is_choice) = match name.strip_suffix("[x]") {
                Some(prefix) => (prefix.to_owned(), true),
                None => (name.to_owned(), false),
            };
            let mut field = Field {
                rust: snake(&json),
                json: json.clone(),
                min: element.min,
                max: element.max,
                ty: FieldType::Attribute,
                short: element.short.clone(),
                boxed: false,
                binding: element.required_binding.clone(),
                targets: Vec::new(),
                is_modifier: element.is_modifier,
            };
            if let Some(reference) = &element.content_reference {
                field.ty = FieldType::Struct(path_name(reference));
            } else if is_choice {
                let enum_name = format!("{struct_name}{}", upper_camel(&json));
                let variants = element
                    .types
                    .iter()
                    .map(|t| {
                        let prim = Prim::from_code(&t.code);
                        let rust = upper_camel(&t.code);
                        Variant {
                            json: format!("{json}{rust}"),
                            ty: match prim {
                                Some(p) => p.rust_type().to_owned(),
                                None => t.code.clone(),
                            },
                            code: t.code.clone(),
                            rust,
                            prim,
                            boxed: false,
                            targets: t.targets.clone(),
                        }
                    })
                    .collect();
                choices.push(Choice {
                    name: enum_name.clone(),
                    path: element.path.clone(),
                    prefix: json.clone(),
                    variants,
                    module: module.to_owned(),
                });
                field.ty = FieldType::Choice(enum_name);
            } else {
                let code = element.types.first().map(|t| t.code.as_str()).unwrap_or("");
                field.targets = element
                    .types
                    .first()
                    .map(|t| t.targets.clone())
                    .unwrap_or_default();
                field.ty = match code {
                    "http://hl7.org/fhirpath/System.String" => {
                        // `Resource.id` is an `id` primitive (it may carry `_id`); `Element.id`
                        // and `Extension.url` are attributes.
                        if kind == StructKind::Resource && json == "id" {
                            FieldType::Primitive {
                                prim: Prim::Id,
                                code_enum: None,
                            }
                        } else {
                            FieldType::Attribute
                        }
                    }
                    "BackboneElement" | "Element" => {
                        let child = element.path.clone();
                        queue.push((child.clone(), StructKind::Backbone, element.short.clone()));
                        FieldType::Struct(path_name(&child))
                    }
                    "Resource" => FieldType::Resource,
                    other => match Prim::from_code(other) {
                        Some(prim) => FieldType::Primitive {
                            prim,
                            code_enum: if prim == Prim::Code {
                                element
                                    .required_binding
                                    .as_ref()
                                    .and_then(|url| code_names.get(url).cloned())
                            } else {
                                None
                            },
                        },
                        None => FieldType::Struct(other.to_owned()),
                    },
                };
            }
            fields.push(field);
        }
        // Datatypes' own `Element.id` types are attributes; a resource's `id` was handled above.
        let mut seen = BTreeSet::new();
        for f in &fields {
            assert!(
                seen.insert(f.rust.clone()),
                "{path}: two fields named {}",
                f.rust
            );
            if f.has_extension_slot() {
                assert!(
                    seen.insert(format!("{}_ext", f.rust.trim_start_matches("r#"))),
                    "{path}: a field collides with {}_ext",
                    f.rust
                );
            }
        }
        structs.push(Struct {
            name: struct_name,
            path: path.clone(),
            kind,
            doc,
            fields,
            module: module.to_owned(),
            derives_default: false,
        });
    }
}

/// Points fields and variants at alias targets where the alias has no struct of its own.
fn resolve_aliases(model: &mut Model) {
    // Alias names stay as the Rust type names (`Age` is `pub type Age = Quantity`), so
    // nothing changes in fields; this only checks that every named type exists.
    let known: BTreeSet<String> = model
        .structs
        .iter()
        .map(|s| s.name.clone())
        .chain(model.aliases.iter().map(|a| a.name.clone()))
        .collect();
    for s in &model.structs {
        for f in &s.fields {
            if let FieldType::Struct(t) = &f.ty {
                assert!(
                    known.contains(t),
                    "{}.{} has unknown type {t}",
                    s.path,
                    f.json
                );
            }
        }
    }
    for c in &model.choices {
        for v in &c.variants {
            if v.prim.is_none() && v.code != "Resource" {
                assert!(
                    known.contains(&v.ty),
                    "{} has unknown type {}",
                    c.path,
                    v.ty
                );
            }
        }
    }
}

/// The struct an alias or struct name stands for.
pub(crate) fn concrete<'a>(model: &'a Model, name: &'a str) -> &'a str {
    model
        .aliases
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.target.as_str())
        .unwrap_or(name)
}

/// Boxes the single-valued fields and choice variants that would otherwise make a type
/// contain itself.
fn decide_boxes(model: &mut Model) {
    // Nodes: structs and choice enums. Edges: inline (single, unboxed) containment.
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for s in &model.structs {
        let n = index.len();
        index.insert(s.name.clone(), n);
    }
    for c in &model.choices {
        let n = index.len();
        index.insert(c.name.clone(), n);
    }
    let node_of =
        |model: &Model, name: &str| -> Option<usize> { index.get(concrete(model, name)).copied() };
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); index.len()];
    for s in &model.structs {
        let from = index[&s.name];
        for f in &s.fields {
            if f.is_list() {
                continue;
            }
            let target = match &f.ty {
                FieldType::Struct(t) | FieldType::Choice(t) => node_of(model, t),
                _ => None,
            };
            if let Some(to) = target {
                edges[from].push(to);
            }
        }
    }
    for c in &model.choices {
        let from = index[&c.name];
        for v in &c.variants {
            if v.prim.is_none() && !v.boxed {
                if let Some(to) = index.get(&concrete_name(&model.aliases, &v.ty)) {
                    edges[from].push(*to);
                }
            }
        }
    }
    let scc = tarjan(&edges);
    let same = |a: usize, b: usize| scc[a] == scc[b];
    for s in &mut model.structs {
        let from = index[&s.name];
        for f in &mut s.fields {
            if f.is_list() {
                continue;
            }
            if let FieldType::Struct(t) | FieldType::Choice(t) = &f.ty {
                if let Some(&to) = index.get(&concrete_name(&model.aliases, t)) {
                    if same(from, to) {
                        f.boxed = true;
                    }
                }
            }
        }
    }
    for c in &mut model.choices {
        let from = index[&c.name];
        for v in &mut c.variants {
            if v.prim.is_none() && !v.boxed {
                if let Some(&to) = index.get(&concrete_name(&model.aliases, &v.ty)) {
                    if same(from, to) {
                        v.boxed = true;
                    }
                }
            }
        }
    }
}

/// Values larger than this (in bytes, as estimated) are boxed where a single one is held, so
/// that a resource stays a few kilobytes and a choice or extension holds no large type inline.
const INLINE_MAX_BYTES: usize = 256;

/// The estimated size of a field's value held inline (before Option), in bytes.
fn inline_size(model: &Model, sizes: &mut BTreeMap<String, usize>, f: &Field) -> usize {
    if f.is_list() {
        return 24;
    }
    match &f.ty {
        FieldType::Attribute => 24,
        FieldType::Resource => 16,
        FieldType::Primitive { prim, code_enum } => {
            let value = if code_enum.is_some() {
                24
            } else {
                match prim {
                    Prim::Boolean => 1,
                    Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt => 8,
                    Prim::Decimal => 16,
                    Prim::Date | Prim::DateTime | Prim::Instant => 48,
                    _ => 24,
                }
            };
            // The `_name` slot beside it.
            value + 8
        }
        FieldType::Struct(t) | FieldType::Choice(t) => {
            if f.boxed {
                8
            } else {
                type_size(model, sizes, t) + 8
            }
        }
    }
}

/// The estimated size of struct or choice `name` as it is now boxed, in bytes.
fn type_size(model: &Model, sizes: &mut BTreeMap<String, usize>, name: &str) -> usize {
    let name = concrete_name(&model.aliases, name);
    if let Some(&size) = sizes.get(&name) {
        return size;
    }
    let size = if let Some(s) = model.structs.iter().find(|s| s.name == name) {
        let fields: Vec<Field> = s.fields.clone();
        24 + fields
            .iter()
            .map(|f| inline_size(model, sizes, f))
            .sum::<usize>()
    } else if let Some(c) = model.choices.iter().find(|c| c.name == name) {
        let variants = c.variants.clone();
        8 + variants
            .iter()
            .map(|v| match v.prim {
                Some(Prim::Boolean) => 1,
                Some(Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt) => 4,
                Some(Prim::Decimal) => 16,
                Some(Prim::Date | Prim::DateTime | Prim::Instant) => 48,
                Some(_) => 24,
                None if v.boxed => 8,
                None => type_size(model, sizes, &v.ty),
            })
            .max()
            .unwrap_or(0)
    } else {
        24
    };
    sizes.insert(name, size);
    size
}

/// Boxes single values of large types (after `decide_boxes` broke every cycle, the inline
/// graph is acyclic, so sizes are computed bottom-up).
fn decide_size_boxes(model: &mut Model) {
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    // Visit types children first: a type's size depends only on its inline parts.
    let names: Vec<String> = model
        .structs
        .iter()
        .map(|s| s.name.clone())
        .chain(model.choices.iter().map(|c| c.name.clone()))
        .collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    fn visit(
        model: &mut Model,
        sizes: &mut BTreeMap<String, usize>,
        done: &mut BTreeSet<String>,
        name: &str,
    ) {
        let name = concrete_name(&model.aliases, name);
        if !done.insert(name.clone()) {
            return;
        }
        let children: Vec<String> = if let Some(s) = model.structs.iter().find(|s| s.name == name) {
            s.fields
                .iter()
                .filter(|f| !f.is_list() && !f.boxed)
                .filter_map(|f| match &f.ty {
                    FieldType::Struct(t) | FieldType::Choice(t) => Some(t.clone()),
                    _ => None,
                })
                .collect()
        } else if let Some(c) = model.choices.iter().find(|c| c.name == name) {
            c.variants
                .iter()
                .filter(|v| v.prim.is_none() && !v.boxed)
                .map(|v| v.ty.clone())
                .collect()
        } else {
            Vec::new()
        };
        for child in &children {
            visit(model, sizes, done, child);
        }
        // Decide this type's boxes now that its parts are final.
        let mut child_sizes: BTreeMap<String, usize> = BTreeMap::new();
        for child in &children {
            let size = type_size(model, sizes, child);
            child_sizes.insert(concrete_name(&model.aliases, child), size);
        }
        if let Some(s) = model.structs.iter_mut().find(|s| s.name == name) {
            for f in &mut s.fields {
                if f.is_list() || f.boxed {
                    continue;
                }
                if let FieldType::Struct(t) | FieldType::Choice(t) = &f.ty {
                    let key = concrete_name(&model.aliases, t);
                    if child_sizes
                        .get(&key)
                        .is_some_and(|&size| size > INLINE_MAX_BYTES)
                    {
                        f.boxed = true;
                    }
                }
            }
        } else if let Some(c) = model.choices.iter_mut().find(|c| c.name == name) {
            for v in &mut c.variants {
                if v.prim.is_none() && !v.boxed {
                    let key = concrete_name(&model.aliases, &v.ty);
                    if child_sizes
                        .get(&key)
                        .is_some_and(|&size| size > INLINE_MAX_BYTES)
                    {
                        v.boxed = true;
                    }
                }
            }
        }
        sizes.remove(&name);
    }
    for name in names {
        visit(model, &mut sizes, &mut done, &name);
    }
}

pub(crate) fn concrete_name(aliases: &[Alias], name: &str) -> String {
    aliases
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.target.clone())
        .unwrap_or_else(|| name.to_owned())
}

/// Strongly connected components (Tarjan); returns the component of each node.
fn tarjan(edges: &[Vec<usize>]) -> Vec<usize> {
    struct State<'a> {
        edges: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        comp: Vec<usize>,
        comps: usize,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.edges[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                s.comp[w] = s.comps;
                if w == v {
                    break;
                }
            }
            s.comps += 1;
        }
    }
    let n = edges.len();
    let mut s = State {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        comp: vec![0; n],
        comps: 0,
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    // A node with an edge to itself is its own cycle: give it a component shared with nothing
    // else but make `same` true for the self edge, which it already is.
    s.comp
}

/// A struct derives `Default` when every required field's type has one.
fn decide_defaults(model: &mut Model) {
    let mut has_default: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut changed = false;
        for s in &model.structs {
            if has_default.contains(&s.name) {
                continue;
            }
            let ok = s.fields.iter().all(|f| {
                if !f.is_required_value() {
                    return true;
                }
                match &f.ty {
                    FieldType::Struct(t) => has_default.contains(&concrete_name(&model.aliases, t)),
                    FieldType::Attribute => true,
                    _ => false,
                }
            });
            if ok {
                has_default.insert(s.name.clone());
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for s in &mut model.structs {
        s.derives_default = has_default.contains(&s.name);
    }
}
