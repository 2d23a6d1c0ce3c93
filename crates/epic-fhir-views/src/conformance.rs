//! The SQL on FHIR v2 conformance suite runner: each test file's fixtures through each test's
//! view, compared with its expectation, reported in the official `test_report.json` format
//! (`{file: {tests: [{name, result: {passed, reason?}}]}}`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::view::ViewDefinition;

/// The outcome of one test.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TestResult {
    /// Whether the implementation did what the test expects.
    pub passed: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One test of a file.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    /// The test's title.
    pub name: String,
    /// Its result.
    pub result: TestResult,
    /// Its tags (`shareable`, `experimental`...); not part of the official report.
    #[serde(skip)]
    pub tags: Vec<String>,
}

/// The tests of one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file's tests, in order.
    pub tests: Vec<TestOutcome>,
}

/// The whole report, keyed by file name; serialises to the official format.
pub type Report = BTreeMap<String, FileReport>;

/// Runs every `*.json` test file in `dir`.
///
/// # Errors
/// [`ErrorKind::Input`] when the folder or a file cannot be read or is not a test file.
pub fn run_dir(dir: &Path) -> Result<Report> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::new(
            ErrorKind::Input,
            format!("cannot read the test folder {}", dir.display()),
        )
        .with_source(e)
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Error::new(
            ErrorKind::Input,
            format!("{} holds no *.json test files", dir.display()),
        ));
    }
    let mut report = Report::new();
    for path in paths {
        let text = std::fs::read(&path).map_err(|e| {
            Error::new(ErrorKind::Input, format!("cannot read {}", path.display())).with_source(e)
        })?;
        let file: Value = serde_json::from_slice(&text).map_err(|e| {
            Error::new(ErrorKind::Input, format!("{} is not JSON", path.display())).with_source(e)
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        report.insert(
            name.clone(),
            run_file(&file)
                .map_err(|e| Error::new(ErrorKind::Input, format!("{name}: {}", e.message())))?,
        );
    }
    Ok(report)
}

/// Runs the tests of one parsed test file.
///
/// # Errors
/// [`ErrorKind::Input`] when it lacks `resources` or `tests`.
pub fn run_file(file: &Value) -> Result<FileReport> {
    let resources = file
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::new(ErrorKind::Input, "no `resources` array"))?;
    let tests = file
        .get("tests")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::new(ErrorKind::Input, "no `tests` array"))?;
    let lines: Vec<String> = resources.iter().map(Value::to_string).collect();
    let mut outcomes = Vec::new();
    for (i, test) in tests.iter().enumerate() {
        let name = test
            .get("title")
            .and_then(Value::as_str)
            .map_or_else(|| format!("test {i}"), str::to_owned);
        let tags = test
            .get("tags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        outcomes.push(TestOutcome {
            name,
            result: run_test(test, &lines),
            tags,
        });
    }
    Ok(FileReport { tests: outcomes })
}

fn fail(reason: impl Into<String>) -> TestResult {
    TestResult {
        passed: false,
        reason: Some(reason.into()),
    }
}

fn run_test(test: &Value, resources: &[String]) -> TestResult {
    let expect_error = test.get("expectError").and_then(Value::as_bool) == Some(true);
    let outcome = test
        .get("view")
        .ok_or_else(|| Error::definition("the test has no view"))
        .and_then(ViewDefinition::from_json)
        .and_then(|view| {
            let mut rows = Vec::new();
            for resource in resources {
                rows.extend(crate::rows_as_json(&view, resource)?);
            }
            Ok((view, rows))
        });
    let (view, rows) = match outcome {
        Err(_) if expect_error => {
            return TestResult {
                passed: true,
                reason: None,
            };
        }
        Err(error) => return fail(error.to_string()),
        Ok(_) if expect_error => return fail("expected an error, but the view ran"),
        Ok(result) => result,
    };
    if let Some(columns) = test.get("expectColumns").and_then(Value::as_array) {
        let ours: Vec<Value> = view
            .columns()
            .iter()
            .map(|c| Value::from(c.name.clone()))
            .collect();
        if &ours != columns {
            return fail(format!("columns {ours:?}, expected {columns:?}"));
        }
    }
    if let Some(expected) = test.get("expect").and_then(Value::as_array) {
        let mut ours: Vec<String> = rows.iter().map(canonical).collect();
        let mut theirs: Vec<String> = expected.iter().map(canonical).collect();
        ours.sort();
        theirs.sort();
        if ours != theirs {
            return fail(format!(
                "rows differ (order ignored): got {}, expected {}",
                Value::Array(rows),
                Value::Array(expected.clone())
            ));
        }
    }
    TestResult {
        passed: true,
        reason: None,
    }
}

/// A value as text with object keys sorted and numbers compared by value (`5` = `5.0`).
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .iter()
                .map(|k| format!("{:?}:{}", k, canonical(&map[*k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        Value::Number(n) => match n.as_f64() {
            Some(f) => format!("{f:?}"),
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}
