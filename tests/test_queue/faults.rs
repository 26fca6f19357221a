//! Processes killed holding the queue's lock or an item, garbage written
//! into the ring.

use super::*;

/// A process killed while it holds the queue's lock (inside a `put` or
/// `get`): the next caller gets the lock from the OS (robust mutex /
/// abandoned kernel mutex) and the queue works on, items intact.
#[test]
fn a_process_killed_holding_the_queue_lock_does_not_lock_the_queue() {
    let args = (Queue::<u64>::new().unwrap(), Event::new().unwrap());
    args.0.put(1).unwrap();
    let mut holder = spawn_tied(hold_lock_until_killed, &args).unwrap();
    assert!(
        args.1.wait_timeout(LONG).unwrap(),
        "the holder took the lock"
    );
    holder.kill().unwrap();
    assert!(join_within(&mut holder).is_err());
    // In a thread, so that a lock held for good fails the test instead of
    // hanging it.
    let q = args.0.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = q.get_timeout(LONG);
        let put = q.put(2);
        let _ = tx.send((first, put, q.len(), q.try_get()));
    });
    let (first, put, len, second) = rx.recv_timeout(LONG).expect("the queue stayed locked");
    assert_eq!(first.unwrap(), 1);
    put.unwrap();
    assert_eq!(len.unwrap(), 1);
    assert_eq!(second.unwrap(), 2);
}

/// A consumer killed inside `get` with the item copied out and decoded
/// (under the lock, before the commit that takes it out of the ring): the
/// item stays in the queue, first in line, and the next `get` has it.
#[test]
fn a_consumer_killed_with_the_item_in_hand_before_get_returned_leaves_it_in_the_queue() {
    let args = (Queue::<u64>::new().unwrap(), Event::new().unwrap());
    let q = &args.0;
    for i in 1..=3 {
        q.put(i).unwrap();
    }
    let mut consumer = spawn_tied(get_then_wait_to_be_killed, &args).unwrap();
    assert!(
        args.1.wait_timeout(LONG).unwrap(),
        "the consumer had item 1"
    );
    consumer.kill().unwrap();
    assert!(join_within(&mut consumer).is_err());
    let got: Vec<u64> = (0..3).map(|_| q.get_timeout(LONG).unwrap()).collect();
    assert_eq!(got, [1, 2, 3], "item 1 stayed, first in line");
    assert!(q.try_get().unwrap_err().is_empty());
}

#[test]
fn garbage_written_into_the_ring_by_another_process_is_a_decode_error_then_the_queue_works() {
    let q = Queue::<u64>::new().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let mut child = spawn_tied(scribble, &q).unwrap();
    assert!(join_within(&mut child).unwrap(), "the child found the item");
    let e = q.get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("emptied"), "{e}");
    assert_eq!(q.len().unwrap(), 0, "the ring was emptied");
    q.put(3).unwrap();
    assert_eq!(q.get().unwrap(), 3);
}
