//! Reading HL7's definition Bundles into the few facts the generator needs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// What a StructureDefinition defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `string`, `date`...: a JSON primitive.
    Primitive,
    /// `HumanName`, `Quantity`...: a JSON object.
    Complex,
    /// `Patient`, `Observation`...
    Resource,
}

/// One StructureDefinition: a datatype or a resource.
#[derive(Clone, Debug)]
pub(crate) struct StructureDef {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) is_abstract: bool,
    /// The name of the type it specialises (`Quantity` for `Age`), if any.
    pub(crate) base: Option<String>,
    /// The definition's description (for the type's doc comment).
    pub(crate) description: String,
    /// The snapshot's elements, root first, in the specification's order.
    pub(crate) elements: Vec<ElementDef>,
}

/// One element of a snapshot.
#[derive(Clone, Debug)]
pub(crate) struct ElementDef {
    /// `Patient.contact.name`.
    pub(crate) path: String,
    pub(crate) min: u32,
    /// `None` for `*`.
    pub(crate) max: Option<u32>,
    pub(crate) types: Vec<TypeRef>,
    /// `#Questionnaire.item`, without the `#`.
    pub(crate) content_reference: Option<String>,
    /// A required binding's value set URL (without a version).
    pub(crate) required_binding: Option<String>,
    pub(crate) short: String,
    pub(crate) is_modifier: bool,
}

/// One allowed type of an element.
#[derive(Clone, Debug)]
pub(crate) struct TypeRef {
    /// The type code: `string`, `Reference`, `BackboneElement`, or
    /// `http://hl7.org/fhirpath/System.String` for attributes such as `Element.id`.
    pub(crate) code: String,
    /// For references and canonicals: the names of the allowed target types (empty for any).
    pub(crate) targets: Vec<String>,
}

/// One concept of a value set's expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Concept {
    pub(crate) system: String,
    pub(crate) code: String,
    pub(crate) display: Option<String>,
    pub(crate) definition: Option<String>,
}

/// A value set whose codes could be listed from the package.
#[derive(Clone, Debug)]
pub(crate) struct ValueSetDef {
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) title: Option<String>,
    pub(crate) concepts: Vec<Concept>,
}

/// Everything read from the definitions folder.
pub(crate) struct Definitions {
    pub(crate) structures: Vec<StructureDef>,
    /// Value sets by URL, only those whose concepts can be enumerated from the package.
    pub(crate) value_sets: BTreeMap<String, ValueSetDef>,
}

fn read_bundle(path: &Path) -> Result<Vec<Value>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bundle: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let entries = bundle["entry"]
        .as_array()
        .ok_or_else(|| format!("{} has no entries", path.display()))?;
    Ok(entries
        .iter()
        .map(|entry| entry["resource"].clone())
        .collect())
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Reads the three Bundles from `dir`.
pub(crate) fn load(dir: &Path) -> Result<Definitions, String> {
    let mut structures = Vec::new();
    for file in ["profiles-types.json.gz", "profiles-resources.json.gz"] {
        for resource in read_bundle(&dir.join(file))? {
            if resource["resourceType"] != "StructureDefinition" {
                continue;
            }
            if let Some(def) = structure(&resource)? {
                structures.push(def);
            }
        }
    }
    let mut code_systems = BTreeMap::new();
    let mut value_set_json = BTreeMap::new();
    for resource in read_bundle(&dir.join("valuesets.json.gz"))? {
        let Some(url) = text(&resource, "url") else {
            continue;
        };
        match resource["resourceType"].as_str() {
            Some("CodeSystem") => {
                code_systems.insert(url, resource);
            }
            Some("ValueSet") => {
                value_set_json.insert(url, resource);
            }
            _ => {}
        }
    }
    let mut value_sets = BTreeMap::new();
    for (url, vs) in &value_set_json {
        if let Some(concepts) = expand(vs, &code_systems, &value_set_json, 0) {
            value_sets.insert(
                url.clone(),
                ValueSetDef {
                    url: url.clone(),
                    name: text(vs, "name").unwrap_or_default(),
                    title: text(vs, "title"),
                    concepts,
                },
            );
        }
    }
    Ok(Definitions {
        structures,
        value_sets,
    })
}

fn structure(sd: &Value) -> Result<Option<StructureDef>, String> {
    let name = text(sd, "name").ok_or("a StructureDefinition without a name")?;
    // Profiles (constraints such as SimpleQuantity) are not types of their own.
    if sd["derivation"] == "constraint" {
        return Ok(None);
    }
    let kind = match sd["kind"].as_str() {
        Some("primitive-type") => Kind::Primitive,
        Some("complex-type") => Kind::Complex,
        Some("resource") => Kind::Resource,
        // Logical models are not wire formats.
        _ => return Ok(None),
    };
    let base = text(sd, "baseDefinition").and_then(|url| url.rsplit('/').next().map(str::to_owned));
    let mut elements = Vec::new();
    for element in sd["snapshot"]["element"]
        .as_array()
        .ok_or_else(|| format!("{name} has no snapshot"))?
    {
        elements.push(element_def(element)?);
    }
    Ok(Some(StructureDef {
        name,
        kind,
        is_abstract: sd["abstract"].as_bool().unwrap_or(false),
        base,
        description: text(sd, "description").unwrap_or_default(),
        elements,
    }))
}

fn element_def(element: &Value) -> Result<ElementDef, String> {
    let path = text(element, "path").ok_or("an element without a path")?;
    let min = element["min"].as_u64().unwrap_or(0) as u32;
    let max = match element["max"].as_str() {
        Some("*") => None,
        Some(number) => Some(
            number
                .parse()
                .map_err(|_| format!("{path}: max `{number}` is not a number"))?,
        ),
        None => Some(1),
    };
    let mut types = Vec::new();
    for t in element["type"].as_array().into_iter().flatten() {
        let code = text(t, "code").ok_or_else(|| format!("{path}: a type without a code"))?;
        let targets = t["targetProfile"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|url| url.rsplit('/').next())
            .map(str::to_owned)
            .collect();
        types.push(TypeRef { code, targets });
    }
    let required_binding = match &element["binding"] {
        binding @ Value::Object(_) if binding["strength"] == "required" => binding["valueSet"]
            .as_str()
            .map(|url| url.split('|').next().unwrap_or(url).to_owned()),
        _ => None,
    };
    Ok(ElementDef {
        content_reference: text(element, "contentReference")
            .map(|r| r.trim_start_matches('#').to_owned()),
        min,
        max,
        types,
        required_binding,
        short: text(element, "short").unwrap_or_default(),
        is_modifier: element["isModifier"].as_bool().unwrap_or(false),
        path,
    })
}

/// Lists a value set's concepts, when every part of it can be listed from the package: whole
/// code systems with complete content, listed concepts, and other value sets of that kind.
fn expand(
    vs: &Value,
    code_systems: &BTreeMap<String, Value>,
    value_sets: &BTreeMap<String, Value>,
    depth: u32,
) -> Option<Vec<Concept>> {
    if depth > 8 {
        return None;
    }
    let compose = vs.get("compose")?;
    if compose.get("exclude").is_some() {
        return None;
    }
    let mut out: Vec<Concept> = Vec::new();
    for include in compose["include"].as_array()? {
        if include.get("filter").is_some() {
            return None;
        }
        for url in include["valueSet"].as_array().into_iter().flatten() {
            let url = url.as_str()?.split('|').next()?;
            out.extend(expand(
                value_sets.get(url)?,
                code_systems,
                value_sets,
                depth + 1,
            )?);
        }
        let Some(system) = include["system"].as_str() else {
            continue;
        };
        if let Some(concepts) = include["concept"].as_array() {
            let cs = code_systems.get(system);
            for concept in concepts {
                let code = text(concept, "code")?;
                let (display, definition) = match cs.and_then(|cs| find_concept(cs, &code)) {
                    Some(found) => (text(found, "display"), text(found, "definition")),
                    None => (None, None),
                };
                out.push(Concept {
                    system: system.to_owned(),
                    display: text(concept, "display").or(display),
                    definition,
                    code,
                });
            }
        } else {
            let cs = code_systems.get(system)?;
            if cs["content"] != "complete" {
                return None;
            }
            collect_concepts(system, cs["concept"].as_array()?, &mut out);
        }
    }
    // A code listed twice (by two includes) is one concept.
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|c| seen.insert((c.system.clone(), c.code.clone())));
    (!out.is_empty()).then_some(out)
}

fn collect_concepts(system: &str, concepts: &[Value], out: &mut Vec<Concept>) {
    for concept in concepts {
        if let Some(code) = text(concept, "code") {
            out.push(Concept {
                system: system.to_owned(),
                code,
                display: text(concept, "display"),
                definition: text(concept, "definition"),
            });
        }
        if let Some(children) = concept["concept"].as_array() {
            collect_concepts(system, children, out);
        }
    }
}

fn find_concept<'a>(cs: &'a Value, code: &str) -> Option<&'a Value> {
    fn walk<'a>(concepts: &'a [Value], code: &str) -> Option<&'a Value> {
        for concept in concepts {
            if concept["code"] == code {
                return Some(concept);
            }
            if let Some(found) = concept["concept"].as_array().and_then(|c| walk(c, code)) {
                return Some(found);
            }
        }
        None
    }
    walk(cs["concept"].as_array()?, code)
}
