//! Workers replaced after a timeout or `max_tasks_per_child`; close, join
//! and drop.

use super::*;

#[test]
fn a_task_past_its_timeout_fails_and_its_worker_is_replaced() {
    let p = PoolBuilder::new()
        .workers(2)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let h = p.submit(spin, ());
    let ok = p.submit(square, 5u64);
    let err = h.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::Timeout);
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::TimedOut
    );
    assert_eq!(ok.get().unwrap(), 25);
    assert_eq!(p.map(square, 0..50u64).unwrap()[7], 49);
    assert!(!p.pids().is_empty());
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let p = PoolBuilder::new()
        .workers(2)
        .max_tasks_per_child(5)
        .build()
        .unwrap();
    let pids = p.map_chunked(my_pid, 0..40u64, 1).unwrap();
    let mut count: HashMap<u32, usize> = HashMap::new();
    for pid in pids {
        *count.entry(pid).or_default() += 1;
    }
    assert!(count.values().all(|&n| n <= 5), "{count:?}");
    assert!(count.len() >= 8, "{count:?}");
    assert_eq!(p.map(square, 0..10u64).unwrap()[3], 9);
}

#[test]
fn close_then_join_finishes_the_work() {
    let p = pool(2);
    let hs: Vec<_> = (0..10u64).map(|i| p.submit(square, i)).collect();
    p.close();
    assert!(p.submit(square, 1u64).get().unwrap_err().is_pool_closed());
    p.join().unwrap();
    assert!(p.pids().is_empty());
    let got: Vec<u64> = hs.into_iter().map(|h| h.get().unwrap()).collect();
    assert_eq!(got, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn drop_with_a_worker_stuck_in_a_loop_does_not_hang() {
    let p = pool(1);
    let watch = multiproc::test_hooks::watch_pid(p.pids()[0]).unwrap();
    let h = p.submit(spin, ());
    drop(p);
    assert!(
        watch.wait(Duration::ZERO).unwrap(),
        "drop returned before the worker was gone"
    );
    assert!(h.get().is_err());
}

#[test]
fn join_before_close_is_a_usage_error_and_leaves_the_pool_usable() {
    let p = pool(1);
    let e = p.join().unwrap_err();
    assert!(e.is_usage() && !e.is_pool_closed(), "{e}");
    assert!(e.to_string().contains("close()"), "{e}");
    assert_eq!(p.submit(square, 4u64).get().unwrap(), 16);
    p.close();
    p.join().unwrap();
}
