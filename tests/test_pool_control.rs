//! Per-task control and worker lifecycle: time limits the pool enforces
//! by itself, a task's own time limit, `AsyncResult::cancel`,
//! `max_memory_per_child`, and the counts of `Pool::stats`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use multiproc::{Pool, PoolBuilder, Shared};

multiproc::test_support!();

mod common;
use common::{block_forever, square, wait_for, LONG};

/// What the counting tasks share, set in each worker by [`set_counts`]:
/// a run count per task, and the gate (nonzero: open).
static COUNTS: OnceLock<(Shared<[AtomicU32]>, Shared<AtomicU32>)> = OnceLock::new();

fn set_counts(shared: (Shared<[AtomicU32]>, Shared<AtomicU32>)) {
    let _ = COUNTS.set(shared);
}

/// Counts its run, waits for the gate to open, returns its input.
fn gated(i: usize) -> usize {
    let (counts, gate) = COUNTS.get().expect("the initializer ran");
    counts[i].fetch_add(1, Ordering::SeqCst);
    while gate.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    i
}

/// Counts its run and never returns.
fn counted_hang(i: usize) -> usize {
    let (counts, _) = COUNTS.get().expect("the initializer ran");
    counts[i].fetch_add(1, Ordering::SeqCst);
    loop {
        std::thread::park();
    }
}

/// Leaks 50 MiB (every page touched); its worker's pid, its resident
/// memory after that, and its input.
fn leak_50_mib(i: u64) -> (u32, u64, u64) {
    std::mem::forget(vec![0x5au8; 50 << 20]);
    let rss = multiproc::test_hooks::resident_memory().expect("resident memory");
    (std::process::id(), rss, i)
}

multiproc::entry!(set_counts, gated, counted_hang, leak_50_mib);

/// A pool with a `stats()` that reached `want` in the fields `pick` picks.
fn wait_stats<T: PartialEq + std::fmt::Debug>(
    pool: &Pool,
    what: &str,
    want: T,
    pick: impl Fn(&multiproc::PoolStats) -> T,
) {
    wait_for(what, || pick(&pool.stats()) == want);
}

#[test]
fn a_hanging_task_is_killed_and_replaced_with_no_one_waiting() {
    let pool = PoolBuilder::new()
        .workers(1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let first = pool.pids();
    assert_eq!(first.len(), 1);
    // Nobody waits on the pool from here on: the result is kept, not
    // asked for, until the worker was replaced.
    let hung = pool.submit(block_forever, ());
    wait_stats(
        &pool,
        "the hung task to time out and its worker to be replaced",
        (1, 1, 1, 2),
        |s| {
            (
                s.tasks_timed_out,
                s.workers_died,
                s.workers_replaced,
                s.workers_started,
            )
        },
    );
    wait_for("the replacement to be ready", || {
        let now = pool.pids();
        now.len() == 1 && now != first
    });
    let err = hung.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.pid(), Some(first[0]));
    assert_eq!(pool.submit(square, 9u64).get().unwrap(), 81);
    let s = pool.stats();
    assert_eq!((s.tasks_done, s.tasks_failed, s.tasks_cancelled), (1, 0, 0));
}

#[test]
fn a_task_with_its_own_timeout_times_out_in_a_pool_without_one() {
    let pool = PoolBuilder::new().workers(2).build().unwrap();
    let hung = pool
        .task(block_forever, ())
        .timeout(Duration::from_millis(200))
        .submit();
    let quick = pool.task(square, 7u64).timeout(LONG).submit();
    assert_eq!(quick.get().unwrap(), 49);
    // Nobody waits for the hung one: the pool kills it on its own.
    wait_stats(&pool, "the task's own timeout", (1, 1), |s| {
        (s.tasks_timed_out, s.workers_replaced)
    });
    let err = hung.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("200ms"), "{err}");
    // The pool has no limit of its own: a plain task is not limited.
    assert_eq!(pool.submit(square, 3u64).get().unwrap(), 9);
    let s = pool.stats();
    assert_eq!((s.tasks_done, s.tasks_timed_out, s.workers_died), (2, 1, 1));
}

#[test]
fn cancel_removes_a_queued_task_and_kills_a_running_one_and_every_other_task_runs_once() {
    const N: usize = 20;
    let counts = Shared::<[AtomicU32]>::zeroed(N).unwrap();
    let gate = Shared::new(AtomicU32::new(0)).unwrap();
    let pool = PoolBuilder::new()
        .workers(2)
        .initializer(set_counts, (counts.clone(), gate.clone()))
        .build()
        .unwrap();
    // Task 0 hangs; 1.. wait at the gate. Each worker holds two tasks at
    // most until one is done (none is, the gate is shut): the rest stay
    // queued, task 15 among them.
    let mut results = vec![pool.submit(counted_hang, 0usize)];
    for i in 1..N {
        results.push(pool.submit(gated, i));
    }
    wait_for("task 0 to run", || counts[0].load(Ordering::SeqCst) == 1);
    let before = pool.pids();
    assert!(results[15].cancel(), "a queued task");
    assert!(results[0].cancel(), "a running task");
    assert!(!results[0].cancel(), "cancelled already: its result is in");
    gate.store(1, Ordering::SeqCst);
    for (i, r) in results.into_iter().enumerate() {
        match i {
            0 | 15 => {
                let err = r.get().unwrap_err();
                assert!(err.is_cancelled(), "task {i}: {err}");
                assert_eq!(err.kind(), multiproc::ErrorKind::Cancelled);
            }
            _ => assert_eq!(r.get().unwrap(), i),
        }
    }
    let runs: Vec<u32> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let mut want = vec![1; N];
    want[15] = 0;
    assert_eq!(
        runs, want,
        "each task ran once, the queued cancelled one never"
    );
    let s = pool.stats();
    assert_eq!(
        (s.tasks_done, s.tasks_cancelled, s.tasks_failed),
        (N as u64 - 2, 2, 0)
    );
    assert_eq!(
        (s.workers_started, s.workers_died, s.workers_replaced),
        (3, 1, 1)
    );
    // One of the two workers was replaced.
    wait_for("the replacement to be ready", || pool.pids().len() == 2);
    let after = pool.pids();
    assert_eq!(after.len(), 2);
    assert_eq!(after.iter().filter(|p| before.contains(p)).count(), 1);
}

#[test]
fn cancel_after_the_result_is_in_keeps_the_result() {
    let pool = common::pool(1);
    let mut r = pool.submit(square, 6u64);
    wait_for("the result", || r.is_ready());
    assert!(!r.cancel());
    assert_eq!(r.get().unwrap(), 36);
    assert_eq!(pool.stats().tasks_cancelled, 0);
}

#[test]
fn workers_over_max_memory_per_child_are_replaced_and_results_are_unaffected() {
    const LIMIT: u64 = 200 << 20;
    const LEAK: u64 = 50 << 20;
    let pool = PoolBuilder::new()
        .workers(2)
        .max_memory_per_child(LIMIT)
        .build()
        .unwrap();
    let out = pool.map_chunked(leak_50_mib, 0..16u64, 1).unwrap();
    assert_eq!(
        out.iter().map(|r| r.2).collect::<Vec<_>>(),
        (0..16).collect::<Vec<_>>()
    );
    let mut per_pid: HashMap<u32, u32> = HashMap::new();
    for &(pid, rss, _) in &out {
        *per_pid.entry(pid).or_default() += 1;
        // A worker starts a task only while under the limit; one task
        // adds 50 MiB (and a little for the allocator's own books).
        assert!(rss <= LIMIT + LEAK + (8 << 20), "worker {pid}: {rss} bytes");
        assert!(rss >= LEAK, "the leak is resident: {rss} bytes");
    }
    // Four leaks put a worker over 200 MiB: no worker ran more.
    assert!(per_pid.values().all(|&n| n <= 4), "{per_pid:?}");
    assert!(per_pid.len() >= 4, "{per_pid:?}");
    let s = pool.stats();
    assert_eq!((s.tasks_done, s.tasks_failed, s.workers_died), (16, 0, 0));
    assert!(s.workers_replaced >= 2, "{s:?}");
    assert_eq!(s.workers_started, 2 + s.workers_replaced);
}

#[test]
fn max_memory_per_child_zero_is_refused() {
    let err = PoolBuilder::new()
        .workers(1)
        .max_memory_per_child(0)
        .build()
        .unwrap_err();
    assert!(err.is_usage(), "{err}");
}
