//! The pool's lifecycle events reach the application's logger (the `log`
//! facade) at their levels, and nothing is logged per task.
//!
//! One test in this binary: the logger is process-wide.

use std::sync::Mutex;
use std::time::Duration;

use log::{Level, LevelFilter, Log, Metadata, Record};
use multiproc::PoolBuilder;

multiproc::test_support!();

mod common;
use common::{block_forever, square, wait_for, LONG};

/// Keeps every record: its level and message.
struct Capture(Mutex<Vec<(Level, String)>>);

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let msg = record.args().to_string();
        self.0.lock().unwrap().push((record.level(), msg));
    }

    fn flush(&self) {}
}

static LOGGER: Capture = Capture(Mutex::new(Vec::new()));

/// The records logged since the last call.
fn take() -> Vec<(Level, String)> {
    std::mem::take(&mut *LOGGER.0.lock().unwrap())
}

/// The one record at `level` whose message contains every part of
/// `parts`; panics unless there is exactly one.
fn one(records: &[(Level, String)], level: Level, parts: &[&str]) {
    let hits: Vec<_> = records
        .iter()
        .filter(|(l, m)| *l == level && parts.iter().all(|p| m.contains(p)))
        .collect();
    assert_eq!(hits.len(), 1, "{level} {parts:?} in {records:#?}");
}

#[test]
fn lifecycle_events_are_logged_at_their_levels_and_tasks_are_not() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(LevelFilter::Trace);

    let pool = PoolBuilder::new()
        .workers(1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let first = pool.pids()[0].to_string();
    let r = take();
    one(&r, Level::Debug, &["worker", &first, "spawned"]);
    one(&r, Level::Debug, &["worker", &first, "ready"]);
    assert_eq!(r.len(), 2, "{r:#?}");

    // Tasks, many of them: nothing.
    let squares = pool.map(square, 0..2000u64).unwrap();
    assert_eq!(squares[1999], 1999 * 1999);
    assert_eq!(pool.submit(square, 4u64).get().unwrap(), 16);
    assert_eq!(take(), []);

    // A task past its timeout: the kill (info), the death with its
    // reason (warn), the replacement (info), the new worker (debug).
    let err = pool.submit(block_forever, ()).get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    wait_for("the replacement to be ready", || {
        pool.pids().first().is_some_and(|p| p.to_string() != first)
    });
    let second = pool.pids()[0].to_string();
    let r = take();
    one(&r, Level::Info, &["worker", &first, "timeout of 200ms"]);
    one(
        &r,
        Level::Warn,
        &["worker", &first, "died", "timeout of 200ms"],
    );
    one(&r, Level::Info, &["worker", &first, "replaced by", &second]);
    one(&r, Level::Debug, &["worker", &second, "spawned"]);
    one(&r, Level::Debug, &["worker", &second, "ready"]);
    assert_eq!(r.len(), 5, "{r:#?}");

    // A running task cancelled: the same, for the cancel.
    let mut hung = pool.task(block_forever, ()).timeout(Duration::MAX).submit();
    assert_eq!(pool.wait_busy(LONG), [second.parse::<u32>().unwrap()]);
    assert!(hung.cancel());
    wait_for("the replacement to be ready", || {
        pool.pids().first().is_some_and(|p| p.to_string() != second)
    });
    let third = pool.pids()[0].to_string();
    let r = take();
    one(&r, Level::Info, &["killing worker", &second, "cancelled"]);
    one(&r, Level::Warn, &["worker", &second, "died", "cancelled"]);
    one(&r, Level::Info, &["worker", &second, "replaced by", &third]);
    assert_eq!(r.len(), 5, "{r:#?}");

    // Closed and joined: workers asked to exit are not "died".
    pool.close();
    pool.join().unwrap();
    let r = take();
    one(&r, Level::Debug, &["worker", &third, "exited"]);
    assert!(r.iter().all(|(l, _)| *l == Level::Debug), "{r:#?}");
}
