//! Semaphores: the bound, over-release, the try and timeout forms.

use super::*;

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
