//! Runs into local folders: each format read back (Parquet with the `parquet` crate, typed as
//! declared), parts, inputs (gzip, export folders), and failures that publish nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use epic_fhir_views::{
    Destination, ErrorKind, Format, InputFile, Progress, RunOptions, ViewDefinition, run,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("views-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn observations() -> Vec<serde_json::Value> {
    vec![
        json!({"resourceType": "Observation", "id": "bp1", "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "issued": "2024-05-01T10:00:00.250+02:00",
            "component": [
                {"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"code": "8462-4"}]}, "valueQuantity": {"value": 80.5, "unit": "mm[Hg]"}}]}),
        json!({"resourceType": "Patient", "id": "p1"}),
        json!({"resourceType": "Observation", "id": "hr1", "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate, \"resting\", bpm"},
            "subject": {"reference": "Patient/p2"},
            "valueQuantity": {"value": 61, "unit": "/min"}}),
        json!({"resourceType": "Observation", "id": "lab1", "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 5.4}}),
    ]
}

fn vitals_view() -> ViewDefinition {
    ViewDefinition::from_json(&json!({
        "name": "vitals",
        "resource": "Observation",
        "where": [{"path": "category.coding.exists(code = 'vital-signs')"}],
        "select": [
            {"column": [
                {"name": "id", "path": "getResourceKey()", "type": "id"},
                {"name": "patient_id", "path": "subject.getReferenceKey(Patient)", "type": "id"},
                {"name": "issued", "path": "issued", "type": "instant"},
                {"name": "text", "path": "code.text", "type": "string"},
                {"name": "codes", "path": "code.coding.code", "type": "code", "collection": true}
            ]},
            {"unionAll": [
                {"forEach": "where(component.empty())", "column": [
                    {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                    {"name": "position", "path": "%rowIndex", "type": "integer"}]},
                {"forEach": "component", "column": [
                    {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                    {"name": "position", "path": "%rowIndex", "type": "integer"}]}
            ]}
        ]
    }))
    .unwrap()
}

fn write_ndjson(path: &Path, resources: &[serde_json::Value]) {
    let mut text = String::new();
    for resource in resources {
        text.push_str(&resource.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn run_local(
    views: &[ViewDefinition],
    inputs: Vec<InputFile>,
    out: &Path,
    options: &RunOptions,
) -> epic_fhir_views::Result<epic_fhir_views::RunSummary> {
    run(
        views,
        inputs.into_iter().map(Ok),
        &Destination::Local(out.to_path_buf()),
        options,
        &Progress::default(),
        None,
    )
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

#[test]
fn parquet_is_typed_as_declared() {
    let dir = scratch("parquet");
    let input = dir.join("Observation.ndjson");
    write_ndjson(&input, &observations());
    let summary = run_local(
        &[vitals_view()],
        vec![InputFile::path(&input)],
        &dir.join("out"),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(summary.views[0].rows, 3);
    assert_eq!(summary.resources, 4);
    assert_eq!(listing(&dir.join("out")), ["vitals/part-00000.parquet"]);

    let batches = read_parquet(&dir.join("out/vitals/part-00000.parquet"));
    let batch = arrow_select_concat(&batches);
    let schema = batch.schema();
    let types: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(types[0], ("id", &DataType::Utf8));
    assert_eq!(
        types[2],
        (
            "issued",
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        )
    );
    assert!(matches!(types[4].1, DataType::List(item) if item.data_type() == &DataType::Utf8));
    assert_eq!(types[5], ("value", &DataType::Float64));
    assert_eq!(types[6], ("position", &DataType::Int32));

    let ids = batch.column(0).as_string::<i32>();
    let values = batch.column(5).as_primitive::<Float64Type>();
    let positions = batch.column(6).as_primitive::<Int32Type>();
    let rows: Vec<(String, f64, i32)> = (0..batch.num_rows())
        .map(|i| (ids.value(i).to_owned(), values.value(i), positions.value(i)))
        .collect();
    assert_eq!(
        rows,
        [
            ("bp1".to_owned(), 120.0, 0),
            ("bp1".to_owned(), 80.5, 1),
            ("hr1".to_owned(), 61.0, 0)
        ]
    );
    let issued = batch.column(2).as_primitive::<TimestampMicrosecondType>();
    // 2024-05-01T08:00:00.250Z
    assert_eq!(issued.value(0), 1_714_550_400_250_000);
    assert!(issued.is_null(2));
    let codes = batch.column(4).as_list::<i32>();
    assert_eq!(codes.value(0).as_string::<i32>().value(0), "85354-9");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Concatenates batches of one schema by reading them row by row (no arrow-select needed).
fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(batches.len(), 1, "small tables are one batch");
    batches[0].clone()
}

#[test]
fn csv_and_ndjson_read_back() {
    let dir = scratch("text");
    let input = dir.join("Observation.ndjson");
    write_ndjson(&input, &observations());
    for format in [Format::Csv, Format::Ndjson] {
        let options = RunOptions {
            format,
            ..RunOptions::default()
        };
        run_local(
            &[vitals_view()],
            vec![InputFile::path(&input)],
            &dir.join("out"),
            &options,
        )
        .unwrap();
    }
    let csv = std::fs::read_to_string(dir.join("out/vitals/part-00000.csv")).unwrap();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], "id,patient_id,issued,text,codes,value,position");
    assert_eq!(
        lines[1],
        "bp1,p1,2024-05-01T10:00:00.250+02:00,,\"[\"\"85354-9\"\"]\",120,0"
    );
    assert_eq!(
        lines[3],
        "hr1,p2,,\"Heart rate, \"\"resting\"\", bpm\",\"[\"\"8867-4\"\"]\",61,0"
    );
    assert_eq!(
        lines.len(),
        5,
        "header, 3 rows, and the empty string after the last line end"
    );

    let ndjson = std::fs::read_to_string(dir.join("out/vitals/part-00000.ndjson")).unwrap();
    let rows: Vec<serde_json::Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[1],
        json!({"id": "bp1", "patient_id": "p1", "issued": "2024-05-01T10:00:00.250+02:00", "text": null,
               "codes": ["85354-9"], "value": 80.5, "position": 1})
    );
    // Keys keep column order.
    assert!(ndjson.starts_with("{\"id\":\"bp1\",\"patient_id\":\"p1\",\"issued\""));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lines_longer_than_a_block_crlf_a_byte_order_mark_and_progress() {
    let dir = scratch("lines");
    // A byte order mark, CRLF line ends, blank lines, a 3 MiB resource (longer than the
    // reader's 1 MiB blocks) between ordinary ones, and no line end after the last line.
    let big = json!({"resourceType": "Observation", "id": "big", "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "x".repeat(3 << 20)},
        "valueQuantity": {"value": 70}});
    let mut text = b"\xEF\xBB\xBF".to_vec();
    let resources = observations();
    for (i, resource) in resources.iter().enumerate() {
        text.extend_from_slice(resource.to_string().as_bytes());
        text.extend_from_slice(b"\r\n\r\n");
        if i == 1 {
            text.extend_from_slice(big.to_string().as_bytes());
            text.extend_from_slice(b"\r\n");
        }
    }
    text.truncate(text.len() - 4);
    let input = dir.join("mixed.ndjson");
    std::fs::write(&input, &text).unwrap();
    let progress = Progress::default();
    let options = RunOptions {
        format: Format::Ndjson,
        ..RunOptions::default()
    };
    let summary = run(
        &[vitals_view()],
        [Ok(InputFile::path(&input))],
        &Destination::Local(dir.join("out")),
        &options,
        &progress,
        None,
    )
    .unwrap();
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.join("out/vitals/part-00000.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["bp1", "bp1", "big", "hr1"]);
    assert_eq!(rows[2]["text"].as_str().map(str::len), Some(3 << 20));
    assert_eq!(rows[2]["value"], 70);
    // What a progress display shows: every byte, resource and row, one file.
    assert_eq!(progress.bytes(), text.len() as u64);
    assert_eq!(progress.resources(), 5);
    assert_eq!(progress.rows(), 4);
    assert_eq!(progress.files(), 1);
    assert_eq!(
        (summary.resources, summary.bytes, summary.views[0].rows),
        (5, text.len() as u64, 4)
    );

    // An error on a line after the long one is reported with its line number.
    let mut broken = text.clone();
    broken.extend_from_slice(b"\r\n{\"resourceType\": \"Observation\",}");
    std::fs::write(&input, &broken).unwrap();
    let error = run_local(
        &[vitals_view()],
        vec![InputFile::path(&input)],
        &dir.join("out"),
        &options,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("mixed.ndjson line 9: not JSON"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn large_tables_are_split_into_parts_and_reruns_replace_old_parts() {
    let dir = scratch("parts");
    let input = dir.join("many.ndjson.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&input).unwrap(),
        flate2::Compression::fast(),
    );
    for i in 0..30_000 {
        let resource = json!({"resourceType": "Patient", "id": format!("p{i:05}"), "gender": if i % 2 == 0 { "female" } else { "male" }});
        writeln!(encoder, "{resource}").unwrap();
    }
    encoder.finish().unwrap();
    let view = ViewDefinition::from_json(&json!({"name": "patients", "resource": "Patient",
        "select": [{"column": [{"name": "id", "path": "id", "type": "id"}, {"name": "gender", "path": "gender", "type": "code"}]}]}))
    .unwrap();
    let options = RunOptions {
        format: Format::Csv,
        part_bytes: 100_000,
        workers: 3,
        ..RunOptions::default()
    };
    let out = dir.join("out");
    let summary = run_local(
        std::slice::from_ref(&view),
        vec![InputFile::path(&input)],
        &out,
        &options,
    )
    .unwrap();
    assert_eq!(summary.views[0].rows, 30_000);
    let parts = listing(&out);
    assert!(parts.len() >= 2, "{parts:?}");
    // Parts close between blocks of input (1 MiB of NDJSON each): about 1.8 MB here gives
    // two. Every row once, in input order, across the parts.
    let mut ids = Vec::new();
    for part in &parts {
        let text = std::fs::read_to_string(out.join(part)).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("id,gender"), "each part has the header");
        ids.extend(lines.map(|l| l.split(',').next().unwrap().to_owned()));
    }
    let expected: Vec<String> = (0..30_000).map(|i| format!("p{i:05}")).collect();
    assert_eq!(ids, expected);

    // A second run with one small part replaces all the old parts.
    let small = dir.join("one.ndjson");
    write_ndjson(&small, &[json!({"resourceType": "Patient", "id": "only"})]);
    run_local(&[view], vec![InputFile::path(&small)], &out, &options).unwrap();
    assert_eq!(listing(&out), ["patients/part-00000.csv"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failure_mid_run_publishes_nothing() {
    let dir = scratch("failure");
    let good = dir.join("a.ndjson");
    write_ndjson(&good, &observations());
    let bad = dir.join("b.ndjson");
    std::fs::write(
        &bad,
        format!(
            "{}\n{{\"resourceType\": \"Observation\", \"id\": \"broken\"\n",
            observations()[0]
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let error = run_local(
        &[vitals_view()],
        vec![InputFile::path(&good), InputFile::path(&bad)],
        &out,
        &RunOptions::default(),
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Input);
    assert!(
        error.to_string().contains("b.ndjson line 2: not JSON"),
        "{error}"
    );
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
    // Nothing hidden left behind either.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

    // A column with several values where one is declared: an evaluation error naming the
    // view, the element, the input line and the resource.
    let view = ViewDefinition::from_json(&json!({"name": "codes", "resource": "Observation",
        "select": [{"column": [{"name": "code", "path": "component.code.coding.code", "type": "code"}]}]}))
    .unwrap();
    let error = run_local(
        &[view],
        vec![InputFile::path(&good)],
        &out,
        &RunOptions::default(),
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Evaluation);
    let message = error.to_string();
    assert!(message.contains("view `codes`"), "{message}");
    assert!(
        message.contains("a.ndjson line 1 (Observation/bp1)"),
        "{message}"
    );
    assert!(message.contains("select[0].column[0].path"), "{message}");
    assert!(message.contains("collection"), "{message}");
    assert!(listing(&out).is_empty());

    // An input iterator that gives up (e.g. the export feeding it failed).
    let inputs = vec![
        Ok(InputFile::path(&good)),
        Err(epic_fhir_views::Error::cancelled("the export failed")),
    ];
    let error = run(
        &[vitals_view()],
        inputs,
        &Destination::Local(out.clone()),
        &RunOptions::default(),
        &Progress::default(),
        None,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Cancelled);
    assert!(listing(&out).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_folders_are_read_by_their_manifest_and_partitions_nest() {
    let dir = scratch("export");
    let export = dir.join("export");
    std::fs::create_dir_all(&export).unwrap();
    write_ndjson(
        &export.join("Observation-0001.ndjson"),
        &observations()[..1],
    );
    write_ndjson(
        &export.join("Patient-0001.ndjson"),
        &[json!({"resourceType": "Patient", "id": "p1"})],
    );
    std::fs::write(
        export.join("error-OperationOutcome-0001.ndjson"),
        "not json at all\n",
    )
    .unwrap();
    std::fs::write(
        export.join(epic_fhir_views::EXPORT_STATE_FILE),
        json!({"files": [
            {"kind": "output", "type": "Observation", "name": "Observation-0001.ndjson", "done": {"bytes": 1, "resources": 1}},
            {"kind": "output", "type": "Patient", "name": "Patient-0001.ndjson", "done": {"bytes": 1, "resources": 1}},
            {"kind": "error", "type": "OperationOutcome", "name": "error-OperationOutcome-0001.ndjson", "done": {"bytes": 1, "resources": 1}}
        ]})
        .to_string(),
    )
    .unwrap();
    let inputs = epic_fhir_views::expand_inputs(&[export.display().to_string()]).unwrap();
    let options = RunOptions {
        partition: Some("source=org_a".to_owned()),
        format: Format::Ndjson,
        ..RunOptions::default()
    };
    let out = dir.join("out");
    let summary = run_local(&[vitals_view()], inputs, &out, &options).unwrap();
    // The Patient file is not read at all: no view wants Patients.
    assert_eq!(summary.files, 1);
    assert_eq!(listing(&out), ["vitals/source=org_a/part-00000.ndjson"]);
    let bad = RunOptions {
        partition: Some("../x".to_owned()),
        ..RunOptions::default()
    };
    assert!(run_local(&[vitals_view()], vec![], &out, &bad).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_input_still_makes_a_table_with_its_schema() {
    let dir = scratch("empty");
    let input = dir.join("none.ndjson");
    std::fs::write(&input, "\n\n").unwrap();
    run_local(
        &[vitals_view()],
        vec![InputFile::path(&input)],
        &dir.join("out"),
        &RunOptions::default(),
    )
    .unwrap();
    let batches = read_parquet(&dir.join("out/vitals/part-00000.parquet"));
    assert!(batches.iter().all(|b| b.num_rows() == 0));
    let file = std::fs::File::open(dir.join("out/vitals/part-00000.parquet")).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(builder.schema().fields().len(), 7);
    std::fs::remove_dir_all(&dir).unwrap();
}
