//! Queues in pool workers: results streamed from their initializer, a
//! worker killed while blocked on a queue.

use super::*;

/// The "results stream" pattern: a pool's initializer takes a queue, the
/// tasks put their results into it, the parent reads them.
#[test]
fn pool_workers_stream_results_into_a_queue_from_their_initializer() {
    let q = Queue::<u64>::new().unwrap();
    let pool = PoolBuilder::new()
        .workers(2)
        .initializer(keep_queue, q.clone())
        .build()
        .unwrap();
    pool.map(square_into_queue, 0..1_000u64).unwrap();
    let mut sum = 0;
    for _ in 0..1_000 {
        sum += q.get_timeout(LONG).unwrap();
    }
    assert_eq!(sum, (0..1_000u64).map(|x| x * x).sum::<u64>());
    assert!(q.try_get().unwrap_err().is_empty());
}

/// The "work queue" pattern, and a worker killed while blocked in `get`:
/// its task fails with `WorkerDied`, the worker is replaced, and the
/// replacement takes the next job from the same queue.
#[test]
fn a_pool_worker_killed_while_blocked_on_a_queue_is_replaced() {
    let q = Queue::<u64>::new().unwrap();
    let pool = PoolBuilder::new()
        .workers(1)
        .initializer(keep_queue, q.clone())
        .build()
        .unwrap();
    let blocked = pool.submit(take_from_queue, ());
    let busy = pool.wait_busy(LONG);
    assert_eq!(busy.len(), 1);
    assert!(pool.kill_worker(busy[0]));
    let e = blocked.get().unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    q.put(42).unwrap();
    let next = pool.submit(take_from_queue, ());
    assert_eq!(next.get().unwrap(), 42);
    assert!(!pool.pids().contains(&busy[0]));
}
