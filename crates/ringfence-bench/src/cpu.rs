//! CPU time of this process's threads, read from `/proc/self/task/*/schedstat` (Linux): the
//! time each thread ran and the time it was runnable but waited for a core, in nanoseconds.
//! The split by thread says which stage a change made cheaper, and the waiting time whether
//! a slow run was short of CPU.

use std::collections::BTreeMap;

/// Run and wait times of every live thread, by thread id.
pub struct Snapshot(BTreeMap<u32, Thread>);

struct Thread {
    name: String,
    run_ns: u64,
    wait_ns: u64,
}

/// Reads every thread of this process; threads it cannot read (one that just ended) are
/// left out.
pub fn snapshot() -> Snapshot {
    let mut threads = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Snapshot(threads);
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let path = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let mut fields = stat
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        let (run_ns, wait_ns) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
        threads.insert(
            tid,
            Thread {
                name: name.trim().to_owned(),
                run_ns,
                wait_ns,
            },
        );
    }
    Snapshot(threads)
}

/// CPU per call between two snapshots: one line, total first, then by thread name (threads
/// of one name summed), largest first. Threads that ended in between are not counted.
pub fn per_call(before: &Snapshot, after: &Snapshot, calls: u64) -> String {
    let calls = calls.max(1) as f64;
    let mut by_name: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (tid, now) in &after.0 {
        let (run0, wait0) = before.0.get(tid).map_or((0, 0), |t| (t.run_ns, t.wait_ns));
        let entry = by_name.entry(now.name.as_str()).or_default();
        entry.0 += now.run_ns.saturating_sub(run0);
        entry.1 += now.wait_ns.saturating_sub(wait0);
    }
    let run: u64 = by_name.values().map(|(r, _)| r).sum();
    let wait: u64 = by_name.values().map(|(_, w)| w).sum();
    let mut parts: Vec<(&str, u64)> = by_name
        .iter()
        .map(|(name, (r, _))| (*name, *r))
        .filter(|(_, r)| *r as f64 / calls >= 500.0)
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    let split: Vec<String> = parts
        .iter()
        .map(|(name, r)| format!("{name} {:.0}", *r as f64 / calls / 1000.0))
        .collect();
    format!(
        "CPU per call {:.0} µs ({}); waiting for a core {:.0} µs",
        run as f64 / calls / 1000.0,
        split.join(", "),
        wait as f64 / calls / 1000.0
    )
}
