//! Helpers shared by the integration tests: `mod common;` in a test file.
//!
//! Each file in `tests/` is its own binary and compiles this module once,
//! so the entries below are registered exactly once per binary, here; a
//! test file registers only its own. (`test_support!` stays in each file,
//! where the crate docs say it goes.) Each binary uses only some of these,
//! hence `dead_code` is allowed.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use multiproc::{ExitStatus, Pool, PoolBuilder, Popen};

/// How long a test waits for something that takes milliseconds when all
/// is well: long enough never to fail on a loaded machine, short enough
/// that a hang fails the test instead of the whole run.
pub const LONG: Duration = Duration::from_secs(30);

pub fn square(x: u64) -> u64 {
    x * x
}

pub fn exit_with(code: i32) {
    std::process::exit(code)
}

pub fn do_nothing(_: ()) {}

/// Never returns: a worker busy until it is killed.
pub fn block_forever(_: ()) {
    loop {
        std::thread::park();
    }
}

multiproc::entry!(square, exit_with, do_nothing, block_forever);

/// Gives SIGINT and SIGTERM their default action, ending the process, here
/// and in the workers started from here on (a worker inherits a signal
/// its parent ignores). For a process that a test ends with them: the test
/// may itself run with them ignored, as a shell without job control
/// ignores SIGINT in the commands it starts in the background.
#[cfg(unix)]
pub fn default_action_for_sigint_and_sigterm() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `SIG_DFL` is a valid disposition for both signals; no
        // handler of ours is involved.
        let previous = unsafe { libc::signal(signal, libc::SIG_DFL) };
        assert_ne!(previous, libc::SIG_ERR, "signal({signal}, SIG_DFL)");
    }
}

/// Starts `entry(args)` as [`multiproc::Process::spawn`] does, but tied
/// to the test: killed when its `Process` is dropped without having been
/// joined (a failing test unwinds past it) and when this process dies
/// (the harness killed for a timeout). A plain `Process::spawn` child
/// outlives both, by design and on every platform: a consumer blocked on
/// a queue that a failed test never closes then waits forever, an orphan
/// loading the machine. (Seen under Wine, where such orphans were first
/// taken for a kill-on-close job that failed: a plain child has none.)
pub fn spawn_tied<F, A, T>(
    entry: F,
    args: impl std::borrow::Borrow<A>,
) -> multiproc::Result<multiproc::Process<T>>
where
    F: Fn(A) -> T + Copy + 'static,
    A: serde::Serialize,
    T: serde::de::DeserializeOwned,
{
    multiproc::ProcessBuilder::new()
        .kill_on_drop(true)
        .kill_on_parent_death(true)
        .spawn(entry, args)
}

/// A pool of `n` workers.
pub fn pool(n: usize) -> Pool {
    PoolBuilder::new().workers(n).build().unwrap()
}

/// Polls `cond` until it holds, at most [`LONG`]; panics naming `what`
/// if it never does. (Polling is the test's way to see a state the pool
/// reaches on its own; the sleep between polls only spaces them.)
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "still waiting after {LONG:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (at most [`LONG`]) for `p` to exit; its status.
pub fn wait_done(p: &Popen) -> ExitStatus {
    p.wait(Some(LONG))
        .expect("wait")
        .expect("worker still running after 30 s")
}

/// Takes `n` arrivals off `arrived` (each a `release` by a child that
/// reached the point the test waits for), at most [`LONG`] for each.
pub fn arrivals(arrived: &multiproc::Semaphore, n: usize) {
    for _ in 0..n {
        arrived
            .acquire_timeout(LONG)
            .unwrap()
            .expect("arrival")
            .forget();
    }
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`, …) to `pid`.
#[cfg(target_os = "linux")]
pub fn signal(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{signal} {pid}: {st}");
}

// ------------------------------------------------------------ counting handles

/// One test at a time, for the tests that count this process's open fds /
/// handles (a spawn in another test thread would change the count): each
/// holds this while it runs. (One lock per test binary.)
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's open fds / handles once what lingers by design is gone:
/// Windows keeps a dropped child's kill-on-close job until its processes
/// are gone, and Wine updates a job's process count a moment after the
/// exit (test_xfer's and test_xfer_pipe's tests start no grandchildren
/// that outlive them, so every kept job empties): wait for that, bounded,
/// then count. Every count check that runs under Wine counts with it, at
/// both ends: at a test's start the previous test's pool worker's job is
/// often still kept, and the count right then was seen one or two above a
/// count taken after it (8 runs of test_xfer under Wine, two at once: a
/// first count 14 or 15, census 13; census 13 in every run). A count
/// taken without waiting made test_xfer's
/// three_hundred_handles_in_one_pool_task_all_arrive read 22 vs 23 once.
/// Which handle besides the kept job closes late is not pinned down.
pub fn census() -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    while multiproc::test_hooks::settle() > 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    multiproc::test_hooks::open_handle_count().unwrap()
}

// ------------------------------------------------------------ scenarios
//
// Scenarios that change process-wide state (resource limits, stdin, the
// executable on disk) or that must see `main` end run in a fresh copy of
// the test binary started as an ordinary program (not a worker):
// [`scenario`] runs one `#[ignore]`d test there, selected by
// `MULTIPROC_SCENARIO`; that test starts with
// `if !in_scenario("its_name") { return; }`.

/// The command that runs the `#[ignore]`d test `name` of the binary `exe`
/// as a scenario; stdio as `Command` leaves it (inherited).
pub fn scenario_command(exe: &std::path::Path, name: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(scenario_args(name))
        .env("MULTIPROC_SCENARIO", name);
    cmd
}

/// The arguments that make a test binary run only scenario `name` (which
/// also needs `MULTIPROC_SCENARIO=name` in its environment).
pub fn scenario_args(name: &str) -> [&str; 5] {
    [
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]
}

/// Runs the `#[ignore]`d test `name` of this binary as a scenario; `setup`
/// adjusts the command. Its output, also printed to stderr. A scenario
/// still running after two minutes is killed (and fails: no exit code).
pub fn scenario(name: &str, setup: impl FnOnce(&mut Command)) -> Output {
    scenario_in(&std::env::current_exe().unwrap(), name, setup)
}

/// [`scenario`] in `exe`, a copy of this test binary.
pub fn scenario_in(exe: &std::path::Path, name: &str, setup: impl FnOnce(&mut Command)) -> Output {
    use std::io::Read;
    let mut cmd = scenario_command(exe, name);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    setup(&mut cmd);
    // A fresh copy may still be open for writing in a child that another
    // test thread is starting (until its exec closes it): ETXTBSY.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other.expect("run the scenario"),
        }
    };
    fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    }
    let out_reader = read_all(child.stdout.take().unwrap());
    let err_reader = read_all(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    };
    eprintln!(
        "scenario {name}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether this process runs scenario `name` (see [`scenario`]); false in
/// an ordinary test run, even with `--ignored`.
pub fn in_scenario(name: &str) -> bool {
    std::env::var("MULTIPROC_SCENARIO").as_deref() == Ok(name)
}

/// Makes a FIFO at `path` (`mkfifo`).
#[cfg(unix)]
pub fn mkfifo(path: &std::path::Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(st.success(), "mkfifo {}: {st}", path.display());
}

// ------------------------------------------------------------ which workers

/// Opens the FIFO at `path` for reading — which blocks until a writer has
/// it open — and returns this worker's pid.
#[cfg(unix)]
pub fn pid_after_fifo(path: String) -> u32 {
    drop(std::fs::File::open(path).expect("open the FIFO"));
    std::process::id()
}

#[cfg(unix)]
multiproc::entry!(pid_after_fifo);

/// The pids of `n` different workers of `p`, each from a task it ran:
/// `n` tasks that each wait on one FIFO are submitted one by one (a
/// submit goes to the next idle worker, round robin), the test waits
/// until `n` workers are busy with them, then opens the FIFO for writing,
/// which lets them all return. Sorted. (For pools over TCP, whose tasks
/// can't carry a handle to wait on.)
#[cfg(unix)]
pub fn pids_of_n_workers(p: &Pool, n: usize) -> Vec<u32> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let fifo = std::env::temp_dir().join(format!(
        "multiproc-fifo-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    mkfifo(&fifo);
    let path = fifo.to_str().unwrap().to_string();
    let handles: Vec<_> = (0..n)
        .map(|_| p.submit(pid_after_fifo, path.clone()))
        .collect();
    wait_for("a task on each worker", || {
        p.wait_busy(Duration::ZERO).len() == n
    });
    // Held open until every task returned: one that opens late finds it.
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the FIFO for writing");
    let mut pids: Vec<u32> = handles.into_iter().map(|h| h.get().unwrap()).collect();
    drop(writer);
    std::fs::remove_file(&fifo).unwrap();
    pids.sort_unstable();
    pids
}

// ------------------------------------------------------------ Slurm

/// Whether Slurm is here; `false` (after saying why) when the test is to
/// pass without it; a panic under CI.
pub fn slurm_here() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("srun").is_file()));
    if found {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        !ci,
        "srun is not on PATH but CI is set: CI must start the cluster (scripts/start-slurm.sh)"
    );
    eprintln!(
        "SKIPPED: srun is not on PATH (no Slurm here; `bash scripts/start-slurm.sh` starts one)"
    );
    false
}

// ------------------------------------------------------------ this host's address

/// This host's name, as a launched worker here reports it and as a pool
/// resolves it for its address (`uname -n`; Windows: `COMPUTERNAME`).
pub fn host_name() -> String {
    #[cfg(unix)]
    let name = Command::new("uname")
        .arg("-n")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    #[cfg(windows)]
    let name = std::env::var("COMPUTERNAME").unwrap_or_default();
    if name.is_empty() {
        "?".into()
    } else {
        name
    }
}

/// The address a pool that listens on this host's address
/// (`Launcher::slurm()`, `Launcher::listen_on_host`, SPMD rank 0) takes
/// without `MULTIPROC_LISTEN_ADDR`, when this host's name resolves to
/// loopback addresses only (then the first of them, as documented);
/// `None`, after saying so on stderr, when it resolves to another: network
/// tests stay on loopback addresses, so those go through
/// `MULTIPROC_LISTEN_ADDR` (or `Launcher::listen`) with a 127.x address
/// there instead.
pub fn loopback_host_address() -> Option<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let host = host_name();
    let ips: Vec<std::net::IpAddr> = (host.as_str(), 0)
        .to_socket_addrs()
        .map(|a| a.map(|a| a.ip()).collect())
        .unwrap_or_default();
    if !ips.is_empty() && ips.iter().all(|ip| ip.is_loopback()) {
        return Some(ips[0]);
    }
    eprintln!(
        "NOTE: this host's name `{host}` resolves to {ips:?}, not only to loopback addresses: \
         the pool's host-name address is tested through a 127.x address given instead"
    );
    None
}
