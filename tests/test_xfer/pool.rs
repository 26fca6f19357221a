//! Handles in pool tasks and results, what they cost a chunk without
//! them, and a launched worker's tasks, which carry none.

use super::*;

#[test]
fn pool_tasks_carry_pipe_ends_and_connections_to_the_workers() {
    let _serial = serial();
    let pool = common::pool(2);
    let (mut r, w) = std::io::pipe().unwrap();
    let args: Vec<(PassedHandle, u64)> = (1..=20u64)
        .map(|x| (PassedHandle::new(w.try_clone().unwrap().into()), x))
        .collect();
    let got = pool.map(write_to_passed, args).unwrap();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    drop(w);
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).unwrap_or_default();
    // Every worker's copy is closed once its task is done, or read_to_end
    // would not have returned.
    let mut seen: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());

    let (mine, theirs) = Pipe::duplex().unwrap();
    let x = pool.submit(send_on_passed, (theirs, 41)).get().unwrap();
    assert_eq!(x, 41);
    assert_eq!(mine.recv::<u64>().unwrap(), 42);
}

#[test]
fn many_tasks_with_handles_leave_fd_counts_where_they_started() {
    let _serial = serial();
    let pool = Pool::new(1).unwrap();
    let worker_before = pool.submit(open_count, ()).get().unwrap();
    let before = census();
    let (mut r, w) = std::io::pipe().unwrap();
    for round in 0..5u64 {
        let args: Vec<(PassedHandle, u64)> = (0..200u64)
            .map(|x| {
                (
                    PassedHandle::new(w.try_clone().unwrap().into()),
                    round * 1000 + x,
                )
            })
            .collect();
        assert_eq!(pool.map(write_to_passed, args).unwrap().len(), 200);
        // Read each round's bytes before the next (a Windows pipe buffers
        // only 4 KiB).
        let mut buf = vec![0u8; 200 * 8];
        r.read_exact(&mut buf).unwrap();
        let mut seen: Vec<u64> = buf
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..200).map(|x| round * 1000 + x).collect::<Vec<_>>());
    }
    drop((r, w));
    assert_eq!(pool.submit(open_count, ()).get().unwrap(), worker_before);
    assert_eq!(census(), before);
}

/// A pool task: a connected pair of `Connection` ends, both returned.
fn make_pair(_: ()) -> (Connection, Connection) {
    Pipe::duplex().expect("pipe")
}

/// A pool task: a frozen block of `n` u64s, element `i` being `3 * i`.
fn make_block(n: u64) -> multiproc::Frozen<u64> {
    let data: Vec<u64> = (0..n).map(|i| 3 * i).collect();
    multiproc::SharedMut::from_slice(&data)
        .expect("block")
        .freeze()
        .expect("freeze")
}

/// A pool task: a new `Lock`.
fn make_lock(_: ()) -> multiproc::Lock {
    multiproc::Lock::new().expect("lock")
}

/// A pool task: whether `lock` can be taken now (released at once).
fn try_lock(lock: multiproc::Lock) -> bool {
    lock.try_acquire().expect("try").is_some()
}

/// A pool task: the reading end of a pipe into which `x` was written
/// (8 bytes) and whose writing end is closed.
fn pipe_holding(x: u64) -> PassedHandle {
    let (r, mut w) = std::io::pipe().expect("pipe");
    w.write_all(&x.to_le_bytes()).expect("write");
    PassedHandle::new(r.into())
}

/// A pool task that forges its chunk's answer (see
/// `test_hooks::forge_pool_answer`): on Windows a handle value that is
/// open nowhere (the highest one a handle can have), on Unix one fd sent
/// where the answer says two.
fn forge_result_handles(_: ()) -> PassedHandle {
    let (r, _w) = std::io::pipe().expect("pipe");
    if cfg!(windows) {
        multiproc::test_hooks::forge_pool_answer(1, Vec::new(), &[0xffff_fffc]).expect("forge");
    } else {
        multiproc::test_hooks::forge_pool_answer(2, vec![r.into()], &[]).expect("forge");
    }
    // What the worker itself answers afterwards is ignored.
    let (r, _w) = std::io::pipe().expect("pipe");
    PassedHandle::new(r.into())
}

multiproc::entry!(
    make_pair,
    make_block,
    make_lock,
    try_lock,
    pipe_holding,
    forge_result_handles
);

#[test]
fn a_pool_task_result_carries_a_connection_pair_the_parent_then_uses() {
    let _serial = serial();
    let pool = Pool::new(1).unwrap();
    let (a, b) = pool.submit(make_pair, ()).get().unwrap();
    a.send(&7u64).unwrap();
    assert_eq!(b.recv::<u64>().unwrap(), 7);
    b.send(&"back").unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "back");
    // The worker kept no copy: once ours of `b` is gone, `a` sees the end.
    drop(b);
    assert!(a.recv::<u64>().unwrap_err().is_eof());
}

#[test]
fn a_pool_task_result_carries_a_frozen_block_with_the_workers_bytes() {
    let _serial = serial();
    let pool = common::pool(2);
    let blocks = pool.map(make_block, [1u64, 1000, 4096]).unwrap();
    for (block, n) in blocks.iter().zip([1u64, 1000, 4096]) {
        assert_eq!(block.len() as u64, n);
        assert!(block.iter().enumerate().all(|(i, &v)| v == 3 * i as u64));
    }
}

#[test]
fn a_pool_task_result_carries_a_lock_that_is_the_same_lock() {
    let _serial = serial();
    let pool = Pool::new(1).unwrap();
    let lock = pool.submit(make_lock, ()).get().unwrap();
    let held = lock.acquire().unwrap();
    // Passed on to a new process: held by us, so it can't take it.
    let mut p = Process::spawn(try_lock, &lock).unwrap();
    assert!(!p.join().unwrap());
    drop(held);
    let mut p = Process::spawn(try_lock, &lock).unwrap();
    assert!(p.join().unwrap());
}

#[test]
fn a_forged_handle_in_a_pool_result_is_a_clear_error_and_the_pool_goes_on() {
    let _serial = serial();
    let pool = Pool::new(1).unwrap();
    let worker_before = pool.submit(open_count, ()).get().unwrap();
    let before = census();
    let err = pool.submit(forge_result_handles, ()).get().unwrap_err();
    assert!(err.is_decode(), "{err}");
    let want = if cfg!(windows) {
        "cannot take handle 0xfffffffc out of the sending process"
    } else {
        "names 2 handles for 1 of 1 tasks, and 1 came"
    };
    assert!(err.to_string().contains(want), "{err}");
    assert!(
        err.to_string().contains("its handles could not be taken"),
        "{err}"
    );
    // The same worker goes on, and nothing was left open on either side.
    let x = pool.submit(pipe_holding, 5).get().unwrap();
    let mut r = std::io::PipeReader::from(x.into_inner());
    let mut buf = [0u8; 8];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(u64::from_le_bytes(buf), 5);
    drop(r);
    assert_eq!(pool.submit(open_count, ()).get().unwrap(), worker_before);
    assert_eq!(census(), before);
}

#[test]
fn a_hundred_pool_results_with_handles_leave_handle_counts_where_they_started() {
    let _serial = serial();
    let pool = Pool::new(1).unwrap();
    let worker_before = pool.submit(open_count, ()).get().unwrap();
    let before = census();
    // Through `map` (chunks of many results) and `submit` (one each).
    let mut got = Vec::new();
    for (i, h) in pool
        .map(pipe_holding, 0..50u64)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        got.push((i as u64, h));
    }
    for x in 50..100u64 {
        got.push((x, pool.submit(pipe_holding, x).get().unwrap()));
    }
    for (x, h) in got {
        let mut r = std::io::PipeReader::from(h.into_inner());
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, x.to_le_bytes());
    }
    assert_eq!(pool.submit(open_count, ()).get().unwrap(), worker_before);
    assert_eq!(census(), before);
}

/// A pool task: writes its index (a byte) into each of the pipe ends.
fn write_into_each(ends: Vec<PassedHandle>) -> usize {
    let n = ends.len();
    for (i, h) in ends.into_iter().enumerate() {
        let mut w = std::io::PipeWriter::from(h.into_inner());
        w.write_all(&[(i % 251) as u8]).expect("write");
    }
    n
}

multiproc::entry!(write_into_each);

#[test]
fn three_hundred_handles_in_one_pool_task_all_arrive() {
    let _serial = serial();
    let pool = Pool::new(1).unwrap();
    let before = census();
    let (mut r, w) = std::io::pipe().unwrap();
    let ends: Vec<PassedHandle> = (0..300)
        .map(|_| PassedHandle::new(w.try_clone().unwrap().into()))
        .collect();
    assert_eq!(pool.submit(write_into_each, ends).get().unwrap(), 300);
    drop(w);
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    got.sort_unstable();
    let mut want: Vec<u8> = (0..300).map(|i| (i % 251) as u8).collect();
    want.sort_unstable();
    assert_eq!(got, want);
    drop(r);
    assert_eq!(census(), before);
}

#[test]
fn tasks_without_handles_cost_one_transfer_per_chunk_and_no_windows() {
    let _serial = serial();
    let pool = Pool::new(1).unwrap();
    let before = multiproc::test_hooks::handle_transfers_opened();
    // 10 chunks of 1000 tasks, none with a handle.
    let windows: Vec<u64> = pool
        .imap(write_if_passed, (0..10_000u64).map(|x| (None, x)))
        .chunksize(1000)
        .collect::<multiproc::Result<_>>()
        .unwrap();
    // The parent opened one handle transfer per chunk, not one per task
    // (a transfer per task was a fifth of `map`'s tiny-task throughput).
    let opened = multiproc::test_hooks::handle_transfers_opened() - before;
    assert_eq!(opened, 10);
    // The worker opened no window onto a chunk's handles for any task.
    assert_eq!(windows.len(), 10_000);
    assert!(windows.iter().all(|&w| w == 0), "{:?}", &windows[..10]);
}

/// A pool task: the handle transfers its worker's thread opened so far.
fn transfers_in_worker(_: ()) -> u64 {
    multiproc::test_hooks::handle_transfers_opened()
}

multiproc::entry!(transfers_in_worker);

#[test]
fn results_without_handles_cost_the_worker_no_transfer_per_task() {
    let _serial = serial();
    let pool = Pool::new(1).unwrap();
    let before = pool.submit(transfers_in_worker, ()).get().unwrap();
    let windows: Vec<u64> = pool
        .imap(write_if_passed, (0..10_000u64).map(|x| (None, x)))
        .chunksize(1000)
        .collect::<multiproc::Result<_>>()
        .unwrap();
    assert_eq!(windows.len(), 10_000);
    let after = pool.submit(transfers_in_worker, ()).get().unwrap();
    // A few per chunk (the results' transfer, the `Started` and `Done`
    // messages: 12 chunks counting the two probes), not one per task's
    // result (which would be over 10 000).
    assert!(after - before <= 3 * 12, "{}", after - before);
}

#[test]
fn a_chunk_mixing_tasks_with_and_without_handles_gives_each_its_own() {
    let _serial = serial();
    let pool = Pool::new(1).unwrap();
    let before = census();
    let (mut r, w) = std::io::pipe().unwrap();
    // Every third task carries a pipe end: one chunk of 60.
    let args: Vec<(Option<PassedHandle>, u64)> = (0..60u64)
        .map(|x| {
            let h = (x % 3 == 1).then(|| PassedHandle::new(w.try_clone().unwrap().into()));
            (h, x)
        })
        .collect();
    let windows: Vec<u64> = pool
        .imap(write_if_passed, args)
        .chunksize(60)
        .collect::<multiproc::Result<_>>()
        .unwrap();
    // Each task of the chunk opened its window, in order.
    assert_eq!(windows, (1..=60).collect::<Vec<u64>>());
    drop(w);
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).unwrap();
    let seen: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // Exactly the tasks that had a handle wrote, each once, in task order.
    assert_eq!(seen, (0..60).filter(|x| x % 3 == 1).collect::<Vec<_>>());
    drop(r);
    assert_eq!(census(), before);
}

#[test]
fn a_launched_workers_tasks_and_results_carry_no_handles_and_say_so() {
    let _serial = serial();
    // A worker started by a launcher command connects back over TCP: no
    // process of ours at the other end (Windows), no socket for fds (Unix).
    let pool = multiproc::PoolBuilder::new()
        .workers(1)
        .launcher(multiproc::Launcher::command(["{exe}"]))
        .build()
        .unwrap();
    let (_r, w) = std::io::pipe().unwrap();
    let err = pool
        .submit(write_to_passed, (PassedHandle::new(w.into()), 1))
        .get()
        .unwrap_err();
    assert!(err.is_encode(), "{err}");
    assert!(err.to_string().contains("handles"), "{err}");
    let err = pool.submit(pipe_holding, 1).get().unwrap_err();
    assert!(err.is_result_encode(), "{err}");
    assert!(
        err.to_string()
            .contains("its result's handles could not be sent to the parent"),
        "{err}"
    );
    // The worker goes on.
    assert!(pool.submit(open_count, ()).get().unwrap() > 0);
}
