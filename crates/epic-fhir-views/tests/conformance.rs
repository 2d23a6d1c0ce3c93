//! The official SQL on FHIR v2 conformance suite, vendored in `data/sql-on-fhir-v2/tests`:
//! every `shareable` test must pass, and so must the `experimental` ones this engine
//! implements (all of them today).

use std::path::PathBuf;

use epic_fhir_views::conformance::run_dir;

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/sql-on-fhir-v2/tests")
}

#[test]
fn the_official_suite_passes() {
    let report = run_dir(&suite_dir()).expect("the vendored suite is readable");
    let mut failures = Vec::new();
    let (mut shareable, mut experimental, mut total) = (0, 0, 0);
    for (file, tests) in &report {
        for test in &tests.tests {
            total += 1;
            if test.result.passed {
                if test.tags.iter().any(|t| t == "shareable") {
                    shareable += 1;
                }
                if test.tags.iter().any(|t| t == "experimental") {
                    experimental += 1;
                }
            } else {
                failures.push(format!(
                    "{file} / {}: {}",
                    test.name,
                    test.result.reason.as_deref().unwrap_or("")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(total, 134, "the suite has 134 tests");
    assert_eq!(shareable, 123, "all 123 shareable tests pass");
    assert_eq!(experimental, 11, "all 11 experimental tests pass");
}

#[test]
fn the_report_has_the_official_shape() {
    let report = run_dir(&suite_dir()).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let logic = &json["logic.json"]["tests"];
    assert_eq!(logic[0]["name"], "filtering with 'and'");
    assert_eq!(logic[0]["result"], serde_json::json!({"passed": true}));
    assert!(logic[0].get("tags").is_none());
}
