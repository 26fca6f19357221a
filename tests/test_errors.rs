//! Errors that say what happened: the right panic, a result that can't be
//! encoded, an entry's own exit code in the bootstrap range.

use std::io::Read;
use std::time::Duration;

use multiproc::{exit_code, ErrorKind, PoolBuilder, Process, ProcessBuilder, Stdio};
use serde::{Serialize, Serializer};

multiproc::test_support!();

mod common;
use common::exit_with;

/// Catches a panic of its own, then panics for real.
fn catch_then_panic(_: ()) -> u32 {
    let caught = std::panic::catch_unwind(|| panic!("caught inside the entry"));
    assert!(caught.is_err());
    const _LINE: () = assert!(REAL_PANIC_LINE == line!() + 1);
    panic!("the real panic")
}

const REAL_PANIC_LINE: u32 = 20;

/// Task 0 catches its own panic and returns; task 1 panics for real.
fn task_panics_unless_zero(i: u32) -> u32 {
    if i == 0 {
        let caught = std::panic::catch_unwind(|| panic!("task 0 caught its own panic"));
        assert!(caught.is_err());
        return 0;
    }
    const _LINE: () = assert!(TASK_PANIC_LINE == line!() + 1);
    panic!("task {i} panicked for real")
}

const TASK_PANIC_LINE: u32 = 33;

/// A value whose `Serialize` fails.
#[derive(Debug)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unencodable refuses"))
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|_| Unencodable)
    }
}

/// Returns a result that cannot be serialized.
fn returns_unencodable(_: u32) -> Unencodable {
    Unencodable
}

/// Serializes as a `u8`; never deserializes.
#[derive(Debug)]
struct Undecodable;

impl Serialize for Undecodable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> serde::Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("Undecodable refuses"))
    }
}

fn takes_undecodable(_: Undecodable) {}

fn returns_bytes(n: usize) -> Vec<u8> {
    vec![7; n]
}

multiproc::entry!(
    returns_bytes,
    takes_undecodable,
    catch_then_panic,
    task_panics_unless_zero,
    returns_unencodable
);

#[test]
fn a_process_reports_the_panic_that_ended_it_not_one_it_caught() {
    let mut p = ProcessBuilder::new()
        .stdio(Stdio::Null)
        .spawn(catch_then_panic, ())
        .unwrap();
    let err = p.join().unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Panic);
    let report = err.panic_report().unwrap();
    assert_eq!(report.message, "the real panic");
    let location = report.location.as_deref().unwrap();
    let here = format!("test_errors.rs:{REAL_PANIC_LINE}:");
    assert!(location.contains(&here), "{location}");
}

#[test]
fn a_pool_task_reports_its_own_panic_not_an_earlier_caught_one() {
    let pool = PoolBuilder::new()
        .workers(1)
        .stdio(Stdio::Null)
        .build()
        .unwrap();
    // One worker runs both, in order, in one process.
    let out = pool.map_chunked(task_panics_unless_zero, [0, 1], 1);
    let err = out.unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Panic);
    let report = err.panic_report().unwrap();
    assert_eq!(report.message, "task 1 panicked for real");
    let location = report.location.as_deref().unwrap();
    let here = format!("test_errors.rs:{TASK_PANIC_LINE}:");
    assert!(location.contains(&here), "{location}");
}

#[test]
fn an_entry_exiting_with_a_bootstrap_code_is_no_result_not_a_bootstrap_failure() {
    for code in [
        exit_code::BAD_COMMAND_LINE,
        exit_code::BUILD_MISMATCH,
        exit_code::BAD_PAYLOAD,
    ] {
        let err = Process::<()>::spawn(exit_with, code)
            .unwrap()
            .join()
            .unwrap_err();
        assert!(err.is_no_result(), "{code}: {err}");
        assert_eq!(err.kind(), ErrorKind::NoResult);
        assert!(!err.is_bootstrap_failure(), "{code}: {err}");
        assert_eq!(err.exit_status().unwrap().code(), Some(code));
        assert!(!err.to_string().contains("bootstrap"), "{err}");
    }
}

#[test]
fn a_result_that_cannot_be_serialized_is_named_as_such_by_process_join() {
    let mut p = ProcessBuilder::new()
        .stdio(Stdio::Null)
        .spawn(returns_unencodable, 1)
        .unwrap();
    let err = p.join().unwrap_err();
    assert!(err.is_result_encode(), "{err}");
    assert!(err.is_encode(), "{err}");
    assert_eq!(err.kind(), ErrorKind::ResultEncode);
    assert!(!err.is_bootstrap_failure(), "{err}");
    assert!(!err.is_decode(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("result"), "{msg}");
    assert!(!msg.contains("arguments"), "{msg}");
    assert_eq!(
        err.exit_status().and_then(|s| s.code()),
        Some(exit_code::BAD_RESULT)
    );
}

#[test]
fn a_result_that_cannot_be_serialized_is_named_as_such_by_the_pool() {
    let pool = PoolBuilder::new().workers(1).build().unwrap();
    for r in pool.map_results(returns_unencodable, [1, 2]) {
        let err = r.unwrap_err();
        assert!(err.is_result_encode(), "{err}");
        assert!(!err.is_decode(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("result"), "{msg}");
        assert!(!msg.contains("input"), "{msg}");
    }
    let err = pool.submit(returns_unencodable, 3).get().unwrap_err();
    assert!(err.is_result_encode(), "{err}");
    assert_eq!(err.kind(), ErrorKind::ResultEncode);
}

#[test]
fn arguments_the_worker_cannot_decode_are_a_bootstrap_failure_it_reports() {
    let mut p = ProcessBuilder::new()
        .stdio(Stdio::Null)
        .stderr(Stdio::Capture)
        .spawn(takes_undecodable, Undecodable)
        .unwrap();
    // The line `exit_code` promises for every bootstrap failure.
    let mut stderr = String::new();
    p.take_stderr()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.starts_with("multiproc worker ") && stderr.contains(": bootstrap failed: "),
        "{stderr}"
    );
    assert!(stderr.contains("cannot decode the arguments"), "{stderr}");
    let err = p.join().unwrap_err();
    assert!(err.is_bootstrap_failure(), "{err}");
    assert_eq!(err.kind(), ErrorKind::BootstrapFailed);
    assert_eq!(
        err.exit_status().and_then(|s| s.code()),
        Some(exit_code::BAD_PAYLOAD)
    );
    let msg = err.to_string();
    assert!(msg.contains("cannot decode the arguments"), "{msg}");
    assert!(msg.contains("takes_undecodable"), "{msg}");
}

/// A "worker" that exits with a bootstrap code without reading anything:
/// it never says its bootstrap is through, so the code is taken as the
/// bootstrap's.
#[cfg(unix)]
#[test]
fn an_exit_with_a_bootstrap_code_before_the_bootstrap_is_through_is_a_bootstrap_failure() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("multiproc-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("exits-203");
    std::fs::write(&script, "#!/bin/sh\nexit 203\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spawned = ProcessBuilder::new()
        .executable(&script)
        .spawn::<_, _, ()>(exit_with, 0);
    let err = match spawned {
        Ok(mut p) => p.join().unwrap_err(),
        // It may exit before the bootstrap data is written: then the spawn
        // reports how it ended.
        Err(e) => {
            assert!(e.is_exited_early(), "{e}");
            assert_eq!(e.kind(), ErrorKind::ExitedEarly);
            e
        }
    };
    assert_eq!(
        err.exit_status().and_then(|s| s.code()),
        Some(exit_code::BAD_MAGIC)
    );
    if !err.is_exited_early() {
        assert!(err.is_bootstrap_failure(), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_result_over_its_cap_is_a_decode_error_and_a_second_join_a_usage_error() {
    let mut p = ProcessBuilder::new()
        .max_result_len(100)
        .spawn(returns_bytes, 1000)
        .unwrap();
    let err = p.join_timeout(Duration::MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResultTooLarge);
    assert!(err.is_decode(), "{err}");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::InvalidData
    );
    let err = p.join_timeout(Duration::MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.is_usage(), "{err}");
}
