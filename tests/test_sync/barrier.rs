//! Barriers: rounds, a killed party, abort and reset.

use super::*;

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

/// Two processes wait at `b` (of 3 parties) until `end` (an abort or a
/// reset) ends their round: each fails with `BrokenBarrier` saying
/// `why`.
fn two_waiting_broken_by(b: &Barrier, end: impl FnOnce(&Barrier), why: &str) {
    let mut ps: Vec<Process<String>> = (0..2)
        .map(|_| Process::spawn(barrier_once, b).unwrap())
        .collect();
    until_waiting(b, 2);
    end(b);
    for p in &mut ps {
        let got = p.join_timeout(LONG).unwrap().expect("a party still waits");
        assert!(got.starts_with("BrokenBarrier"), "{got}");
        assert!(got.contains(why), "{got}");
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
    two_waiting_broken_by(b, |b| b.abort().unwrap(), "aborted");
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
    two_waiting_broken_by(b, |b| b.reset().unwrap(), "reset");
    assert!(!b.is_broken().unwrap());
    assert_eq!(b.n_waiting().unwrap(), 0);
    full_round(&args, 2);
    full_round(&args, 2);
}
