//! `JoinableQueue` (`task_done`, `join`) and `SimpleQueue`.

use super::*;

#[test]
fn join_returns_only_after_every_item_was_marked_done_in_other_processes() {
    let n: u64 = if cfg!(windows) { 2_000 } else { 20_000 };
    let args = (
        JoinableQueue::<u64>::with_capacity(64).unwrap(),
        Shared::new(AtomicU64::new(0)).unwrap(),
    );
    let mut workers: Vec<Process<u64>> = (0..2)
        .map(|_| spawn_tied(handle_tasks, &args).unwrap())
        .collect();
    let (q, handled) = &args;
    for i in 1..=n {
        q.put(i).unwrap();
    }
    q.join().unwrap();
    // Each worker adds an item before marking it done: join saw them all.
    assert_eq!(handled.load(Ordering::SeqCst), n * (n + 1) / 2);
    assert_eq!(q.unfinished().unwrap(), 0);
    q.close().unwrap();
    let total: u64 = workers.iter_mut().map(|w| join_within(w).unwrap()).sum();
    assert_eq!(total, n);
    let e = q.task_done().unwrap_err();
    assert!(e.is_usage(), "more task_done than puts: {e}");
}

#[test]
fn join_timeout_says_false_while_an_item_is_not_done() {
    let q = JoinableQueue::<u64>::new().unwrap();
    assert!(q.join_timeout(Duration::ZERO).unwrap(), "nothing put");
    q.put(1).unwrap();
    assert!(!q.join_timeout(Duration::from_millis(20)).unwrap());
    assert_eq!(q.get().unwrap(), 1);
    assert!(
        !q.join_timeout(Duration::ZERO).unwrap(),
        "taken is not done"
    );
    q.task_done().unwrap();
    assert!(q.join_timeout(Duration::ZERO).unwrap());
}

#[test]
fn a_simple_queue_carries_items_from_a_child_that_has_returned() {
    let args = (SimpleQueue::<String>::new().unwrap(), 1_000);
    let mut child = spawn_tied(simple_produce, &args).unwrap();
    join_within(&mut child).unwrap();
    let q = &args.0;
    for i in 0..1_000u64 {
        assert_eq!(q.get().unwrap(), i.to_string());
    }
    assert!(q.is_empty().unwrap());
    q.close().unwrap();
    assert!(q.get().unwrap_err().is_queue_closed());
}
