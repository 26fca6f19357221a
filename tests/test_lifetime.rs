//! Process lifetime at the edges: forged worker invocations, the
//! parent-death check, stdin and process groups, a replaced executable,
//! resource limits while dropping, zombies, stray fds.
//!
//! Scenarios that change process-wide state (resource limits, stdin, the
//! executable on disk) run in a fresh copy of this test binary started as
//! an ordinary program: [`scenario`] runs one `#[ignore]`d test of this file
//! there, selected by `MULTIPROC_SCENARIO`, and returns its output.

#[cfg(unix)]
use std::process::Command;

#[cfg(unix)]
use multiproc::exit_code;

multiproc::test_support!();

fn exit_with(code: i32) {
    std::process::exit(code)
}

multiproc::entry!(exit_with);

/// A bootstrap for `exit_with(code)`.
#[cfg(unix)]
fn exit_bootstrap(code: i32, die_with_parent: bool) -> Vec<u8> {
    let payload = postcard::to_allocvec(&code).unwrap();
    multiproc::__private::bootstrap_bytes_with(
        multiproc::__private::entry_id(&exit_with),
        &payload,
        die_with_parent,
    )
}

/// A connected socket whose other end already holds `data` (and is closed).
#[cfg(unix)]
fn socket_holding(data: &[u8]) -> std::os::fd::OwnedFd {
    use std::io::Write;
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.write_all(data).unwrap();
    b.into()
}

// Issue 9 item 20: only fd 3, where the spawn protocol places the channel,
// is taken as the bootstrap channel; a socket on stdin with a marker that
// names fd 0 (inetd style) runs nothing.
#[cfg(unix)]
#[test]
fn forged_marker_naming_stdin_runs_no_entry() {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg(format!("--multiproc-worker=1,{},0", std::process::id()))
        .stdin(socket_holding(&exit_bootstrap(42, false)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit_code::NO_CHANNEL), "{stderr}");
    assert!(
        stderr.contains("bootstrap failed") && stderr.contains("fd 3"),
        "{stderr}"
    );
}

// The control for the test above: the same bootstrap at fd 3 runs.
#[cfg(unix)]
#[test]
fn bootstrap_at_fd_3_runs_the_entry() {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"exec "$0" "$1" 3<&0 0</dev/null"#)
        .arg(std::env::current_exe().unwrap())
        .arg(format!("--multiproc-worker=1,{},3", std::process::id()))
        .stdin(socket_holding(&exit_bootstrap(42, false)))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(42),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// Issue 9 item 14 (part): a worker asked to die with its parent whose
// parent is already gone exits with NO_CHANNEL *and* says why on stderr.
#[cfg(target_os = "linux")]
#[test]
fn parent_death_check_prints_the_documented_line() {
    // The marker names pid 1 as the parent; our test process is the real
    // one, so the worker sees a parent that is not the one it was told.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"exec "$0" "$1" 3<&0 0</dev/null"#)
        .arg(std::env::current_exe().unwrap())
        .arg("--multiproc-worker=1,1,3")
        .stdin(socket_holding(&exit_bootstrap(42, true)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit_code::NO_CHANNEL), "{stderr}");
    assert!(
        stderr.starts_with("multiproc worker ") && stderr.contains(": bootstrap failed: "),
        "{stderr}"
    );
    assert!(stderr.contains("parent"), "{stderr}");
}
