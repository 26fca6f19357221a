//! A `get` under a queue's lock copies out the records after its own, and
//! the next `get`s in that process take them without the lock (issue 12,
//! speed): a copied record stays in the queue, for any consumer, until
//! the `get` that returns it takes it — so a consumer killed with copies
//! took nothing, another consumer can take a copied record first, and a
//! producer asleep for room is still woken.

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc::{Event, Process, Queue, Shared};

multiproc::test_support!();

mod common;
use common::{wait_for, LONG};

/// What [`get_one_then_wait_to_be_killed`] reports: the item it got and
/// how many records it copied out after it.
type Report = (Shared<AtomicU64>, Shared<AtomicU64>);

/// Takes one item, reports it and the records it copied out (still in
/// the queue), and waits to be killed.
fn get_one_then_wait_to_be_killed((q, ready, (got, copied)): (Queue<u64>, Event, Report)) {
    got.store(q.get().unwrap(), Ordering::SeqCst);
    copied.store(
        multiproc::test_hooks::queue_copied(&q) as u64,
        Ordering::SeqCst,
    );
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

/// Takes one item.
fn get_one(q: Queue<u64>) -> u64 {
    q.get().unwrap()
}

/// Puts `1..=n` with rechecks off (nobody is killed: a lost wakeup hangs).
fn put_up_to((q, n): (Queue<u64>, u64)) {
    multiproc::test_hooks::set_queue_recheck(false);
    for i in 1..=n {
        q.put(i).unwrap();
    }
}

multiproc::entry!(get_one_then_wait_to_be_killed, get_one, put_up_to);

fn join_within<T: serde::de::DeserializeOwned>(p: &mut Process<T>) -> multiproc::Result<T> {
    p.join_timeout(LONG)
        .map(|r| r.expect("the process ended within LONG"))
}

/// A consumer killed with nine records copied out (not yet returned by
/// any `get`): all nine are still in the queue, in order.
#[test]
fn a_consumer_killed_with_records_copied_out_leaves_them_in_the_queue() {
    let report: Report = (
        Shared::new(AtomicU64::new(0)).unwrap(),
        Shared::new(AtomicU64::new(0)).unwrap(),
    );
    let args = (Queue::<u64>::new().unwrap(), Event::new().unwrap(), report);
    let q = &args.0;
    for i in 1..=10 {
        q.put(i).unwrap();
    }
    let mut consumer = Process::<()>::spawn(get_one_then_wait_to_be_killed, &args).unwrap();
    assert!(args.1.wait_timeout(LONG).unwrap(), "the consumer got one");
    let (got, copied) = &args.2;
    assert_eq!(got.load(Ordering::SeqCst), 1);
    assert_eq!(copied.load(Ordering::SeqCst), 9, "it copied out the rest");
    consumer.kill().unwrap();
    assert!(join_within(&mut consumer).is_err());
    assert_eq!(q.len().unwrap(), 9);
    let rest: Vec<u64> = (0..9).map(|_| q.get_timeout(LONG).unwrap()).collect();
    assert_eq!(rest, (2..=10).collect::<Vec<_>>());
    assert!(q.try_get().unwrap_err().is_empty());
}

/// This process copies out items 2..=5 with its first `get`; another
/// process then takes item 2 (under the lock); this process's next `get`
/// finds its copy taken and goes to the lock: it gets 3, and every item
/// arrives exactly once.
#[test]
fn a_copied_record_another_consumer_took_first_is_not_returned_again() {
    let q = Queue::<u64>::new().unwrap();
    for i in 1..=5 {
        q.put(i).unwrap();
    }
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(multiproc::test_hooks::queue_copied(&q), 4);
    let mut other = Process::spawn(get_one, &q).unwrap();
    assert_eq!(join_within(&mut other).unwrap(), 2);
    assert_eq!(q.get().unwrap(), 3, "the copy of 2 was refused");
    assert_eq!(q.get().unwrap(), 4);
    assert_eq!(q.get().unwrap(), 5);
    assert!(q.try_get().unwrap_err().is_empty());
}

/// A producer asleep waiting for room while this process holds copies
/// of the items ahead of it: the `get`s wake it (a take without the lock
/// would not, so none happens while it sleeps). Rechecks off on both
/// sides: a lost wakeup hangs the test instead of costing 100 ms.
#[test]
fn a_producer_asleep_for_room_is_woken_by_gets_that_hold_copies() {
    multiproc::test_hooks::set_queue_recheck(false);
    let args = (Queue::<u64>::with_capacity(4).unwrap(), 40);
    let q = &args.0;
    let mut producer = Process::<()>::spawn(put_up_to, &args).unwrap();
    wait_for("the producer asleep on a full queue", || {
        multiproc::test_hooks::queue_sleepers(q).unwrap() == (0, 1)
    });
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(multiproc::test_hooks::queue_copied(q), 3, "2, 3 and 4");
    let rest: Vec<u64> = (0..39).map(|_| q.get().unwrap()).collect();
    assert_eq!(rest, (2..=40).collect::<Vec<_>>());
    join_within(&mut producer).unwrap();
    assert!(q.try_get().unwrap_err().is_empty());
}
