//! `epic-fhir bench` end to end, briefly: the report's shape, every request succeeding, one
//! token per SDK run, and the sandbox child gone afterwards. A smoke test, not a speed test.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};

use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_epic-fhir"))
        .arg("bench")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn parse(bytes: &[u8], output: &Output) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(bytes),
            stderr(output)
        )
    })
}

/// Checks one run entry: it measured requests, none failed, and its latencies are ordered.
fn check_run(run: &Value) {
    let name = format!("{} with {}", run["workload"], run["client"]);
    let requests = run["requests"].as_u64().expect("requests");
    assert!(requests > 0, "{name}: no request measured");
    assert_eq!(
        run["errors"], 0,
        "{name}: errors, first: {}",
        run["first_error"]
    );
    assert!(run["requests_per_second"].as_f64().expect("req/s") > 0.0);
    assert!(run["elapsed_seconds"].as_f64().expect("elapsed") > 0.0);
    let latency = &run["latency_us"];
    let field = |key: &str| {
        latency[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {key}"))
    };
    assert_eq!(field("samples"), requests);
    assert!(field("min") <= field("p50"));
    assert!(field("p50") <= field("p90"));
    assert!(field("p90") <= field("p99"));
    assert!(field("p99") <= field("max"));
    for key in ["client_cpu_seconds", "server_cpu_seconds"] {
        assert!(
            run[key].as_f64().is_some_and(|s| s >= 0.0),
            "{name}: {key} is measured for a sandbox child on Linux"
        );
    }
    if run["client"] == "sdk" {
        assert_eq!(
            run["token_requests"], 1,
            "{name}: one token serves the whole run"
        );
        assert_eq!(
            run["retries"], 0,
            "{name}: nothing to retry on a quiet sandbox"
        );
        assert!(run["http_requests_sent"].as_u64().expect("sent") >= requests);
    } else {
        assert_eq!(run["token_requests"], Value::Null);
        // The hand-written floor counts its connections; reqwest's pool does not say.
        if run["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("floor-"))
        {
            assert!(run["connections"].as_u64().expect("connections") >= 1);
        }
    }
}

/// The sandbox child must be gone once the benchmark has exited.
fn assert_sandbox_stopped(report: &Value) {
    let base = report["base_url"].as_str().expect("base_url");
    let authority = base
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .expect("an http:// base URL");
    let addr: SocketAddr = authority.parse().expect("an IP:port authority");
    assert!(
        TcpStream::connect(addr).is_err(),
        "the sandbox at {addr} still accepts connections after the benchmark ended"
    );
}

#[test]
fn a_short_benchmark_reports_every_run_without_errors() {
    let output = bench(&[
        "--duration",
        "1",
        "--patients",
        "10",
        "--warmup",
        "0.3",
        "--concurrency",
        "4",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = parse(&output.stdout, &output);

    assert_eq!(report["tool"], "epic-fhir bench");
    assert_eq!(report["target"], "sandbox");
    assert!(report["machine"]["logical_cpus"].as_u64().expect("nproc") >= 1);
    assert_eq!(report["settings"]["concurrency"], 4);
    assert_eq!(report["settings"]["duration_seconds"], 1.0);
    assert!(report["patients"].as_u64().expect("patients") >= 10);
    assert_eq!(
        report["example_search"]
            .as_str()
            .expect("example search")
            .split('?')
            .next(),
        Some("Observation")
    );

    let sandbox = &report["sandbox"];
    assert!(sandbox["resources"].as_u64().expect("resources") > 0);
    assert!(sandbox["startup_seconds"].as_f64().expect("startup") > 0.0);
    assert!(sandbox["store_bytes"].as_u64().expect("store bytes") > 0);
    assert!(
        sandbox["memory_after_load"]["rss_bytes"]
            .as_u64()
            .expect("rss")
            > 0
    );
    assert!(
        sandbox["memory_after_runs"]["peak_rss_bytes"]
            .as_u64()
            .expect("peak rss")
            > 0
    );
    assert!(sandbox["counts"]["Patient"].as_u64().expect("patients") >= 10);

    let runs = report["runs"].as_array().expect("runs");
    let names: Vec<(String, String)> = runs
        .iter()
        .map(|r| {
            (
                r["workload"].as_str().expect("workload").to_owned(),
                r["client"].as_str().expect("client").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = ["read", "search"]
        .iter()
        .flat_map(|w| {
            [
                "sdk",
                "reqwest-bytes",
                "reqwest-json",
                "floor-bytes",
                "floor-json",
            ]
            .iter()
            .map(move |c| ((*w).to_owned(), (*c).to_owned()))
        })
        .collect();
    assert_eq!(names, expected);
    runs.iter().for_each(check_run);

    let ratios = report["ratios"].as_array().expect("ratios");
    assert_eq!(ratios.len(), 8, "four floors for each of two workloads");
    for ratio in ratios {
        assert!(ratio["throughput"].as_f64().expect("throughput ratio") > 0.0);
        assert!(ratio["p50"].as_f64().expect("p50 ratio") > 0.0);
    }
    assert!(stderr(&output).contains("workload"), "a table on stderr");
    assert_sandbox_stopped(&report);
}

#[test]
fn counted_mixed_run_with_markdown_and_a_report_file() {
    let path = std::env::temp_dir().join(format!(
        "epic-fhir-bench-report-{}.json",
        std::process::id()
    ));
    let path_text = path.to_str().expect("UTF-8 temp path");
    let output = bench(&[
        "--workload",
        "mixed",
        "--clients",
        "floor-json,sdk",
        "--requests",
        "60",
        "--warmup",
        "0",
        "--patients",
        "10",
        "--concurrency",
        "3",
        "--markdown",
        "--report",
        path_text,
        "--sandbox-arg=--session-idle=5",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let markdown = String::from_utf8_lossy(&output.stdout);
    assert!(
        markdown.contains("| Workload | Client | K | Requests |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| mixed | sdk | 3 | 60 | 0 |"),
        "{markdown}"
    );
    assert!(markdown.contains("| mixed | floor-json |"), "{markdown}");

    let bytes = std::fs::read(&path).expect("the report file");
    let _ = std::fs::remove_file(&path);
    let report = parse(&bytes, &output);
    assert_eq!(report["settings"]["requests"], 60);
    let command = report["sandbox"]["command"].as_array().expect("command");
    assert!(
        command.iter().any(|arg| arg == "--session-idle=5"),
        "the extra sandbox flag is passed on: {command:?}"
    );
    assert_eq!(report["settings"]["duration_seconds"], Value::Null);
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["requests"], 60, "exactly the requested number");
        assert_eq!(run["warmup_requests"], 0);
        check_run(run);
    }
    assert_sandbox_stopped(&report);
}

#[test]
fn bad_flags_are_usage_errors() {
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "--base-url",
                "https://fhir.example.org/api/FHIR/R4",
                "--client-id",
                "x",
            ],
            "plain HTTP/1.1 only",
        ),
        // The reqwest floors speak https: they pass the check and the run stops at the
        // missing key instead, before any network call.
        (
            &[
                "--base-url",
                "https://fhir.example.org/api/FHIR/R4",
                "--client-id",
                "x",
                "--clients",
                "sdk,reqwest-bytes,reqwest-json",
            ],
            "no private key",
        ),
        (
            &["--base-url", "http://127.0.0.1:9/fhir", "--data", "."],
            "cannot be combined with --base-url",
        ),
        (&["--concurrency", "0"], "--concurrency must be between 1"),
        (&["--duration", "0"], "more than 0 seconds"),
        (&["--workload", "write"], "invalid value 'write'"),
        (
            &[
                "--data",
                "/nonexistent/epic-fhir-bench-data",
                "--patients",
                "1",
            ],
            "not a directory",
        ),
    ];
    for (args, expected) in cases {
        let output = bench(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: stderr should mention `{expected}`: {}",
            stderr(&output)
        );
    }
}
