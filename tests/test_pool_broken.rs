//! A pool that can't replace its last worker fails its queued and later
//! tasks at once, with the reason, instead of waiting forever. Alone in
//! its test binary: the tests point `set_executable` (process-wide) at a
//! program that doesn't exist, which would break other tests' spawns.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use multiproc::PoolBuilder;

multiproc::test_support!();

mod common;
use common::square;

/// `set_executable` is process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn hang_on_zero(x: u64) -> u64 {
    if x == 0 {
        loop {
            std::thread::park();
        }
    }
    x * x
}

multiproc::entry!(hang_on_zero);

/// A worker executable that doesn't exist.
fn missing() -> PathBuf {
    std::env::temp_dir().join("multiproc-no-such-worker.exe")
}

/// Restores the default executable when dropped (also when a test fails).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        multiproc::reset_executable();
    }
}

fn assert_broken_naming_the_cause(e: &multiproc::Error) {
    assert!(e.is_pool_broken(), "{e}");
    let missing = missing();
    assert!(
        e.to_string().contains(&*missing.to_string_lossy()),
        "the error names the missing program: {e}"
    );
    // The spawn error itself is kept, not only its message: it is the
    // source, and its OS error (a missing file) comes through.
    let source = std::error::Error::source(e).expect("a pool-broken error has a source");
    let spawn = source
        .downcast_ref::<multiproc::Error>()
        .expect("the source is the spawn's multiproc::Error");
    assert_eq!(spawn.kind(), multiproc::ErrorKind::Spawn, "{spawn}");
    assert_eq!(
        e.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::NotFound),
        "{e:?}"
    );
}

#[test]
fn a_retired_worker_that_cannot_be_replaced_fails_the_rest_instead_of_hanging() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = PoolBuilder::new()
        .workers(1)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let _restore = Restore;
    multiproc::set_executable(missing());
    let out: Vec<_> = p.imap(square, 0..3u64).chunksize(1).collect();
    assert_eq!(out.len(), 3);
    assert_eq!(*out[0].as_ref().unwrap(), 0);
    for r in &out[1..] {
        assert_broken_naming_the_cause(r.as_ref().unwrap_err());
    }
    // Later work fails at once, through every call.
    assert_broken_naming_the_cause(&p.submit(square, 2u64).get().unwrap_err());
    assert_broken_naming_the_cause(&p.map(square, 0..5u64).unwrap_err());
}

#[test]
fn the_only_worker_killed_mid_imap_while_respawning_fails_does_not_hang() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = PoolBuilder::new().workers(1).build().unwrap();
    let _restore = Restore;
    let out: Vec<_> = std::thread::scope(|s| {
        s.spawn(|| {
            let busy = p.wait_busy(Duration::from_secs(30));
            assert_eq!(busy.len(), 1, "the worker runs task 0");
            multiproc::set_executable(missing());
            assert!(p.kill_worker(busy[0]));
        });
        p.imap(hang_on_zero, 0..5u64).chunksize(1).collect()
    });
    assert_eq!(out.len(), 5);
    let first = out[0].as_ref().unwrap_err();
    assert!(
        first.is_worker_died(),
        "task 0's worker was killed: {first}"
    );
    for r in &out[1..] {
        assert_broken_naming_the_cause(r.as_ref().unwrap_err());
    }
    assert_broken_naming_the_cause(&p.submit(square, 2u64).get().unwrap_err());
}
