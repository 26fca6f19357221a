//! Queues across real processes: many producers and consumers, a child
//! that returns right after putting (CPython's feeder deadlock), full and
//! empty, close, items that are not what the reader expects, and
//! producers and consumers killed at random while they work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use multiproc::{
    ErrorKind, Event, JoinableQueue, PoolBuilder, Process, Queue, Semaphore, Shared, SimpleQueue,
};

multiproc::test_support!();

mod basics;
mod chaos;
#[path = "../common/mod.rs"]
mod common;
mod faults;
mod joinable;
mod pool;
use common::{spawn_tied, LONG};

/// Item `i` of producer `p` is `p * STRIDE + i`.
const STRIDE: u64 = 1 << 32;

// ------------------------------------------------------------ entries

/// Puts items `p * STRIDE + 0..n`. Nobody is killed where this runs,
/// so no wakeup may be lost: rechecks are off (a lost one hangs).
fn produce((q, p, n): (Queue<u64>, u64, u64)) {
    multiproc::test_hooks::set_queue_recheck(false);
    for i in 0..n {
        q.put(p * STRIDE + i).expect("put");
    }
}

/// What the chaos test's processes get: the queue, the queue consumers
/// pass items on to, a producer's id and item count, and where it says
/// how many of its puts returned.
type Chaos = (Queue<u64>, Queue<u64>, u64, u64, Shared<AtomicU64>);

/// Puts items as [`produce`], and after each put returned, says how many
/// did.
fn produce_acked((q, _, p, n, acked): Chaos) {
    for i in 0..n {
        q.put(p * STRIDE + i).expect("put");
        acked.store(i + 1, Ordering::Release);
    }
}

/// Puts `n` items and ends the process at once, without returning.
fn produce_and_exit((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).expect("put");
    }
    std::process::exit(0);
}

/// Takes items until the queue is closed: their count, sum and sum of
/// squares (wrapping). Rechecks off, as in [`produce`].
fn consume(q: Queue<u64>) -> (u64, u64, u64) {
    multiproc::test_hooks::set_queue_recheck(false);
    let (mut n, mut sum, mut sq) = (0u64, 0u64, 0u64);
    loop {
        match q.get() {
            Ok(x) => {
                n += 1;
                sum = sum.wrapping_add(x);
                sq = sq.wrapping_add(x.wrapping_mul(x));
            }
            Err(e) if e.is_queue_closed() => return (n, sum, sq),
            Err(e) => panic!("get: {e}"),
        }
    }
}

/// No item in hand (a consumer's `holding`).
const NONE: u64 = u64::MAX;

/// Takes items until the queue is closed and passes each on to `out`.
/// `holding` says which item it has in hand: set while the item is still
/// in the queue (under its lock, before the commit that takes it),
/// cleared once it was passed on. Killed, the consumer lost at most the
/// item `holding` names.
fn forward((q, out, _, _, holding): Chaos) {
    loop {
        match multiproc::test_hooks::get_noting(&q, |&x| holding.store(x, Ordering::SeqCst)) {
            Ok(x) => {
                out.put(x).expect("forward");
                holding.store(NONE, Ordering::SeqCst);
            }
            Err(e) if e.is_queue_closed() => return,
            Err(e) => panic!("get: {e}"),
        }
    }
}

/// Takes one item and, with it decoded in hand but not yet taken out of
/// the queue, says so and waits to be killed.
fn get_then_wait_to_be_killed((q, ready): (Queue<u64>, Event)) {
    let _ = multiproc::test_hooks::get_noting(&q, |_| {
        ready.set().unwrap();
        loop {
            std::thread::park();
        }
    });
}

/// Says it is about to block, then blocks in `get`: the error kind.
fn get_blocked((q, arrived): (Queue<u64>, Semaphore)) -> String {
    arrived.release().unwrap();
    match q.get() {
        Ok(x) => format!("got {x}"),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// An even number: serializes any `u64`, refuses odd ones when decoded.
#[derive(Debug, PartialEq, serde::Serialize)]
struct Even(u64);

impl<'de> serde::Deserialize<'de> for Even {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            n if n % 2 == 0 => Ok(Even(n)),
            n => Err(serde::de::Error::custom(format!("{n} is odd"))),
        }
    }
}

/// Puts an odd "even" number between two even ones.
fn put_odd(q: Queue<Even>) {
    for n in [2, 3, 4] {
        q.put(Even(n)).unwrap();
    }
}

/// In a child: `try_get` on an empty queue, `try_put` on a full one, and
/// their timeout forms; the error kinds.
fn try_forms(q: Queue<u64>) -> Vec<String> {
    let kind = |r: multiproc::Result<()>| match r {
        Ok(()) => "Ok".to_string(),
        Err(e) => format!("{:?}", e.kind()),
    };
    let mut seen = vec![
        kind(q.try_get().map(drop)),
        kind(q.get_timeout(Duration::from_millis(10)).map(drop)),
    ];
    for i in 0..3 {
        q.try_put(i).unwrap();
    }
    seen.push(kind(q.try_put(3)));
    seen.push(kind(q.put_timeout(3, Duration::from_millis(10))));
    seen
}

/// Takes items until the queue is closed; for each, adds it to `handled`
/// and then marks it done.
fn handle_tasks((q, handled): (JoinableQueue<u64>, Shared<AtomicU64>)) -> u64 {
    let mut n = 0;
    loop {
        match q.get() {
            Ok(x) => {
                handled.fetch_add(x, Ordering::SeqCst);
                q.task_done().unwrap();
                n += 1;
            }
            Err(e) if e.is_queue_closed() => return n,
            Err(e) => panic!("get: {e}"),
        }
    }
}

/// Puts `0..n` into a `SimpleQueue`.
fn simple_produce((q, n): (SimpleQueue<String>, u64)) {
    for i in 0..n {
        q.put(i.to_string()).unwrap();
    }
}

/// A pool worker's queue, from its initializer.
static WORKER_QUEUE: OnceLock<Queue<u64>> = OnceLock::new();

fn keep_queue(q: Queue<u64>) {
    WORKER_QUEUE
        .set(q)
        .expect("the initializer runs once per worker");
}

/// A pool task: puts its result into the worker's queue.
fn square_into_queue(x: u64) {
    WORKER_QUEUE.get().unwrap().put(x * x).unwrap();
}

/// A pool task: takes a job from the worker's queue (blocks while there
/// is none).
fn take_from_queue(_: ()) -> u64 {
    WORKER_QUEUE.get().unwrap().get().unwrap()
}

/// Writes garbage over the oldest item of the queue, as a process with
/// the raw block would.
fn scribble(q: Queue<u64>) -> bool {
    multiproc::test_hooks::scribble_over_oldest(&q, &[0xEE; 24]).unwrap()
}

/// Puts `n` items of `len` bytes, item `i` filled with `i as u8`.
fn put_big((q, n, len): (Queue<Vec<u8>>, usize, usize)) {
    for i in 0..n {
        q.put(vec![i as u8; len]).unwrap();
    }
}

/// Takes the queue's lock, says so, and never lets go: killed holding it.
fn hold_lock_until_killed((q, ready): (Queue<u64>, Event)) {
    multiproc::test_hooks::with_queue_locked(&q, || {
        ready.set().unwrap();
        loop {
            std::thread::park();
        }
    })
    .unwrap();
}

multiproc::entry!(
    scribble,
    put_big,
    hold_lock_until_killed,
    get_then_wait_to_be_killed
);

multiproc::entry!(
    handle_tasks,
    simple_produce,
    keep_queue,
    square_into_queue,
    take_from_queue
);

multiproc::entry!(
    produce,
    produce_acked,
    produce_and_exit,
    consume,
    forward,
    get_blocked,
    put_odd,
    try_forms
);

/// Count, sum and sum of squares of `p * STRIDE + 0..n` for each `p`.
fn expected(producers: u64, n: u64) -> (u64, u64, u64) {
    let (mut c, mut s, mut q) = (0u64, 0u64, 0u64);
    for p in 0..producers {
        for i in 0..n {
            let x = p * STRIDE + i;
            c += 1;
            s = s.wrapping_add(x);
            q = q.wrapping_add(x.wrapping_mul(x));
        }
    }
    (c, s, q)
}

fn join_within<T: serde::de::DeserializeOwned>(p: &mut Process<T>) -> multiproc::Result<T> {
    match p.join_timeout(LONG) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => panic!("process {} still running after {LONG:?}", p.pid()),
        Err(e) => Err(e),
    }
}
