//! The sandbox under test, run as a separate `epic-fhir sandbox` process so that its memory and
//! CPU are its own, as they would be in a deployment.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use serde::Serialize;

/// Lines of the child's stderr kept to explain a failed start.
const STDERR_TAIL_LINES: usize = 30;

/// A running sandbox process; it is killed when dropped.
#[derive(Debug)]
pub(crate) struct SandboxProcess {
    child: Child,
    /// The JSON document the sandbox printed once it was ready.
    pub(crate) description: serde_json::Value,
    /// From spawning the process to reading its description: process start, data generation
    /// and loading, binding the port.
    pub(crate) startup: Duration,
    /// The stdout pipe, held open so that the child never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl SandboxProcess {
    /// Runs `exe` with `args` and waits (at most `timeout`) for the JSON document it prints on
    /// stdout when it is listening. Blocking: call it off the async runtime.
    pub(crate) fn start(exe: &Path, args: &[OsString], timeout: Duration) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start the sandbox process {}", exe.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        if let Some(stderr) = child.stderr.take() {
            // The child's stderr is drained all along, so that a chatty sandbox can never block
            // on a full pipe; the last lines are kept for error messages.
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
        }
        let Some(stdout) = child.stdout.take() else {
            kill(&mut child);
            return Err(anyhow!("the sandbox process has no stdout pipe"));
        };
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let first = serde_json::Deserializer::from_reader(&mut reader)
                .into_iter::<serde_json::Value>()
                .next();
            // The receiver is gone only when the start timed out; nothing is left to tell.
            let _ = sender.send((first, reader));
        });
        let explain = |child: &mut Child, what: String| {
            kill(child);
            let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.is_empty() {
                anyhow!("{what}")
            } else {
                let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
                anyhow!("{what}; its stderr ends with:\n{}", lines.join("\n"))
            }
        };
        match receiver.recv_timeout(timeout) {
            Ok((Some(Ok(description)), stdout)) => {
                let startup = started.elapsed();
                if description
                    .get("base_url")
                    .and_then(|v| v.as_str())
                    .is_none()
                {
                    return Err(explain(
                        &mut child,
                        "the sandbox printed a description without `base_url`".to_owned(),
                    ));
                }
                Ok(SandboxProcess {
                    child,
                    description,
                    startup,
                    _stdout: stdout,
                })
            }
            Ok((Some(Err(error)), _)) => Err(explain(
                &mut child,
                format!("the sandbox printed something other than its JSON description: {error}"),
            )),
            Ok((None, _)) => {
                // Give the stderr thread a moment to collect the child's last words.
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(50));
                Err(explain(
                    &mut child,
                    "the sandbox process exited before it was ready".to_owned(),
                ))
            }
            Err(_) => Err(explain(
                &mut child,
                format!("the sandbox was not ready within {timeout:?} (see --startup-timeout)"),
            )),
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's memory now, from `/proc/<pid>/status` (Linux only).
    pub(crate) fn memory(&self) -> Option<ProcessMemory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        ProcessMemory::parse(&status)
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Kills and reaps a child, ignoring a child that already exited.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct ProcessMemory {
    /// Resident set size now (`VmRSS`).
    pub(crate) rss_bytes: u64,
    /// Peak resident set size so far (`VmHWM`).
    pub(crate) peak_rss_bytes: u64,
}

impl ProcessMemory {
    /// Reads `VmRSS` and `VmHWM` (in kB) from the text of a `/proc/<pid>/status` file.
    pub(crate) fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let rest = line.get(name.len()..)?.trim_start_matches(':').trim();
            let kib: u64 = rest.strip_suffix("kB")?.trim().parse().ok()?;
            kib.checked_mul(1024)
        };
        Some(ProcessMemory {
            rss_bytes: field("VmRSS")?,
            peak_rss_bytes: field("VmHWM")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\tepic-fhir\nVmPeak:\t  900000 kB\nVmHWM:\t  524288 kB\nVmRSS:\t  262144 kB\nThreads:\t3\n";
        assert_eq!(
            ProcessMemory::parse(status),
            Some(ProcessMemory {
                rss_bytes: 256 * 1024 * 1024,
                peak_rss_bytes: 512 * 1024 * 1024,
            })
        );
        assert_eq!(ProcessMemory::parse("Name:\tx\nVmRSS:\t12 kB\n"), None);
        assert_eq!(
            ProcessMemory::parse("VmRSS:\tlots kB\nVmHWM:\t1 kB\n"),
            None
        );
    }

    #[test]
    fn reads_own_memory() {
        let status = std::fs::read_to_string("/proc/self/status");
        if let Ok(status) = status {
            let memory = ProcessMemory::parse(&status).expect("Linux status has VmRSS and VmHWM");
            assert!(memory.rss_bytes > 0 && memory.peak_rss_bytes >= memory.rss_bytes);
        }
    }

    #[test]
    fn a_process_that_exits_early_is_reported_with_its_stderr() {
        let script = [
            OsString::from("-c"),
            OsString::from("echo 'cannot load data: no such directory' >&2; exit 2"),
        ];
        let error = SandboxProcess::start(Path::new("/bin/sh"), &script, Duration::from_secs(10))
            .expect_err("exits");
        let text = format!("{error:#}");
        assert!(text.contains("exited before it was ready"), "{text}");
        assert!(text.contains("no such directory"), "{text}");
    }

    #[test]
    fn reads_the_first_json_document_and_stays_running() {
        let script = [
            OsString::from("-c"),
            OsString::from(
                "printf '{\\n  \"base_url\": \"http://127.0.0.1:1/fhir\"\\n}\\n'; exec sleep 30",
            ),
        ];
        let process = SandboxProcess::start(Path::new("/bin/sh"), &script, Duration::from_secs(10))
            .expect("starts");
        assert_eq!(process.description["base_url"], "http://127.0.0.1:1/fhir");
        let pid = process.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        assert!(process.memory().is_some());
        drop(process);
        // Killed and reaped: the pid is gone (or reused by an unrelated process, which is
        // vanishingly unlikely within the test).
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_silent_process_times_out() {
        let script = [OsString::from("-c"), OsString::from("exec sleep 30")];
        let started = Instant::now();
        let error =
            SandboxProcess::start(Path::new("/bin/sh"), &script, Duration::from_millis(300))
                .expect_err("times out");
        assert!(format!("{error:#}").contains("not ready within"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
