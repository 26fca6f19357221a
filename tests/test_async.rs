//! Async: `AsyncResult` as a `Future`, `Imap` as a `Stream`, woken by
//! the pool's own reader threads, on a tokio current-thread runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use multiproc::{Connection, ErrorKind, Pipe, Pool, Process, Shared};

multiproc::test_support!();

mod common;
use common::{block_forever, exit_with, in_scenario, pool, scenario, square, LONG};

fn bump(counter: Shared<AtomicU64>) -> u64 {
    counter.fetch_add(1, Ordering::SeqCst) + 1
}

/// Returns what arrives on `conn`.
fn gate(conn: Connection) -> u64 {
    conn.recv().unwrap()
}

/// A result of `n` bytes (larger than any pipe's buffer).
fn big(n: usize) -> Vec<u8> {
    vec![7u8; n]
}

fn boom(_: ()) -> u64 {
    panic!("boom")
}

fn fail_on_3(x: u64) -> u64 {
    assert_ne!(x, 3, "task 3 fails");
    x
}

multiproc::entry!(bump, gate, big, boom, fail_on_3);

/// A current-thread runtime: everything runs on the test's own thread,
/// so any thread that appears while it waits is someone else's.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// `f`, or a panic if it isn't done within [`LONG`] (a lost wake-up
/// fails the test instead of hanging it). The timer is looked at first:
/// a future that got no wake is not polled once more at the deadline.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::select! {
        biased;
        _ = tokio::time::sleep(LONG) => panic!("not woken within {LONG:?}"),
        v = f => v,
    }
}

/// A minimal executor, not tokio: polls `f` on this thread, and again
/// only when its waker unparks the thread; panics if no wake comes within
/// [`LONG`]. (Futures that count on being polled again without a wake
/// fail here; tokio may poll them anyway.)
fn park_block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let deadline = std::time::Instant::now() + LONG;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
        // Not polled once more at the deadline: that could hide a lost
        // wake-up behind a result that came meanwhile.
        assert!(
            std::time::Instant::now() < deadline,
            "not woken within {LONG:?}"
        );
    }
}

fn threads() -> usize {
    multiproc::test_hooks::thread_count().expect("thread count")
}

/// Polls `inner`, sampling this process's thread count at every poll
/// (each poll after the first is a wake); opens the gates (sends on
/// each of `gates`) once `inner` first returned `Pending`.
struct Sampling<F> {
    inner: F,
    gates: Vec<Connection>,
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
            for gate in std::mem::take(&mut self.gates) {
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
            gates: vec![mine],
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

#[test]
fn an_awaited_join_gives_the_value_and_the_process_stays_usable() {
    let rt = runtime();
    let mut p = Process::spawn(square, 7u64).unwrap();
    assert_eq!(rt.block_on(within(p.join_async())).unwrap(), 49);
    assert_eq!(p.exitcode(), Some(0));
    let again = rt.block_on(within(p.join_async())).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Usage, "{again}");
}

#[test]
fn an_awaited_join_reports_an_exit_without_result_and_a_panic() {
    let mut exits = Process::spawn(exit_with, 3).unwrap();
    let mut panics = Process::spawn(boom, ()).unwrap();
    let (a, b) = park_block_on(futures_util::future::join(
        exits.join_async(),
        panics.join_async(),
    ));
    let a = a.unwrap_err();
    assert!(a.is_no_result(), "{a}");
    assert_eq!(a.exit_status().and_then(|s| s.code()), Some(3));
    let b = b.unwrap_err();
    assert!(b.is_panic(), "{b}");
}

// The worker can't exit before its 8 MiB result is read: the future
// reads it as it arrives (else this hangs, and `within` fails it).
#[test]
fn an_awaited_join_reads_a_result_larger_than_the_pipe() {
    let mut p = Process::spawn(big, 8usize << 20).unwrap();
    let v = park_block_on(p.join_async()).unwrap();
    assert_eq!(v.len(), 8 << 20);
    assert!(v.iter().all(|&b| b == 7));
}

#[test]
fn a_dropped_join_future_leaves_the_process_to_a_later_join() {
    let (mine, theirs) = Pipe::duplex().unwrap();
    let mut p = Process::spawn(gate, theirs).unwrap();
    // Pending (the worker waits for us), registered with the waiter ...
    assert!(p.join_async().now_or_never().is_none());
    // ... and dropped: the worker runs on, and a later join gets it.
    mine.send(&5u64).unwrap();
    assert_eq!(p.join_timeout(LONG).unwrap(), Some(5));
    // An awaited join of another process after that still works.
    let mut q = Process::spawn(square, 3u64).unwrap();
    assert_eq!(park_block_on(q.join_async()).unwrap(), 9);
}

#[test]
fn awaiting_sixteen_joins_from_one_task_starts_no_thread_per_process() {
    let out = scenario("scenario_sixteen_joins", |_| {});
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
}

#[test]
#[ignore = "a scenario, run by awaiting_sixteen_joins_from_one_task_starts_no_thread_per_process"]
fn scenario_sixteen_joins() {
    if !in_scenario("scenario_sixteen_joins") {
        return;
    }
    // The first async join starts the one waiter thread.
    let mut first = Process::spawn(square, 2u64).unwrap();
    assert_eq!(park_block_on(first.join_async()).unwrap(), 4);
    let before = threads();
    let mut gates = Vec::new();
    let mut procs = Vec::new();
    for _ in 0..16 {
        let (mine, theirs) = Pipe::duplex().unwrap();
        gates.push(mine);
        procs.push(Process::spawn(gate, theirs).unwrap());
    }
    let joins = futures_util::future::join_all(procs.iter_mut().map(|p| p.join_async()));
    let mut all = Sampling {
        inner: joins,
        gates,
        polls: 0,
        counts: Vec::new(),
    };
    let results = park_block_on(&mut all);
    let (polls, counts) = (all.polls, all.counts);
    for r in results {
        assert_eq!(r.unwrap(), 7);
    }
    assert!(polls >= 2, "polled {polls} times: never waited");
    assert!(
        counts.iter().all(|&n| n == before),
        "{before} threads before; during the wait: {counts:?}"
    );
}
