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

mod common;
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

/// A Lock decoded from whatever the parent wrote (see [`Forged`]).
fn take_lock(_: Forged) {}

/// A `Value<u32>` decoded from what the parent wrote: a `Value<u64>`.
fn take_value_u32(_: ValueOfAnotherSize) {}

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
    take_lock,
    take_value_u32,
    swallow_lock_wakeup,
    acquire_lock,
);

// ------------------------------------------------------------ locks

#[test]
fn a_killed_holder_makes_the_next_acquire_report_owner_died_until_repaired() {
    let _s = shared();
    let args = (Lock::new().unwrap(), Event::new().unwrap());
    let mut p = Process::<()>::spawn(hold_until_killed, &args).unwrap();
    let (lock, ready) = &args;
    assert!(
        ready.wait_timeout(LONG).unwrap(),
        "the holder never took the lock"
    );
    // Held by a live process: the try and timeout forms give up.
    assert!(lock.try_acquire().unwrap().is_none());
    assert!(lock
        .acquire_timeout(Duration::from_millis(20))
        .unwrap()
        .is_none());
    p.kill().unwrap();
    assert!(p.join_timeout(LONG).unwrap_err().is_terminated());
    // The holder is gone: the next acquire is told within 1 s (the issue's
    // bound; the OS released the lock as the holder died, so it is at
    // once), not after a timeout.
    let e = lock.acquire_timeout(Duration::from_secs(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OwnerDied, "{e}");
    assert!(e.is_owner_died());
    assert!(e.get_ref().is_some());
    // Dropped unrepaired: the next acquirer is told again.
    drop(e);
    let e = lock.acquire().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OwnerDied);
    // Repaired: from now on a plain lock.
    let g = e.into_guard().unwrap();
    drop(g);
    drop(lock.acquire().unwrap());
    drop(lock.try_acquire().unwrap().expect("free"));
}

/// glibc's unlock wakes one sleeper. A sleeper killed after that wakeup,
/// before it took the lock, swallows it (the kernel can't pass it on: the
/// dead process owned nothing), and leaves the lock free with no sign
/// that others sleep on it. The next sleeper still gets the lock (after
/// at most the mutex's 100 ms relook) instead of sleeping on a free lock
/// for good, as four producers in issue 12's chaos test did. The victim
/// here sleeps exactly as a blocked `acquire` does and returns once woken
/// instead of dying: the same for the others. Linux with glibc only (the
/// victim needs the futex word's place in glibc's mutex); the kernel
/// wakes a futex's sleepers in the order they slept.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_waiter_that_swallows_the_release_wakeup_does_not_strand_the_next() {
    let _s = shared();
    let args = (Lock::new().unwrap(), Semaphore::new(0).unwrap());
    let (lock, arrived) = &args;
    let guard = lock.acquire().unwrap();
    let asleep = |p: &Process<bool>| {
        let pid = p.pid();
        let came = arrived.acquire_timeout(LONG).unwrap();
        came.expect("the process never got to the lock").forget();
        common::wait_for(&format!("process {pid} asleep on the lock"), || {
            std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("futex"))
        });
    };
    let mut victim = Process::<bool>::spawn(swallow_lock_wakeup, &args).unwrap();
    asleep(&victim);
    let mut waiter = Process::<bool>::spawn(acquire_lock, &args).unwrap();
    asleep(&waiter);
    drop(guard);
    // The release's one wakeup went to the first sleeper, the victim.
    assert_eq!(victim.join_timeout(LONG).unwrap(), Some(true));
    assert_eq!(
        waiter.join_timeout(LONG).unwrap(),
        Some(true),
        "the waiter still sleeps on the free lock"
    );
}

#[test]
fn a_killed_rlock_holder_is_reported_too() {
    let _s = shared();
    let args = (RLock::new().unwrap(), Event::new().unwrap());
    let p = Process::<()>::spawn(hold_rlock_until_killed, &args).unwrap();
    let (lock, ready) = &args;
    assert!(ready.wait_timeout(LONG).unwrap());
    assert!(lock.try_acquire().unwrap().is_none());
    p.kill().unwrap();
    let e = lock.acquire_timeout(LONG).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OwnerDied, "{e}");
    let g = e.into_guard().unwrap();
    let again = lock.acquire().unwrap();
    drop(again);
    drop(g);
}

#[test]
fn eight_processes_add_ten_thousand_each_under_a_lock_exactly() {
    let _s = shared();
    let args = (
        Lock::new().unwrap(),
        Shared::new(AtomicU64::new(0)).unwrap(),
        10_000u32,
    );
    let mut ps: Vec<Process<()>> = (0..8)
        .map(|_| Process::spawn(increment_under_lock, &args).unwrap())
        .collect();
    // A bound against a hang, not a timing (see the `Value` test below).
    for p in &mut ps {
        p.join_timeout(LONG * 10)
            .unwrap()
            .expect("an incrementer still runs");
    }
    assert_eq!(args.1.load(Ordering::SeqCst), 80_000);
}

#[test]
fn eight_processes_add_ten_thousand_each_to_a_shared_counter_exactly() {
    let _s = shared();
    let args = (Value::new(0u64).unwrap(), 10_000u32);
    let mut ps: Vec<Process<()>> = (0..8)
        .map(|_| Process::spawn(increment, &args).unwrap())
        .collect();
    // A bound against a hang, not a timing: under Wine each contended
    // handoff of a kernel mutex is a few wineserver round trips and
    // context switches, and 80 000 of them take tens of seconds on a
    // loaded machine (Windows and Linux take well under a second).
    for p in &mut ps {
        p.join_timeout(LONG * 10)
            .unwrap()
            .expect("an incrementer still runs");
    }
    assert_eq!(args.0.get().unwrap(), 80_000);
}

// ------------------------------------------------------------ events

#[test]
fn an_event_set_in_one_process_wakes_waiters_in_four_others() {
    let _s = shared();
    let args = (Event::new().unwrap(), Semaphore::new(0).unwrap());
    let mut waiters: Vec<Process<u32>> = (0..4)
        .map(|_| Process::spawn(wait_for_event, &args).unwrap())
        .collect();
    let (ev, arrived) = &args;
    assert!(!ev.is_set().unwrap());
    let mut setter = Process::<()>::spawn(set_after, &args).unwrap();
    for p in &mut waiters {
        let pid = p.join_timeout(LONG).unwrap().expect("a waiter still waits");
        assert_eq!(pid, p.pid());
    }
    setter
        .join_timeout(LONG)
        .unwrap()
        .expect("the setter is done");
    assert!(ev.is_set().unwrap());
    // Every arrival was taken by the setter.
    assert!(arrived.try_acquire().unwrap().is_none());
}

// ------------------------------------------------------------ conditions

#[test]
fn condition_notify_wakes_one_waiter_and_notify_all_the_rest() {
    let _s = shared();
    let args = (
        Condition::new().unwrap(),
        Semaphore::new(0).unwrap(),
        Semaphore::new(0).unwrap(),
    );
    let mut waiters: Vec<Process<bool>> = (0..3)
        .map(|_| Process::spawn(cond_waiter, &args).unwrap())
        .collect();
    let (cond, arrived, woken) = &args;
    // Each waiter says it arrived while holding the lock, before `wait`
    // lets go of it: once we hold the lock after three arrivals, all
    // three are waiting.
    for _ in 0..3 {
        arrived
            .acquire_timeout(LONG)
            .unwrap()
            .expect("arrival")
            .forget();
    }
    {
        let g = cond.acquire().unwrap();
        // Hands out one wake-up and returns (it waits for nobody).
        g.notify(1).unwrap();
    }
    woken
        .acquire_timeout(LONG)
        .unwrap()
        .expect("one woke")
        .forget();
    // Exactly one: the other two still sleep, and stay asleep until told.
    assert!(woken.try_acquire().unwrap().is_none());
    {
        let g = cond.acquire().unwrap();
        g.notify_all().unwrap();
    }
    for _ in 0..2 {
        woken.acquire_timeout(LONG).unwrap().expect("woke").forget();
    }
    for p in &mut waiters {
        let notified = p.join_timeout(LONG).unwrap().expect("waiter done");
        assert!(notified, "a waiter timed out instead of being notified");
    }
}

/// A waiter killed inside `wait` stays counted as a waiter (nothing tells
/// the others it died). Neither `notify` nor `notify_all` may wait for it
/// (CPython's algorithm, which this crate used before, waits for each
/// woken sleeper to acknowledge, and so for the dead one forever), and it
/// takes no wake-up from a live waiter. Run as a scenario: a regression
/// hangs in `notify`, and the scenario's deadline turns that into a
/// failure.
#[test]
fn a_waiter_killed_inside_wait_neither_hangs_notify_nor_swallows_a_wake_up() {
    let _s = shared();
    let out = scenario("scenario_killed_waiter", |_| {});
    // Killed at the scenario's deadline: no exit code.
    assert!(
        out.status.success(),
        "the scenario ended with {} (a hang is killed at its deadline): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("both live waiters notified"));
}

#[test]
#[ignore = "a scenario, run by a_waiter_killed_inside_wait_neither_hangs_notify_nor_swallows_a_wake_up"]
fn scenario_killed_waiter() {
    if !in_scenario("scenario_killed_waiter") {
        return;
    }
    let args = (
        Condition::new().unwrap(),
        Semaphore::new(0).unwrap(),
        Semaphore::new(0).unwrap(),
    );
    let (cond, arrived, woken) = &args;
    // A waiter says it arrived while holding the lock, before `wait` lets
    // go of it: once we hold the lock after its arrival, it waits.
    let arrival = || {
        arrived
            .acquire_timeout(LONG)
            .unwrap()
            .expect("a waiter never arrived")
            .forget();
        drop(cond.acquire().unwrap());
    };
    let victim = Process::<()>::spawn(cond_wait_until_killed, &args).unwrap();
    arrival();
    victim.kill().unwrap();
    let mut victim = victim;
    assert!(victim.join_timeout(LONG).unwrap_err().is_terminated());
    // Only the dead one waits: both forms return.
    {
        let g = cond.acquire().unwrap();
        g.notify(1).unwrap();
        g.notify_all().unwrap();
    }
    // Two live waiters: notify(1) wakes exactly one of them, notify_all
    // the other.
    let mut live: Vec<Process<bool>> = (0..2)
        .map(|_| {
            let p = Process::spawn(cond_waiter, &args).unwrap();
            arrival();
            p
        })
        .collect();
    cond.acquire().unwrap().notify(1).unwrap();
    woken
        .acquire_timeout(LONG)
        .unwrap()
        .expect("notify(1) woke no live waiter")
        .forget();
    assert!(woken.try_acquire().unwrap().is_none(), "notify(1) woke two");
    cond.acquire().unwrap().notify_all().unwrap();
    woken
        .acquire_timeout(LONG)
        .unwrap()
        .expect("notify_all left a live waiter asleep")
        .forget();
    for p in &mut live {
        let notified = p.join_timeout(LONG).unwrap().expect("waiter done");
        assert!(
            notified,
            "a live waiter timed out instead of being notified"
        );
    }
    // The dead one is still counted: both forms still return.
    {
        let g = cond.acquire().unwrap();
        g.notify(1).unwrap();
        g.notify_all().unwrap();
    }
    println!("both live waiters notified");
}

// ------------------------------------------------------------ semaphores

#[test]
fn a_semaphore_of_three_never_lets_a_fourth_in() {
    let _s = shared();
    const N: u64 = 3;
    let args = (
        Semaphore::new(N as u32).unwrap(),
        Value::new([0u64; 2]).unwrap(),
        N,
    );
    // Twice N processes, each entering once and staying until N have been
    // inside at once: the first N to enter hold it full until then, while
    // the others press to get in.
    let mut ps: Vec<Process<bool>> = (0..2 * N)
        .map(|_| Process::spawn(crowd, &args).unwrap())
        .collect();
    for p in &mut ps {
        let full = p.join_timeout(LONG).unwrap().expect("still inside");
        assert!(full, "{N} were never inside at once");
    }
    assert_eq!(
        args.1.get().unwrap(),
        [0, N],
        "[inside now, most ever inside]"
    );
}

#[test]
fn a_bounded_semaphore_over_released_in_a_child_is_a_usage_error() {
    let _s = shared();
    let sem = BoundedSemaphore::new(1).unwrap();
    let mut p = Process::<String>::spawn(over_release, &sem).unwrap();
    assert_eq!(p.join_timeout(LONG).unwrap().unwrap(), "Usage");
    // Still one unit, not two.
    let g = sem.try_acquire().unwrap().expect("one unit");
    assert!(sem.try_acquire().unwrap().is_none());
    drop(g);
}

#[test]
fn try_and_timeout_forms_give_up_without_waiting_forever() {
    let _s = shared();
    let sem = Semaphore::new(0).unwrap();
    assert!(sem.try_acquire().unwrap().is_none());
    assert!(sem
        .acquire_timeout(Duration::from_millis(5))
        .unwrap()
        .is_none());
    let ev = Event::new().unwrap();
    assert!(!ev.wait_timeout(Duration::from_millis(5)).unwrap());
    ev.set().unwrap();
    assert!(ev.wait_timeout(Duration::MAX).unwrap());
    ev.clear().unwrap();
    assert!(!ev.wait_timeout(Duration::ZERO).unwrap());
    let cond = Condition::new().unwrap();
    let mut g = cond.try_acquire().unwrap().expect("free");
    assert!(!g.wait_timeout(Duration::from_millis(5)).unwrap());
    assert!(
        cond.try_acquire().unwrap().is_none(),
        "held again after wait"
    );
}

// ------------------------------------------------------------ barriers

#[test]
fn a_barrier_of_five_processes_releases_all_of_them_each_round() {
    let _s = shared();
    let args = (Barrier::new(5).unwrap(), 3u32);
    let mut ps: Vec<Process<Vec<usize>>> = (0..5)
        .map(|_| Process::spawn(barrier_rounds, &args).unwrap())
        .collect();
    let got: Vec<Vec<usize>> = ps
        .iter_mut()
        .map(|p| p.join_timeout(LONG).unwrap().expect("a party still waits"))
        .collect();
    for round in 0..3 {
        let mut idx: Vec<usize> = got.iter().map(|v| v[round]).collect();
        idx.sort();
        assert_eq!(idx, [0, 1, 2, 3, 4], "round {round}");
    }
    assert!(!args.0.is_broken().unwrap());
}

#[test]
fn a_barrier_breaks_for_the_others_when_a_registered_party_is_killed() {
    let _s = shared();
    let b = Barrier::new(5).unwrap();
    let args = (b, Event::new().unwrap());
    let victim = Process::<()>::spawn(register_and_block, &args).unwrap();
    assert!(
        args.1.wait_timeout(LONG).unwrap(),
        "the victim never registered"
    );
    let mut ps: Vec<Process<String>> = (0..4)
        .map(|_| Process::spawn(barrier_once, &args.0).unwrap())
        .collect();
    victim.kill().unwrap();
    for p in &mut ps {
        let got = p.join_timeout(LONG).unwrap().expect("a party still waits");
        assert!(got.starts_with("BrokenBarrier"), "{got}");
    }
    let e = args.0.wait().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenBarrier);
}

/// Waits (at most [`LONG`]) until `n` wait in the barrier's round.
fn until_waiting(b: &Barrier, n: usize) {
    let start = std::time::Instant::now();
    while b.n_waiting().unwrap() < n {
        assert!(start.elapsed() < LONG, "{n} never waited");
        std::thread::yield_now();
    }
}

/// One round of `parties` with the parent as the last: every arrival
/// index once.
fn full_round(args: &(Barrier, u32), children: usize) {
    let mut ps: Vec<Process<Vec<usize>>> = (0..children)
        .map(|_| Process::spawn(barrier_rounds, args).unwrap())
        .collect();
    let me = args.0.register().unwrap();
    let mut idx = vec![args.0.wait_timeout(LONG).unwrap()];
    drop(me);
    for p in &mut ps {
        idx.extend(p.join_timeout(LONG).unwrap().expect("a party still waits"));
    }
    idx.sort();
    assert_eq!(idx, (0..=children).collect::<Vec<_>>());
}

#[test]
fn an_abort_fails_the_waiting_processes_and_every_later_wait_until_reset() {
    let _s = shared();
    let args = (Barrier::new(3).unwrap(), 1u32);
    let b = &args.0;
    let mut ps: Vec<Process<String>> = (0..2)
        .map(|_| Process::spawn(barrier_once, b).unwrap())
        .collect();
    until_waiting(b, 2);
    b.abort().unwrap();
    for p in &mut ps {
        let got = p.join_timeout(LONG).unwrap().expect("a party still waits");
        assert!(got.starts_with("BrokenBarrier"), "{got}");
        assert!(got.contains("aborted"), "{got}");
    }
    // Later waits, here and in a new process, fail at once.
    let e = b.wait().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenBarrier);
    let got = Process::<String>::spawn(barrier_once, b)
        .unwrap()
        .join_timeout(LONG)
        .unwrap()
        .unwrap();
    assert!(got.contains("aborted"), "{got}");
    assert!(b.is_broken().unwrap());
    // Reset: as new, across processes.
    b.reset().unwrap();
    assert!(!b.is_broken().unwrap());
    full_round(&args, 2);
}

#[test]
fn a_reset_fails_the_processes_waiting_in_the_round_and_the_next_round_works() {
    let _s = shared();
    let args = (Barrier::new(3).unwrap(), 1u32);
    let b = &args.0;
    let mut ps: Vec<Process<String>> = (0..2)
        .map(|_| Process::spawn(barrier_once, b).unwrap())
        .collect();
    until_waiting(b, 2);
    b.reset().unwrap();
    for p in &mut ps {
        let got = p.join_timeout(LONG).unwrap().expect("a party still waits");
        assert!(got.starts_with("BrokenBarrier"), "{got}");
        assert!(got.contains("reset"), "{got}");
    }
    assert!(!b.is_broken().unwrap());
    assert_eq!(b.n_waiting().unwrap(), 0);
    full_round(&args, 2);
    full_round(&args, 2);
}

// ------------------------------------------------------------ resources

#[test]
fn a_thousand_create_pass_drop_cycles_leave_the_handle_count_as_it_was() {
    let _serial = SERIAL.write().unwrap_or_else(|e| e.into_inner());
    let batch = || {
        (0..100)
            .map(|_| {
                (
                    Lock::new().unwrap(),
                    RLock::new().unwrap(),
                    Semaphore::new(1).unwrap(),
                    Event::new().unwrap(),
                    Condition::new().unwrap(),
                    Value::new(7u64).unwrap(),
                    Barrier::new(2).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Warm up what a first spawn sets up once.
    Process::<()>::spawn(take_all, batch())
        .unwrap()
        .join_timeout(LONG)
        .unwrap()
        .unwrap();
    let before = multiproc::test_hooks::open_handle_count().unwrap();
    for _ in 0..10 {
        let mut p = Process::<()>::spawn(take_all, batch()).unwrap();
        p.join_timeout(LONG).unwrap().expect("child done");
    }
    assert_eq!(multiproc::test_hooks::open_handle_count().unwrap(), before);
}

// ------------------------------------------------------------ bad input

/// What the parent writes where the child reads a `Lock`: a tag (the
/// variant index of the wire form's tag), handles, a word — the layout of
/// a real lock's wire form, with anything in it.
enum Forged {
    Raw(u32, Vec<PassedHandle>),
    Other(Semaphore),
}

impl Serialize for Forged {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Forged::Raw(tag, handles) => (tag, handles, 0u64).serialize(s),
            Forged::Other(sem) => sem.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Forged {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Lock::deserialize(d)?;
        unreachable!("the parent only sends forgeries")
    }
}

/// A handle that is no synchronization object: a pipe end.
fn pipe_end() -> PassedHandle {
    let (r, _w) = std::io::pipe().unwrap();
    PassedHandle::new(r.into())
}

/// How many handles a lock's wire form has here.
const LOCK_HANDLES: usize = if cfg!(windows) { 2 } else { 1 };

fn refused(forged: Forged) -> String {
    let mut p = Process::<()>::spawn(take_lock, forged).unwrap();
    let e = p.join_timeout(LONG).unwrap_err();
    assert!(e.is_bootstrap_failure(), "{e}");
    e.to_string()
}

#[test]
fn forged_locks_are_refused_at_decode() {
    let _s = shared();
    // A pipe where the lock's objects should be.
    let e = refused(Forged::Raw(
        0,
        (0..LOCK_HANDLES).map(|_| pipe_end()).collect(),
    ));
    assert!(e.contains("synchronization object refused"), "{e}");
    // Too few handles: refused before any is taken.
    let e = refused(Forged::Raw(0, vec![]));
    assert!(e.contains("0 handles where"), "{e}");
    // Another primitive, with its own tag.
    let e = refused(Forged::Other(Semaphore::new(1).unwrap()));
    assert!(e.contains("Semaphore arrived where a Lock"), "{e}");
    // An unknown tag.
    let e = refused(Forged::Raw(99, vec![pipe_end()]));
    assert!(!e.is_empty());
}

#[test]
fn the_fuzz_seeds_decode_to_errors_outside_a_worker() {
    // Reading the seeds opens fds (the directory, each file): not while
    // the handle-count test counts.
    let _s = shared();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/sync");
    let mut n = 0;
    for f in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(f.unwrap().path()).unwrap();
        // Well-formed up to the handles, which only a worker can take.
        assert_eq!(multiproc::fuzzing::sync_wire(&data), 0);
        for cut in 0..data.len() {
            assert_eq!(multiproc::fuzzing::sync_wire(&data[..cut]), 0);
        }
        n += 1;
    }
    assert!(n >= 4);
}

/// Written as a `Value<u64>`, read as a `Value<u32>`.
struct ValueOfAnotherSize(Value<u64>);

impl Serialize for ValueOfAnotherSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ValueOfAnotherSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::<u32>::deserialize(d)?;
        unreachable!("the parent only sends a Value<u64>")
    }
}

#[test]
fn a_value_of_another_size_is_refused_at_decode() {
    let _s = shared();
    let forged = ValueOfAnotherSize(Value::new(7u64).unwrap());
    let mut p = Process::<()>::spawn(take_value_u32, &forged).unwrap();
    let e = p.join_timeout(LONG).unwrap_err();
    assert!(e.is_bootstrap_failure(), "{e}");
    assert!(
        e.to_string()
            .contains("a Value of 8 bytes arrived where its type has 4"),
        "{e}"
    );
    // Still ours, untouched.
    assert_eq!(forged.0.get().unwrap(), 7);
}
