//! The README's tour, followed to the letter: its ```` ```sh tour ```` blocks, in order, as one
//! bash script with `set -euo pipefail`, against the binary under test, in a temporary folder.
//!
//! Needs `bash`, `curl`, `jq` and `python3`. Without one of them it prints that it skips,
//! unless `CI` is set to `true`/`1` or `RINGFENCE_README_REQUIRED=1`, where it fails.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The whole tour must end well within this; a hung step fails the test instead of CI.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The README's tour blocks, in order: fenced code whose info string is `sh tour`.
fn tour_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match current.as_mut() {
            None if line.trim_end() == "```sh tour" => current = Some(String::new()),
            None => {}
            Some(_) if line.starts_with("```") => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "a ```sh tour block of README.md is not closed"
    );
    blocks
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn missing_tools() -> Vec<&'static str> {
    ["bash", "curl", "jq", "python3"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect()
}

fn required() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
        || std::env::var("RINGFENCE_README_REQUIRED").as_deref() == Ok("1")
}

/// The tour as one script: the build line goes (the test runs the binary cargo built for it,
/// which the tour's `rf` uses through `RINGFENCE_BIN`) and the tour's fixed ports become free ones.
fn tour_script(readme: &str, server_port: u16, receiver_port: u16) -> String {
    let blocks = tour_blocks(readme);
    assert!(
        blocks.len() >= 5,
        "README.md has {} ```sh tour blocks; the tour lost its marks",
        blocks.len()
    );
    let tour = blocks.concat();
    let builds: Vec<&str> = tour.lines().filter(|l| l.starts_with("cargo ")).collect();
    assert_eq!(
        builds.len(),
        1,
        "the tour builds once and runs the built binary: {builds:?}"
    );
    assert!(builds[0].starts_with("cargo build --release"));
    assert!(
        tour.contains("RINGFENCE_BIN=${RINGFENCE_BIN:-"),
        "the tour's rf must run $RINGFENCE_BIN when it is set"
    );
    let mut script = String::from("set -euo pipefail\n");
    for line in tour.lines().filter(|l| !l.starts_with("cargo ")) {
        script.push_str(line);
        script.push('\n');
    }
    for (fixed, port) in [
        ("127.0.0.1:8181", server_port),
        ("127.0.0.1:8182", receiver_port),
        ("127.0.0.1 8182", receiver_port),
    ] {
        assert!(script.contains(fixed), "the tour no longer uses {fixed}");
        let free = format!("{}{port}", &fixed[..fixed.len() - 4]);
        script = script.replace(fixed, &free);
    }
    script
}

#[test]
fn the_readme_tour_pasted_block_by_block_into_bash_runs_without_an_error() {
    let missing = missing_tools();
    if !missing.is_empty() {
        assert!(
            !required(),
            "the README test needs {missing:?} (apt-get install curl jq python3)"
        );
        eprintln!(
            "skipping the README tour: {missing:?} not installed (apt-get install curl jq python3)"
        );
        return;
    }
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let script = tour_script(&readme, free_port(), free_port());

    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("tour.sh");
    std::fs::write(&script_path, &script).unwrap();
    let output_path = dir.path().join("output.txt");
    let output = std::fs::File::create(&output_path).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = Command::new("bash")
        .arg(&script_path)
        .current_dir(dir.path())
        .env("RINGFENCE_BIN", env!("CARGO_BIN_EXE_ringfence"))
        .env("TMPDIR", &tmp)
        .env_remove("RINGFENCE_DATA")
        .env_remove("RINGFENCE_CONFIG")
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        // Its own process group: whatever it starts in the background ends with it.
        .process_group(0)
        .spawn()
        .unwrap();
    let group = rustix::process::Pid::from_child(&child);
    let (done, finished) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait().unwrap();
        let _ = done.send(());
        status
    });
    let timed_out = finished.recv_timeout(TIMEOUT).is_err();
    // A failed step leaves the server and the receiver running: end the whole group.
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let status = waiter.join().unwrap();
    let mut log = String::new();
    std::fs::File::open(&output_path)
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        !timed_out,
        "the README tour did not finish within {TIMEOUT:?}; its output:\n{log}"
    );
    assert!(
        status.success(),
        "the README tour failed ({status}); the script:\n{script}\nits output:\n{log}"
    );
    // It really went through: the server answered, the CLI export was written, a user exists.
    assert!(log.contains(r#"{"status":"ready"}"#), "{log}");
    assert!(log.contains("data.json"), "{log}");
    assert!(log.contains("sign in as dpo@example.com"), "{log}");
}
