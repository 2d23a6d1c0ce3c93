//! Tables in S3, against a local S3-compatible server (moto) that the test starts itself on
//! loopback. `.ci/run` installs moto with `.ci/moto.sh` and passes its path in
//! `EPIC_FHIR_MOTO_SERVER`; without it the test fails and says how to install it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use epic_fhir_views::{
    Destination, ErrorKind, Format, InputFile, Progress, RunOptions, ViewDefinition, run,
};
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> PathBuf {
    if let Ok(path) = std::env::var("EPIC_FHIR_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let default = std::env::var("HOME")
        .map(|home| PathBuf::from(home).join(".cache/epic-fhir/venv/bin/moto_server"))
        .unwrap_or_default();
    assert!(
        default.exists(),
        "moto_server (a local S3 server for this test) is missing: run .ci/moto.sh, which .ci/run does, \
         or set EPIC_FHIR_MOTO_SERVER to its path"
    );
    default
}

fn start_moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on 127.0.0.1:{port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// Creates a bucket with a plain HTTP request (moto does not check signatures).
fn create_bucket(port: u16, bucket: &str) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

fn options(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", format!("http://127.0.0.1:{port}")),
        ("aws_allow_http", "true".to_owned()),
        ("aws_access_key_id", "test".to_owned()),
        ("aws_secret_access_key", "test".to_owned()),
        ("aws_region", "us-east-1".to_owned()),
    ]
}

fn destination(port: u16, url: &str) -> Destination {
    options(port)
        .iter()
        .fold(Destination::parse(url).unwrap(), |d, (k, v)| {
            d.with_option(k, v)
        })
}

fn store(port: u16, bucket: &str) -> impl ObjectStore {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(false);
    for (key, value) in options(port) {
        builder = builder.with_config(key.parse().unwrap(), value);
    }
    builder.build().unwrap()
}

fn list(runtime: &tokio::runtime::Runtime, store: &impl ObjectStore) -> Vec<String> {
    let mut names: Vec<String> = runtime
        .block_on(
            store
                .list(None)
                .map_ok(|o| o.location.to_string())
                .try_collect::<Vec<_>>(),
        )
        .unwrap();
    names.sort();
    names
}

fn patients(count: usize) -> String {
    let mut text = String::new();
    for i in 0..count {
        let resource = json!({"resourceType": "Patient", "id": format!("p{i:06}"),
            "name": [{"family": format!("Family-{i}-{}", "x".repeat(150))}]});
        text.push_str(&resource.to_string());
        text.push('\n');
    }
    text
}

#[test]
fn tables_go_to_s3_and_a_failed_run_leaves_nothing() {
    let moto = start_moto();
    create_bucket(moto.port, "tables");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("views-s3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // 120,000 rows of about 200 bytes: a part of more than 20 MiB, several multipart chunks.
    let input = dir.join("Patient.ndjson");
    std::fs::write(&input, patients(120_000)).unwrap();
    let view = ViewDefinition::from_json(&json!({"name": "patient_names", "resource": "Patient",
        "select": [{"column": [{"name": "id", "path": "id", "type": "id"},
                               {"name": "family", "path": "name.family.first()", "type": "string"}]}]}))
    .unwrap();
    let s3 = store(moto.port, "tables");

    for format in [Format::Ndjson, Format::Parquet] {
        let options = RunOptions {
            format,
            ..RunOptions::default()
        };
        let summary = run(
            std::slice::from_ref(&view),
            [Ok(InputFile::path(&input))],
            &destination(moto.port, "s3://tables/warehouse"),
            &options,
            &Progress::default(),
            Some(runtime.handle().clone()),
        )
        .unwrap();
        assert_eq!(summary.views[0].rows, 120_000);
        assert_eq!(
            summary.views[0].parts,
            [format!(
                "s3://tables/warehouse/patient_names/part-00000.{}",
                format.extension()
            )]
        );
    }
    assert_eq!(
        list(&runtime, &s3),
        [
            "warehouse/patient_names/part-00000.ndjson",
            "warehouse/patient_names/part-00000.parquet"
        ]
    );
    let ndjson = runtime
        .block_on(async {
            s3.get(&Path::from("warehouse/patient_names/part-00000.ndjson"))
                .await?
                .bytes()
                .await
        })
        .unwrap();
    assert!(ndjson.len() > 20 << 20, "{} bytes", ndjson.len());
    assert_eq!(ndjson.iter().filter(|&&b| b == b'\n').count(), 120_000);
    let parquet: Bytes = runtime
        .block_on(async {
            s3.get(&Path::from("warehouse/patient_names/part-00000.parquet"))
                .await?
                .bytes()
                .await
        })
        .unwrap();
    let rows: usize = ParquetRecordBatchReaderBuilder::try_new(parquet)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 120_000);

    // A run that fails after writing (a bad line at the end) publishes nothing and removes
    // its temporary objects: the bucket holds exactly what it held before.
    let bad = dir.join("bad.ndjson");
    std::fs::write(&bad, patients(50_000) + "{not json}\n").unwrap();
    let error = run(
        std::slice::from_ref(&view),
        [Ok(InputFile::path(&input)), Ok(InputFile::path(&bad))],
        &destination(moto.port, "s3://tables/warehouse"),
        &RunOptions {
            format: Format::Ndjson,
            ..RunOptions::default()
        },
        &Progress::default(),
        Some(runtime.handle().clone()),
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Input, "{error}");
    assert_eq!(
        list(&runtime, &s3),
        [
            "warehouse/patient_names/part-00000.ndjson",
            "warehouse/patient_names/part-00000.parquet"
        ]
    );
    let unchanged = runtime
        .block_on(async {
            s3.get(&Path::from("warehouse/patient_names/part-00000.ndjson"))
                .await?
                .bytes()
                .await
        })
        .unwrap();
    assert_eq!(unchanged, ndjson);

    // A bucket that does not exist: a storage error naming the location.
    let error = run(
        std::slice::from_ref(&view),
        [Ok(InputFile::path(&input))],
        &destination(moto.port, "s3://missing-bucket/x"),
        &RunOptions::default(),
        &Progress::default(),
        Some(runtime.handle().clone()),
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Storage, "{error}");
    assert!(
        error.to_string().contains("s3://missing-bucket/x"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
