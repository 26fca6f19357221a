//! Async: `AsyncResult` as a `Future`, `Imap` as a `Stream`, woken by
//! the pool's own reader threads, on a tokio current-thread runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use multiproc::{Connection, ErrorKind, Pipe, Pool, Shared};

multiproc::test_support!();

mod common;
use common::{block_forever, in_scenario, pool, scenario, square, LONG};

fn bump(counter: Shared<AtomicU64>) -> u64 {
    counter.fetch_add(1, Ordering::SeqCst) + 1
}

/// Returns what arrives on `conn`.
fn gate(conn: Connection) -> u64 {
    conn.recv().unwrap()
}

fn fail_on_3(x: u64) -> u64 {
    assert_ne!(x, 3, "task 3 fails");
    x
}

multiproc::entry!(bump, gate, fail_on_3);

/// A current-thread runtime: everything runs on the test's own thread,
/// so any thread that appears while it waits is someone else's.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// `f`, or a panic if it isn't done within [`LONG`] (a lost wake-up
/// fails the test instead of hanging it).
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LONG, f)
        .await
        .unwrap_or_else(|_| panic!("not woken within {LONG:?}"))
}

fn threads() -> usize {
    multiproc::test_hooks::thread_count().expect("thread count")
}

/// Polls `inner`, sampling this process's thread count at every poll
/// (each poll after the first is a wake from the pool); opens the gate
/// (sends on `gate`) once `inner` first returned `Pending`.
struct Sampling<F> {
    inner: F,
    gate: Option<Connection>,
    polls: usize,
    counts: Vec<usize>,
}

impl<F: Future + Unpin> Future for Sampling<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls += 1;
        let n = threads();
        self.counts.push(n);
        let r = Pin::new(&mut self.inner).poll(cx);
        if r.is_pending() {
            if let Some(gate) = self.gate.take() {
                gate.send(&7u64).unwrap();
            }
        }
        r
    }
}

// The thread count is the process's: other tests of this binary start
// and end pools meanwhile, so the count is taken in a process of its own.
#[test]
fn ten_thousand_submits_awaited_from_one_task_start_no_thread() {
    let out = scenario("scenario_ten_thousand_submits", |_| {});
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
}

#[test]
#[ignore = "a scenario, run by ten_thousand_submits_awaited_from_one_task_start_no_thread"]
fn scenario_ten_thousand_submits() {
    if !in_scenario("scenario_ten_thousand_submits") {
        return;
    }
    let pool = pool(2);
    // Both workers ran a task: nothing left for the pool to start.
    assert_eq!(pool.map(square, 0..100u64).unwrap().len(), 100);
    let rt = runtime();
    let before = threads();
    let (mine, theirs) = Pipe::duplex().unwrap();
    let ((gated, results), polls, counts) = rt.block_on(async {
        // Pending until the first poll is through (so the wait is real).
        let gated = pool.submit(gate, theirs);
        let futures: Vec<_> = (0..10_000u64).map(|i| pool.submit(square, i)).collect();
        let mut all = Sampling {
            inner: futures_util::future::join(gated, futures_util::future::join_all(futures)),
            gate: Some(mine),
            polls: 0,
            counts: Vec::new(),
        };
        let results = within(&mut all).await;
        (results, all.polls, all.counts)
    });
    assert_eq!(gated.unwrap(), 7);
    let values: Vec<u64> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(values, (0..10_000u64).map(square).collect::<Vec<_>>());
    // It waited, and was woken ...
    assert!(polls >= 2, "polled {polls} times: never waited");
    // ... and at every wake the process had the threads it had before.
    assert!(
        counts.iter().all(|&n| n == before),
        "{before} threads before; during the wait: {counts:?}"
    );
}

#[test]
fn a_timer_wins_select_over_a_task_that_never_ends_and_loses_to_one_that_does() {
    let pool = pool(2);
    let rt = runtime();
    rt.block_on(async {
        let stuck = pool.submit(block_forever, ());
        tokio::select! {
            r = stuck => panic!("a task that never ends ended: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        // The other worker is free.
        let quick = pool.submit(square, 7u64);
        tokio::select! {
            r = quick => assert_eq!(r.unwrap(), 49),
            _ = tokio::time::sleep(LONG) => panic!("no result in {LONG:?}"),
        }
    });
}

#[test]
fn imap_is_a_stream_in_order_and_unordered() {
    let pool = pool(2);
    let rt = runtime();
    rt.block_on(async {
        let ordered = pool
            .imap(square, 0..2_000u64)
            .into_stream()
            .map(|r| r.unwrap())
            .collect::<Vec<u64>>();
        let ordered = within(ordered).await;
        assert_eq!(ordered, (0..2_000u64).map(square).collect::<Vec<_>>());

        let unordered = pool
            .imap_unordered(square, 0..2_000u64)
            .chunksize(1)
            .into_stream()
            .map(|r| r.unwrap())
            .collect::<Vec<u64>>();
        let mut unordered = within(unordered).await;
        unordered.sort_unstable();
        assert_eq!(unordered, (0..2_000u64).map(square).collect::<Vec<_>>());

        // A failed task is its own item, at its position; the rest go on.
        // `Imap` itself is a `Stream` too (called without `StreamExt`).
        let mut stream = pool.imap(fail_on_3, 0..6u64);
        let mut items = Vec::new();
        while let Some(r) = within(std::future::poll_fn(|cx| {
            Pin::new(&mut stream).poll_next(cx)
        }))
        .await
        {
            items.push(r);
        }
        assert_eq!(items.len(), 6);
        for (i, r) in items.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, i as u64),
                Err(e) => {
                    assert_eq!(i, 3, "task {i} failed: {e}");
                    assert!(e.is_panic(), "{e}");
                }
            }
        }
    });
}

#[test]
fn a_dropped_future_detaches_its_task_runs_and_the_result_is_discarded() {
    let pool = Pool::new(1).unwrap();
    let counter = Shared::new(AtomicU64::new(0)).unwrap();
    // Dropped before it was ever polled.
    drop(pool.submit(bump, counter.clone()));
    // Polled once (its waker registered: nothing has run yet on a
    // worker that just started), then dropped.
    let mut polled = pool.submit(bump, counter.clone());
    let first = (&mut polled).now_or_never();
    // (Done already only if the worker was that quick.)
    assert!(matches!(first, None | Some(Ok(2))), "{first:?}");
    drop(polled);
    // One worker runs its tasks in order: this one runs after both.
    let rt = runtime();
    let third = rt
        .block_on(within(pool.submit(bump, counter.clone())))
        .unwrap();
    assert_eq!(third, 3);
    assert_eq!(counter.load(Ordering::SeqCst), 3);
}

#[test]
fn an_awaited_result_is_handed_out_once() {
    let pool = pool(1);
    let rt = runtime();
    rt.block_on(async {
        let mut r = pool.submit(square, 9u64);
        assert_eq!(within(&mut r).await.unwrap(), 81);
        let again = (&mut r).await.unwrap_err();
        assert_eq!(again.kind(), ErrorKind::Usage, "{again}");
    });
}

#[test]
fn an_awaited_task_of_a_terminated_pool_fails() {
    let pool = pool(1);
    let rt = runtime();
    let stuck = pool.submit(block_forever, ());
    let queued = pool.submit(square, 2u64);
    rt.block_on(async {
        // Both wait (a pending future registered its waker) ...
        let mut both = futures_util::future::join(stuck, queued);
        assert!((&mut both).now_or_never().is_none());
        // ... until the pool is terminated from elsewhere.
        pool.terminate();
        let (a, b) = within(both).await;
        let (a, b) = (a.unwrap_err(), b.unwrap_err());
        assert!(a.is_pool_closed(), "{a}");
        assert!(b.is_pool_closed(), "{b}");
    });
}
