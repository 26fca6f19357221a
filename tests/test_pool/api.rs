//! `map`, `imap`, `submit`: results in order, as completed, with timeouts;
//! a panic in the `imap` input.

use super::*;

#[test]
fn map_is_ordered_and_complete() {
    let p = pool(2);
    let out = p.map(square, 0..1000u64).unwrap();
    assert_eq!(out, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    let out = p.map_chunked(square, 0..100u64, 7).unwrap();
    assert_eq!(out, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(p.map(square, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
}

#[test]
fn imap_streams_in_order_and_unordered_as_completed() {
    let p = pool(2);
    let v: Vec<u64> = p
        .imap(square, 0..500u64)
        .chunksize(1)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(v, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
    let mut u: Vec<u64> = p
        .imap_unordered(square, 0..500u64)
        .map(|r| r.unwrap())
        .collect();
    u.sort_unstable();
    assert_eq!(u, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn submit_get_timeout_and_ready() {
    let p = pool(2);
    let a = p.submit(square, 12u64);
    assert_eq!(a.get().unwrap(), 144);
    let mut h = p.submit(block_forever, ());
    assert!(h.get_timeout(Duration::from_millis(50)).is_none());
    assert!(!h.is_ready());
    p.terminate();
    let err = h
        .get_timeout(Duration::from_secs(30))
        .expect("terminated pool answers")
        .unwrap_err();
    assert!(err.is_pool_closed(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::PoolClosed);
}

/// 0, 1, 2, … then a panic when item `at` is pulled.
fn panicking_inputs(at: u64) -> impl Iterator<Item = u64> {
    (0..10u64).inspect(move |&i| {
        if i == at {
            panic!("input {i} can't be made")
        }
    })
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn a_panic_in_the_imap_input_comes_after_the_earlier_results() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let p = pool(2);
    let mut got = Vec::new();
    let mut it = p.imap(square, panicking_inputs(3)).chunksize(1);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        for r in &mut it {
            got.push(r.unwrap());
        }
    }));
    assert_eq!(got, vec![0, 1, 4], "the results before the panic, in order");
    let msg = panic_message(caught.expect_err("the input's panic resumes"));
    assert_eq!(msg, "input 3 can't be made");
    assert!(it.next().is_none(), "nothing after the panic");

    // Unordered: every earlier result, then the panic.
    let mut got = Vec::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        for r in p.imap_unordered(square, panicking_inputs(3)).chunksize(1) {
            got.push(r.unwrap());
        }
    }));
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 4]);
    assert!(caught.is_err());

    // map reaches it after the earlier tasks succeeded.
    let caught = catch_unwind(AssertUnwindSafe(|| p.map(square, panicking_inputs(5))));
    assert_eq!(
        panic_message(caught.expect_err("map panics")),
        "input 5 can't be made"
    );
    // The pool is fine.
    assert_eq!(p.map(square, 0..4u64).unwrap(), vec![0, 1, 4, 9]);
}
