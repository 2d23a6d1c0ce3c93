//! Precomputed search index entries of one stored resource version.
//!
//! Extraction runs once per write: it walks each slot's paths through the resource JSON and
//! turns every value into its searchable form (a parsed date range, a token system/code, a
//! reference type/id, a normalised string, a quantity). It happens in two steps so the
//! expensive part stays outside the store's write lock: [`extract`] borrows from the JSON
//! and allocates only normalised text, then [`RawIndex::intern`] (under the lock) replaces
//! strings by interned symbols.

use serde_json::Value;

use super::intern::{Interner, Sym};
use crate::search::date::{DateRange, parse_date};
use crate::search::reference::split_reference;
use crate::search::registry::{ParamKind, SlotDef, TypeSchema};
use crate::search::text::normalize;

/// One searchable value of one slot.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum IndexValue {
    /// A date, dateTime, instant or Period as a time range.
    Date(DateRange),
    /// A coded value; `system` is [`Sym::NONE`] when the value has no system.
    Token { system: Sym, code: Sym },
    /// Normalised display text of a coded value (Coding.display, CodeableConcept.text,
    /// Identifier.type.text), for the `:text` modifier.
    Text(Sym),
    /// A reference; `resource_type` is [`Sym::NONE`] for references without a type.
    Ref { resource_type: Sym, id: Sym },
    /// A string with its normalised (lowercase, accent-free) form.
    Str { raw: Sym, normalized: Sym },
    /// A quantity; boxed because it is rare and larger than the other variants.
    Quantity(Box<QuantityValue>),
}

/// A Quantity value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QuantityValue {
    pub(crate) value: f64,
    pub(crate) system: Sym,
    pub(crate) code: Sym,
    pub(crate) unit: Sym,
}

/// The index entries of one resource version: values grouped by slot.
#[derive(Debug, Default)]
pub(crate) struct IndexEntries {
    /// `bounds[s]..bounds[s + 1]` is the range of `values` that belongs to slot `s`.
    bounds: Box<[u16]>,
    values: Box<[IndexValue]>,
}

impl IndexEntries {
    /// The values of one slot (empty when the resource has none).
    pub(crate) fn slot(&self, slot: u8) -> &[IndexValue] {
        let slot = usize::from(slot);
        match (self.bounds.get(slot), self.bounds.get(slot + 1)) {
            (Some(&start), Some(&end)) => &self.values[usize::from(start)..usize::from(end)],
            _ => &[],
        }
    }

    /// Approximate heap bytes of these entries.
    pub(crate) fn heap_bytes(&self) -> usize {
        let boxed_quantities = self
            .values
            .iter()
            .filter(|value| matches!(value, IndexValue::Quantity(_)))
            .count();
        self.bounds.len() * size_of::<u16>()
            + self.values.len() * size_of::<IndexValue>()
            + boxed_quantities * size_of::<QuantityValue>()
    }
}

/// A value as extracted from the JSON, before interning.
#[derive(Debug)]
enum RawValue<'a> {
    Date(DateRange),
    Token {
        system: Option<&'a str>,
        code: &'a str,
    },
    Text(String),
    Ref {
        resource_type: Option<&'a str>,
        id: &'a str,
    },
    Str {
        raw: &'a str,
        normalized: String,
    },
    Quantity {
        value: f64,
        system: Option<&'a str>,
        code: Option<&'a str>,
        unit: Option<&'a str>,
    },
}

/// Extracted values of a resource, borrowing from its JSON, ready to be interned.
#[derive(Debug)]
pub(crate) struct RawIndex<'a> {
    /// `(slot, value)` pairs in slot order.
    values: Vec<(u8, RawValue<'a>)>,
    slot_count: usize,
}

/// At most this many values are indexed per resource: the bounds are `u16`, and no real
/// resource comes near it. Values beyond it are dropped (with a log line) rather than
/// failing the write.
const MAX_VALUES: usize = u16::MAX as usize;

/// Extracts the searchable values of `resource` for every slot of `schema`.
pub(crate) fn extract<'a>(schema: &TypeSchema, resource: &'a Value) -> RawIndex<'a> {
    let mut values = Vec::new();
    for (slot_index, slot) in schema.slots.iter().enumerate() {
        // TypeSchema guarantees fewer than 256 slots.
        let Ok(slot_number) = u8::try_from(slot_index) else {
            break;
        };
        let mut leaves = Vec::new();
        for segments in &slot.segments {
            walk(resource, segments, &mut leaves);
        }
        for leaf in leaves {
            push_leaf(slot, slot_number, leaf, &mut values);
        }
    }
    if values.len() > MAX_VALUES {
        tracing::warn!(
            count = values.len(),
            "resource has more index values than the store keeps; extra values are not searchable"
        );
        values.truncate(MAX_VALUES);
    }
    RawIndex {
        values,
        slot_count: schema.slots.len(),
    }
}

impl RawIndex<'_> {
    /// Interns the extracted strings, dropping duplicate values within a slot.
    pub(crate) fn intern(self, interner: &mut Interner) -> IndexEntries {
        let mut bounds = Vec::with_capacity(self.slot_count + 1);
        let mut values: Vec<IndexValue> = Vec::with_capacity(self.values.len());
        let mut raw = self.values.into_iter().peekable();
        for slot in 0..self.slot_count {
            bounds.push(u16::try_from(values.len()).unwrap_or(u16::MAX));
            let slot_start = values.len();
            while let Some((_, value)) =
                raw.next_if(|(value_slot, _)| usize::from(*value_slot) == slot)
            {
                let interned = intern_value(value, interner);
                if !values[slot_start..].contains(&interned) {
                    values.push(interned);
                }
            }
        }
        bounds.push(u16::try_from(values.len()).unwrap_or(u16::MAX));
        IndexEntries {
            bounds: bounds.into_boxed_slice(),
            values: values.into_boxed_slice(),
        }
    }
}

fn intern_value(value: RawValue<'_>, interner: &mut Interner) -> IndexValue {
    let mut optional = |text: Option<&str>| text.map_or(Sym::NONE, |text| interner.intern(text));
    match value {
        RawValue::Date(range) => IndexValue::Date(range),
        RawValue::Token { system, code } => {
            let system = optional(system);
            IndexValue::Token {
                system,
                code: interner.intern(code),
            }
        }
        RawValue::Text(text) => IndexValue::Text(interner.intern(&text)),
        RawValue::Ref { resource_type, id } => {
            let resource_type = optional(resource_type);
            IndexValue::Ref {
                resource_type,
                id: interner.intern(id),
            }
        }
        RawValue::Str { raw, normalized } => IndexValue::Str {
            raw: interner.intern(raw),
            normalized: interner.intern(&normalized),
        },
        RawValue::Quantity {
            value,
            system,
            code,
            unit,
        } => IndexValue::Quantity(Box::new(QuantityValue {
            value,
            system: optional(system),
            code: optional(code),
            unit: optional(unit),
        })),
    }
}

/// Collects the values at `segments` below `value`, traversing arrays at every step.
fn walk<'a>(value: &'a Value, segments: &[&str], out: &mut Vec<&'a Value>) {
    if let Value::Array(items) = value {
        for item in items {
            walk(item, segments, out);
        }
        return;
    }
    let Some((first, rest)) = segments.split_first() else {
        out.push(value);
        return;
    };
    let Value::Object(map) = value else {
        return;
    };
    if let Some(stem) = first.strip_suffix("[x]") {
        // A choice element: `effective[x]` matches `effectiveDateTime`, `effectivePeriod`...
        for (key, child) in map {
            let is_choice = key
                .strip_prefix(stem)
                .and_then(|suffix| suffix.chars().next())
                .is_some_and(|c| c.is_ascii_uppercase());
            if is_choice {
                walk(child, rest, out);
            }
        }
    } else if let Some(child) = map.get(*first) {
        walk(child, rest, out);
    }
}

/// Turns one leaf value into index values according to the slot's kind. Values of a shape
/// the kind cannot use (an `onsetString` under a date parameter, a malformed date) are
/// skipped: they are not searchable, but they never make a write fail.
fn push_leaf<'a>(
    slot: &SlotDef,
    slot_number: u8,
    leaf: &'a Value,
    out: &mut Vec<(u8, RawValue<'a>)>,
) {
    let mut push = |value| out.push((slot_number, value));
    match slot.kind {
        ParamKind::Date => {
            if let Some(range) = date_range(leaf) {
                push(RawValue::Date(range));
            }
        }
        ParamKind::Token => token_values(leaf, &mut push),
        ParamKind::Reference => {
            let text = match leaf {
                Value::Object(map) => map.get("reference").and_then(Value::as_str),
                // A canonical URL or plain string reference.
                Value::String(text) => Some(text.as_str()),
                _ => None,
            };
            if let Some((resource_type, id)) = text.and_then(split_reference) {
                push(RawValue::Ref { resource_type, id });
            }
        }
        ParamKind::String => string_values(leaf, &mut push),
        ParamKind::Quantity => {
            if let Value::Object(map) = leaf
                && let Some(value) = map.get("value").and_then(Value::as_f64)
            {
                let text = |key: &str| map.get(key).and_then(Value::as_str);
                push(RawValue::Quantity {
                    value,
                    system: text("system"),
                    code: text("code"),
                    unit: text("unit"),
                });
            }
        }
    }
}

/// The time range of a date/dateTime/instant string or a Period object.
fn date_range(leaf: &Value) -> Option<DateRange> {
    match leaf {
        Value::String(text) => match parse_date(text, false) {
            Ok(range) => Some(range),
            Err(reason) => {
                tracing::debug!(value = %text, %reason, "date value not indexed");
                None
            }
        },
        Value::Object(map) => {
            let bound = |key: &str| {
                map.get(key)
                    .and_then(Value::as_str)
                    .and_then(|text| parse_date(text, false).ok())
            };
            match (bound("start"), bound("end")) {
                (None, None) => None,
                // A period whose end precedes its start is bad data; cover both bounds rather
                // than index an empty range that overlaps nothing.
                (Some(start), Some(end)) if end.hi <= start.lo => Some(DateRange {
                    lo: end.lo,
                    hi: start.hi,
                }),
                // An open side of a Period extends to infinity.
                (start, end) => Some(DateRange {
                    lo: start.map_or(i64::MIN, |range| range.lo),
                    hi: end.map_or(i64::MAX, |range| range.hi),
                }),
            }
        }
        _ => None,
    }
}

/// Token values of a code/boolean/string primitive, Coding, CodeableConcept or Identifier.
fn token_values<'a>(leaf: &'a Value, push: &mut impl FnMut(RawValue<'a>)) {
    match leaf {
        Value::String(code) => push(RawValue::Token { system: None, code }),
        Value::Bool(flag) => push(RawValue::Token {
            system: None,
            code: if *flag { "true" } else { "false" },
        }),
        Value::Object(map) => {
            if let Some(codings) = map.get("coding").and_then(Value::as_array) {
                // CodeableConcept: every coding, plus the concept's text.
                for coding in codings.iter().filter_map(Value::as_object) {
                    if let Some(code) = field(coding, "code") {
                        push(RawValue::Token {
                            system: field(coding, "system"),
                            code,
                        });
                    }
                    push_text(field(coding, "display"), push);
                }
                push_text(field(map, "text"), push);
            } else if let Some(code) = field(map, "code") {
                // Coding.
                push(RawValue::Token {
                    system: field(map, "system"),
                    code,
                });
                push_text(field(map, "display"), push);
            } else if let Some(value) = field(map, "value") {
                // Identifier.
                push(RawValue::Token {
                    system: field(map, "system"),
                    code: value,
                });
                let type_text = map
                    .get("type")
                    .and_then(Value::as_object)
                    .and_then(|kind| field(kind, "text"));
                push_text(type_text, push);
            } else {
                // A CodeableConcept with text only.
                push_text(field(map, "text"), push);
            }
        }
        _ => {}
    }
}

/// A string member of a JSON object.
fn field<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

/// Pushes the normalised form of a display text, if there is one.
fn push_text<'a>(text: Option<&str>, push: &mut impl FnMut(RawValue<'a>)) {
    if let Some(text) = text.filter(|text| !text.is_empty()) {
        push(RawValue::Text(normalize(text)));
    }
}

/// The parts of HumanName and Address that string search matches.
const STRING_PARTS: [&str; 11] = [
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
];

/// String values of a string primitive, HumanName or Address.
fn string_values<'a>(leaf: &'a Value, push: &mut impl FnMut(RawValue<'a>)) {
    let mut push_string = |raw: &'a str| {
        if !raw.is_empty() {
            push(RawValue::Str {
                raw,
                normalized: normalize(raw),
            });
        }
    };
    match leaf {
        Value::String(raw) => push_string(raw),
        Value::Object(map) => {
            for part in STRING_PARTS {
                match map.get(part) {
                    Some(Value::String(raw)) => push_string(raw),
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .for_each(&mut push_string),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::registry::schema;
    use serde_json::json;

    /// Extracts and interns `resource`, returning the entries and the interner to read them.
    fn index(resource_type: &str, resource: &Value) -> (IndexEntries, Interner) {
        let mut interner = Interner::default();
        let entries = extract(schema(resource_type), resource).intern(&mut interner);
        (entries, interner)
    }

    fn slot_of(resource_type: &str, param: &str) -> u8 {
        let schema = schema(resource_type);
        let (position, _) = schema.param(param).expect("known parameter");
        schema.slot_of(position).expect("indexed parameter")
    }

    /// Renders a slot's values as readable strings.
    fn show(resource_type: &str, param: &str, resource: &Value) -> Vec<String> {
        let (entries, interner) = index(resource_type, resource);
        entries
            .slot(slot_of(resource_type, param))
            .iter()
            .map(|value| match value {
                IndexValue::Date(range) => format!("date {}..{}", range.lo, range.hi),
                IndexValue::Token { system, code } => {
                    format!(
                        "token {}|{}",
                        interner.resolve(*system),
                        interner.resolve(*code)
                    )
                }
                IndexValue::Text(text) => format!("text {}", interner.resolve(*text)),
                IndexValue::Ref { resource_type, id } => {
                    format!(
                        "ref {}/{}",
                        interner.resolve(*resource_type),
                        interner.resolve(*id)
                    )
                }
                IndexValue::Str { raw, normalized } => {
                    format!(
                        "str {} ({})",
                        interner.resolve(*raw),
                        interner.resolve(*normalized)
                    )
                }
                IndexValue::Quantity(quantity) => format!(
                    "quantity {} {}|{} ({})",
                    quantity.value,
                    interner.resolve(quantity.system),
                    interner.resolve(quantity.code),
                    interner.resolve(quantity.unit)
                ),
            })
            .collect()
    }

    #[test]
    fn codeable_concepts_codings_and_text() {
        let observation = json!({
            "resourceType": "Observation",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
            "code": {"coding": [
                {"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"},
                {"system": "urn:oid:1.2.3", "code": "H1"}
            ], "text": "Body height"}
        });
        assert_eq!(
            show("Observation", "code", &observation),
            [
                "token http://loinc.org|8302-2",
                "text body height",
                "token urn:oid:1.2.3|H1"
            ]
        );
        assert_eq!(
            show("Observation", "category", &observation),
            [
                "token http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
                "text vital signs"
            ]
        );
    }

    #[test]
    fn primitives_identifiers_and_codings() {
        let patient = json!({
            "resourceType": "Patient",
            "gender": "female",
            "active": true,
            "identifier": [
                {"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0", "value": "E4007", "type": {"text": "MRN"}},
                {"value": "no-system"}
            ]
        });
        assert_eq!(show("Patient", "gender", &patient), ["token |female"]);
        assert_eq!(show("Patient", "active", &patient), ["token |true"]);
        assert_eq!(
            show("Patient", "identifier", &patient),
            [
                "token urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0|E4007",
                "text mrn",
                "token |no-system"
            ]
        );
        let encounter = json!({"resourceType": "Encounter", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}});
        assert_eq!(
            show("Encounter", "class", &encounter),
            ["token http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB"]
        );
    }

    #[test]
    fn choice_elements_and_periods() {
        let day = parse_date("2024-01-14", false).expect("date");
        let with_date_time = json!({"resourceType": "Condition", "onsetDateTime": "2024-01-14"});
        assert_eq!(
            show("Condition", "onset-date", &with_date_time),
            [format!("date {}..{}", day.lo, day.hi)]
        );
        let with_string = json!({"resourceType": "Condition", "onsetString": "as a child"});
        assert!(show("Condition", "onset-date", &with_string).is_empty());
        let open_period =
            json!({"resourceType": "Condition", "onsetPeriod": {"start": "2024-01-14"}});
        assert_eq!(
            show("Condition", "onset-date", &open_period),
            [format!("date {}..{}", day.lo, i64::MAX)]
        );
        let closed = json!({"resourceType": "Encounter", "period": {"start": "2024-01-14", "end": "2024-01-14"}});
        assert_eq!(
            show("Encounter", "date", &closed),
            [format!("date {}..{}", day.lo, day.hi)]
        );
        // An end before the start: the range covers both bounds instead of being empty.
        let reversed = json!({"resourceType": "Encounter", "period": {"start": "2024-01-14T10:00:00Z", "end": "2024-01-14T09:59:59Z"}});
        let end = parse_date("2024-01-14T09:59:59Z", false).expect("end");
        let start = parse_date("2024-01-14T10:00:00Z", false).expect("start");
        assert_eq!(
            show("Encounter", "date", &reversed),
            [format!("date {}..{}", end.lo, start.hi)]
        );
        // Neither `effective` itself nor `effectivelyX` is a choice of `effective[x]`.
        let odd =
            json!({"resourceType": "Observation", "effective": "2024", "effectivelyDone": "2024"});
        assert!(show("Observation", "date", &odd).is_empty());
    }

    #[test]
    fn malformed_dates_are_skipped_not_fatal() {
        let patient = json!({"resourceType": "Patient", "birthDate": "14/01/2024"});
        assert!(show("Patient", "birthdate", &patient).is_empty());
    }

    #[test]
    fn references_of_every_form() {
        let observation = json!({
            "resourceType": "Observation",
            "subject": {"reference": "https://other.example/fhir/Patient/p1"},
            "encounter": {"reference": "Encounter/e1/_history/3"},
            "performer": [{"reference": "#contained"}, {"display": "no reference"}, {"reference": "urn:uuid:abc"}]
        });
        assert_eq!(
            show("Observation", "subject", &observation),
            ["ref Patient/p1"]
        );
        assert_eq!(
            show("Observation", "encounter", &observation),
            ["ref Encounter/e1"]
        );
        assert_eq!(
            show("Observation", "performer", &observation),
            ["ref /urn:uuid:abc"]
        );
    }

    #[test]
    fn human_names_and_addresses() {
        let patient = json!({
            "resourceType": "Patient",
            "name": [{"family": "Véliz", "given": ["Caridad", "María"], "prefix": ["Mrs."]}],
            "address": [{"line": ["107 Lincoln Street"], "city": "Worcester", "postalCode": "01605"}]
        });
        assert_eq!(
            show("Patient", "name", &patient),
            [
                "str Véliz (veliz)",
                "str Caridad (caridad)",
                "str María (maria)",
                "str Mrs. (mrs.)"
            ]
        );
        assert_eq!(show("Patient", "family", &patient), ["str Véliz (veliz)"]);
        assert_eq!(
            show("Patient", "address-city", &patient),
            ["str Worcester (worcester)"]
        );
        assert_eq!(
            show("Patient", "address", &patient),
            [
                "str 107 Lincoln Street (107 lincoln street)",
                "str Worcester (worcester)",
                "str 01605 (01605)"
            ]
        );
    }

    #[test]
    fn quantities() {
        let observation = json!({
            "resourceType": "Observation",
            "valueQuantity": {"value": 166.5, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}
        });
        assert_eq!(
            show("Observation", "value-quantity", &observation),
            ["quantity 166.5 http://unitsofmeasure.org|cm (cm)"]
        );
    }

    #[test]
    fn duplicate_values_are_stored_once() {
        let observation = json!({
            "resourceType": "Observation",
            "category": [
                {"coding": [{"system": "s", "code": "laboratory", "display": "Laboratory"}], "text": "laboratory"},
                {"coding": [{"system": "s", "code": "laboratory"}]}
            ]
        });
        assert_eq!(
            show("Observation", "category", &observation),
            ["token s|laboratory", "text laboratory"]
        );
    }

    #[test]
    fn slots_without_values_are_empty() {
        let (entries, _) = index("Observation", &json!({"resourceType": "Observation"}));
        for slot in 0..=u8::MAX {
            assert!(entries.slot(slot).is_empty());
        }
        assert!(entries.heap_bytes() < 64);
    }
}
