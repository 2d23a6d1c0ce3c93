//! Unit tests of the pure parts of `$export`: parameters, ranges, encodings, file bytes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

use super::download::{ByteRange, FileBytes, accepts_gzip, parse_range};
use super::job::{ExportFile, FileContent};
use super::kickoff::{check_accept, check_prefer, parse_instant, parse_params};
use super::{BulkConfig, BulkState, ceil_seconds, human};
use crate::store::Store;

const NOW: OffsetDateTime = datetime!(2026-11-01 15:00:00 UTC);

fn known() -> HashSet<String> {
    ["Patient", "Observation", "Condition", "Group"]
        .iter()
        .map(|t| (*t).to_owned())
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The diagnostics of a refused parameter list, asserting the status and the expression.
fn refusal(list: &[(&str, &str)], expression: &str) -> (u16, String, &'static str) {
    let error = parse_params(&pairs(list), &known(), NOW).expect_err("refused");
    assert_eq!(
        error.issue.expression.as_deref(),
        Some(expression),
        "{}",
        error.issue.diagnostics
    );
    (
        error.status.as_u16(),
        error.issue.diagnostics.clone(),
        error.issue.code,
    )
}

#[test]
fn valid_parameters_are_collected() {
    let params = parse_params(
        &pairs(&[
            ("_outputFormat", "application/fhir+ndjson"),
            ("_type", "Patient,Observation"),
            ("_type", "Observation , Condition"),
            ("_since", "2026-10-01T00:00:00.5+02:00"),
            (
                "_typeFilter",
                "Observation?category=laboratory,Condition?clinical-status=active",
            ),
            ("_typeFilter", "Observation?code=http://loinc.org|8302-2"),
        ]),
        &known(),
        NOW,
    )
    .expect("valid");
    assert_eq!(
        params.types.as_deref(),
        Some(
            &[
                "Patient".to_owned(),
                "Observation".to_owned(),
                "Condition".to_owned()
            ][..]
        )
    );
    assert_eq!(params.since, Some(datetime!(2026-09-30 22:00:00.5 UTC)));
    let filters: Vec<&str> = params.filters.iter().map(|f| f.resource_type()).collect();
    assert_eq!(filters, ["Observation", "Condition", "Observation"]);
    for format in ["application/ndjson", "ndjson", "Application/FHIR+NDJSON"] {
        assert!(
            parse_params(&pairs(&[("_outputFormat", format)]), &known(), NOW).is_ok(),
            "{format}"
        );
    }
    assert!(
        parse_params(&[], &known(), NOW)
            .expect("empty")
            .types
            .is_none()
    );
}

#[test]
fn each_bad_parameter_is_named() {
    let (status, message, _) = refusal(&[("_outputFormat", "text/csv")], "_outputFormat");
    assert_eq!(status, 400);
    assert!(message.contains("text/csv"), "{message}");
    let (_, message, _) = refusal(
        &[("_outputFormat", "ndjson"), ("_outputFormat", "ndjson")],
        "_outputFormat",
    );
    assert!(message.contains("more than once"), "{message}");
    let (_, message, _) = refusal(&[("_type", "Patient,Spaceship")], "_type");
    assert!(message.contains("`Spaceship`"), "{message}");
    let (_, message, _) = refusal(&[("_type", "Patient,,Observation")], "_type");
    assert!(message.contains("empty type"), "{message}");
    let (_, message, _) = refusal(&[("_type", "patient")], "_type");
    assert!(message.contains("`patient`"), "{message}");
    let (_, message, _) = refusal(&[("_since", "2026-10-01")], "_since");
    assert!(message.contains("FHIR instant"), "{message}");
    let (_, message, _) = refusal(&[("_since", "2026-10-01T10:00:00")], "_since");
    assert!(message.contains("zone"), "{message}");
    let (_, message, _) = refusal(&[("_since", "2026-13-01T10:00:00Z")], "_since");
    assert!(message.contains("2026-13-01"), "{message}");
    let (_, message, _) = refusal(&[("_since", "2026-11-02T00:00:00Z")], "_since");
    assert!(message.contains("future"), "{message}");
    for name in ["_elements", "includeAssociatedData", "patient", "_until"] {
        let (status, message, code) = refusal(&[(name, "x")], name);
        assert_eq!((status, code), (400, "not-supported"), "{name}");
        assert!(message.contains(name), "{message}");
    }
    let (_, message, code) = refusal(&[("colour", "blue")], "colour");
    assert_eq!(code, "not-supported");
    assert!(message.contains("`colour`"), "{message}");
}

#[test]
fn since_accepts_instants_only() {
    assert_eq!(
        parse_instant("2024-05-01T12:00:00Z"),
        Ok(datetime!(2024-05-01 12:00:00 UTC))
    );
    assert_eq!(
        parse_instant("2024-05-01T12:00:00.123-05:00"),
        Ok(datetime!(2024-05-01 17:00:00.123 UTC))
    );
    // An unencoded `+` arrives as a space.
    assert_eq!(
        parse_instant("2024-05-01T12:00:00 01:00"),
        Ok(datetime!(2024-05-01 11:00:00 UTC))
    );
    for bad in [
        "2024",
        "2024-05-01T12:00Z",
        "2024-05-01 12:00:00Z",
        "2024-05-01T12:00:00",
        "2024-05-01T25:00:00Z",
        "yesterday",
    ] {
        assert!(parse_instant(bad).is_err(), "{bad}");
    }
}

#[test]
fn type_filters_are_checked() {
    let bad = [
        ("Observation", "not a FHIR search query"),
        ("Spaceship?name=x", "`Spaceship`"),
        ("Observation?", "no search parameters"),
        ("Observation?date=yesterday", "is invalid"),
        ("Observation?colour=blue", "`colour`"),
        ("Observation?category=laboratory&_count=5", "`_count`"),
        ("Observation?category=laboratory&_sort=date", "`_sort`"),
        (
            "Observation?category=laboratory&_include=Observation:patient",
            "`_include`",
        ),
    ];
    for (filter, needle) in bad {
        let error =
            parse_params(&pairs(&[("_typeFilter", filter)]), &known(), NOW).expect_err(filter);
        assert_eq!(error.status.as_u16(), 400, "{filter}");
        assert_eq!(error.issue.expression.as_deref(), Some("_typeFilter"));
        assert!(
            error.issue.diagnostics.contains(needle),
            "{filter}: {}",
            error.issue.diagnostics
        );
    }
    // A comma meant inside one query must be encoded; unencoded it splits the list and the
    // second part is not a query.
    let error = parse_params(
        &pairs(&[("_typeFilter", "Observation?code=a,b")]),
        &known(),
        NOW,
    )
    .expect_err("split");
    assert!(
        error.issue.diagnostics.contains("%2C"),
        "{}",
        error.issue.diagnostics
    );
    let encoded = parse_params(
        &pairs(&[("_typeFilter", "Observation?code=a%2Cb")]),
        &known(),
        NOW,
    )
    .expect("encoded comma");
    assert_eq!(encoded.filters.len(), 1);
}

#[test]
fn ranges() {
    assert_eq!(
        parse_range("bytes=0-", 10),
        ByteRange::Part { start: 0, end: 9 }
    );
    assert_eq!(
        parse_range("bytes=3-5", 10),
        ByteRange::Part { start: 3, end: 5 }
    );
    assert_eq!(
        parse_range("bytes=3-500", 10),
        ByteRange::Part { start: 3, end: 9 }
    );
    assert_eq!(
        parse_range("Bytes = 9-", 10),
        ByteRange::Whole,
        "a space before `=` is malformed"
    );
    assert_eq!(
        parse_range("BYTES=9-", 10),
        ByteRange::Part { start: 9, end: 9 }
    );
    assert_eq!(
        parse_range("bytes=-4", 10),
        ByteRange::Part { start: 6, end: 9 }
    );
    assert_eq!(
        parse_range("bytes=-40", 10),
        ByteRange::Part { start: 0, end: 9 }
    );
    assert_eq!(parse_range("bytes=10-", 10), ByteRange::Unsatisfiable);
    assert_eq!(parse_range("bytes=10-20", 10), ByteRange::Unsatisfiable);
    assert_eq!(parse_range("bytes=-0", 10), ByteRange::Unsatisfiable);
    assert_eq!(parse_range("bytes=0-", 0), ByteRange::Unsatisfiable);
    for ignored in [
        "items=0-5",
        "bytes=5-3",
        "bytes=0-1,4-5",
        "bytes=a-",
        "bytes=+1-",
        "bytes=",
        "bytes=-",
    ] {
        assert_eq!(parse_range(ignored, 10), ByteRange::Whole, "{ignored}");
    }
}

#[test]
fn gzip_negotiation() {
    let with = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).expect("header"),
        );
        accepts_gzip(&headers)
    };
    assert!(!accepts_gzip(&HeaderMap::new()));
    assert!(with("gzip"));
    assert!(with("br, GZIP;q=0.5"));
    assert!(with("x-gzip"));
    assert!(with("*"));
    assert!(!with("identity"));
    assert!(!with("gzip;q=0"));
    assert!(!with("gzip;q=0, *"), "an explicit refusal wins over *");
    assert!(!with("*;q=0"));
}

fn stored_file() -> (Arc<ExportFile>, Vec<u8>) {
    let store = Store::new();
    let mut resources = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let padding = "x".repeat(i * 300);
        let resource = store
            .upsert(
                json!({"resourceType": "Patient", "id": format!("p{i}"), "text": {"div": padding}}),
            )
            .expect("stored")
            .resource;
        expected.extend_from_slice(resource.json());
        expected.push(b'\n');
        resources.push(resource);
    }
    let file = ExportFile {
        resource_type: "Patient".to_owned(),
        count: resources.len(),
        len: expected.len() as u64,
        content: FileContent::Resources(resources),
    };
    (Arc::new(file), expected)
}

#[test]
fn file_bytes_are_the_lines_in_chunks_and_any_slice_of_them() {
    let (file, expected) = stored_file();
    let len = expected.len() as u64;
    assert!(len > 200_000, "several chunks");
    let whole: Vec<u8> = FileBytes::new(Arc::clone(&file), 0, len)
        .flatten()
        .collect();
    assert_eq!(whole, expected);
    assert!(FileBytes::new(Arc::clone(&file), 0, len).all(|chunk| chunk.len() <= 64 * 1024));
    for (start, end) in [
        (0, 1),
        (5, 6000),
        (1000, len),
        (len - 1, len),
        (70_000, 140_001),
    ] {
        let part: Vec<u8> = FileBytes::new(Arc::clone(&file), start, end)
            .flatten()
            .collect();
        assert_eq!(
            part,
            expected[start as usize..end as usize],
            "{start}..{end}"
        );
    }
    assert_eq!(FileBytes::new(file, len, len).count(), 0);
}

#[test]
fn durations_for_headers_and_messages() {
    assert_eq!(ceil_seconds(Duration::from_millis(1)), 1);
    assert_eq!(ceil_seconds(Duration::from_secs(2)), 2);
    assert_eq!(ceil_seconds(Duration::ZERO), 0);
    assert_eq!(human(Duration::from_secs(24 * 3600)), "24 h");
    assert_eq!(human(Duration::from_millis(1500)), "2 s");
    assert_eq!(human(Duration::from_millis(250)), "250 ms");
}

#[test]
fn group_window_is_per_client_and_group() {
    let config = BulkConfig {
        group_export_window: Some(Duration::from_secs(3600)),
        ..BulkConfig::default()
    };
    let state = BulkState::new(config);
    assert!(state.claim_window("a", "g1").is_ok());
    let error = state
        .claim_window("a", "g1")
        .expect_err("inside the window");
    assert_eq!(error.status.as_u16(), 429);
    assert_eq!(error.retry_after, Some(3600));
    assert!(
        error.issue.diagnostics.contains("Group/g1"),
        "{}",
        error.issue.diagnostics
    );
    assert!(state.claim_window("b", "g1").is_ok(), "another client");
    assert!(state.claim_window("a", "g2").is_ok(), "another Group");
    let unlimited = BulkState::new(BulkConfig::default());
    assert!(unlimited.claim_window("a", "g1").is_ok());
    assert!(unlimited.claim_window("a", "g1").is_ok());
}

#[test]
fn config_is_validated() {
    assert!(BulkConfig::default().validate().is_ok());
    let config = BulkConfig {
        max_resources_per_file: 0,
        ..BulkConfig::default()
    };
    assert!(
        config
            .validate()
            .expect_err("zero")
            .contains("max_resources_per_file")
    );
}

fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in list {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn kick_off_headers() {
    let missing = check_accept(&HeaderMap::new()).expect_err("missing");
    assert!(
        missing
            .issue
            .diagnostics
            .contains("Accept header is missing")
    );
    assert_eq!(missing.issue.expression.as_deref(), Some("Accept"));
    assert!(check_accept(&headers(&[("accept", "application/fhir+json")])).is_ok());
    assert!(
        check_accept(&headers(&[(
            "accept",
            "text/html, Application/FHIR+JSON; charset=utf-8"
        )]))
        .is_ok()
    );
    assert!(
        check_accept(&headers(&[
            ("accept", "text/html"),
            ("accept", "application/fhir+json;q=0.5")
        ]))
        .is_ok()
    );
    for refused in ["*/*", "application/json", "application/fhir+json;q=0"] {
        let error = check_accept(&headers(&[("accept", refused)])).expect_err(refused);
        assert_eq!(error.status.as_u16(), 400);
        assert!(
            error.issue.diagnostics.contains(refused),
            "{}",
            error.issue.diagnostics
        );
    }

    let missing = check_prefer(&HeaderMap::new()).expect_err("missing");
    assert!(
        missing
            .issue
            .diagnostics
            .contains("Prefer header is missing")
    );
    assert_eq!(missing.issue.expression.as_deref(), Some("Prefer"));
    assert!(check_prefer(&headers(&[("prefer", "respond-async")])).is_ok());
    assert!(check_prefer(&headers(&[("prefer", "handling=lenient, Respond-Async")])).is_ok());
    assert!(
        check_prefer(&headers(&[
            ("prefer", "return=minimal"),
            ("prefer", "respond-async")
        ]))
        .is_ok()
    );
    let wrong =
        check_prefer(&headers(&[("prefer", "return=minimal")])).expect_err("no respond-async");
    assert!(
        wrong.issue.diagnostics.contains("return=minimal"),
        "{}",
        wrong.issue.diagnostics
    );
}
