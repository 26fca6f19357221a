//! Initializers, inputs and results that do not encode or decode, usage
//! errors.

use super::*;

#[test]
fn initializer_runs_once_per_worker() {
    let p = PoolBuilder::new()
        .workers(2)
        .initializer(init_ok, 41u64)
        .build()
        .unwrap();
    let v = p.map_chunked(read_init, vec![(); 10], 1).unwrap();
    assert!(v.iter().all(|&x| x == 41), "{v:?}");
}

#[test]
fn a_failing_initializer_is_a_clear_error_not_a_respawn_loop() {
    let err = PoolBuilder::new()
        .workers(2)
        .stdio(Stdio::Null)
        .initializer(init_fails, ())
        .build()
        .unwrap_err();
    assert!(err.is_pool_broken(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::PoolBroken);
    assert!(err.to_string().contains("initializer says no"), "{err}");
}

#[test]
fn initializer_arguments_that_cannot_be_serialized_are_an_encode_error() {
    let err = PoolBuilder::new()
        .workers(1)
        .initializer(picky, Picky(13))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), multiproc::ErrorKind::Encode);
    assert!(err.to_string().contains("13 can't be serialized"), "{err}");
}

#[test]
fn unserializable_inputs_and_undecodable_results_are_task_errors() {
    let p = pool(2);
    let out = p.map_results(picky, (10..20u64).map(Picky));
    for (i, r) in out.iter().enumerate() {
        let v = 10 + i as u64;
        match v {
            // 13 fails here, serialized by the parent; 17 in the worker.
            13 => assert_eq!(
                r.as_ref().unwrap_err().kind(),
                multiproc::ErrorKind::Encode,
                "{v}: {r:?}"
            ),
            17 => assert_eq!(
                r.as_ref().unwrap_err().kind(),
                multiproc::ErrorKind::Decode,
                "{v}: {r:?}"
            ),
            _ => assert_eq!(r.as_ref().unwrap(), &Picky(v)),
        }
    }
}

#[test]
fn unregistered_entry_is_an_error() {
    fn nope(x: u64) -> u64 {
        x
    }
    let p = pool(1);
    assert!(p.map(nope, [1u64]).unwrap_err().is_unknown_entry());
    assert!(p.submit(nope, 1u64).get().unwrap_err().is_unknown_entry());
}

#[test]
fn an_unserializable_input_is_an_encode_error_through_every_call() {
    let p = pool(1);
    let via_submit = p.submit(picky, Picky(13)).get().unwrap_err();
    let via_map = p.map(picky, [Picky(13)]).unwrap_err();
    let via_imap = p.imap(picky, [Picky(13)]).next().unwrap().unwrap_err();
    let via_unordered = p
        .imap_unordered(picky, [Picky(13)])
        .next()
        .unwrap()
        .unwrap_err();
    for e in [via_submit, via_map, via_imap, via_unordered] {
        assert!(e.is_encode() && !e.is_decode(), "{e}");
    }
}

#[test]
fn zero_workers_and_zero_max_tasks_per_child_are_usage_errors() {
    let e = Pool::new(0).unwrap_err();
    assert!(e.is_usage() && !e.is_pool_broken(), "{e}");
    assert!(e.to_string().contains("at least one worker"), "{e}");
    let e = PoolBuilder::new().workers(0).build().unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert_eq!(e.kind(), multiproc::ErrorKind::Usage);
    let e = PoolBuilder::new()
        .workers(1)
        .max_tasks_per_child(0)
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("max_tasks_per_child"), "{e}");
    assert_eq!(
        std::io::Error::from(e).kind(),
        std::io::ErrorKind::InvalidInput
    );
}

#[test]
fn capture_stdio_is_refused_when_the_pool_is_built() {
    let e = PoolBuilder::new()
        .workers(1)
        .stdio(Stdio::Capture)
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("Stdio::Capture"), "{e}");
    // The other choices still build.
    for s in [Stdio::Inherit, Stdio::Null] {
        let p = PoolBuilder::new().workers(1).stdio(s).build().unwrap();
        assert_eq!(p.map(square, [3u64]).unwrap(), vec![9]);
    }
}
