//! Errors that say what happened: the right panic, a result that can't be
//! encoded, an entry's own exit code in the bootstrap range.

use multiproc::{PoolBuilder, ProcessBuilder, Stdio};

multiproc::test_support!();

/// Catches a panic of its own, then panics for real.
fn catch_then_panic(_: ()) -> u32 {
    let caught = std::panic::catch_unwind(|| panic!("caught inside the entry"));
    assert!(caught.is_err());
    panic!("the real panic")
}

/// Task 0 catches its own panic and returns; task 1 panics for real.
fn task_panics_unless_zero(i: u32) -> u32 {
    if i == 0 {
        let caught = std::panic::catch_unwind(|| panic!("task 0 caught its own panic"));
        assert!(caught.is_err());
        return 0;
    }
    panic!("task {i} panicked for real")
}

multiproc::entry!(catch_then_panic, task_panics_unless_zero);

#[test]
fn a_process_reports_the_panic_that_ended_it_not_one_it_caught() {
    let p = ProcessBuilder::new()
        .stdio(Stdio::Null)
        .spawn(catch_then_panic, ())
        .unwrap();
    let err = p.join().unwrap_err();
    assert!(err.is_panic(), "{err}");
    let report = err.panic_report().unwrap();
    assert_eq!(report.message, "the real panic");
    let location = report.location.as_deref().unwrap();
    assert!(location.contains("test_errors.rs:12:"), "{location}");
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
    let report = err.panic_report().unwrap();
    assert_eq!(report.message, "task 1 panicked for real");
    let location = report.location.as_deref().unwrap();
    assert!(location.contains("test_errors.rs:22:"), "{location}");
}
