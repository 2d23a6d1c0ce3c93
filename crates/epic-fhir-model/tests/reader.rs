//! The reader's fast paths (compact JSON: a member name and its colon, a plain string, a value
//! that is not `null`, an array's bracket) and its general paths (whitespace, escapes, `null`,
//! duplicates, the last bytes of the input) must give the same models and the same errors.

use epic_fhir_model::{self as model, Observation, Patient, Resource};

/// A resource with strings of many lengths, nested objects, arrays, a choice and a decimal.
const COMPACT: &str = r#"{"resourceType":"Observation","id":"bp-1","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure panel with all children optional"}],"text":"BP"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-03-01T10:00:00+00:00","valueQuantity":{"value":120.50,"unit":"mm[Hg]"},"note":[{"text":"a"},{"text":"b"}]}"#;

/// The same JSON with whitespace around every token.
fn spaced(compact: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in compact.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' | ',' | ':' => {
                out.push(c);
                out.push_str("\n  ");
            }
            '}' | ']' => {
                out.push_str(" \t\r\n");
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    format!("  {out}\n")
}

fn error_of<T: model::json::FromJson + std::fmt::Debug>(json: &str) -> String {
    match model::from_str::<T>(json) {
        Ok(value) => panic!("accepted {json}: {value:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn whitespace_everywhere_reads_the_same_model() {
    let compact: Observation = model::from_str(COMPACT).expect("compact");
    let spaced_text = spaced(COMPACT);
    assert_ne!(spaced_text, COMPACT);
    let spaced: Observation = model::from_str(&spaced_text).expect("spaced");
    assert_eq!(compact, spaced);
    assert_eq!(model::to_string(&spaced), model::to_string(&compact));
    let any: Resource = model::from_str(&spaced_text).expect("spaced as Resource");
    assert_eq!(model::to_string(&any), model::to_string(&compact));
}

#[test]
fn escaped_names_and_values_read_like_plain_ones() {
    let plain: Patient =
        model::from_str(r#"{"resourceType":"Patient","id":"p1","gender":"female"}"#)
            .expect("plain");
    let escaped: Patient =
        model::from_str(r#"{"resourceType":"Patient","\u0069d":"p\u0031","gend\u0065r":"female"}"#)
            .expect("escaped");
    assert_eq!(plain, escaped);
    let quoted: Patient =
        model::from_str(r#"{"resourceType":"Patient","id":"a\"b"}"#).expect("quote in a value");
    assert_eq!(quoted.id.as_deref(), Some("a\"b"));
}

#[test]
fn strings_near_the_end_of_the_input_are_read() {
    // Every split of the last string across the 16 bytes the fast path needs.
    for len in 0..40 {
        let id: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..len].to_owned();
        let json = format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#);
        let patient: Patient = model::from_str(&json).expect("patient");
        assert_eq!(patient.id.as_deref(), Some(id.as_str()));
    }
}

#[test]
fn null_members_are_skipped_on_every_path() {
    let with_nulls: Observation = model::from_str(
        r#"{"resourceType":"Observation","id":null,"status":"final","code":{"text":"x","coding":null},"subject":null,"note":null}"#,
    )
    .expect("nulls");
    let without: Observation =
        model::from_str(r#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#)
            .expect("no nulls");
    assert_eq!(with_nulls, without);
}

#[test]
fn duplicates_are_refused_on_every_path() {
    for (json, member) in [
        (r#"{"resourceType":"Patient","id":"a","id":"b"}"#, "id"),
        (r#"{"resourceType":"Patient","id":"a", "id" : "b"}"#, "id"),
        (r#"{"resourceType":"Patient","id":"a","id":null}"#, "id"),
        (
            r#"{"resourceType":"Patient","name":[{"family":"A"}],"name":[]}"#,
            "name",
        ),
        (
            r#"{"resourceType":"Patient","maritalStatus":{"text":"a"},"maritalStatus":{}}"#,
            "maritalStatus",
        ),
    ] {
        let error = error_of::<Patient>(json);
        assert!(
            error.contains(&format!("duplicate member `{member}`")),
            "{json}: {error}"
        );
    }
    let error = error_of::<Observation>(
        r#"{"resourceType":"Observation","status":"final","code":{},"valueString":"a","valueBoolean":true}"#,
    );
    assert!(
        error.contains("valueString") && error.contains("valueBoolean"),
        "{error}"
    );
}

#[test]
fn errors_in_nested_values_name_their_path() {
    let error = error_of::<Observation>(
        r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"a"},{"code":7}]}}"#,
    );
    assert!(error.contains("code.coding[1].code"), "{error}");
    let error = error_of::<Observation>(
        r#"{"resourceType":"Observation","status":"final","code":{"text":"unterminated}}"#,
    );
    assert!(error.contains("unterminated string"), "{error}");
    let error = error_of::<Patient>(r#"{"resourceType":"Patient","id":"a",}"#);
    assert!(error.contains("member name"), "{error}");
    let error = error_of::<Patient>("{\"resourceType\":\"Patient\",\"id\":\"a\u{1}b\"}");
    assert!(error.contains("control character"), "{error}");
}
