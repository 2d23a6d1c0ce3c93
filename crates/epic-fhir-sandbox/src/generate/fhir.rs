//! Small builders for the FHIR datatypes the generator writes over and over.

use serde_json::{Value, json};

use super::catalog::{Code, Cond, UCUM};

/// A relative reference `Type/id`.
pub(super) fn reference(resource_type: &str, id: &str) -> Value {
    json!({ "reference": format!("{resource_type}/{id}") })
}

/// A relative reference with a display text.
pub(super) fn reference_to(resource_type: &str, id: &str, display: &str) -> Value {
    json!({ "reference": format!("{resource_type}/{id}"), "display": display })
}

/// One Coding.
pub(super) fn coding(code: Code) -> Value {
    json!({ "system": code.system, "code": code.code, "display": code.display })
}

/// A CodeableConcept of several codings and a text.
pub(super) fn concept(codes: &[Code], text: &str) -> Value {
    json!({
        "coding": codes.iter().map(|c| coding(*c)).collect::<Vec<_>>(),
        "text": text,
    })
}

/// A CodeableConcept of one coding whose text is its display.
pub(super) fn concept1(code: Code) -> Value {
    concept(&[code], code.display)
}

/// A condition's CodeableConcept: SNOMED CT and ICD-10-CM side by side, as Epic sends them.
pub(super) fn condition_concept(cond: Cond) -> Value {
    let def = cond.def();
    concept(&[def.snomed, def.icd10], def.text)
}

/// A number rounded to `decimals` places; whole numbers are written without a fraction.
pub(super) fn number(value: f64, decimals: u8) -> Value {
    if decimals == 0 {
        // Values are clinical magnitudes far inside i64's range.
        json!(value.round() as i64)
    } else {
        let scale = 10f64.powi(i32::from(decimals));
        json!((value * scale).round() / scale)
    }
}

/// A Quantity with a UCUM unit (the unit doubles as the human-readable `unit`).
pub(super) fn quantity(value: f64, decimals: u8, ucum: &str) -> Value {
    json!({
        "value": number(value, decimals),
        "unit": ucum,
        "system": UCUM,
        "code": ucum,
    })
}

/// A Quantity whose human-readable unit differs from its UCUM code.
pub(super) fn quantity_labelled(value: f64, decimals: u8, unit: &str, ucum: &str) -> Value {
    json!({
        "value": number(value, decimals),
        "unit": unit,
        "system": UCUM,
        "code": ucum,
    })
}

/// A `coding`-only status concept from an HL7 code system.
pub(super) fn status_concept(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code, "display": display }] })
}

/// Rounds a float to `decimals` places (for comparing rounded results with ranges).
pub(super) fn round(value: f64, decimals: u8) -> f64 {
    let scale = 10f64.powi(i32::from(decimals));
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_tidy() {
        assert_eq!(number(72.4, 0).to_string(), "72");
        assert_eq!(number(36.849, 1).to_string(), "36.8");
        assert_eq!(number(0.951, 2).to_string(), "0.95");
        assert_eq!(quantity(5.0, 0, "/min")["code"], "/min");
    }
}
