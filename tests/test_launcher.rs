//! Pool workers started by a launcher command, which connect back to the
//! pool over loopback TCP (`Launcher::command`).

mod common;

use std::time::Duration;

use common::{block_forever, host_name, in_scenario, scenario, square, wait_for};
#[cfg(target_os = "linux")]
use common::{mkfifo, LONG};
use multiproc::{Launcher, Pool, PoolBuilder};

multiproc::test_support!();

/// What a worker sees of itself: its command line after the program, and
/// which of the launcher's variables are still in its environment.
fn worker_view(_: u32) -> (Vec<String>, Vec<String>, u32) {
    let args = std::env::args().skip(1).collect();
    let env = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("MULTIPROC_"))
        .collect();
    (args, env, std::process::id())
}

multiproc::entry!(worker_view);

fn launched(template: &[&str], workers: usize) -> Pool {
    PoolBuilder::new()
        .workers(workers)
        .launcher(Launcher::command(template.iter().copied()))
        .build()
        .unwrap()
}

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
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command(["sh", "-c", "exit 3"]))
        .build()
        .unwrap_err();
    assert!(e.is_spawn(), "{e}");
    assert!(
        e.to_string()
            .contains("exited with exit code 3 before its worker connected back"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn a_launcher_that_fails_puts_the_end_of_its_stderr_in_the_error() {
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command([
            "sh",
            "-c",
            "echo 'srun: error: Invalid partition name specified' >&2; exit 3",
        ]))
        .build()
        .unwrap_err();
    assert!(e.is_spawn(), "{e}");
    let msg = e.to_string();
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
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command([
            "sh",
            "-c",
            "i=0; while [ $i -lt 100 ]; do printf '%0100d' 0 | tr 0 x >&2; i=$((i+1)); done; \
             echo >&2; echo 'the last line' >&2; exit 4",
        ]))
        .build()
        .unwrap_err();
    let msg = e.to_string();
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
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command(["/nonexistent/multiproc-launcher"]))
        .build()
        .unwrap_err();
    assert!(e.is_spawn(), "{e}");
    assert!(e.to_string().contains("multiproc-launcher"), "{e}");
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

// ------------------------------------------------------- prefixed output
//
// The workers' output reaches the parent's stdout and stderr: each
// scenario below is a copy of this binary run as a program whose output
// the test captures.

/// Lines each `chatter` task writes to stdout and to stderr.
const CHATTER_LINES: u32 = 40;

/// The body of line `k` of task `i` on `stream`: long enough that lines
/// cross the copier's 8 KiB reads.
fn chatter_line(stream: &str, i: u32, k: u32) -> String {
    format!("{stream} task {i} line {k} {}", "~".repeat(300))
}

/// Writes [`CHATTER_LINES`] lines to stdout and to stderr, alternating;
/// the worker's pid.
fn chatter(i: u32) -> u32 {
    for k in 0..CHATTER_LINES {
        println!("{}", chatter_line("out", i, k));
        eprintln!("{}", chatter_line("err", i, k));
    }
    std::process::id()
}

/// Length of the line `long_line` writes: two pieces of 16 KiB and a rest.
const LONG_LINE: usize = 2 * 16 * 1024 + 100;

/// Writes one line of [`LONG_LINE`] bytes to stdout; the worker's pid.
fn long_line(_: ()) -> u32 {
    let line: String = (0..LONG_LINE)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    println!("{line}");
    std::process::id()
}

/// Writes a last line without a newline to stdout and stderr; the
/// worker's pid.
fn no_newline(_: ()) -> u32 {
    use std::io::Write;
    print!("stdout without a newline");
    std::io::stdout().flush().unwrap();
    eprint!("stderr without a newline");
    std::process::id()
}

multiproc::entry!(chatter, long_line, no_newline);

/// The lines of `out` that start with `[` (the prefixed ones), in order.
fn prefixed(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.starts_with('['))
        .map(str::to_string)
        .collect()
}

/// The values after `key=` on the scenario's report line (`REPORT ...`).
fn report(out: &[u8], key: &str) -> Vec<u32> {
    let text = String::from_utf8_lossy(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("REPORT "))
        .expect("the scenario's report line");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn each_line_of_a_launched_worker_arrives_once_whole_and_prefixed_with_its_host_and_pid() {
    let out = scenario("scenario_prefixed_output", |_| {});
    assert!(out.status.success(), "{}", out.status);
    let pids = report(&out.stdout, "chatter");
    let long_pid = report(&out.stdout, "long")[0];
    let partial_pid = report(&out.stdout, "partial")[0];
    let host = host_name();
    let prefix = |pid: u32| format!("[{host}:{pid}] ");

    // Every prefixed line is one we expect, exactly once: nothing split,
    // doubled, lost or run into another worker's line.
    let mut want_out: Vec<String> = Vec::new();
    let mut want_err: Vec<String> = Vec::new();
    for (i, &pid) in pids.iter().enumerate() {
        for k in 0..CHATTER_LINES {
            want_out.push(format!(
                "{}{}",
                prefix(pid),
                chatter_line("out", i as u32, k)
            ));
            want_err.push(format!(
                "{}{}",
                prefix(pid),
                chatter_line("err", i as u32, k)
            ));
        }
    }
    let long: String = (0..LONG_LINE)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for piece in [&long[..16384], &long[16384..32768], &long[32768..]] {
        want_out.push(format!("{}{piece}", prefix(long_pid)));
    }
    want_out.push(format!("{}stdout without a newline", prefix(partial_pid)));
    want_err.push(format!("{}stderr without a newline", prefix(partial_pid)));
    for (stream, got, mut want) in [
        ("stdout", prefixed(&out.stdout), want_out),
        ("stderr", prefixed(&out.stderr), want_err),
    ] {
        let mut got = got;
        got.sort();
        want.sort();
        assert_eq!(got.len(), want.len(), "prefixed lines on {stream}");
        for (g, w) in got.iter().zip(&want) {
            assert!(g == w, "on {stream}:\n got {g:.120}\nwant {w:.120}");
        }
    }
    // The long line's pieces came in order, one after the other among its
    // worker's lines (one stream, one copier; the other worker's lines
    // may come in between).
    let lines: Vec<String> = prefixed(&out.stdout)
        .into_iter()
        .filter(|l| l.starts_with(&prefix(long_pid)))
        .collect();
    let first = lines
        .iter()
        .position(|l| l.ends_with(&long[..16384]))
        .expect("the first piece");
    assert!(lines[first + 1].ends_with(&long[16384..32768]));
    assert!(lines[first + 2].ends_with(&long[32768..]));
}

#[test]
#[ignore = "a scenario, run by each_line_of_a_launched_worker_arrives_once_whole_and_prefixed_with_its_host_and_pid"]
fn scenario_prefixed_output() {
    if !in_scenario("scenario_prefixed_output") {
        return;
    }
    // Ends libtest's "test NAME ... " line, so that the workers' lines
    // start lines of their own.
    println!();
    let p = launched(&["{exe}"], 2);
    // Both workers write at the same time (one task each in flight).
    let chatter_pids: Vec<u32> = p.map_chunked(chatter, 0..6u32, 1).unwrap();
    let long = p.submit(long_line, ()).get().unwrap();
    // The last output of that worker: nothing follows the partial lines.
    let partial = p.submit(no_newline, ()).get().unwrap();
    // The workers' last lines are out once the pool is gone.
    drop(p);
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    println!(
        "REPORT chatter={} long={long} partial={partial}",
        list(&chatter_pids)
    );
}

#[test]
fn with_prefix_output_off_a_launched_worker_writes_its_lines_as_they_are() {
    let out = scenario("scenario_unprefixed_output", |_| {});
    assert!(out.status.success(), "{}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for k in 0..CHATTER_LINES {
        let line = chatter_line("out", 7, k);
        assert_eq!(
            stdout.lines().filter(|l| *l == line).count(),
            1,
            "{line:.40}"
        );
        let line = chatter_line("err", 7, k);
        assert_eq!(
            stderr.lines().filter(|l| *l == line).count(),
            1,
            "{line:.40}"
        );
    }
    assert!(prefixed(&out.stdout).is_empty(), "{stdout}");
    assert!(prefixed(&out.stderr).is_empty(), "{stderr}");
}

#[test]
#[ignore = "a scenario, run by with_prefix_output_off_a_launched_worker_writes_its_lines_as_they_are"]
fn scenario_unprefixed_output() {
    if !in_scenario("scenario_unprefixed_output") {
        return;
    }
    // Ends libtest's "test NAME ... " line, so that the workers' lines
    // start lines of their own.
    println!();
    let p = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command(["{exe}"]).prefix_output(false))
        .build()
        .unwrap();
    p.submit(chatter, 7).get().unwrap();
}

#[cfg(unix)]
#[test]
fn a_launcher_commands_own_lines_are_prefixed_with_its_program_and_pid() {
    let out = scenario("scenario_launcher_complaint", |_| {});
    assert!(out.status.success(), "{}", out.status);
    let pid = report(&out.stdout, "pid")[0];
    assert_eq!(
        prefixed(&out.stderr),
        vec![
            format!("[sh:{pid}] srun: error: Invalid partition name specified"),
            format!("[sh:{pid}] and a last line without a newline"),
        ]
    );
    // The error's tail has the lines as they were written.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "the end of its stderr:\nsrun: error: Invalid partition name specified\n\
             and a last line without a newline"
        ),
        "{text}"
    );
}

#[cfg(unix)]
#[test]
#[ignore = "a scenario, run by a_launcher_commands_own_lines_are_prefixed_with_its_program_and_pid"]
fn scenario_launcher_complaint() {
    if !in_scenario("scenario_launcher_complaint") {
        return;
    }
    // Ends libtest's "test NAME ... " line, so that the workers' lines
    // start lines of their own.
    println!();
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command([
            "sh",
            "-c",
            "echo 'srun: error: Invalid partition name specified' >&2; \
             printf 'and a last line without a newline' >&2; exit 3",
        ]))
        .build()
        .unwrap_err();
    let msg = e.to_string();
    let pid = msg
        .split("the launcher command (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no pid in {msg}"));
    println!("{msg}");
    println!("REPORT pid={pid}");
}

/// The worker's own pid (whatever launched it).
fn own_pid(_: u32) -> u32 {
    std::process::id()
}

multiproc::entry!(own_pid);

/// Whether process `pid` has exited: no `/proc` entry, or a zombie (an
/// orphan whose new parent, this container's pid 1, may never reap it).
#[cfg(target_os = "linux")]
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_timed_out_task_whose_worker_outlives_its_killed_launcher_fails_and_the_worker_exits() {
    // No `exec`: the worker is the shell's child, and killing the shell
    // (what the pool does to a timed-out launched worker) leaves it
    // running, connected.
    let p = launched(&["sh", "-c", "\"$0\"; :", "{exe}"], 1);
    let worker = p.map(own_pid, [0]).unwrap()[0];
    let launcher = p.pids()[0];
    assert_ne!(worker, launcher, "the worker is the shell's child");
    let e = p
        .task(block_forever, ())
        .timeout(Duration::from_millis(300))
        .submit()
        .get_timeout(LONG)
        .expect("the timed-out task fails rather than waits for its worker forever")
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(e.pid(), Some(launcher));
    // The pool shut the worker's connection down; the worker saw it in the
    // middle of its task and exited.
    wait_for("the orphaned worker to exit", || exited(worker));
    // The pool goes on, on a new worker.
    assert_eq!(p.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
    assert_eq!(p.pids().len(), 1);
    assert!(!p.pids().contains(&launcher));
}

#[cfg(target_os = "linux")]
#[test]
fn a_launcher_that_exits_while_its_worker_stays_connected_counts_as_its_death() {
    // The shell starts the worker in the background and exits once the
    // test creates `<base>.<the shell's pid>` (so a replacement's shell,
    // another pid, stays).
    let base =
        std::env::temp_dir().join(format!("multiproc-launcher-exits-{}", std::process::id()));
    let p = launched(
        &[
            "sh",
            "-c",
            "\"$0\" & while [ ! -e \"$1.$$\" ]; do sleep 0.05; done; exit 0",
            "{exe}",
            base.to_str().unwrap(),
        ],
        1,
    );
    let worker = p.map(own_pid, [0]).unwrap()[0];
    let launcher = p.pids()[0];
    let mut h = p.submit(block_forever, ());
    assert_eq!(p.wait_busy(LONG), vec![launcher]);
    let flag = format!("{}.{launcher}", base.display());
    std::fs::write(&flag, b"").unwrap();
    let e = h
        .get_timeout(LONG)
        .expect("the task fails rather than waits forever")
        .unwrap_err();
    let _ = std::fs::remove_file(&flag);
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(launcher));
    assert!(
        e.to_string().contains(
            "its launcher command ended (exit code 0) but the worker's connection was still \
             open 5s later"
        ),
        "{e}"
    );
    wait_for("the given-up worker to exit", || exited(worker));
    assert_eq!(p.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
    assert!(!p.pids().contains(&launcher));
}

/// Worker `pid`'s pid, its parent's (the command that started it) and
/// its rank, from `/proc` (Linux).
#[cfg(unix)]
fn parent_and_rank(pid: u32) -> (u32, u32, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let rank = environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"SLURM_PROCID="))
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .unwrap_or_default();
    (pid, ppid, rank)
}

/// A stand-in for `srun -n {ntasks}`: one shell that starts `{ntasks}`
/// copies of the worker program, each with the rank variables of a Slurm
/// job step; one task is the shell itself (`exec`), so that killing the
/// command kills the worker, as with srun.
#[cfg(unix)]
const FAKE_SRUN: [&str; 4] = [
    "sh",
    "-c",
    "export SLURM_NTASKS={ntasks} SLURM_STEP_ID=0; \
     if [ {ntasks} = 1 ]; then SLURM_PROCID=0 exec \"$0\"; fi; \
     i=0; while [ $i -lt {ntasks} ]; do SLURM_PROCID=$i \"$0\" & i=$((i+1)); done; wait",
    "{exe}",
];

#[cfg(unix)]
#[test]
fn one_command_starts_all_workers_and_a_replacement_is_a_launch_of_one() {
    let p = launched(&FAKE_SRUN, 3);
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    // Three workers, ranks 0, 1, 2, all children of one shell; the pool
    // knows them by their own pids.
    let pids = common::pids_of_n_workers(&p, 3);
    let mut known = p.pids();
    known.sort_unstable();
    assert_eq!(pids, known);
    let mut seen: Vec<_> = pids.iter().map(|&pid| parent_and_rank(pid)).collect();
    seen.sort();
    let ranks: Vec<&str> = seen.iter().map(|s| s.2.as_str()).collect();
    let mut ranks = ranks.clone();
    ranks.sort_unstable();
    assert_eq!(ranks, ["0", "1", "2"]);
    let shell = seen[0].1;
    assert!(seen.iter().all(|s| s.1 == shell), "one command: {seen:?}");
    // One of them killed from outside: its task fails, naming its pid;
    // the others go on, and the replacement is a launch of one task.
    let h = p.submit(block_forever, ());
    let busy = p.wait_busy(Duration::from_secs(30));
    assert_eq!(busy.len(), 1);
    let st = std::process::Command::new("kill")
        .args(["-KILL", &busy[0].to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let e = h.get().unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(busy[0]));
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    common::wait_for("the replacement", || p.pids().len() == 3);
    let after: Vec<_> = common::pids_of_n_workers(&p, 3)
        .into_iter()
        .map(parent_and_rank)
        .collect();
    let fresh: Vec<_> = after.iter().filter(|s| s.1 != shell).collect();
    assert_eq!(fresh.len(), 1, "one worker of another command: {after:?}");
    assert_eq!(fresh[0].2, "0", "a launch of one task is rank 0");
    assert!(!after.iter().any(|s| s.0 == busy[0]));
}

#[cfg(unix)]
#[test]
fn a_worker_started_with_ntasks_but_no_rank_fails_the_launch() {
    let e = PoolBuilder::new()
        .workers(2)
        .launcher(Launcher::command([
            "sh",
            "-c",
            "\"$0\" & \"$0\"; wait; exit 7",
            "{exe}",
            "{ntasks}",
        ]))
        .build()
        .unwrap_err();
    assert!(e.is_spawn(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("exited with exit code 7 before 2 of its 2 workers"),
        "{msg}"
    );
    assert!(msg.contains("no rank variable"), "{msg}");
}

#[test]
fn all_at_once_needs_slurm_or_ntasks_in_the_template() {
    let e = PoolBuilder::new()
        .workers(2)
        .launcher(Launcher::command(["{exe}"]).all_at_once())
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("{ntasks}"), "{e}");
}

/// Sleeps `ms` milliseconds: a task that takes longer than a heartbeat
/// timeout (its worker must keep sending heartbeats meanwhile).
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

multiproc::entry!(sleep_ms);

/// The heartbeat timeout of the heartbeat tests: short, but far above
/// any pause of a loaded test machine's threads.
#[cfg(target_os = "linux")]
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The pid of the one child of process `pid` (from `/proc/*/stat`).
#[cfg(target_os = "linux")]
fn child_of(pid: u32) -> u32 {
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok());
        if ppid == Some(pid) {
            kids.push(entry.file_name().to_string_lossy().parse::<u32>().unwrap());
        }
    }
    assert_eq!(kids.len(), 1, "the children of {pid}: {kids:?}");
    kids[0]
}

/// Sends `signal` (`STOP`, `KILL`, …) to `pid`.
#[cfg(target_os = "linux")]
fn signal(pid: u32, signal: &str) {
    let st = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{signal} {pid}");
}

#[test]
fn a_zero_heartbeat_timeout_is_a_usage_error() {
    let e = PoolBuilder::new()
        .launcher(Launcher::command(["{exe}"]).heartbeat(Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_stopped_launched_worker_dies_of_silence_while_a_busy_one_keeps_beating() {
    // No `exec`: the pool's kill of the silent worker's shell leaves the
    // stopped worker itself, which the test kills at the end.
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(Launcher::command(["sh", "-c", "\"$0\"; :", "{exe}"]).heartbeat(HEARTBEAT))
        .build()
        .unwrap();
    // One worker blocks; its process (the shell's child) is stopped.
    let mut stopped = p.submit(block_forever, ());
    let busy = p.wait_busy(LONG);
    assert_eq!(busy.len(), 1);
    let stopped_launcher = busy[0];
    let stopped_pid = child_of(stopped_launcher);
    // A task three heartbeat timeouts long, which runs on a live worker
    // (the other one, or after the stopped one is given up, on another):
    // that worker must keep sending heartbeats while it runs.
    let long = p.submit(sleep_ms, 3 * HEARTBEAT.as_millis() as u64);
    signal(stopped_pid, "STOP");
    let e = stopped
        .get_timeout(LONG)
        .expect("the stopped worker's task fails rather than waits forever")
        .unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(stopped_launcher));
    assert!(
        e.to_string().contains(&format!(
            "pool worker {stopped_launcher} on host {} died (no heartbeat for 2s; ",
            host_name()
        )),
        "{e}"
    );
    // The busy worker was silent but for its heartbeats all along: it
    // finished its task.
    assert_eq!(long.get().unwrap(), 3 * HEARTBEAT.as_millis() as u64);
    assert_eq!(p.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
    wait_for("the replacement worker", || p.pids().len() == 2);
    assert!(!p.pids().contains(&stopped_launcher));
    signal(stopped_pid, "KILL");
}

/// Runs `scenario_parent_of_busy_workers` as a program of its own; once
/// it reported its workers' pids, `end` is done to it (by pid); then each
/// of those workers must be gone within two heartbeat timeouts.
#[cfg(target_os = "linux")]
fn parent_ends_workers_follow(end: &[&str]) {
    use std::io::BufRead;
    let mut cmd = common::scenario_command(
        &std::env::current_exe().unwrap(),
        "scenario_parent_of_busy_workers",
    );
    let mut parent = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let out = std::io::BufReader::new(parent.stdout.take().unwrap());
    let mut workers = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        // libtest's "test NAME ... " may start the line.
        if let Some((_, list)) = line.split_once("REPORT workers=") {
            workers = list.split(',').map(|p| p.parse::<u32>().unwrap()).collect();
            break;
        }
    }
    assert_eq!(workers.len(), 2, "the scenario reported its workers");
    for s in end {
        signal(parent.id(), s);
    }
    let deadline = std::time::Instant::now() + 2 * HEARTBEAT;
    while !workers.iter().all(|&w| exited(w)) {
        assert!(
            std::time::Instant::now() < deadline,
            "workers {workers:?} still running {:?} after their parent's {end:?}",
            2 * HEARTBEAT
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = parent.kill();
    let _ = parent.wait();
}

#[cfg(target_os = "linux")]
#[test]
fn a_killed_parent_leaves_no_launched_worker_running() {
    // The parent's connections close with it: the workers, busy in
    // tasks, see that and exit.
    parent_ends_workers_follow(&["KILL"]);
}

#[cfg(target_os = "linux")]
#[test]
fn the_workers_of_a_stopped_parent_exit_after_the_heartbeat_timeout() {
    // The connections stay open, but no heartbeat comes.
    parent_ends_workers_follow(&["STOP"]);
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "a scenario, run by parent_ends_workers_follow"]
fn scenario_parent_of_busy_workers() {
    if !in_scenario("scenario_parent_of_busy_workers") {
        return;
    }
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(Launcher::command(["sh", "-c", "exec \"$0\"", "{exe}"]).heartbeat(HEARTBEAT))
        .build()
        .unwrap();
    let _tasks: Vec<_> = (0..2).map(|_| p.submit(block_forever, ())).collect();
    wait_for("both workers busy", || p.wait_busy(LONG).len() == 2);
    // With `exec`, the launcher's pid is the worker's.
    let list: Vec<String> = p.wait_busy(LONG).iter().map(u32::to_string).collect();
    println!("REPORT workers={}", list.join(","));
    loop {
        std::thread::park();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn worker_died_names_the_workers_own_pid_and_its_launchers() {
    // No `exec`: the pool knows the worker by its shell's pid.
    let p = launched(&["sh", "-c", "\"$0\"; :", "{exe}"], 1);
    let worker = p.map(own_pid, [0]).unwrap()[0];
    let launcher = p.pids()[0];
    assert_ne!(worker, launcher);
    let mut h = p.submit(block_forever, ());
    assert_eq!(p.wait_busy(LONG), vec![launcher]);
    assert!(p.kill_worker(launcher));
    let e = h.get_timeout(LONG).expect("the task fails").unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(launcher));
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "pool worker {launcher} on host {} died",
            host_name()
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!(
            "({launcher} is its launcher command's pid; the worker's own was {worker})"
        )),
        "{msg}"
    );
    wait_for("the worker to exit", || exited(worker));
}

#[cfg(unix)]
#[test]
fn a_hello_of_another_build_is_refused_as_such() {
    // The test hook makes the worker send the hello of an older build
    // (without the host), which this build can't decode.
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command([
            "env",
            "MULTIPROC_TEST_OLD_HELLO=1",
            "{exe}",
        ]))
        .build()
        .unwrap_err();
    assert!(e.is_spawn(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("that this build can't read")
            && msg.contains("a worker of a different build/protocol"),
        "{msg}"
    );
}

/// A worker that finished its side of the handshake, said its hello and
/// exited (its launcher command with it) before the pool's listener had
/// handed its connection over is still heard: here its hello, of another
/// build, is refused as such — not "the launcher command … exited with
/// exit code 0 before its worker connected back", which a loaded machine
/// once made `a_hello_of_another_build_is_refused_as_such` fail with.
#[cfg(unix)]
#[test]
fn a_worker_that_exits_before_the_listener_hands_its_connection_over_is_heard() {
    let out = scenario("scenario_late_handover", |_| {});
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("REPORT heard"),
        "{}\n{stdout}",
        out.status
    );
}

#[cfg(unix)]
#[test]
#[ignore = "a scenario, run by a_worker_that_exits_before_the_listener_hands_its_connection_over_is_heard"]
fn scenario_late_handover() {
    if !in_scenario("scenario_late_handover") {
        return;
    }
    println!();
    // The listener's handshake thread keeps the finished connection until
    // the launch's wait has seen the command exited.
    multiproc::test_hooks::hold_listener_handovers(true);
    let release = std::thread::spawn(|| {
        wait_for("the launch to see its command exited", || {
            multiproc::test_hooks::launch_exits_seen() >= 1
        });
        multiproc::test_hooks::hold_listener_handovers(false);
    });
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command([
            "env",
            "MULTIPROC_TEST_OLD_HELLO=1",
            "{exe}",
        ]))
        .build()
        .unwrap_err();
    release.join().unwrap();
    assert!(e.is_spawn(), "{e}");
    assert!(
        e.to_string()
            .contains("a worker of a different build/protocol"),
        "{e}"
    );
    println!("REPORT heard");
}

/// A launcher that holds back every launch after the first two: each
/// launch notes its shell's pid (the worker's, after `exec`) in
/// `base/launches`, and the third and later wait until a line is written
/// to the FIFO `base/go`.
#[cfg(target_os = "linux")]
fn held_launcher(name: &str) -> (std::path::PathBuf, Launcher) {
    let base = std::env::temp_dir().join(format!("multiproc-held-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("launches")).unwrap();
    mkfifo(&base.join("go"));
    let script = "n=$(ls \"$1/launches\" | wc -l); touch \"$1/launches/$$\"; \
                  if [ \"$n\" -ge 2 ]; then read line < \"$1/go\"; fi; exec \"$0\"";
    let launcher = Launcher::command([
        "sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "{exe}".to_string(),
        base.to_str().unwrap().to_string(),
    ]);
    (base, launcher)
}

/// The pids of the launches `held_launcher` started so far.
#[cfg(target_os = "linux")]
fn launches(base: &std::path::Path) -> Vec<u32> {
    std::fs::read_dir(base.join("launches"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect()
}

/// A pool of 2 whose first two launches went through; its busy worker is
/// killed, and the replacement's launch is held back (its launcher
/// started, waiting on the FIFO): that launch's pid.
#[cfg(target_os = "linux")]
fn with_a_held_replacement(p: &Pool, base: &std::path::Path) -> u32 {
    let first = launches(base);
    assert_eq!(first.len(), 2);
    let h = p.submit(block_forever, ());
    let busy = p.wait_busy(LONG);
    assert_eq!(busy.len(), 1, "one worker runs `block_forever`");
    assert!(p.kill_worker(busy[0]));
    assert!(h.get().unwrap_err().is_worker_died());
    wait_for("the replacement's launcher to start", || {
        launches(base).len() == 3
    });
    let held = launches(base).into_iter().find(|p| !first.contains(p));
    held.unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn while_a_replacement_launch_is_pending_the_pool_serves_with_its_other_worker() {
    let (base, launcher) = held_launcher("serves");
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(launcher)
        .build()
        .unwrap();
    let held = with_a_held_replacement(&p, &base);
    // The launch waits on the FIFO until this test writes to it: the
    // survivor alone runs the map, the stats come, and the pool has one
    // ready worker.
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    let stats = p.stats();
    assert_eq!(stats.workers_started, 3);
    assert_eq!(stats.workers_died, 1);
    assert_eq!(stats.workers_replaced, 1);
    assert_eq!(stats.tasks_done, 300);
    assert_eq!(p.pids().len(), 1);
    assert!(!p.pids().contains(&held));
    assert!(!exited(held), "the held launcher still waits");
    // Released: it becomes the second worker, and both serve.
    std::fs::write(base.join("go"), "go\n").unwrap();
    wait_for("the replacement to be ready", || p.pids().len() == 2);
    assert!(p.pids().contains(&held));
    let got: Vec<u32> = p.map_chunked(own_pid, 0..400u32, 1).unwrap();
    assert_eq!(got.len(), 400);
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    drop(p);
    let _ = std::fs::remove_dir_all(&base);
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_a_pool_while_a_launch_is_pending_kills_its_launcher() {
    let (base, launcher) = held_launcher("drop");
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(launcher)
        .build()
        .unwrap();
    let held = with_a_held_replacement(&p, &base);
    // Never released: the drop returns only if it kills the launcher
    // (the launch would wait 60 s for its worker, longer than `LONG`).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(p);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(LONG).is_ok(),
        "the pool's drop still waits for the pending launch after {LONG:?}"
    );
    assert!(exited(held), "the held launcher {held} was killed");
    let _ = std::fs::remove_dir_all(&base);
}

/// A launched worker that connects back before its own launch's wait
/// began, while another launch of the pool waits, is handed over to its
/// launch, not closed (CI once lost a worker that way: "the launcher
/// command … exited with exit code 0 before its worker connected back").
#[cfg(target_os = "linux")]
#[test]
fn a_worker_that_connects_before_its_launch_waits_is_not_lost() {
    let out = scenario("scenario_early_worker", |_| {});
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("REPORT the early worker serves"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "a scenario, run by a_worker_that_connects_before_its_launch_waits_is_not_lost"]
fn scenario_early_worker() {
    if !in_scenario("scenario_early_worker") {
        return;
    }
    println!();
    // Launch 1's worker waits on a FIFO; launch 2's connects back at once,
    // but launch 2's wait (a hook in this process) begins only after launch
    // 1's wait read that worker's hello. Then launch 1's worker goes on.
    let base = std::env::temp_dir().join(format!("multiproc-early-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let fifo = base.join("go");
    mkfifo(&fifo);
    multiproc::test_hooks::hold_launch_wait_until_hello(2);
    let release = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            wait_for(
                "launch 1's wait to read the hello of launch 2's worker",
                || multiproc::test_hooks::launch_hello_was_read(2),
            );
            std::fs::write(&fifo, "go\n").unwrap();
        })
    };
    let script = "if [ \"$MULTIPROC_WORKER_TOKEN\" = 1 ]; then read line < \"$1\"; fi; exec \"$0\"";
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(Launcher::command([
            "sh",
            "-c",
            script,
            "{exe}",
            fifo.to_str().unwrap(),
        ]))
        .build()
        .unwrap();
    release.join().unwrap();
    assert_eq!(p.pids().len(), 2);
    let want: Vec<u64> = (0..200u64).map(|x| x * x).collect();
    assert_eq!(p.map_chunked(square, 0..200u64, 1).unwrap(), want);
    drop(p);
    let _ = std::fs::remove_dir_all(&base);
    println!("REPORT the early worker serves");
}

// ------------------------------------------------------------ where the pool listens

/// A launcher command that appends the address its worker is given
/// (`MULTIPROC_CONNECT`) as a line to the file `log`, then runs the worker.
#[cfg(unix)]
fn recording_launcher(log: &str) -> Launcher {
    Launcher::command([
        "sh",
        "-c",
        "printf '%s\\n' \"$MULTIPROC_CONNECT\" >> \"$1\"; exec \"$0\"",
        "{exe}",
        log,
    ])
}

/// Runs `scenario_listening_pool` with `launcher` (see there) and
/// `MULTIPROC_LISTEN_ADDR` set to `listen_addr` (`None`: unset); the
/// addresses its two workers were given.
#[cfg(unix)]
fn addresses_given(launcher: &str, listen_addr: Option<&str>) -> Vec<std::net::SocketAddr> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let log = std::env::temp_dir().join(format!(
        "multiproc-listen-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&log);
    let out = scenario("scenario_listening_pool", |cmd| {
        cmd.env("LISTEN_TEST_LOG", &log)
            .env("LISTEN_TEST_LAUNCHER", launcher);
        match listen_addr {
            Some(a) => cmd.env("MULTIPROC_LISTEN_ADDR", a),
            None => cmd.env_remove("MULTIPROC_LISTEN_ADDR"),
        };
    });
    assert!(out.status.success(), "{}", out.status);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REPORT mapped"),
        "the scenario ran"
    );
    let text = std::fs::read_to_string(&log).expect("the launcher wrote its addresses");
    std::fs::remove_file(&log).unwrap();
    let given: Vec<std::net::SocketAddr> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(given.len(), 2, "one line per worker: {text:?}");
    assert_eq!(given[0], given[1], "one listener for the pool");
    assert_ne!(given[0].port(), 0);
    given
}

#[cfg(unix)]
#[test]
#[ignore = "a scenario, run by the tests of where a pool listens"]
fn scenario_listening_pool() {
    if !in_scenario("scenario_listening_pool") {
        return;
    }
    println!();
    let log = std::env::var("LISTEN_TEST_LOG").unwrap();
    let launcher = match std::env::var("LISTEN_TEST_LAUNCHER").unwrap().as_str() {
        "host" => recording_launcher(&log).listen_on_host(),
        "default" => recording_launcher(&log),
        "given" => recording_launcher(&log).listen((std::net::Ipv4Addr::new(127, 0, 0, 3), 0)),
        other => panic!("no launcher {other}"),
    };
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(launcher)
        .build()
        .unwrap();
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    drop(p);
    println!("REPORT mapped");
}

#[cfg(unix)]
#[test]
fn a_host_address_pool_listens_where_this_hosts_name_resolves_and_maps_exactly() {
    // Network tests stay on loopback: where this host's name resolves to
    // another address, the variable gives a loopback one instead.
    let (want, listen_addr) = match common::loopback_host_address() {
        Some(ip) => (ip, None),
        None => ([127, 0, 0, 1].into(), Some("127.0.0.1")),
    };
    let given = addresses_given("host", listen_addr);
    assert_eq!(given[0].ip(), want);
}

// Any 127.x address is this machine's on Linux (`lo` is 127.0.0.0/8).
#[cfg(target_os = "linux")]
#[test]
fn the_listen_address_variable_moves_a_host_address_pool() {
    let given = addresses_given("host", Some("127.0.0.2"));
    assert_eq!(given[0].ip(), std::net::Ipv4Addr::new(127, 0, 0, 2));
}

#[cfg(target_os = "linux")]
#[test]
fn the_listen_address_variable_leaves_a_default_or_given_address_alone() {
    let given = addresses_given("default", Some("127.0.0.2"));
    assert_eq!(given[0].ip(), std::net::Ipv4Addr::new(127, 0, 0, 1));
    let given = addresses_given("given", Some("127.0.0.2"));
    assert_eq!(given[0].ip(), std::net::Ipv4Addr::new(127, 0, 0, 3));
}

#[test]
fn a_bad_listen_address_variable_fails_the_build_of_a_host_address_pool_naming_it() {
    let out = scenario("scenario_bad_listen_address", |cmd| {
        cmd.env("MULTIPROC_LISTEN_ADDR", "0.0.0.0");
    });
    assert!(out.status.success(), "{}", out.status);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REPORT refused 3, loopback pool mapped"),
        "the scenario ran"
    );
}

#[test]
#[ignore = "a scenario, run by a_bad_listen_address_variable_fails_the_build_of_a_host_address_pool_naming_it"]
fn scenario_bad_listen_address() {
    if !in_scenario("scenario_bad_listen_address") {
        return;
    }
    println!();
    // `Launcher::slurm()` (both forms) listens on this host's address, so
    // the variable is read, and refused, before any srun runs.
    let host_pools = [
        Launcher::slurm(),
        Launcher::slurm().all_at_once(),
        Launcher::command(["{exe}"]).listen_on_host(),
    ];
    let mut refused = 0;
    for launcher in host_pools {
        let e = PoolBuilder::new()
            .workers(1)
            .launcher(launcher)
            .build()
            .unwrap_err();
        assert!(e.is_usage(), "{e}");
        assert!(
            e.to_string()
                .contains("MULTIPROC_LISTEN_ADDR is `0.0.0.0`, not an address of one interface"),
            "{e}"
        );
        refused += 1;
    }
    // A `Launcher::command` pool listens on loopback and reads no variable.
    let p = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command(["{exe}"]))
        .build()
        .unwrap();
    assert_eq!(p.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
    println!("REPORT refused {refused}, loopback pool mapped");
}

#[cfg(unix)]
#[test]
fn a_worker_that_cannot_reach_a_loopback_address_says_why() {
    // As a worker on another host would be told the address of a pool
    // whose host name resolves to a loopback address: nothing listens on
    // port 1 here.
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command([
            "sh",
            "-c",
            "export MULTIPROC_CONNECT=127.0.0.1:1; exec \"$0\"",
            "{exe}",
        ]))
        .build()
        .unwrap_err();
    assert!(e.is_spawn(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "on host {}: cannot connect back to 127.0.0.1:1: ",
            host_name()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(
            "(127.0.0.1 is a loopback address, which a worker on another host than the pool's \
             can't reach: the pool must listen on an address of its host that this one reaches \
             — Launcher::listen_on_host, with MULTIPROC_LISTEN_ADDR where that host's name \
             resolves to a loopback address, or Launcher::listen)"
        ),
        "{msg}"
    );
}
