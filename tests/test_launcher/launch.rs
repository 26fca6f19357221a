//! A pool over launched workers: its map, what a worker is given, the
//! launch's errors, a killed worker, handles it can't carry.

use super::*;

#[test]
fn a_pool_maps_over_workers_its_launcher_started() {
    let p = launched(&["{exe}"], 2);
    let want: Vec<u64> = (0..500u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..500u64).unwrap(), want);
    assert_eq!(p.map_chunked(square, 0..500u64, 1).unwrap(), want);
    let got: u64 = p
        .imap_unordered(square, 0..100u64)
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(got, 328_350);
    // The workers are the launched processes (the command is the worker
    // itself here).
    let mut pids: Vec<u32> = p
        .map(worker_view, 0..8)
        .unwrap()
        .into_iter()
        .map(|v| v.2)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    let mut known = p.pids();
    known.sort_unstable();
    assert!(
        pids.iter().all(|pid| known.contains(pid)),
        "{pids:?} vs {known:?}"
    );
}

#[test]
fn the_address_and_key_travel_in_the_environment_not_the_command_line() {
    let p = launched(&["{exe}"], 1);
    let (args, env, _) = p.map(worker_view, [0]).unwrap().remove(0);
    assert!(args.is_empty(), "the worker's command line: {args:?}");
    // The worker took them out of its environment (its own children
    // don't see them).
    assert!(env.is_empty(), "left in the worker's environment: {env:?}");
}

#[cfg(unix)]
#[test]
fn a_sh_c_launcher_works() {
    let p = launched(&["sh", "-c", "exec \"$0\"", "{exe}"], 2);
    assert_eq!(p.map(square, 1..=4u64).unwrap(), vec![1, 4, 9, 16]);
}

#[cfg(unix)]
#[test]
fn a_launcher_that_exits_fails_the_build_with_its_status() {
    let msg = spawn_error(1, &["sh", "-c", "exit 3"]);
    assert!(
        msg.contains("exited with exit code 3 before its worker connected back"),
        "{msg}"
    );
}

#[cfg(unix)]
#[test]
fn a_launcher_that_fails_puts_the_end_of_its_stderr_in_the_error() {
    let msg = spawn_error(
        1,
        &[
            "sh",
            "-c",
            "echo 'srun: error: Invalid partition name specified' >&2; exit 3",
        ],
    );
    assert!(msg.contains("exited with exit code 3"), "{msg}");
    assert!(
        msg.contains("the end of its stderr:\nsrun: error: Invalid partition name specified"),
        "{msg}"
    );
}

#[cfg(unix)]
#[test]
fn a_launcher_error_keeps_only_the_last_2_kib_of_its_stderr() {
    // 10 000 `x`s, then a last line: the error has the last line and at
    // most 2 KiB of what came before it.
    let msg = build_error(
        1,
        Launcher::command([
            "sh",
            "-c",
            "i=0; while [ $i -lt 100 ]; do printf '%0100d' 0 | tr 0 x >&2; i=$((i+1)); done; \
             echo >&2; echo 'the last line' >&2; exit 4",
        ]),
    )
    .to_string();
    assert!(msg.contains("exited with exit code 4"), "{msg}");
    assert!(msg.ends_with("the last line"), "{msg}");
    let xs = msg.bytes().filter(|&b| b == b'x').count();
    assert!(
        (2048 - 20..=2048).contains(&xs),
        "{xs} x's of the 10 000 kept"
    );
}

#[test]
fn a_launcher_that_cannot_start_is_a_spawn_error() {
    let msg = spawn_error(1, &["/nonexistent/multiproc-launcher"]);
    assert!(msg.contains("multiproc-launcher"), "{msg}");
}

#[test]
fn an_empty_launcher_command_is_a_usage_error() {
    let e = PoolBuilder::new()
        .launcher(Launcher::command(Vec::<String>::new()))
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
}

#[test]
fn a_killed_launched_worker_fails_only_its_task_and_is_replaced() {
    let p = launched(&["{exe}"], 2);
    let h = p.submit(block_forever, ());
    let busy = p.wait_busy(Duration::from_secs(30));
    assert_eq!(busy.len(), 1, "one worker runs `block_forever`");
    assert!(p.kill_worker(busy[0]));
    let e = h.get().unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(busy[0]));
    // It names the host the worker said it runs on (this one here).
    assert!(
        e.to_string().contains(&format!(
            "pool worker {} on host {} died",
            busy[0],
            host_name()
        )),
        "{e}"
    );
    // Replaced through the launcher, and usable. (The map may run on the
    // survivor alone before the replacement says it is ready.)
    assert_eq!(p.map(square, 0..100u64).unwrap()[99], 99 * 99);
    wait_for("the replacement worker", || p.pids().len() == 2);
    assert!(!p.pids().contains(&busy[0]));
}

/// Sends back what arrives on the connection it was given.
fn relay(conn: multiproc::Connection) -> u32 {
    conn.recv::<u32>().unwrap()
}

multiproc::entry!(relay);

#[test]
fn a_task_carrying_a_handle_fails_on_a_launched_worker_and_the_pool_goes_on() {
    let p = launched(&["{exe}"], 1);
    let (_mine, theirs) = multiproc::Pipe::duplex().unwrap();
    let e = p.map(relay, [theirs]).unwrap_err();
    assert!(e.is_encode(), "{e}");
    assert!(
        e.to_string()
            .contains("can't reach workers started by a launcher"),
        "{e}"
    );
    let (_mine, theirs) = multiproc::Pipe::duplex().unwrap();
    let e = p.submit(relay, theirs).get().unwrap_err();
    assert!(e.is_encode(), "{e}");
    assert_eq!(p.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
}

#[test]
fn an_initializer_carrying_a_handle_fails_the_build_of_a_launched_pool() {
    let (_mine, theirs) = multiproc::Pipe::duplex().unwrap();
    let e = PoolBuilder::new()
        .workers(1)
        .initializer(relay, theirs)
        .launcher(Launcher::command(["{exe}"]))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("handles"), "{e}");
}
