//! CPU time used by a process, from `/proc/<pid>/stat` (Linux).
//!
//! On a machine shared with other work, requests per second move with whatever else runs;
//! the CPU time each process spends per request moves much less, so the report carries both.

use std::time::Duration;

/// The unit of the time fields of `/proc/<pid>/stat`: `USER_HZ`, which the kernel fixes at 100
/// ticks per second in its user-space ABI (whatever the internal tick rate).
const USER_HZ: u64 = 100;

/// User plus system CPU time used so far by process `pid` (all its threads, exited ones
/// included), or by this process when `pid` is `None`; `None` where `/proc` is unavailable.
pub(crate) fn process_cpu(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let ticks = parse_stat(&std::fs::read_to_string(path).ok()?)?;
    Some(Duration::from_millis(ticks.checked_mul(1000 / USER_HZ)?))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in ticks. The command name
/// (field 2) is in parentheses and may itself hold spaces or parentheses, so the fields are
/// counted from the last `)`.
fn parse_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: utime is the 12th of them, stime the 13th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_an_awkward_command_name() {
        let stat = "4242 (tokio rt) worker)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 56 0 0 20 0 3 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(1234 + 56));
        assert_eq!(parse_stat("4242 (x) S 1 2"), None, "too few fields");
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let Some(before) = process_cpu(None) else {
            return; // Not Linux: nothing to measure.
        };
        // Spin until the counter moves (one tick, 10 ms of CPU), however busy the machine is;
        // ten seconds without a single tick would mean the counter is not CPU time.
        let started = std::time::Instant::now();
        let mut x: u64 = 0;
        let mut after = before;
        while after <= before && started.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
            after = process_cpu(None).expect("still readable");
        }
        assert!(after > before, "{before:?} then {after:?}");
        let pid = std::process::id();
        assert!(process_cpu(Some(pid)).expect("by pid") >= after);
    }
}
