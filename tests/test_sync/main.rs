//! The synchronization primitives across real processes: locks whose
//! holder is killed, events, conditions, semaphores, barriers, a shared
//! counter, handle counts, forged wire forms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use multiproc::{
    Barrier, BoundedSemaphore, Condition, ErrorKind, Event, Lock, PassedHandle, Process, RLock,
    Semaphore, Shared, Value,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

multiproc::test_support!();

mod barrier;
#[path = "../common/mod.rs"]
mod common;
mod event;
mod handles;
mod lock;
mod semaphore;
use common::{in_scenario, scenario, LONG};

/// The handle-count test takes it for writing, every other test for
/// reading: no spawn runs while it counts.
static SERIAL: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------ entries

/// Takes the lock, says so, and never lets go: killed holding it.
fn hold_until_killed((lock, ready): (Lock, Event)) {
    let _g = lock.acquire().expect("acquire in the holder");
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

/// The same with an RLock taken twice.
fn hold_rlock_until_killed((lock, ready): (RLock, Event)) {
    let _a = lock.acquire().expect("acquire in the holder");
    let _b = lock.acquire().expect("acquire again in the holder");
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

/// Says it is about to sleep on the lock (held by the parent), sleeps on
/// it as a blocked `acquire` does, and returns once the release woke it,
/// without taking it: a waiter killed right after its wakeup. Whether it
/// was woken.
fn swallow_lock_wakeup((lock, arrived): (Lock, Semaphore)) -> bool {
    arrived.release().unwrap();
    multiproc::test_hooks::swallow_a_lock_wakeup(&lock).expect("sleep on the lock")
}

/// Says it is about to block, then takes the lock: whether it got it.
fn acquire_lock((lock, arrived): (Lock, Semaphore)) -> bool {
    arrived.release().unwrap();
    lock.acquire().is_ok()
}

/// Says it is about to wait, waits for the event; returns its pid.
fn wait_for_event((ev, arrived): (Event, Semaphore)) -> u32 {
    arrived.release().unwrap();
    ev.wait().unwrap();
    std::process::id()
}

/// Waits for four arrivals, then sets the event.
fn set_after((ev, arrived): (Event, Semaphore)) {
    for _ in 0..4 {
        arrived.acquire().unwrap().forget();
    }
    ev.set().unwrap();
}

/// Under the condition's lock: says it arrived, waits once, then says it
/// was woken; whether the wait was a notification.
fn cond_waiter((cond, arrived, woken): (Condition, Semaphore, Semaphore)) -> bool {
    let mut g = cond.acquire().unwrap();
    arrived.release().unwrap();
    let notified = g.wait_timeout(LONG).unwrap();
    woken.release().unwrap();
    notified
}

/// Under the condition's lock: says it arrived, then waits for good:
/// killed inside `wait`.
fn cond_wait_until_killed((cond, arrived, _): (Condition, Semaphore, Semaphore)) {
    let mut g = cond.acquire().unwrap();
    arrived.release().unwrap();
    loop {
        let _ = g.wait();
    }
}

/// Releases a bounded semaphore it never acquired: the error's kind.
fn over_release(s: BoundedSemaphore) -> String {
    format!("{:?}", s.release().unwrap_err().kind())
}

/// Drops what it got.
#[allow(clippy::type_complexity)] // one of each
fn take_all(
    _: Vec<(
        Lock,
        RLock,
        Semaphore,
        Event,
        Condition,
        Value<u64>,
        Barrier,
    )>,
) {
}

/// Adds one to the counter `n` times, each under its lock.
fn increment((counter, n): (Value<u64>, u32)) {
    for _ in 0..n {
        *counter.lock().unwrap() += 1;
    }
}

/// Adds one to the counter `n` times, each under the lock as a plain load
/// and store: without the lock, processes would overwrite each other's
/// additions.
fn increment_under_lock((lock, counter, n): (Lock, Shared<AtomicU64>, u32)) {
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        let v = counter.load(Ordering::Relaxed);
        counter.store(v + 1, Ordering::Relaxed);
    }
}

/// Enters the semaphore once; inside, counts itself in `inside`
/// (`[now inside, most ever inside]`) and stays until `n` have been inside
/// at once (or 30 s passed: then it fails), then leaves.
fn crowd((sem, inside, n): (Semaphore, Value<[u64; 2]>, u64)) -> bool {
    let _g = sem.acquire().unwrap();
    {
        let mut v = inside.lock().unwrap();
        v[0] += 1;
        v[1] = v[1].max(v[0]);
    }
    let start = std::time::Instant::now();
    let full = loop {
        if inside.get().unwrap()[1] >= n {
            break true;
        }
        if start.elapsed() > LONG {
            break false;
        }
        std::thread::yield_now();
    };
    inside.lock().unwrap()[0] -= 1;
    full
}

/// Registers, waits `rounds` times; the arrival indexes.
fn barrier_rounds((b, rounds): (Barrier, u32)) -> Vec<usize> {
    let _me = b.register().unwrap();
    (0..rounds).map(|_| b.wait().unwrap()).collect()
}

/// Registers, says so, and never arrives: killed as a registered party.
fn register_and_block((b, ready): (Barrier, Event)) {
    let _me = b.register().unwrap();
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

/// Registers and waits once; the error's kind, or "released".
fn barrier_once(b: Barrier) -> String {
    let _me = b.register().unwrap();
    match b.wait_timeout(LONG) {
        Ok(_) => "released".into(),
        Err(e) => format!("{:?}: {e}", e.kind()),
    }
}

multiproc::entry!(
    increment,
    increment_under_lock,
    crowd,
    barrier_rounds,
    register_and_block,
    barrier_once,
    hold_until_killed,
    hold_rlock_until_killed,
    wait_for_event,
    set_after,
    cond_waiter,
    cond_wait_until_killed,
    over_release,
    take_all,
    swallow_lock_wakeup,
    acquire_lock,
);
