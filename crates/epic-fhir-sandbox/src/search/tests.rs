//! End-to-end tests of search semantics: resources go into a [`Store`], queries go through
//! [`parse`], and the expected ids are written out by hand.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::sync::Arc;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::parse;
use crate::store::{Store, StoredResource};

/// A store holding `resources`, with a fixed clock so `meta.lastUpdated` is predictable.
fn store_with(resources: Vec<Value>) -> Store {
    let store = Store::with_clock(|| OffsetDateTime::UNIX_EPOCH + time::Duration::days(19_000));
    for resource in resources {
        store
            .upsert(resource.clone())
            .unwrap_or_else(|error| panic!("{resource}: {error}"));
    }
    store
}

/// Runs a search and returns the ids of the matches, in result order.
fn ids(store: &Store, resource_type: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    let search = parse(resource_type, pairs).unwrap_or_else(|error| panic!("{pairs:?}: {error}"));
    store
        .search(&search)
        .iter()
        .map(|resource| resource.id().to_owned())
        .collect()
}

/// Like [`ids`], as a sorted set (for tests that are not about order).
fn id_set(store: &Store, resource_type: &str, pairs: &[(&str, &str)]) -> BTreeSet<String> {
    ids(store, resource_type, pairs).into_iter().collect()
}

fn set(expected: &[&str]) -> BTreeSet<String> {
    expected.iter().map(|id| (*id).to_owned()).collect()
}

fn observation(id: &str, extra: Value) -> Value {
    let mut resource = json!({"resourceType": "Observation", "id": id, "status": "final"});
    if let (Value::Object(base), Value::Object(extra)) = (&mut resource, extra) {
        base.extend(extra);
    }
    resource
}

/// Observations whose `date` values cover the interesting shapes around 2024-01-14.
fn dated_store() -> Store {
    store_with(vec![
        observation("A-day", json!({"effectiveDateTime": "2024-01-14"})),
        observation(
            "B-second",
            json!({"effectiveDateTime": "2024-01-14T10:00:00Z"}),
        ),
        observation(
            "C-instant",
            json!({"effectiveInstant": "2024-01-14T23:59:59.999Z"}),
        ),
        observation(
            "D-period",
            json!({"effectivePeriod": {"start": "2024-01-10", "end": "2024-01-20"}}),
        ),
        observation(
            "E-open-start",
            json!({"effectivePeriod": {"end": "2024-01-14"}}),
        ),
        observation(
            "F-open-end",
            json!({"effectivePeriod": {"start": "2024-01-15"}}),
        ),
        observation("G-month", json!({"effectiveDateTime": "2024-01"})),
        observation("H-year", json!({"effectiveDateTime": "2023"})),
        observation(
            "I-zone",
            json!({"effectiveDateTime": "2024-01-15T01:00:00+02:00"}),
        ),
        observation(
            "J-next-midnight",
            json!({"effectiveDateTime": "2024-01-15T00:00:00Z"}),
        ),
        observation("K-no-date", json!({})),
    ])
}

#[test]
fn date_prefixes_against_every_value_shape() {
    let store = dated_store();
    let cases: &[(&str, &[&str])] = &[
        // A day: S = [2024-01-14, 2024-01-15).
        ("2024-01-14", &["A-day", "B-second", "C-instant", "I-zone"]),
        (
            "eq2024-01-14",
            &["A-day", "B-second", "C-instant", "I-zone"],
        ),
        (
            "ne2024-01-14",
            &[
                "D-period",
                "E-open-start",
                "F-open-end",
                "G-month",
                "H-year",
                "J-next-midnight",
            ],
        ),
        (
            "gt2024-01-14",
            &["D-period", "F-open-end", "G-month", "J-next-midnight"],
        ),
        (
            "lt2024-01-14",
            &["D-period", "E-open-start", "G-month", "H-year"],
        ),
        (
            "ge2024-01-14",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "D-period",
                "F-open-end",
                "G-month",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        (
            "le2024-01-14",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "D-period",
                "E-open-start",
                "G-month",
                "H-year",
                "I-zone",
            ],
        ),
        ("sa2024-01-14", &["F-open-end", "J-next-midnight"]),
        ("eb2024-01-14", &["H-year"]),
        // Boundaries of sa/eb: touching ranges do not overlap.
        (
            "eb2024-01-15",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "E-open-start",
                "H-year",
                "I-zone",
            ],
        ),
        (
            "sa2024-01-13",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "F-open-end",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        // A month and a year.
        (
            "2024-01",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "D-period",
                "G-month",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        (
            "2024",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "D-period",
                "G-month",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        ("ne2024", &["E-open-start", "F-open-end", "H-year"]),
        // A second.
        ("2024-01-14T10:00:00Z", &["B-second"]),
        // The open-start period ends with the whole day of 2024-01-14, after this second.
        (
            "ge2024-01-14T10:00:00Z",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "D-period",
                "E-open-start",
                "F-open-end",
                "G-month",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        (
            "lt2024-01-14T10:00:00Z",
            &["A-day", "D-period", "E-open-start", "G-month", "H-year"],
        ),
        // Every prefix at month precision: S = [2024-01-01, 2024-02-01).
        ("gt2024-01", &["F-open-end"]),
        ("lt2024-01", &["E-open-start", "H-year"]),
        (
            "ge2024-01",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "D-period",
                "F-open-end",
                "G-month",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        (
            "le2024-01",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "D-period",
                "E-open-start",
                "G-month",
                "H-year",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        ("sa2024-01", &[]),
        ("eb2024-01", &["H-year"]),
        // Every prefix at year precision, on the year before: S = [2023-01-01, 2024-01-01).
        ("eq2023", &["H-year"]),
        (
            "gt2023",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "D-period",
                "E-open-start",
                "F-open-end",
                "G-month",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        ("lt2023", &["E-open-start"]),
        (
            "sa2023",
            &[
                "A-day",
                "B-second",
                "C-instant",
                "D-period",
                "F-open-end",
                "G-month",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        ("eb2023", &[]),
        // Every prefix at second precision: S = [10:00:00, 10:00:01) on 2024-01-14.
        (
            "gt2024-01-14T10:00:00Z",
            &[
                "A-day",
                "C-instant",
                "D-period",
                "E-open-start",
                "F-open-end",
                "G-month",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        (
            "le2024-01-14T10:00:00Z",
            &[
                "A-day",
                "B-second",
                "D-period",
                "E-open-start",
                "G-month",
                "H-year",
            ],
        ),
        (
            "ne2024-01-14T10:00:00Z",
            &[
                "A-day",
                "C-instant",
                "D-period",
                "E-open-start",
                "F-open-end",
                "G-month",
                "H-year",
                "I-zone",
                "J-next-midnight",
            ],
        ),
        (
            "sa2024-01-14T10:00:00Z",
            &["C-instant", "F-open-end", "I-zone", "J-next-midnight"],
        ),
        ("eb2024-01-14T10:00:00Z", &["H-year"]),
        // Minute precision contains the seconds inside it.
        ("2024-01-14T10:00", &["B-second"]),
        ("2024-01-14T23:59", &["C-instant"]),
        // Zones: the same instant written in another zone, or with a space for the `+`.
        ("2024-01-14T23:00:00Z", &["I-zone"]),
        ("2024-01-15T01:00:00+02:00", &["I-zone"]),
        ("2024-01-15T01:00:00 02:00", &["I-zone"]),
        // The last microsecond of the day and the first of the next.
        ("2024-01-14T23:59:59.999Z", &["C-instant"]),
        ("2024-01-15T00:00:00Z", &["J-next-midnight"]),
    ];
    for (value, expected) in cases {
        assert_eq!(
            id_set(&store, "Observation", &[("date", value)]),
            set(expected),
            "date={value}"
        );
    }
}

#[test]
fn dates_or_and_missing() {
    let store = dated_store();
    // OR within a value, AND across repetitions.
    assert_eq!(
        id_set(
            &store,
            "Observation",
            &[("date", "2023,2024-01-14T10:00:00Z")]
        ),
        set(&["B-second", "H-year"])
    );
    assert_eq!(
        id_set(
            &store,
            "Observation",
            &[("date", "ge2024-01-14"), ("date", "lt2024-01-15")]
        ),
        set(&[
            "A-day",
            "B-second",
            "C-instant",
            "D-period",
            "G-month",
            "I-zone"
        ])
    );
    assert_eq!(
        id_set(&store, "Observation", &[("date:missing", "true")]),
        set(&["K-no-date"])
    );
    assert_eq!(
        id_set(&store, "Observation", &[("date:missing", "false")]).len(),
        10
    );
}

#[test]
fn date_primitives_on_patient() {
    let store = store_with(vec![
        json!({"resourceType": "Patient", "id": "derrick", "birthDate": "1973-06-03"}),
        json!({"resourceType": "Patient", "id": "camila", "birthDate": "1987-09-12"}),
    ]);
    assert_eq!(
        ids(&store, "Patient", &[("birthdate", "1973")]),
        ["derrick"]
    );
    assert_eq!(
        ids(&store, "Patient", &[("birthdate", "1973-06-03")]),
        ["derrick"]
    );
    // A second inside the birth day does not contain the day.
    assert!(ids(&store, "Patient", &[("birthdate", "1973-06-03T10:00:00Z")]).is_empty());
    assert_eq!(
        ids(&store, "Patient", &[("birthdate", "lt1980")]),
        ["derrick"]
    );
    assert_eq!(
        ids(&store, "Patient", &[("birthdate", "ge1987-09-12")]),
        ["camila"]
    );
}

#[test]
fn last_updated_uses_the_store_timestamp() {
    let store = store_with(vec![json!({"resourceType": "Basic", "id": "b1"})]);
    let stored = store.read("Basic", "b1").expect("stored");
    let day = stored.last_updated().date().to_string();
    assert_eq!(ids(&store, "Basic", &[("_lastUpdated", &day)]), ["b1"]);
    assert_eq!(
        ids(&store, "Basic", &[("_lastUpdated", &format!("ge{day}"))]),
        ["b1"]
    );
    assert!(ids(&store, "Basic", &[("_lastUpdated", &format!("gt{day}"))]).is_empty());
    assert!(ids(&store, "Basic", &[("_lastUpdated:missing", "true")]).is_empty());
}

fn coded_store() -> Store {
    store_with(vec![
        observation(
            "o1",
            json!({
                "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]
            }),
        ),
        observation(
            "o2",
            json!({"code": {"coding": [{"system": "urn:local", "code": "8302-2"}]}}),
        ),
        observation("o3", json!({"code": {"coding": [{"code": "8302-2"}]}})),
        observation(
            "o4",
            json!({"code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}], "text": "Body temperature"}, "status": "amended"}),
        ),
        observation("o5", json!({})),
        observation(
            "o6",
            json!({"code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}, {"system": "urn:local", "code": "HT"}]}}),
        ),
    ])
}

#[test]
fn token_forms() {
    let store = coded_store();
    let cases: &[(&str, &str, &[&str])] = &[
        ("code", "8302-2", &["o1", "o2", "o3", "o6"]),
        ("code", "http://loinc.org|8302-2", &["o1", "o6"]),
        ("code", "urn:local|8302-2", &["o2"]),
        ("code", "|8302-2", &["o3"]),
        ("code", "http://loinc.org|", &["o1", "o4", "o6"]),
        ("code", "HT", &["o6"]),
        ("code", "ht", &[]),
        ("code", "never-indexed", &[]),
        ("code", "http://nowhere|8302-2", &[]),
        ("code:not", "8302-2", &["o4", "o5"]),
        (
            "code:not",
            "http://loinc.org|8302-2,urn:local|8302-2",
            &["o3", "o4", "o5"],
        ),
        (
            "code:not",
            "never-indexed",
            &["o1", "o2", "o3", "o4", "o5", "o6"],
        ),
        ("code:text", "height", &["o1"]),
        ("code:text", "BODY", &["o1", "o4"]),
        ("code:text", "temp", &["o4"]),
        ("code:text", "eight", &[]),
        ("code:missing", "true", &["o5"]),
        ("code:missing", "false", &["o1", "o2", "o3", "o4", "o6"]),
        ("status", "final", &["o1", "o2", "o3", "o5", "o6"]),
        ("status", "FINAL", &[]),
        (
            "status",
            "amended,final",
            &["o1", "o2", "o3", "o4", "o5", "o6"],
        ),
        ("category", "vital-signs", &["o1"]),
        (
            "category",
            "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
            &["o1"],
        ),
    ];
    for (key, value, expected) in cases {
        assert_eq!(
            id_set(&store, "Observation", &[(key, value)]),
            set(expected),
            "{key}={value}"
        );
    }
    // A repeated parameter is AND: o6 has both codes.
    assert_eq!(
        ids(&store, "Observation", &[("code", "8302-2"), ("code", "HT")]),
        ["o6"]
    );
}

#[test]
fn identifiers_booleans_and_escapes() {
    let store = store_with(vec![
        json!({"resourceType": "Patient", "id": "derrick", "active": true, "gender": "male",
               "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0", "value": "E4005", "type": {"text": "EPI"}}]}),
        json!({"resourceType": "Patient", "id": "odd", "active": false,
               "identifier": [{"system": "urn:a|b", "value": "x,y"}, {"value": r"back\slash"}]}),
    ]);
    assert_eq!(
        ids(
            &store,
            "Patient",
            &[(
                "identifier",
                "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0|E4005"
            )]
        ),
        ["derrick"]
    );
    assert_eq!(
        ids(&store, "Patient", &[("identifier", "E4005")]),
        ["derrick"]
    );
    assert_eq!(
        ids(&store, "Patient", &[("identifier:text", "epi")]),
        ["derrick"]
    );
    assert_eq!(ids(&store, "Patient", &[("active", "true")]), ["derrick"]);
    assert_eq!(ids(&store, "Patient", &[("active", "false")]), ["odd"]);
    assert_eq!(
        ids(&store, "Patient", &[("gender:missing", "true")]),
        ["odd"]
    );
    // Escaped separators are part of the value.
    assert_eq!(
        ids(&store, "Patient", &[("identifier", r"urn:a\|b|x\,y")]),
        ["odd"]
    );
    assert_eq!(ids(&store, "Patient", &[("identifier", r"x\,y")]), ["odd"]);
    assert!(ids(&store, "Patient", &[("identifier", "x,y")]).is_empty());
    assert_eq!(
        ids(&store, "Patient", &[("identifier", r"back\\slash")]),
        ["odd"]
    );
}

fn referring_store() -> Store {
    store_with(vec![
        json!({"resourceType": "Patient", "id": "p1"}),
        json!({"resourceType": "Patient", "id": "p2"}),
        json!({"resourceType": "Group", "id": "g1"}),
        observation(
            "o-rel",
            json!({"subject": {"reference": "Patient/p1"}, "code": {"coding": [{"code": "x"}]}}),
        ),
        observation(
            "o-abs",
            json!({"subject": {"reference": "https://elsewhere.example/fhir/R4/Patient/p2"}}),
        ),
        observation(
            "o-versioned",
            json!({"subject": {"reference": "Patient/p1/_history/3"}}),
        ),
        observation("o-group", json!({"subject": {"reference": "Group/g1"}})),
        observation("o-none", json!({})),
        observation("o-display", json!({"subject": {"display": "Someone"}})),
    ])
}

#[test]
fn reference_forms() {
    let store = referring_store();
    let p1 = &["o-rel", "o-versioned"][..];
    let cases: &[(&str, &str, &[&str])] = &[
        ("patient", "p1", p1),
        ("patient", "Patient/p1", p1),
        ("subject", "Patient/p1", p1),
        ("subject:Patient", "p1", p1),
        (
            "subject",
            "http://127.0.0.1:9999/interconnect-fhir-oauth/api/FHIR/R4/Patient/p1",
            p1,
        ),
        (
            "subject",
            "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4/Patient/p1",
            p1,
        ),
        // A stored absolute reference matches the relative form and any other host.
        ("patient", "p2", &["o-abs"]),
        ("subject", "Patient/p2", &["o-abs"]),
        ("subject", "http://localhost/Patient/p2", &["o-abs"]),
        ("patient", "p1,p2", &["o-rel", "o-versioned", "o-abs"]),
        // `patient` implies Patient, `subject` with a bare id any type.
        ("patient", "g1", &[]),
        ("subject", "g1", &["o-group"]),
        ("subject", "Group/g1", &["o-group"]),
        ("subject:Group", "g1", &["o-group"]),
        ("subject:missing", "true", &["o-none", "o-display"]),
        (
            "subject:missing",
            "false",
            &["o-rel", "o-abs", "o-versioned", "o-group"],
        ),
        (
            "patient:missing",
            "true",
            &["o-group", "o-none", "o-display"],
        ),
        ("patient", "nobody", &[]),
    ];
    for (key, value, expected) in cases {
        assert_eq!(
            id_set(&store, "Observation", &[(key, value)]),
            set(expected),
            "{key}={value}"
        );
    }
    // The patient index narrows the candidates; the other clauses still apply.
    assert_eq!(
        ids(&store, "Observation", &[("patient", "p1"), ("code", "x")]),
        ["o-rel"]
    );
    assert_eq!(
        ids(
            &store,
            "Observation",
            &[("patient", "p1"), ("_id", "o-versioned,o-abs")]
        ),
        ["o-versioned"]
    );
}

#[test]
fn string_matching() {
    let store = store_with(vec![
        json!({"resourceType": "Patient", "id": "veliz", "name": [{"family": "Véliz", "given": ["Caridad"], "prefix": ["Mrs."]}],
               "address": [{"city": "Worcester", "line": ["107 Lincoln Street"]}]}),
        json!({"resourceType": "Patient", "id": "velasquez", "name": [{"family": "Velasquez", "given": ["Ana", "María"]}]}),
        json!({"resourceType": "Patient", "id": "obrien", "name": [{"family": "O'Brien", "text": "Dr Sean O'Brien"}]}),
    ]);
    let cases: &[(&str, &str, &[&str])] = &[
        ("family", "vel", &["veliz", "velasquez"]),
        ("family", "VÉL", &["veliz", "velasquez"]),
        ("family", "veliz", &["veliz"]),
        ("family", "liz", &[]),
        ("family:contains", "LIZ", &["veliz"]),
        ("family:contains", "e", &["veliz", "velasquez", "obrien"]),
        ("family:exact", "Véliz", &["veliz"]),
        ("family:exact", "Veliz", &[]),
        ("family:exact", "véliz", &[]),
        ("given", "mar", &["velasquez"]),
        ("given", "maría", &["velasquez"]),
        ("name", "caridad", &["veliz"]),
        ("name", "mrs", &["veliz"]),
        ("name", "dr sean", &["obrien"]),
        ("name", "ana,o'b", &["velasquez", "obrien"]),
        ("address", "107 lin", &["veliz"]),
        ("address-city", "worc", &["veliz"]),
        ("address:missing", "true", &["velasquez", "obrien"]),
    ];
    for (key, value, expected) in cases {
        assert_eq!(
            id_set(&store, "Patient", &[(key, value)]),
            set(expected),
            "{key}={value}"
        );
    }
    assert_eq!(
        ids(&store, "Patient", &[("family", "vel"), ("given", "ana")]),
        ["velasquez"]
    );
}

#[test]
fn quantities() {
    let store = store_with(vec![
        observation(
            "glucose-95",
            json!({"valueQuantity": {"value": 95.0, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}),
        ),
        observation(
            "glucose-105",
            json!({"valueQuantity": {"value": 105.4, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}),
        ),
        observation(
            "height",
            json!({"valueQuantity": {"value": 166.5, "unit": "centimetre", "system": "http://unitsofmeasure.org", "code": "cm"}}),
        ),
        observation("no-value", json!({})),
    ]);
    let cases: &[(&str, &[&str])] = &[
        ("105.4", &["glucose-105"]),
        ("105", &["glucose-105"]),
        ("105.0", &[]),
        ("gt100", &["glucose-105", "height"]),
        ("gt100||mg/dL", &["glucose-105"]),
        ("lt100|http://unitsofmeasure.org|mg/dL", &["glucose-95"]),
        ("le166.5", &["glucose-95", "glucose-105", "height"]),
        ("ge166.5", &["height"]),
        ("ne95", &["glucose-105", "height"]),
        ("ap100", &["glucose-95", "glucose-105"]),
        ("166.5||centimetre", &["height"]),
        ("166.5|http://unitsofmeasure.org|", &["height"]),
        ("166.5||kg", &[]),
        ("sa166", &["height"]),
        ("eb96", &["glucose-95"]),
    ];
    for (value, expected) in cases {
        assert_eq!(
            id_set(&store, "Observation", &[("value-quantity", value)]),
            set(expected),
            "value-quantity={value}"
        );
    }
}

#[test]
fn unknown_parameters_do_not_filter() {
    let store = coded_store();
    let with_unknown = parse(
        "Observation",
        &[("code", "8302-2"), ("colour", "red"), ("_tag", "x")],
    )
    .expect("parses");
    assert_eq!(with_unknown.warnings().len(), 2);
    assert_eq!(
        store.search(&with_unknown).len(),
        ids(&store, "Observation", &[("code", "8302-2")]).len()
    );
}

#[test]
fn id_lookup_and_types_outside_the_registry() {
    let store = store_with(vec![
        json!({"resourceType": "Basic", "id": "b1"}),
        json!({"resourceType": "Basic", "id": "b2"}),
        json!({"resourceType": "Basic", "id": "b3"}),
    ]);
    assert_eq!(
        ids(&store, "Basic", &[("_id", "b3,b1,missing")]),
        ["b1", "b3"]
    );
    assert_eq!(ids(&store, "Basic", &[("_id:not", "b2")]), ["b1", "b3"]);
    assert_eq!(ids(&store, "Basic", &[]), ["b1", "b2", "b3"]);
    assert!(ids(&store, "Observation", &[("code", "x")]).is_empty());
}

fn sortable_store() -> Store {
    store_with(vec![
        observation(
            "s5",
            json!({"code": {"coding": [{"code": "b"}]}, "effectiveDateTime": "2024-03-01"}),
        ),
        observation(
            "s3",
            json!({"code": {"coding": [{"code": "a"}]}, "effectiveDateTime": "2024-01-01"}),
        ),
        observation(
            "s1",
            json!({"code": {"coding": [{"code": "b"}]}, "effectiveDateTime": "2024-01-01"}),
        ),
        observation("s4", json!({"code": {"coding": [{"code": "a"}]}})),
        // Starts earliest but ends latest.
        observation(
            "s2",
            json!({"code": {"coding": [{"code": "c"}]}, "effectivePeriod": {"start": "2023-06-01", "end": "2025-01-01"}}),
        ),
        observation("s6", json!({"effectiveDateTime": "2024-01-01"})),
    ])
}

#[test]
fn default_order_is_creation_order() {
    let store = sortable_store();
    assert_eq!(
        ids(&store, "Observation", &[]),
        ["s5", "s3", "s1", "s4", "s2", "s6"]
    );
    // Updating a resource does not move it.
    store
        .upsert(observation("s5", json!({"effectiveDateTime": "2020"})))
        .expect("update");
    assert_eq!(
        ids(&store, "Observation", &[]),
        ["s5", "s3", "s1", "s4", "s2", "s6"]
    );
}

#[test]
fn sort_keys_directions_ties_and_missing_values() {
    let store = sortable_store();
    // Ascending by lower bound; ties (s1, s3, s6 on 2024-01-01) by id; missing (s4) last.
    assert_eq!(
        ids(&store, "Observation", &[("_sort", "date")]),
        ["s2", "s1", "s3", "s6", "s5", "s4"]
    );
    // Descending by upper bound: s2 ends in 2025; missing still last.
    assert_eq!(
        ids(&store, "Observation", &[("_sort", "-date")]),
        ["s2", "s5", "s1", "s3", "s6", "s4"]
    );
    // Several keys: code ascending (s6 has none: last), then date descending, then id.
    assert_eq!(
        ids(&store, "Observation", &[("_sort", "code,-date")]),
        ["s3", "s4", "s5", "s1", "s2", "s6"]
    );
    assert_eq!(
        ids(&store, "Observation", &[("_sort", "-code,date")]),
        ["s2", "s1", "s5", "s3", "s4", "s6"]
    );
    assert_eq!(
        ids(&store, "Observation", &[("_sort", "-_id")]),
        ["s6", "s5", "s4", "s3", "s2", "s1"]
    );
    // Equal lastUpdated everywhere (fixed clock): the id tie-break decides.
    assert_eq!(
        ids(&store, "Observation", &[("_sort", "_lastUpdated")]),
        ["s1", "s2", "s3", "s4", "s5", "s6"]
    );
}

#[test]
fn sort_is_stable_across_repeated_searches() {
    let store = sortable_store();
    let first = ids(&store, "Observation", &[("_sort", "status")]);
    assert_eq!(first, ["s1", "s2", "s3", "s4", "s5", "s6"]);
    for _ in 0..5 {
        assert_eq!(ids(&store, "Observation", &[("_sort", "status")]), first);
    }
}

fn linked_store() -> Store {
    store_with(vec![
        json!({"resourceType": "Practitioner", "id": "doc"}),
        json!({"resourceType": "Patient", "id": "p1", "generalPractitioner": [{"reference": "Practitioner/doc"}]}),
        json!({"resourceType": "Patient", "id": "p2"}),
        json!({"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"}}),
        observation(
            "o1",
            json!({"subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"}, "code": {"coding": [{"code": "x"}]}}),
        ),
        observation(
            "o2",
            json!({"subject": {"reference": "Patient/p1"}, "basedOn": [{"reference": "Observation/o1"}], "code": {"coding": [{"code": "x"}]}}),
        ),
        observation(
            "o3",
            json!({"subject": {"reference": "Patient/p2"}, "encounter": {"reference": "Encounter/missing"}, "code": {"coding": [{"code": "x"}]}}),
        ),
        json!({"resourceType": "Provenance", "id": "prov1", "target": [{"reference": "Patient/p1"}, {"reference": "Observation/o1"}]}),
        json!({"resourceType": "Provenance", "id": "prov2", "target": [{"reference": "Patient/p2"}]}),
    ])
}

/// Searches and includes, returning (match references, included references).
fn search_with_includes(
    store: &Store,
    resource_type: &str,
    pairs: &[(&str, &str)],
) -> (Vec<String>, Vec<String>) {
    let search = parse(resource_type, pairs).expect("parses");
    let matches = store.search(&search);
    let included = store.includes(&search, &matches);
    let references = |resources: &[Arc<StoredResource>]| {
        resources
            .iter()
            .map(|resource| resource.reference())
            .collect()
    };
    (references(&matches), references(&included))
}

#[test]
fn include_follows_references_once() {
    let store = linked_store();
    let (matches, included) = search_with_includes(
        &store,
        "Observation",
        &[("code", "x"), ("_include", "Observation:patient")],
    );
    assert_eq!(
        matches,
        ["Observation/o1", "Observation/o2", "Observation/o3"]
    );
    assert_eq!(included, ["Patient/p1", "Patient/p2"]);

    // Unresolvable references (Encounter/missing) are skipped.
    let (_, included) = search_with_includes(
        &store,
        "Observation",
        &[("code", "x"), ("_include", "Observation:encounter")],
    );
    assert_eq!(included, ["Encounter/e1"]);

    // A reference to a resource already on the page is not repeated among the includes.
    let (matches, included) = search_with_includes(
        &store,
        "Observation",
        &[("_id", "o1,o2"), ("_include", "Observation:based-on")],
    );
    assert_eq!(matches, ["Observation/o1", "Observation/o2"]);
    assert!(included.is_empty(), "{included:?}");
    let (_, included) = search_with_includes(
        &store,
        "Observation",
        &[("_id", "o2"), ("_include", "Observation:based-on")],
    );
    assert_eq!(included, ["Observation/o1"]);

    // Wildcard and a target type restriction.
    let (_, included) =
        search_with_includes(&store, "Observation", &[("_id", "o1"), ("_include", "*")]);
    assert_eq!(included, ["Patient/p1", "Encounter/e1"]);
    let (_, included) = search_with_includes(
        &store,
        "Observation",
        &[("_id", "o1"), ("_include", "Observation:subject:Group")],
    );
    assert!(included.is_empty());
}

#[test]
fn include_iterate_follows_included_resources() {
    let store = linked_store();
    let (_, included) = search_with_includes(
        &store,
        "Observation",
        &[
            ("_id", "o1"),
            ("_include", "Observation:patient"),
            ("_include:iterate", "Patient:general-practitioner"),
        ],
    );
    assert_eq!(included, ["Patient/p1", "Practitioner/doc"]);
}

#[test]
fn revinclude_finds_referrers() {
    let store = linked_store();
    let (matches, included) = search_with_includes(
        &store,
        "Patient",
        &[("_id", "p1"), ("_revinclude", "Provenance:target")],
    );
    assert_eq!(matches, ["Patient/p1"]);
    assert_eq!(included, ["Provenance/prov1"]);

    // Through the patient index.
    let (_, included) = search_with_includes(
        &store,
        "Patient",
        &[("_id", "p1,p2"), ("_revinclude", "Observation:patient")],
    );
    assert_eq!(
        included,
        ["Observation/o1", "Observation/o2", "Observation/o3"]
    );

    // Both directions at once, deduplicated: prov1 targets the patient and an observation.
    let (_, included) = search_with_includes(
        &store,
        "Observation",
        &[
            ("_id", "o1"),
            ("_include", "Observation:patient"),
            ("_revinclude", "Provenance:target"),
        ],
    );
    assert_eq!(included, ["Patient/p1", "Provenance/prov1"]);

    let (_, included) = search_with_includes(
        &store,
        "Observation",
        &[
            ("_id", "o1"),
            ("_include", "Observation:patient"),
            ("_revinclude:iterate", "Provenance:target"),
        ],
    );
    assert_eq!(included, ["Patient/p1", "Provenance/prov1"]);
}

#[test]
fn revinclude_honours_the_restriction_of_a_parameter_sharing_the_patient_slot() {
    // Appointment's `patient`, `practitioner` and `actor` all index `participant.actor`.
    let store = store_with(vec![
        json!({"resourceType": "Patient", "id": "p1"}),
        json!({"resourceType": "Practitioner", "id": "doc"}),
        json!({"resourceType": "Appointment", "id": "a1", "participant": [{"actor": {"reference": "Patient/p1"}}]}),
        json!({"resourceType": "Appointment", "id": "a2", "participant": [{"actor": {"reference": "Practitioner/doc"}}]}),
    ]);
    let cases: &[(&str, &str, &[&str])] = &[
        ("Patient", "Appointment:practitioner", &[]),
        ("Patient", "Appointment:patient", &["Appointment/a1"]),
        ("Patient", "Appointment:actor", &["Appointment/a1"]),
        (
            "Practitioner",
            "Appointment:practitioner",
            &["Appointment/a2"],
        ),
        ("Practitioner", "Appointment:patient", &[]),
    ];
    for (searched, revinclude, expected) in cases {
        let id = if *searched == "Patient" { "p1" } else { "doc" };
        let (_, included) = search_with_includes(
            &store,
            searched,
            &[("_id", id), ("_revinclude", revinclude)],
        );
        assert_eq!(included, *expected, "{searched}?_revinclude={revinclude}");
    }
}

#[test]
fn matches_are_a_snapshot() {
    let store = linked_store();
    let search = parse("Observation", &[("patient", "p1"), ("code", "x")]).expect("parses");
    let before = store.search(&search);
    store
        .upsert(observation(
            "o1",
            json!({"subject": {"reference": "Patient/p2"}, "code": {"coding": [{"code": "x"}]}}),
        ))
        .expect("update");
    assert_eq!(before[0].version(), 1);
    assert!(
        std::str::from_utf8(before[0].json())
            .expect("utf-8")
            .contains("Patient/p1")
    );
    // The patient index followed the update.
    assert_eq!(
        ids(&store, "Observation", &[("patient", "p1"), ("code", "x")]),
        ["o2"]
    );
    assert_eq!(
        ids(&store, "Observation", &[("patient", "p2"), ("code", "x")]),
        ["o1", "o3"]
    );
}

// ---------------------------------------------------------------------------------------
// Synthea: real data, checked count for count against a brute-force scan of the JSON.
// ---------------------------------------------------------------------------------------

/// Where the Synthea sample lives: the repository's copy, unless `EPIC_FHIR_SYNTHEA_DIR` names
/// another.
fn synthea_path(file: &str) -> std::path::PathBuf {
    let directory = std::env::var_os("EPIC_FHIR_SYNTHEA_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/synthea-r4"),
        std::path::PathBuf::from,
    );
    directory.join(file)
}

fn read_ndjson_gz(file: &str) -> Vec<Value> {
    let path = synthea_path(file);
    let reader =
        std::fs::File::open(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    BufReader::new(flate2::read::GzDecoder::new(reader))
        .lines()
        .enumerate()
        .map(|(number, line)| {
            let line = line.unwrap_or_else(|error| panic!("{file} line {}: {error}", number + 1));
            serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("{file} line {}: {error}", number + 1))
        })
        .collect()
}

fn codings<'a>(concept: &'a Value) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|coding| {
            (
                coding["system"].as_str().unwrap_or(""),
                coding["code"].as_str().unwrap_or(""),
            )
        })
}

fn effective(observation: &Value) -> OffsetDateTime {
    let text = observation["effectiveDateTime"]
        .as_str()
        .expect("Synthea observations have effectiveDateTime");
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|error| panic!("{text}: {error}"))
}

#[test]
fn synthea_observations_match_a_brute_force_scan() {
    let observations = read_ndjson_gz("Observation.ndjson.gz");
    assert_eq!(observations.len(), 28_049);
    let store = Store::new();
    for observation in &observations {
        store
            .upsert(observation.clone())
            .expect("Synthea observations are valid");
    }
    assert_eq!(store.count("Observation"), observations.len());

    let count = |pairs: &[(&str, &str)]| ids(&store, "Observation", pairs).len();
    let brute = |keep: &dyn Fn(&Value) -> bool| {
        observations
            .iter()
            .filter(|observation| keep(observation))
            .count()
    };
    let subject = |observation: &Value| {
        observation["subject"]["reference"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let has_category = |observation: &Value, code: &str| {
        observation["category"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|category| codings(category).any(|(_, c)| c == code))
    };

    // Every patient, through the patient index, against a per-patient brute-force count.
    let mut per_patient: HashMap<String, (usize, usize)> = HashMap::new();
    for observation in &observations {
        let entry = per_patient.entry(subject(observation)).or_default();
        entry.0 += 1;
        if has_category(observation, "vital-signs") {
            entry.1 += 1;
        }
    }
    assert_eq!(per_patient.len(), 200);
    for (reference, (all, vital)) in &per_patient {
        let id = reference
            .strip_prefix("Patient/")
            .expect("relative patient reference");
        assert_eq!(
            count(&[("patient", id), ("code:missing", "false")]),
            *all,
            "{reference}"
        );
        assert_eq!(
            count(&[("subject", reference), ("category", "vital-signs")]),
            *vital,
            "{reference}"
        );
    }

    // Type-wide searches.
    let loinc_height =
        brute(&|o| codings(&o["code"]).any(|(s, c)| s == "http://loinc.org" && c == "8302-2"));
    assert!(loinc_height > 100);
    assert_eq!(count(&[("code", "http://loinc.org|8302-2")]), loinc_height);
    assert_eq!(
        count(&[("category", "laboratory")]),
        brute(&|o| has_category(o, "laboratory"))
    );
    assert_eq!(count(&[("category", "vital-sign")]), 25);
    assert_eq!(
        count(&[("status", "final")]),
        brute(&|o| o["status"] == "final")
    );

    let from = OffsetDateTime::parse("2015-01-01T00:00:00Z", &Rfc3339).expect("date");
    let until = OffsetDateTime::parse("2016-01-01T00:00:00Z", &Rfc3339).expect("date");
    let in_2015 = brute(&|o| effective(o) >= from && effective(o) < until);
    assert!(in_2015 > 100);
    assert_eq!(
        count(&[("date", "ge2015-01-01"), ("date", "lt2016")]),
        in_2015
    );
    assert_eq!(count(&[("date", "2015")]), in_2015);

    let high_glucose_units = brute(&|o| {
        let quantity = &o["valueQuantity"];
        quantity["value"]
            .as_f64()
            .is_some_and(|value| value > 100.0)
            && (quantity["code"] == "mg/dL" || quantity["unit"] == "mg/dL")
    });
    assert!(high_glucose_units > 10);
    assert_eq!(
        count(&[("value-quantity", "gt100||mg/dL")]),
        high_glucose_units
    );

    let blood_text = brute(&|o| {
        let code = &o["code"];
        let displays = code["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|coding| coding["display"].as_str());
        displays.chain(code["text"].as_str()).any(|text| {
            // "blood" at the start of a word: at the start or after a non-alphanumeric character.
            let lower = text.to_lowercase();
            lower.match_indices("blood").any(|(position, _)| {
                lower[..position]
                    .chars()
                    .next_back()
                    .is_none_or(|previous| !previous.is_alphanumeric())
            })
        })
    });
    assert!(blood_text > 10);
    assert_eq!(count(&[("code:text", "blood")]), blood_text);

    // A sorted patient search: dates never increase, ties ordered by id.
    let (reference, _) = per_patient
        .iter()
        .max_by_key(|(_, (all, _))| *all)
        .expect("patients");
    let id = reference.strip_prefix("Patient/").expect("relative");
    let search = parse(
        "Observation",
        &[
            ("patient", id),
            ("category", "laboratory,vital-signs"),
            ("_sort", "-date"),
        ],
    )
    .expect("parses");
    let sorted = store.search(&search);
    assert!(sorted.len() > 10);
    let by_id: HashMap<&str, &Value> = observations
        .iter()
        .map(|o| (o["id"].as_str().expect("id"), o))
        .collect();
    for pair in sorted.windows(2) {
        let (a, b) = (
            effective(by_id[pair[0].id()]),
            effective(by_id[pair[1].id()]),
        );
        assert!(
            a > b || (a == b && pair[0].id() < pair[1].id()),
            "{} then {}",
            pair[0].id(),
            pair[1].id()
        );
    }
}
