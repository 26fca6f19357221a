//! The benchmark: each figure next to a baseline measured in the same run.
//!
//! ```text
//! cargo run --release --example bench                      # Linux
//! scripts/bench-windows.sh                                 # the same under Wine
//! cargo run --release --example bench -- --quick           # smaller N, fewer rounds
//! cargo run --release --example bench -- --json out.json   # also write the rows as JSON
//! cargo run --release --example bench -- --only pool --no-cpython   # some rows, for profiling
//! ```
//!
//! One table; each row is our figure, its baseline measured in the same
//! run, the ratio (ours / baseline) and the target from the issues:
//! - spawn + wait: `Popen` (spawn, bootstrap, exit, wait) vs bare
//!   `std::process::Command` spawn + wait of the same binary;
//! - spawn + join: `Process` of a trivial entry, the same baseline;
//! - 64 MiB echo round trip through a child: `Connection` vs raw pipes
//!   (the child copies stdin to stdout);
//! - ping-pong of 8-byte messages through a child: `Connection` vs raw pipes;
//! - pool startup: `Pool::new(2)` until both workers are ready vs two bare
//!   spawn + wait of the same binary, one after the other (info);
//! - idle worker RSS (Linux): `VmRSS` of a ready, idle pool worker (the
//!   mean of the two) vs a bare child of the same binary blocked reading
//!   stdin (info);
//! - pool tiny tasks (`x * x` on `u64`, 2 workers), chunksize 1
//!   (`imap(..).chunksize(1)`) vs CPython's best
//!   `multiprocessing.Pool(2).map(square, range(N), chunksize=1)`;
//! - pool tiny tasks, automatic chunking (`map`) vs CPython's best
//!   `Pool(2).map(.., chunksize=1000)`;
//! - async: 100 000 tiny tasks `submit`ted and awaited together
//!   (`join_all`) on a tokio current-thread runtime vs the blocking
//!   `imap_unordered(..).chunksize(1)` of the same tasks on the same pool,
//!   the two alternating, best of 3 runs each;
//! - broadcast: a child sums a 1 GiB `Frozen<u64>` (spawn, map, sum, join)
//!   vs the same sum in the parent, in GiB/s; CPython's
//!   `shared_memory.SharedMemory` + numpy, a spawned `Process` summing the
//!   same 1 GiB (`scripts/bench_cpython.py --broadcast`), is printed under
//!   the table (n/a, with the reason, without numpy:
//!   `scripts/setup-bench.sh` installs it); so is, on Linux, which pages
//!   the block got: huge pages (hugetlb) where enough were free, and then
//!   the same row measured with base pages in the same run, or base pages
//!   and how to reserve huge pages; and why the child is slower: CPU time
//!   and page faults of one more child's first pass (mapping the pages),
//!   second pass and unmap, against the parent's sum, with the page size
//!   and (base pages) the shared-memory transparent huge page setting.
//! - lock: an uncontended `Lock` acquire + release (one thread) vs
//!   CPython's `multiprocessing.Lock` acquire + release
//!   (`scripts/bench_cpython.py --lock`), in ns;
//! - lock-contended: 2 processes taking a `Value<u64>`'s lock 500 000
//!   times each (1 M acquisitions, handed back and forth), ns per
//!   acquisition, next to a `std::sync::Mutex<u64>` between 2 threads
//!   (info: processes can't beat threads);
//! - queue: a child puts `u64` items into a `Queue`, the parent gets them,
//!   items/s from the first item received to the last, best of 3 runs, vs
//!   CPython's `multiprocessing.Queue` doing the same
//!   (`scripts/bench_cpython.py --queue`, which also measures
//!   `SimpleQueue`: printed under the table);
//! - queue, 1 MiB items (`serde_bytes::ByteBuf`), a child puts, the parent
//!   gets, MiB/s, vs raw pipes streaming the same bytes through a child
//!   that copies stdin to stdout (both pipes busy at once, so about one
//!   pipe's rate);
//! - queue, 4 MiB items through a 1 MiB ring (each one larger than the
//!   ring, so each takes the queue's lane: a block of shared memory of
//!   its own), a child puts 16, the parent gets them, MiB/s, vs the same
//!   64 MiB through the raw pipes as in the row above;
//! - queue, 4 producer processes → 4 consumer processes, `u64` items,
//!   items/s (info, beside the 1 → 1 row);
//! - remote pool: the pool tiny tasks of 2 workers started by a launcher
//!   command (`Launcher::command(["sh", "-c", "exec \"$0\"", "{exe}"])`,
//!   `["{exe}"]` on Windows), over loopback TCP, vs the local pool, the
//!   two alternating, best of 3 runs each: chunksize 1, and automatic
//!   chunking;
//! - remote worker start: a pool of 1 worker started through that
//!   launcher command, until it ran one task, vs the same with a local
//!   worker, alternating, mean of the startup rounds (info); the same
//!   through `Launcher::slurm()` (srun) when `srun` is on `PATH` and the
//!   cluster answers `sinfo` (else skipped, saying why).
//!
//! The CPython figures come from `scripts/bench_cpython.py`, run as a
//! subprocess with `python3` from `PATH` (same N, best of 3 runs for each
//! start method it supports); without `python3` those baselines read "n/a".
//! Pool throughput rows are the best of 3 runs on a started, warmed-up pool,
//! as the script does for CPython.
//!
//! A row whose measurement fails prints its error and the bench goes on;
//! the exit code is then 1. `--json PATH` writes the rows as a JSON array
//! of `{row, ours, baseline, ratio, unit, target, met}` (`null` where a
//! figure is not available; `error` on a failed row, `skipped` on one this
//! platform can't measure). Results are written up in `docs/benchmarks.md`.
//!
//! The code: this file holds the options, the sizes and the rows in their
//! order (`run`); `table.rs` the table, its targets and `--json`;
//! `cpython.rs` runs `scripts/bench_cpython.py`; the rows by concern:
//! `process.rs` (spawn, echo, ping-pong), `pool.rs`, `broadcast.rs`,
//! `lock.rs`, `queue.rs` and `remote.rs`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use broadcast::broadcast;
use cpython::cpython_baseline;
use lock::{lock_contended, lock_uncontended};
use pool::{block_stdin, idle_rss, pool_async, pool_auto, pool_chunk1, pool_startup};
use process::{echo_big, ping_pong, raw_echo, spawn_join, spawn_wait};
use queue::{queue_4x4, queue_big, queue_row};
use remote::{launcher_command, remote_pool, remote_start, slurm_answers};
use table::{install_panic_capture, write_json, Table, Target};

mod broadcast;
mod cpython;
mod lock;
mod pool;
mod process;
mod queue;
mod remote;
mod table;

const BIG: usize = 64 << 20;
/// Pool workers in the pool rows (the CPython script uses `Pool(2)` too).
const POOL_WORKERS: usize = 2;
/// Runs per pool throughput row; the best counts (as in the script).
const POOL_RUNS: usize = 3;

struct Opts {
    quick: bool,
    json: Option<PathBuf>,
    /// Only the rows whose name contains one of these (for profiling).
    only: Vec<String>,
    /// Skip the CPython script (for profiling).
    no_cpython: bool,
}

impl Opts {
    fn wants(&self, row: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| row.contains(w.as_str()))
    }
}

fn main() {
    multiproc::init();
    let mut args = std::env::args().skip(1);
    let mut opts = Opts {
        quick: false,
        json: None,
        only: Vec::new(),
        no_cpython: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            // The children the baselines run.
            "--exit" => return,
            "--raw-echo" => return raw_echo(),
            "--block-stdin" => return block_stdin(),
            "--quick" => opts.quick = true,
            "--json" => match args.next() {
                Some(p) => opts.json = Some(PathBuf::from(p)),
                None => usage("--json needs a path"),
            },
            "--no-cpython" => opts.no_cpython = true,
            "--only" => match args.next() {
                Some(w) => opts.only.push(w),
                None => usage("--only needs a word"),
            },
            "-h" | "--help" => {
                println!("usage: bench [--quick] [--json PATH] [--only WORD]... [--no-cpython]");
                return;
            }
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    install_panic_capture();
    let errors = run(&opts);
    if errors > 0 {
        std::process::exit(1);
    }
}

fn usage(why: &str) -> ! {
    eprintln!("bench: {why}\nusage: bench [--quick] [--json PATH] [--only WORD]... [--no-cpython]");
    std::process::exit(2)
}

/// Sizes of one run.
struct Sizes {
    rounds: usize,
    big_rounds: usize,
    ping_n: usize,
    startup_rounds: usize,
    chunk1_n: u64,
    auto_n: u64,
    async_n: u64,
}

// Row names (also what `--only` matches).
const SPAWN_WAIT: &str = "spawn + wait, Popen (us)";
const SPAWN_JOIN: &str = "spawn + join, Process (us)";
const ECHO: &str = "64 MiB echo round trip (MiB/s)";
const PING: &str = "ping-pong 8 B (round trips/s)";
const STARTUP: &str = "pool startup, Pool::new(2) ready (us)";
const RSS: &str = "idle worker RSS, pool vs bare (KiB)";
const CHUNK1: &str = "pool x*x, chunksize 1 (tasks/s)";
const AUTO: &str = "pool x*x, auto chunks (tasks/s)";
const ASYNC: &str = "async: submit + await, tokio (tasks/s)";
const BROADCAST: &str = "broadcast: child sums 1 GiB frozen (GiB/s)";
const LOCK: &str = "lock: uncontended acquire+release (ns)";
const LOCK_CONTENDED: &str = "lock-contended: 2 procs vs 2 threads (ns)";
const QUEUE: &str = "queue: child puts u64, parent gets (items/s)";
const QUEUE_BIG: &str = "queue: 1 MiB items, child -> parent (MiB/s)";
const QUEUE_LARGE: &str = "queue: 4 MiB items via 1 MiB ring (MiB/s)";
const QUEUE_4X4: &str = "queue: 4 producers -> 4 consumers, u64 (items/s)";
const REMOTE_CHUNK1: &str = "remote pool x*x, chunksize 1 (tasks/s)";
const REMOTE_AUTO: &str = "remote pool x*x, auto chunks (tasks/s)";
const REMOTE_START: &str = "remote worker start, launcher cmd (us)";
const REMOTE_SRUN: &str = "remote worker start, srun (us)";

fn run(opts: &Opts) -> usize {
    let quick = opts.quick;
    let sz = Sizes {
        rounds: if quick { 20 } else { 100 },
        big_rounds: if quick { 2 } else { 5 },
        ping_n: if quick { 500 } else { 2_000 },
        startup_rounds: if quick { 5 } else { 20 },
        chunk1_n: if quick { 20_000 } else { 60_000 },
        auto_n: if quick { 1_000_000 } else { 5_000_000 },
        async_n: if quick { 20_000 } else { 100_000 },
    };
    let exe = std::env::current_exe().expect("current_exe");

    // CPython first, alone on the machine, so that its figures are there
    // when the pool rows print.
    let cpython = if opts.no_cpython {
        Err("not run (--no-cpython)".to_string())
    } else if opts.wants(CHUNK1) || opts.wants(AUTO) {
        eprintln!("bench: running scripts/bench_cpython.py (CPython's Pool baseline)...");
        cpython_baseline(quick, sz.chunk1_n, sz.auto_n)
    } else {
        Err("not run (--only)".to_string())
    };

    println!(
        "multiproc bench ({} {}, {} rounds{})",
        std::env::consts::OS,
        std::env::consts::ARCH,
        sz.rounds,
        if quick { ", quick" } else { "" }
    );
    println!(
        "{:<44} {:>13} {:>13} {:>9}  target",
        "row", "multiproc", "baseline", "ratio"
    );

    let mut t = Table {
        opts,
        rows: Vec::new(),
    };
    let mut info: Vec<String> = Vec::new();
    t.add(SPAWN_WAIT, "us", Target::AtMost(1.2), || {
        spawn_wait(&exe, &sz)
    });
    t.add(SPAWN_JOIN, "us", Target::AtMost(1.2), || {
        spawn_join(&exe, &sz)
    });
    t.add(ECHO, "MiB/s", Target::AtLeast(0.8), || echo_big(&exe, &sz));
    t.add(PING, "round trips/s", Target::AtLeast(0.8), || {
        ping_pong(&exe, &sz)
    });
    t.add(STARTUP, "us", Target::Info, || pool_startup(&exe, &sz));
    if cfg!(target_os = "linux") {
        t.add(RSS, "KiB", Target::Info, || idle_rss(&exe));
    } else {
        t.skip(RSS, "KiB", Target::Info, "Linux only");
    }
    let c1 = cpython.as_ref().ok().and_then(|c| c.best_chunk1);
    t.add(CHUNK1, "tasks/s", Target::AtLeast(10.0), || {
        pool_chunk1(&sz, c1)
    });
    let c1000 = cpython.as_ref().ok().and_then(|c| c.best_chunk1000);
    t.add(AUTO, "tasks/s", Target::AtLeast(2.0), || {
        pool_auto(&sz, c1000, &mut info)
    });
    t.add(ASYNC, "tasks/s", Target::AtLeast(0.8), || pool_async(&sz));
    t.add(BROADCAST, "GiB/s", Target::AtLeast(0.8), || {
        broadcast(&sz, opts.no_cpython, &mut info)
    });
    t.add(LOCK, "ns", Target::AtMost(0.5), || {
        lock_uncontended(opts.no_cpython, &mut info)
    });
    t.add(LOCK_CONTENDED, "ns", Target::Info, lock_contended);
    t.add(QUEUE, "items/s", Target::AtLeast(20.0), || {
        queue_row(quick, opts.no_cpython, &mut info)
    });
    t.add(QUEUE_BIG, "MiB/s", Target::AtLeast(0.8), || {
        queue_big(&exe, &sz, 1 << 20, None)
    });
    t.add(QUEUE_LARGE, "MiB/s", Target::AtLeast(0.8), || {
        queue_big(&exe, &sz, 4 << 20, Some(1 << 20))
    });
    t.add(QUEUE_4X4, "items/s", Target::Info, || queue_4x4(quick));
    t.add(REMOTE_CHUNK1, "tasks/s", Target::AtLeast(0.5), || {
        remote_pool(sz.chunk1_n, Some(1), &mut info)
    });
    t.add(REMOTE_AUTO, "tasks/s", Target::AtLeast(0.8), || {
        remote_pool(sz.auto_n, None, &mut info)
    });
    t.add(REMOTE_START, "us", Target::Info, || {
        remote_start(launcher_command(), sz.startup_rounds)
    });
    if opts.wants(REMOTE_SRUN) {
        match slurm_answers() {
            Ok(()) => t.add(REMOTE_SRUN, "us", Target::Info, || {
                remote_start(multiproc::Launcher::slurm(), sz.startup_rounds)
            }),
            Err(why) => t.skip(REMOTE_SRUN, "us", Target::Info, &why),
        }
    }
    let rows = t.rows;

    // Extra information under the table.
    println!();
    match &cpython {
        Ok(c) => {
            println!(
                "cpython {} (scripts/bench_cpython.py, Pool(2), best of {} runs; \
                 N = {} for chunksize=1, {} for chunksize=1000):",
                c.python, c.runs, c.n_chunk1, c.n_chunk1000
            );
            for (method, r1) in &c.chunk1 {
                let r1000 = c
                    .chunk1000
                    .iter()
                    .find(|(m, _)| m == method)
                    .map_or("n/a".to_string(), |(_, v)| format!("{v:.0}"));
                println!(
                    "  {method:<11} chunksize=1 {r1:>10.0} tasks/s   chunksize=1000 {r1000:>10} tasks/s"
                );
            }
            for (method, why) in &c.errors {
                println!("  {method:<11} failed: {why}");
            }
        }
        Err(why) => println!("cpython: n/a ({why})"),
    }
    for line in &info {
        println!("{line}");
    }
    println!("ratio = multiproc / baseline; \"MISS\" marks a row whose ratio misses its target.");

    if let Some(path) = &opts.json {
        match write_json(path, &rows) {
            Ok(()) => println!("rows written to {}", path.display()),
            Err(e) => {
                eprintln!("bench: cannot write {}: {e}", path.display());
                return rows.len() + 1;
            }
        }
    }
    rows.iter()
        .filter(|r| r.skipped.is_none() && r.result.is_err())
        .count()
}

// ---------------------------------------------------------------- timing

/// Runs `a` and `b` alternately `rounds` times; mean seconds of each.
fn interleaved(rounds: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let t = Instant::now();
        a();
        ta += t.elapsed();
        let t = Instant::now();
        b();
        tb += t.elapsed();
    }
    (
        ta.as_secs_f64() / rounds as f64,
        tb.as_secs_f64() / rounds as f64,
    )
}

fn us(secs: f64) -> f64 {
    secs * 1e6
}
