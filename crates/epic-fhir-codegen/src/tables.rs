//! The validator's view of the specification: one table per type with each element's
//! cardinality, allowed types, required binding and reference targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::emit::HEADER;
use crate::ir::{Field, FieldType, Model, Prim, StructKind, concrete};
use crate::load::ValueSetDef;

fn prim_kind(prim: Prim) -> String {
    format!("TypeKind::Prim(Prim::{})", prim.variant())
}

/// The generated `tables.rs`.
pub(crate) fn emit(model: &Model, value_sets: &BTreeMap<String, ValueSetDef>) -> String {
    let mut out = String::from(HEADER);
    out.push_str(
        "\n//! The definitions the validator checks against: every type's elements with their\n\
         //! cardinality, types, required binding and reference targets.\n\n\
         use crate::rt;\n\
         use crate::validate::tables::{ElementDef, ElementType, Prim, TypeDef, TypeKind, TypeRole, ValueSetDef};\n\n",
    );
    // Type indexes: every struct, in model order.
    let index: BTreeMap<&str, usize> = model
        .structs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let type_index = |name: &str| -> usize {
        let name = concrete(model, name);
        *index
            .get(name)
            .unwrap_or_else(|| panic!("no table for type {name}"))
    };

    // Value sets used by required bindings that can be listed.
    let mut bound: Vec<&str> = Vec::new();
    for s in &model.structs {
        for f in &s.fields {
            if let Some(url) = &f.binding {
                if value_sets.contains_key(url) && !bound.contains(&url.as_str()) {
                    bound.push(url);
                }
            }
        }
    }
    bound.sort();
    let vs_index: BTreeMap<&str, usize> = bound.iter().enumerate().map(|(i, u)| (*u, i)).collect();
    let _ = writeln!(
        out,
        "pub(crate) static VALUE_SETS: [ValueSetDef; {}] = [",
        bound.len()
    );
    for url in &bound {
        let vs = &value_sets[*url];
        let mut codes: Vec<(String, String)> = vs
            .concepts
            .iter()
            .map(|c| (c.code.clone(), c.system.clone()))
            .collect();
        codes.sort();
        let _ = writeln!(out, "    ValueSetDef {{");
        let _ = writeln!(out, "        url: {url:?},");
        let _ = write!(out, "        codes: &[");
        for (code, system) in &codes {
            let _ = write!(out, "({code:?}, {system:?}), ");
        }
        let _ = writeln!(out, "],");
        let _ = writeln!(out, "    }},");
    }
    let _ = writeln!(out, "];\n");

    let element_types = |f: &Field| -> Vec<(String, String, Vec<String>)> {
        // (suffix, kind, targets)
        match &f.ty {
            FieldType::Attribute => {
                vec![(String::new(), "TypeKind::Attribute".to_owned(), Vec::new())]
            }
            FieldType::Primitive { prim, .. } => {
                vec![(String::new(), prim_kind(*prim), Vec::new())]
            }
            FieldType::Struct(t) => vec![(
                String::new(),
                format!("TypeKind::Complex({})", type_index(t)),
                f.targets.clone(),
            )],
            FieldType::Resource => {
                vec![(String::new(), "TypeKind::Resource".to_owned(), Vec::new())]
            }
            FieldType::Choice(name) => {
                let choice = model
                    .choices
                    .iter()
                    .find(|c| &c.name == name)
                    .unwrap_or_else(|| panic!("no choice {name}"));
                choice
                    .variants
                    .iter()
                    .map(|v| {
                        let kind = match v.prim {
                            Some(p) => prim_kind(p),
                            None => format!("TypeKind::Complex({})", type_index(&v.ty)),
                        };
                        (v.rust.clone(), kind, v.targets.clone())
                    })
                    .collect()
            }
        }
    };

    let _ = writeln!(
        out,
        "pub(crate) static TYPES: [TypeDef; {}] = [",
        model.structs.len()
    );
    for s in &model.structs {
        let role = match s.kind {
            StructKind::Resource => "TypeRole::Resource",
            StructKind::Datatype => "TypeRole::Datatype",
            StructKind::Backbone => "TypeRole::Backbone",
        };
        let _ = writeln!(out, "    TypeDef {{");
        let _ = writeln!(out, "        name: {:?},", s.path);
        let _ = writeln!(out, "        role: {role},");
        let _ = writeln!(out, "        elements: &[");
        for f in &s.fields {
            let max = match f.max {
                Some(n) => n.to_string(),
                None => "u32::MAX".to_owned(),
            };
            let binding = match f.binding.as_deref().and_then(|u| vs_index.get(u)) {
                Some(i) => format!("Some({i})"),
                None => "None".to_owned(),
            };
            let types: Vec<String> = element_types(f)
                .into_iter()
                .map(|(suffix, kind, targets)| {
                    let targets: Vec<String> = targets
                        .iter()
                        .filter(|t| !matches!(t.as_str(), "Resource" | "Any"))
                        .map(|t| format!("{t:?}"))
                        .collect();
                    format!(
                        "ElementType {{ suffix: {suffix:?}, kind: {kind}, targets: &[{}] }}",
                        targets.join(", ")
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "            ElementDef {{ name: {:?}, min: {}, max: {max}, choice: {}, binding: {binding}, types: &[{}] }},",
                f.json,
                f.min,
                matches!(f.ty, FieldType::Choice(_)),
                types.join(", ")
            );
        }
        let _ = writeln!(out, "        ],");
        let _ = writeln!(out, "    }},");
    }
    let _ = writeln!(out, "];\n");

    // Names to indexes, for resources (by type) and datatypes (by name, aliases included).
    let mut names: Vec<(String, u16)> = Vec::new();
    for s in &model.structs {
        if s.kind != StructKind::Backbone {
            names.push((s.name.clone(), index[s.name.as_str()] as u16 + 1));
        }
    }
    for a in &model.aliases {
        names.push((a.name.clone(), type_index(&a.target) as u16 + 1));
    }
    let _ = writeln!(
        out,
        "/// Resource and datatype names to their index in `TYPES`, plus one (0: unknown)."
    );
    out.push_str(&crate::phash::emit("TYPE_NAMES", &names, ""));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "/// The index in `TYPES` of the resource or datatype `name`."
    );
    let _ = writeln!(
        out,
        "pub(crate) fn type_index(name: &str) -> Option<usize> {{"
    );
    let _ = writeln!(
        out,
        "    (rt::lookup(&TYPE_NAMES, name) as usize).checked_sub(1)\n}}"
    );
    out
}
