//! Items larger than a queue's ring, across real processes: they take
//! the queue's lane (a block of shared memory each, kept by the kernel on
//! Linux and by the queue's keeper process on Windows) and keep the queue's
//! promises — whole or not at all, in the queue once `put` returned even
//! if the producer exits at once, left for the next consumer by one
//! killed inside `get`, not taken along by any process killed, no fd or handle left behind, and small items
//! flowing while a large `put` waits.
//!
//! Every test takes `SERIAL`: they count this process's fds/handles, which
//! a spawn in another test thread would change.

use std::sync::Mutex;
use std::time::Duration;

use multiproc::test_hooks::LargeStop;
use multiproc::{Connection, Event, Process, Queue};

multiproc::test_support!();

mod common;
use common::{wait_for, LONG};

static SERIAL: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// The large item the tests send: `len` bytes that say where they are
/// (a byte in the wrong place changes the pattern), from `seed`.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut i = 0u64;
    while v.len() < len {
        let word = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 8) ^ u64::from(seed);
        v.extend_from_slice(&word.to_le_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

// ------------------------------------------------------------ entries

/// Puts a 16 MiB item and then `small` small ones, and returns at once.
fn put_large_then_small((q, seed, small): (Queue<Vec<u8>>, u8, u8)) {
    q.put(pattern(seed, 16 * MIB)).unwrap();
    for i in 0..small {
        q.put(vec![i]).unwrap();
    }
}

/// Puts a 16 MiB item and ends the process at once, without returning.
fn put_large_and_exit((q, seed): (Queue<Vec<u8>>, u8)) {
    q.put(pattern(seed, 16 * MIB)).unwrap();
    std::process::exit(0);
}

/// Puts a 16 MiB item (which waits for room) and returns: `Ok` or the
/// error's kind.
fn put_large(((q, seed), ready): ((Queue<Vec<u8>>, u8), Event)) -> Result<(), String> {
    ready.set().unwrap();
    q.put(pattern(seed, 16 * MIB))
        .map_err(|e| format!("{:?}: {e}", e.kind()))
}

/// Puts `n` one-byte items and returns.
fn put_small((q, n): (Queue<Vec<u8>>, u8)) {
    for i in 0..n {
        q.put(vec![i]).unwrap();
    }
}

/// Takes one item and, with it decoded in hand but not yet taken out of
/// the queue, says so and waits to be killed.
fn get_then_wait_to_be_killed((q, ready): (Queue<Vec<u8>>, Event)) {
    let _ = multiproc::test_hooks::get_noting(&q, |item| {
        assert_eq!(item.len(), 16 * MIB);
        ready.set().unwrap();
        loop {
            std::thread::park();
        }
    });
}

/// Makes this process's large `put`s or `get`s stop at `point`: say so
/// on `ready` and wait there, holding the queue's lock, to be killed.
fn stop_at(point: LargeStop, ready: Event) {
    multiproc::test_hooks::stop_large_at(point, move || {
        ready.set().unwrap();
        loop {
            std::thread::park();
        }
    });
}

/// Puts a 16 MiB item, stopped after its block went to the lane and
/// before its record's commit (see [`stop_at`]).
fn put_large_stopped_after_lane_send(((q, seed), ready): ((Queue<Vec<u8>>, u8), Event)) {
    stop_at(LargeStop::AfterLaneSend, ready);
    let r = q.put(pattern(seed, 2 * MIB));
    panic!("the put was not stopped: {r:?}");
}

/// Gets an item, stopped (if it is a large one) after the commit that
/// took it and before the lane let go of its block (see [`stop_at`]).
fn get_stopped_after_take_commit((q, ready): (Queue<Vec<u8>>, Event)) {
    stop_at(LargeStop::AfterTakeCommit, ready);
    let r = q.get().map(|item| item.len());
    panic!("the get was not stopped: {r:?}");
}

/// Creates a queue (1 MiB ring), sends it to the parent, and returns
/// (dropping its copy) when the parent says so.
fn create_and_hand_over((conn, ()): (multiproc::Connection, ())) {
    let q = queue();
    conn.send(&q).unwrap();
    let _: () = conn.recv().unwrap();
}

/// Puts a 2 MiB item and returns.
fn put_2_mib((q, seed): (Queue<Vec<u8>>, u8)) {
    q.put(pattern(seed, 2 * MIB)).unwrap();
}

/// Gets `n` items: whether each was the 2 MiB pattern of its seed.
fn get_2_mib((q, seeds): (Queue<Vec<u8>>, Vec<u8>)) -> Vec<bool> {
    seeds
        .into_iter()
        .map(|seed| q.get_timeout(LONG).unwrap() == pattern(seed, 2 * MIB))
        .collect()
}

/// Holds the queue: says so, and waits to be killed.
fn hold_until_killed((_q, ready): (Queue<Vec<u8>>, Event)) {
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

/// Holds the queue: says so, waits for `go`, and ends with
/// `process::exit`, which drops nothing (its copy of the queue never
/// leaves the lane).
fn hold_then_exit(((_q, ready), go): ((Queue<Vec<u8>>, Event), Event)) {
    ready.set().unwrap();
    assert!(go.wait_timeout(LONG).unwrap(), "told to exit");
    std::process::exit(0);
}

/// Does the queue's first large `put`s, one 2 MiB item per seed, says
/// so, and waits to be killed.
fn put_2_mib_each_then_wait(((q, seeds), ready): ((Queue<Vec<u8>>, Vec<u8>), Event)) {
    for seed in seeds {
        q.put(pattern(seed, 2 * MIB)).unwrap();
    }
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

multiproc::entry!(
    put_2_mib_each_then_wait,
    hold_until_killed,
    hold_then_exit,
    create_and_hand_over,
    put_2_mib,
    get_2_mib,
    put_large_stopped_after_lane_send,
    get_stopped_after_take_commit,
    put_large_then_small,
    put_large_and_exit,
    put_large,
    put_small,
    get_then_wait_to_be_killed
);

// ------------------------------------------------------------ helpers

/// A queue whose ring is 1 MiB.
fn queue() -> Queue<Vec<u8>> {
    Queue::builder().max_bytes(MIB).build().unwrap()
}

fn join_within<T: serde::de::DeserializeOwned>(p: &mut Process<T>) -> multiproc::Result<T> {
    match p.join_timeout(LONG) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => panic!("process {} still running after {LONG:?}", p.pid()),
        Err(e) => Err(e),
    }
}

/// The blocks `q`'s lane holds (`None` where that can't be counted).
fn lane_blocks(q: &Queue<Vec<u8>>) -> Option<usize> {
    match multiproc::test_hooks::queue_lane_blocks(q).unwrap() {
        Ok(n) => Some(n),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => None,
        Err(e) => panic!("cannot count the lane's blocks: {e}"),
    }
}

/// Checks `q`'s lane holds `n` blocks, where they can be counted.
#[track_caller]
fn assert_lane_blocks(q: &Queue<Vec<u8>>, n: usize) {
    if let Some(got) = lane_blocks(q) {
        assert_eq!(got, n, "blocks in the lane");
    }
}

/// Spawns `f`'s process on `args` and a new event, waits until it says
/// on that event that it stopped where its hook says (holding the
/// queue's lock), and kills it there.
fn kill_when_stopped<F, A>(f: F, args: A)
where
    F: Fn((A, Event)) + Copy + 'static,
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let args = (args, Event::new().unwrap());
    let mut p = Process::<()>::spawn(f, &args).unwrap();
    assert!(args.1.wait_timeout(LONG).unwrap(), "the process stopped");
    p.kill().unwrap();
    let e = join_within(&mut p).unwrap_err();
    assert!(e.is_terminated(), "{e}");
}

/// A queue whose ring is 1 MiB and whose lane holds at most 20 MiB: one
/// 16 MiB item in the lane leaves no room for a second.
fn lane_bound_queue() -> Queue<Vec<u8>> {
    Queue::builder()
        .max_bytes(MIB)
        .max_large_bytes(20 * MIB)
        .build()
        .unwrap()
}

/// Spawns a producer whose 16 MiB `put` of `seed`'s pattern (in
/// `put_large`) waits for room in `q`'s lane, and waits until it does.
fn large_put_waiting_for_room(q: &Queue<Vec<u8>>, seed: u8) -> Process<Result<(), String>> {
    let args = ((q.clone(), seed), Event::new().unwrap());
    let producer = Process::spawn(put_large, &args).unwrap();
    assert!(args.1.wait_timeout(LONG).unwrap(), "the producer started");
    wait_for("the large put to wait for room", || {
        multiproc::test_hooks::queue_sleepers(q).unwrap().1 == 1
    });
    producer
}

fn handles() -> usize {
    multiproc::test_hooks::open_handle_count().unwrap()
}

/// Spawns and joins a process that does nothing to the queue, so that
/// what a first spawn sets up once is not counted.
fn warm_up(q: &Queue<Vec<u8>>) {
    let mut p = Process::spawn(put_small, (q.clone(), 0u8)).unwrap();
    join_within(&mut p).unwrap();
}

// ------------------------------------------------------------ tests

/// A 16 MiB item from a child through a queue whose ring is 1 MiB, then
/// small items behind it: all arrive whole and in order, and nothing the
/// parent opened to take them stays open.
#[test]
fn a_16_mib_item_goes_from_a_child_through_a_1_mib_ring_whole_and_in_order() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = queue();
    assert!(q.max_item_len().unwrap() >= 16 * MIB);
    warm_up(&q);
    let before = handles();
    let mut child = Process::spawn(put_large_then_small, &(q.clone(), 7u8, 3u8)).unwrap();
    let big = q.get_timeout(LONG).unwrap();
    assert_eq!(big.len(), 16 * MIB);
    assert!(big == pattern(7, 16 * MIB), "the item is not whole");
    for i in 0..3u8 {
        assert_eq!(q.get_timeout(LONG).unwrap(), vec![i]);
    }
    join_within(&mut child).unwrap();
    drop(child);
    assert!(q.try_get().unwrap_err().is_empty());
    assert_eq!(handles(), before, "fds/handles left open by the large get");
}

/// A child puts a large item and returns (or calls `process::exit`) at
/// once: it is joined first, and its item is in the queue afterwards.
#[test]
fn a_child_that_puts_a_large_item_and_ends_at_once_leaves_it_in_the_queue() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = queue();
    let mut returned = Process::spawn(put_large_then_small, &(q.clone(), 1u8, 0u8)).unwrap();
    join_within(&mut returned).unwrap();
    let mut exited = Process::<()>::spawn(put_large_and_exit, &(q.clone(), 2u8)).unwrap();
    let e = join_within(&mut exited).unwrap_err();
    assert_eq!(e.kind(), multiproc::ErrorKind::NoResult, "{e}");
    assert_eq!(exited.exitcode(), Some(0));
    assert_eq!(q.len().unwrap(), 2);
    assert!(q.get().unwrap() == pattern(1, 16 * MIB));
    assert!(q.get().unwrap() == pattern(2, 16 * MIB));
    assert!(q.try_get().unwrap_err().is_empty());
}

/// A consumer killed inside `get` with a large item decoded in hand
/// (before the commit that takes it): another consumer gets the item,
/// whole, and nothing stays open.
#[test]
fn a_consumer_killed_holding_a_large_item_leaves_it_for_the_next_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = queue();
    warm_up(&q);
    let before = handles();
    q.put(pattern(3, 16 * MIB)).unwrap();
    q.put(vec![42]).unwrap();
    let args = (q.clone(), Event::new().unwrap());
    let mut consumer = Process::<()>::spawn(get_then_wait_to_be_killed, &args).unwrap();
    assert!(
        args.1.wait_timeout(LONG).unwrap(),
        "the consumer had the item"
    );
    consumer.kill().unwrap();
    assert!(join_within(&mut consumer).is_err());
    drop((consumer, args));
    assert!(q.get_timeout(LONG).unwrap() == pattern(3, 16 * MIB));
    assert_eq!(q.get_timeout(LONG).unwrap(), vec![42]);
    assert!(q.try_get().unwrap_err().is_empty());
    assert_eq!(handles(), before, "fds/handles left open");
}

/// A producer killed while its large `put` waits for room (the lane's
/// bound is taken by another large item): the queue works on, the killed
/// producer's item never arrives (not even in part), and nothing stays
/// open.
#[test]
fn a_producer_killed_while_its_large_put_waits_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = lane_bound_queue();
    warm_up(&q);
    let before = handles();
    q.put(pattern(4, 16 * MIB)).unwrap();
    let mut producer = large_put_waiting_for_room(&q, 5);
    producer.kill().unwrap();
    assert!(join_within(&mut producer).is_err());
    drop(producer);
    assert!(q.get_timeout(LONG).unwrap() == pattern(4, 16 * MIB));
    let e = q.try_get().unwrap_err();
    assert!(e.is_empty(), "{e}");
    q.put(pattern(6, 16 * MIB)).unwrap();
    q.put(vec![1]).unwrap();
    assert!(q.get().unwrap() == pattern(6, 16 * MIB));
    assert_eq!(q.get().unwrap(), vec![1]);
    assert_eq!(handles(), before, "fds/handles left open");
}

/// While a producer's large `put` waits for room in the lane, another
/// producer puts small items and returns: they are in the queue, behind
/// the large item that was there, and ahead of the waiting one.
#[test]
fn small_items_keep_flowing_while_a_large_put_waits() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = lane_bound_queue();
    q.put(pattern(8, 16 * MIB)).unwrap();
    let mut large = large_put_waiting_for_room(&q, 9);
    let mut small = Process::spawn(put_small, &(q.clone(), 100u8)).unwrap();
    join_within(&mut small).unwrap();
    assert_eq!(q.len().unwrap(), 101, "the small puts did not wait");
    assert!(q.get().unwrap() == pattern(8, 16 * MIB));
    for i in 0..100u8 {
        assert_eq!(q.get_timeout(LONG).unwrap(), vec![i]);
    }
    assert!(q.get_timeout(LONG).unwrap() == pattern(9, 16 * MIB));
    assert_eq!(join_within(&mut large).unwrap(), Ok(()));
    assert!(q.get_timeout(Duration::ZERO).unwrap_err().is_empty());
}

/// A producer killed after its large item's block went to the lane and
/// before its record's commit put nothing: the queue works on, small and
/// large items behind it arrive whole, no consumer ever gets the killed
/// producer's item (not even its block in place of another's), and what
/// it left in the lane is let go: on Linux a datagram no record names,
/// dropped by the next large `get` that reaches it; on Windows a handle
/// in the queue's keeper process, closed by the next large `put`
/// (module docs of `queue`).
#[test]
fn a_producer_killed_between_its_lane_send_and_its_commit_put_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = queue();
    warm_up(&q);
    let before = handles();
    q.put(pattern(10, 2 * MIB)).unwrap();
    kill_when_stopped(put_large_stopped_after_lane_send, (q.clone(), 11u8));
    assert_eq!(q.len().unwrap(), 1, "the killed producer's item is not in");
    assert_lane_blocks(&q, 2);
    q.put(vec![1]).unwrap();
    q.put(pattern(12, 2 * MIB)).unwrap();
    // Linux: its datagram is behind the first item's, still there;
    // Windows: the put let go of it (no record names its slot).
    let orphan = if cfg!(windows) { 0 } else { 1 };
    assert_lane_blocks(&q, 2 + orphan);
    assert!(q.get().unwrap() == pattern(10, 2 * MIB));
    assert_lane_blocks(&q, 1 + orphan);
    assert_eq!(q.get().unwrap(), vec![1]);
    assert!(q.get().unwrap() == pattern(12, 2 * MIB));
    assert_lane_blocks(&q, 0);
    assert!(q.try_get().unwrap_err().is_empty());
    assert_eq!(handles(), before, "fds/handles left open");
}

/// A consumer killed after the commit that took a large item and before
/// the lane let go of its block took the item: the next `get` has the
/// next item, small and large items go on, and the block it left is let
/// go by the next large `put`.
#[test]
fn a_consumer_killed_between_its_commit_and_the_lane_letting_go_took_the_item() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = queue();
    warm_up(&q);
    let before = handles();
    q.put(pattern(20, 2 * MIB)).unwrap();
    q.put(vec![2]).unwrap();
    kill_when_stopped(get_stopped_after_take_commit, q.clone());
    assert_eq!(q.len().unwrap(), 1, "the large item was taken");
    assert_lane_blocks(&q, 1);
    assert_eq!(q.get().unwrap(), vec![2]);
    assert_lane_blocks(&q, 1);
    q.put(pattern(21, 2 * MIB)).unwrap();
    assert_lane_blocks(&q, 1);
    assert!(q.get().unwrap() == pattern(21, 2 * MIB));
    assert_lane_blocks(&q, 0);
    assert!(q.try_get().unwrap_err().is_empty());
    assert_eq!(handles(), before, "fds/handles left open");
}

/// Large items outlive the process that created the queue: A creates it
/// and hands it to this process; B puts a large item while A lives and
/// returns; A returns (dropping its copy); C puts another; D gets both,
/// whole. (On Windows both wait in the queue's keeper; before the lane
/// had holders both were lost with A: the first skipped, the second's
/// put failed.)
#[test]
fn large_items_outlive_the_process_that_created_the_queue() {
    large_items_outlive_their_creator(40, |mut a, conn| {
        conn.send(&()).unwrap();
        join_within(&mut a).unwrap();
    });
}

/// The creator-gone scenario both tests above and below share: A creates
/// the queue and hands it to this process over `conn`; B puts the large
/// item `tag` while A lives; `end_creator` ends A; the item is still
/// there (one item, one block in the lane); C puts `tag + 1`; D gets
/// both, whole, and the lane is empty after.
fn large_items_outlive_their_creator(tag: u8, end_creator: impl FnOnce(Process<()>, Connection)) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (a, conn) = Process::<()>::spawn_connected(create_and_hand_over, ()).unwrap();
    let q: Queue<Vec<u8>> = conn.recv().unwrap();
    let mut b = Process::spawn(put_2_mib, &(q.clone(), tag)).unwrap();
    join_within(&mut b).unwrap();
    end_creator(a, conn);
    assert_eq!(q.len().unwrap(), 1);
    assert_lane_blocks(&q, 1);
    let mut c = Process::spawn(put_2_mib, &(q.clone(), tag + 1)).unwrap();
    join_within(&mut c).unwrap();
    let mut d = Process::spawn(get_2_mib, &(q.clone(), vec![tag, tag + 1])).unwrap();
    assert_eq!(
        join_within(&mut d).unwrap(),
        [true, true],
        "each item whole"
    );
    assert!(q.try_get().unwrap_err().is_empty());
    assert_lane_blocks(&q, 0);
}

#[cfg(windows)]
/// The pid of `q`'s lane keeper: `Some` on Windows, `None` where there is
/// no keeper (Linux: the kernel keeps the blocks).
fn keeper_pid(q: &Queue<Vec<u8>>) -> Option<u32> {
    match multiproc::test_hooks::queue_keeper_pid(q).unwrap() {
        Ok(pid) => pid,
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => None,
        Err(e) => panic!("cannot find the lane's keeper: {e}"),
    }
}

/// Spawns a process that holds `q` and waits to be killed, once it holds
/// it.
fn spawn_holder(q: &Queue<Vec<u8>>) -> Process<()> {
    let args = (q.clone(), Event::new().unwrap());
    let p = Process::<()>::spawn(hold_until_killed, &args).unwrap();
    assert!(
        args.1.wait_timeout(LONG).unwrap(),
        "the holder holds the queue"
    );
    p
}

/// Kills `p` and checks it was.
fn kill(mut p: Process<()>) {
    p.kill().unwrap();
    let e = join_within(&mut p).unwrap_err();
    assert!(e.is_terminated(), "{e}");
}

/// A consumer holds the queue (on Windows the process that kept the
/// blocks before the lane had a keeper: the first holder other than
/// the producer) while 3 large items are put, and is killed before it
/// gets any: another consumer gets all 3, whole and in order.
#[test]
fn a_holder_killed_before_getting_any_large_item_takes_none_with_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = queue();
    let holder = spawn_holder(&q);
    for seed in 50..53u8 {
        q.put(pattern(seed, 2 * MIB)).unwrap();
    }
    kill(holder);
    let mut c = Process::spawn(get_2_mib, &(q.clone(), vec![50u8, 51, 52])).unwrap();
    assert_eq!(join_within(&mut c).unwrap(), [true; 3], "each item whole");
    assert!(q.try_get().unwrap_err().is_empty());
    assert_lane_blocks(&q, 0);
}

/// The same with a holder that ends with `process::exit` (dropping
/// nothing) after the 3 large items were put.
#[test]
fn a_holder_that_exits_without_dropping_the_queue_takes_no_large_item_with_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = queue();
    let args = ((q.clone(), Event::new().unwrap()), Event::new().unwrap());
    let mut holder = Process::<()>::spawn(hold_then_exit, &args).unwrap();
    assert!(
        args.0 .1.wait_timeout(LONG).unwrap(),
        "the holder holds the queue"
    );
    for seed in 55..58u8 {
        q.put(pattern(seed, 2 * MIB)).unwrap();
    }
    args.1.set().unwrap();
    let e = join_within(&mut holder).unwrap_err();
    assert_eq!(e.kind(), multiproc::ErrorKind::NoResult, "{e}");
    assert_eq!(holder.exitcode(), Some(0));
    let mut c = Process::spawn(get_2_mib, &(q.clone(), vec![55u8, 56, 57])).unwrap();
    assert_eq!(join_within(&mut c).unwrap(), [true; 3], "each item whole");
    assert!(q.try_get().unwrap_err().is_empty());
    assert_lane_blocks(&q, 0);
}

/// Large items outlive the queue's creator when it is killed: A creates
/// the queue and hands it to this process; B puts a large item while A
/// lives; A is killed; C puts another; D gets both, whole.
#[test]
fn large_items_outlive_the_creator_of_the_queue_killed() {
    large_items_outlive_their_creator(60, |a, conn| {
        kill(a);
        drop(conn);
    });
}

/// Windows: the keeper a child's large `put` started lives while a
/// process holds the queue, and exits once the last holder leaves it
/// (this process drops its copy) — or is killed.
#[cfg(windows)]
#[test]
fn the_lane_keeper_exits_once_no_process_holds_the_queue() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use multiproc::test_hooks::watch_pid;
    // The last holder leaves.
    let q = queue();
    assert_eq!(keeper_pid(&q), None, "no keeper before a large put");
    let mut p = Process::spawn(put_2_mib, &(q.clone(), 70u8)).unwrap();
    join_within(&mut p).unwrap();
    let keeper = watch_pid(keeper_pid(&q).expect("a keeper")).unwrap();
    assert!(!keeper.wait(Duration::ZERO).unwrap(), "alive while held");
    assert!(q.get().unwrap() == pattern(70, 2 * MIB));
    drop(q);
    assert!(keeper.wait(LONG).unwrap(), "the keeper exited");
    // The last holder is killed.
    let q = queue();
    let holder = spawn_holder(&q);
    q.put(pattern(71, 2 * MIB)).unwrap();
    let keeper = watch_pid(keeper_pid(&q).expect("a keeper")).unwrap();
    drop(q);
    assert!(!keeper.wait(Duration::ZERO).unwrap(), "alive while held");
    kill(holder);
    assert!(keeper.wait(LONG).unwrap(), "the keeper exited");
}

/// Windows: a queue that only ever sees items that fit its ring starts
/// no keeper.
#[cfg(windows)]
#[test]
fn a_queue_of_small_items_starts_no_keeper() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = queue();
    let mut p = Process::spawn(put_small, &(q.clone(), 100u8)).unwrap();
    join_within(&mut p).unwrap();
    q.put(vec![0; MIB / 2]).unwrap();
    assert_eq!(q.len().unwrap(), 101);
    assert_eq!(keeper_pid(&q), None);
    q.put(pattern(72, 2 * MIB)).unwrap();
    assert!(keeper_pid(&q).is_some(), "a large put starts one");
}

/// A child whose whole tree can be killed (its own process group on
/// Unix, its own job on Windows) does the queue's first large `put`s (on
/// Windows starting the lane's keeper, which breaks away from the
/// child's job) and is then killed with `kill_tree`: this process, which
/// still holds the queue, gets every item whole, and on Windows the
/// keeper is the same process, alive. (Linux: the kernel keeps the
/// blocks, so there the test checks only the items.)
#[test]
fn large_items_outlive_the_job_of_the_process_that_first_put_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let q = queue();
    #[cfg(windows)]
    assert_eq!(keeper_pid(&q), None, "no keeper before a large put");
    let seeds = vec![80u8, 81, 82];
    let args = ((q.clone(), seeds.clone()), Event::new().unwrap());
    let mut child = Process::<()>::builder()
        .own_process_group(true)
        .spawn(put_2_mib_each_then_wait, &args)
        .unwrap();
    assert!(
        args.1.wait_timeout(LONG).unwrap(),
        "the child put its items"
    );
    #[cfg(windows)]
    let (pid, keeper) = {
        let pid = keeper_pid(&q).expect("the child's put started a keeper");
        (pid, multiproc::test_hooks::watch_pid(pid).unwrap())
    };
    child.kill_tree().unwrap();
    let e = join_within(&mut child).unwrap_err();
    assert!(e.is_terminated(), "{e}");
    drop((child, args));
    #[cfg(windows)]
    {
        assert!(
            !keeper.wait(Duration::ZERO).unwrap(),
            "the keeper died with the child's job"
        );
        assert_eq!(keeper_pid(&q), Some(pid), "the same keeper");
    }
    assert_eq!(q.len().unwrap(), seeds.len());
    assert_lane_blocks(&q, seeds.len());
    for seed in seeds {
        assert!(
            q.get_timeout(LONG).unwrap() == pattern(seed, 2 * MIB),
            "item {seed} is not whole"
        );
    }
    assert!(q.try_get().unwrap_err().is_empty());
    assert_lane_blocks(&q, 0);
}
