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

use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use multiproc::{Connection, Pipe, Pool, Popen, Process};

fn nothing(_: ()) {}

fn square(x: u64) -> u64 {
    x * x
}

fn echo_loop(conn: Connection) -> u64 {
    let mut n = 0;
    while let Ok(msg) = conn.recv_bytes() {
        if conn.send_bytes(&msg).is_err() {
            break;
        }
        n += 1;
    }
    n
}

/// The lock-contended row's child: says it is ready, waits for the start,
/// then takes the counter's lock `n` times.
fn contend(
    (counter, ready, go, n): (
        multiproc::Value<u64>,
        multiproc::Semaphore,
        multiproc::Event,
        u64,
    ),
) {
    ready.release().expect("ready");
    go.wait().expect("go");
    for _ in 0..n {
        *counter.lock().expect("lock") += 1;
    }
}

/// The broadcast row's child: sums the frozen block it maps.
fn sum_block(block: multiproc::Frozen<u64>) -> u64 {
    sum_u64(&block)
}

fn sum_u64(v: &[u64]) -> u64 {
    v.iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

/// What one pass of a thread costs: CPU time (ns) and minor page faults.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Cost {
    cpu_ns: u64,
    faults: u64,
}

impl Cost {
    /// This thread's totals so far (Linux: /proc/thread-self/schedstat and
    /// stat; zero elsewhere).
    fn now() -> Cost {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/thread-self/{f}"));
        let cpu_ns = read("schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        // minflt is the 10th field; the 2nd (comm) may hold spaces.
        let faults = read("stat")
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(7)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        Cost { cpu_ns, faults }
    }

    fn since(self, start: Cost) -> Cost {
        Cost {
            cpu_ns: self.cpu_ns.saturating_sub(start.cpu_ns),
            faults: self.faults.saturating_sub(start.faults),
        }
    }

    fn ms(self) -> f64 {
        self.cpu_ns as f64 / 1e6
    }
}

/// The broadcast row's cause, measured in one more (untimed) child: the
/// first pass over the block (its pages mapped as it goes), a second pass
/// (mapped), and dropping it (unmapping); each pass's sum.
fn sum_block_costs(block: multiproc::Frozen<u64>) -> ([Cost; 3], u64, u64) {
    let t0 = Cost::now();
    let first = std::hint::black_box(sum_u64(&block));
    let t1 = Cost::now();
    let second = std::hint::black_box(sum_u64(&block));
    let t2 = Cost::now();
    drop(block);
    let t3 = Cost::now();
    ([t1.since(t0), t2.since(t1), t3.since(t2)], first, second)
}

multiproc::entry!(
    nothing,
    square,
    echo_loop,
    sum_block,
    sum_block_costs,
    contend
);

const BIG: usize = 64 << 20;
/// Pool workers in the pool rows (the CPython script uses `Pool(2)` too).
const POOL_WORKERS: usize = 2;
/// Runs per pool throughput row; the best counts (as in the script).
const POOL_RUNS: usize = 3;
/// How long the CPython script may take before it is killed.
const CPYTHON_TIMEOUT: Duration = Duration::from_secs(300);

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

/// The rows measured so far, printed as they come.
struct Table<'a> {
    opts: &'a Opts,
    rows: Vec<Row>,
}

impl Table<'_> {
    fn add(
        &mut self,
        name: &'static str,
        unit: &'static str,
        target: Target,
        f: impl FnOnce() -> Result<Figures, String>,
    ) {
        if self.opts.wants(name) {
            let row = measure(name, unit, target, f);
            row.print();
            self.rows.push(row);
        }
    }

    /// A row that can't be measured on this platform.
    fn skip(&mut self, name: &'static str, unit: &'static str, target: Target, why: &str) {
        if self.opts.wants(name) {
            let row = Row {
                name,
                unit,
                target,
                result: Err(why.to_string()),
                skipped: Some(why.to_string()),
            };
            row.print();
            self.rows.push(row);
        }
    }
}

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

// ---------------------------------------------------------------- rows

#[derive(Clone, Copy)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
    Info,
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::AtMost(x) => format!("<= {x}x"),
            Target::AtLeast(x) => format!(">= {x}x"),
            Target::Info => "info".to_string(),
        }
    }

    /// Whether `ratio` meets the target; `None` for info rows.
    fn met(self, ratio: f64) -> Option<bool> {
        match self {
            Target::AtMost(x) => Some(ratio <= x),
            Target::AtLeast(x) => Some(ratio >= x),
            Target::Info => None,
        }
    }
}

/// Our figure and its baseline (`None`: not available in this run).
struct Figures {
    ours: f64,
    baseline: Option<f64>,
}

struct Row {
    name: &'static str,
    unit: &'static str,
    target: Target,
    result: Result<Figures, String>,
    /// Not measured on this platform, and why (not an error).
    skipped: Option<String>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let f = self.result.as_ref().ok()?;
        let b = f.baseline?;
        (b != 0.0).then(|| f.ours / b)
    }

    fn print(&self) {
        match &self.result {
            Ok(f) => {
                let base = f.baseline.map_or("n/a".to_string(), num);
                let (ratio, verdict) = match self.ratio() {
                    Some(r) => (
                        format!("{r:.2}x"),
                        match self.target.met(r) {
                            Some(false) => "  MISS",
                            _ => "",
                        },
                    ),
                    None => ("n/a".to_string(), ""),
                };
                println!(
                    "{:<44} {:>13} {:>13} {:>9}  {}{}",
                    self.name,
                    num(f.ours),
                    base,
                    ratio,
                    self.target.text(),
                    verdict
                );
            }
            Err(_) if self.skipped.is_some() => println!(
                "{:<44} {:>13} {:>13} {:>9}  {} (skipped: {})",
                self.name,
                "n/a",
                "n/a",
                "n/a",
                self.target.text(),
                self.skipped.as_deref().unwrap_or_default()
            ),
            Err(e) => println!("{:<44} error: {e}", self.name),
        }
    }
}

/// A number with precision that suits its size.
fn num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Runs one row's measurement; an error or a panic becomes that row's
/// error.
fn measure(
    name: &'static str,
    unit: &'static str,
    target: Target,
    f: impl FnOnce() -> Result<Figures, String>,
) -> Row {
    take_panic_message();
    let result = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(take_panic_message().unwrap_or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panicked".to_string())
        })),
    };
    Row {
        name,
        unit,
        target,
        result,
        skipped: None,
    }
}

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Panics inside a row are reported in its line of the table, not on
/// stderr in the middle of it.
fn install_panic_capture() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".to_string());
        let msg = match info.location() {
            Some(l) => format!("panicked at {l}: {msg}"),
            None => format!("panicked: {msg}"),
        };
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            slot.get_or_insert(msg);
        }
    }));
}

fn take_panic_message() -> Option<String> {
    PANIC_MESSAGE.lock().ok().and_then(|mut s| s.take())
}

fn write_json(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut out = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        let (ours, baseline, error) = match &r.result {
            Ok(f) => (json_num(Some(f.ours)), json_num(f.baseline), None),
            Err(e) => ("null".to_string(), "null".to_string(), Some(e)),
        };
        let ratio = r.ratio();
        let met = match ratio.and_then(|x| r.target.met(x)) {
            Some(m) => m.to_string(),
            None => "null".to_string(),
        };
        out.push_str(&format!(
            "  {{\"row\": {}, \"ours\": {ours}, \"baseline\": {baseline}, \"ratio\": {}, \
             \"unit\": {}, \"target\": {}, \"met\": {met}",
            json_str(r.name),
            json_num(ratio),
            json_str(r.unit),
            json_str(&r.target.text()),
        ));
        match (r.skipped.as_deref(), error) {
            (Some(why), _) => out.push_str(&format!(", \"skipped\": {}", json_str(why))),
            (None, Some(e)) => out.push_str(&format!(", \"error\": {}", json_str(e))),
            (None, None) => {}
        }
        out.push('}');
        if i + 1 < rows.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push_str("]\n");
    std::fs::write(path, out)
}

fn json_num(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => "null".to_string(),
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------- spawning

/// Bare `Command` spawn + wait of this binary, which exits at once.
fn bare_spawn_wait(exe: &Path) {
    let st = Command::new(exe)
        .arg("--exit")
        .status()
        .expect("bare spawn");
    assert!(st.success(), "bare child: {st}");
}

fn popen_spawn_wait() {
    let p = Popen::spawn(nothing, ()).expect("spawn");
    let st = p.wait(None).expect("wait").expect("status");
    assert!(st.success(), "worker: {st}");
}

fn spawn_wait(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
    // Warm up the page cache and the dynamic loader.
    for _ in 0..3 {
        bare_spawn_wait(exe);
        popen_spawn_wait();
    }
    let (ours, base) = interleaved(sz.rounds, popen_spawn_wait, || bare_spawn_wait(exe));
    Ok(Figures {
        ours: us(ours),
        baseline: Some(us(base)),
    })
}

fn spawn_join(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
    let process = || {
        Process::spawn(nothing, ())
            .expect("spawn")
            .join()
            .expect("join")
    };
    let (ours, base) = interleaved(sz.rounds, process, || bare_spawn_wait(exe));
    Ok(Figures {
        ours: us(ours),
        baseline: Some(us(base)),
    })
}

// ---------------------------------------------------------------- pipes

/// A bare child of this binary (`--raw-echo`) that copies stdin to
/// stdout; closed and reaped on drop.
struct RawEcho {
    child: Child,
    input: Option<ChildStdin>,
    output: ChildStdout,
}

impl RawEcho {
    fn start(exe: &Path) -> RawEcho {
        let mut child = Command::new(exe)
            .arg("--raw-echo")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("raw echo");
        let input = child.stdin.take();
        let output = child.stdout.take().expect("stdout");
        RawEcho {
            child,
            input,
            output,
        }
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        drop(self.input.take());
        let _ = self.child.wait();
    }
}

/// An `echo_loop` worker and our end of its connection; the worker sees
/// EOF and exits when `end` is dropped.
fn start_echo() -> (Connection, Process<u64>) {
    let (mine, theirs) = Pipe::duplex().expect("pipe");
    let echo = Process::spawn(echo_loop, theirs).expect("spawn echo");
    (mine, echo)
}

fn echo_big(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
    let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let (mine, mut echo) = start_echo();
    let mut raw = RawEcho::start(exe);
    let RawEcho { input, output, .. } = &mut raw;
    let raw_in = input.as_mut().expect("stdin");
    let (ours, base) = interleaved(
        sz.big_rounds,
        || {
            std::thread::scope(|s| {
                s.spawn(|| mine.send_bytes(&data).expect("send"));
                let back = mine.recv_bytes().expect("recv");
                assert_eq!(back.len(), data.len());
            })
        },
        || {
            std::thread::scope(|s| {
                s.spawn(|| raw_in.write_all(&data).expect("raw write"));
                let mut back = vec![0u8; data.len()];
                output.read_exact(&mut back).expect("raw read");
            })
        },
    );
    drop(mine);
    echo.join().map_err(|e| format!("echo worker: {e}"))?;
    let mib = |d: f64| (2 * BIG) as f64 / d / (1 << 20) as f64;
    Ok(Figures {
        ours: mib(ours),
        baseline: Some(mib(base)),
    })
}

fn ping_pong(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
    let n = sz.ping_n;
    let (mine, mut echo) = start_echo();
    let mut raw = RawEcho::start(exe);
    let RawEcho { input, output, .. } = &mut raw;
    let raw_in = input.as_mut().expect("stdin");
    let (ours, base) = interleaved(
        10,
        || {
            for i in 0..n as u64 {
                mine.send_bytes(&i.to_le_bytes()).expect("send");
                let back = mine.recv_bytes().expect("recv");
                debug_assert_eq!(back.len(), 8);
            }
        },
        || {
            let mut buf = [0u8; 8];
            for i in 0..n as u64 {
                raw_in.write_all(&i.to_le_bytes()).expect("raw write");
                output.read_exact(&mut buf).expect("raw read");
            }
        },
    );
    drop(mine);
    echo.join().map_err(|e| format!("echo worker: {e}"))?;
    let rate = |d: f64| n as f64 / d;
    Ok(Figures {
        ours: rate(ours),
        baseline: Some(rate(base)),
    })
}

/// Copies stdin to stdout until EOF, flushing after every read: the raw
/// pipe baseline.
fn raw_echo() {
    let mut inp = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match inp.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => {
                if out.write_all(&buf[..k]).and_then(|_| out.flush()).is_err() {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------- pool

fn pool_startup(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
    let new_pool = || Pool::new(POOL_WORKERS).map_err(|e| format!("Pool::new: {e}"));
    drop(new_pool()?); // warm-up, untimed
    let (mut ours, mut base) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..sz.startup_rounds {
        let t = Instant::now();
        let pool = new_pool()?;
        ours += t.elapsed();
        // Dropping the pool (kill, reap, join its threads) is not timed.
        drop(pool);
        let t = Instant::now();
        for _ in 0..POOL_WORKERS {
            bare_spawn_wait(exe);
        }
        base += t.elapsed();
    }
    let mean = |d: Duration| us(d.as_secs_f64() / sz.startup_rounds as f64);
    Ok(Figures {
        ours: mean(ours),
        baseline: Some(mean(base)),
    })
}

/// Linux: `VmRSS` of a ready, idle pool worker vs a bare child of this
/// binary blocked reading stdin.
#[cfg(target_os = "linux")]
fn idle_rss(exe: &Path) -> Result<Figures, String> {
    use std::io::{BufRead, BufReader};

    let pool = Pool::new(POOL_WORKERS).map_err(|e| format!("Pool::new: {e}"))?;
    // Let the workers settle into their wait for work.
    std::thread::sleep(Duration::from_millis(100));
    let pids = pool.pids();
    if pids.is_empty() {
        return Err("the pool reports no ready worker".into());
    }
    let mut ours = 0.0;
    for &pid in &pids {
        ours += vm_rss_kib(pid)? as f64;
    }
    ours /= pids.len() as f64;

    let mut child = Command::new(exe)
        .arg("--block-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("bare child: {e}"))?;
    let input = child.stdin.take();
    let mut line = String::new();
    let ready = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    std::thread::sleep(Duration::from_millis(100));
    let base = match ready {
        Ok(_) if line.trim() == "ready" => vm_rss_kib(child.id()),
        Ok(_) => Err(format!("bare child said {line:?}, not \"ready\"")),
        Err(e) => Err(format!("bare child: {e}")),
    };
    drop(input);
    let _ = child.wait();
    Ok(Figures {
        ours,
        baseline: Some(base? as f64),
    })
}

#[cfg(not(target_os = "linux"))]
fn idle_rss(_exe: &Path) -> Result<Figures, String> {
    Err("Linux only (reads /proc/<pid>/status)".into()) // not called: see `run`
}

/// The resident set size of `pid` in KiB, from `/proc/<pid>/status`.
#[cfg(target_os = "linux")]
fn vm_rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path}: no VmRSS line"))
}

/// The bare child of the RSS row: says it is ready, then blocks reading
/// stdin until EOF.
fn block_stdin() {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "ready").and_then(|_| out.flush()).is_err() {
        return;
    }
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
}

/// A started pool whose workers have run `square` (so that the first
/// timed run doesn't pay for page faults or the first chunk-size guess).
fn warm_pool() -> Result<Pool, String> {
    let pool = Pool::new(POOL_WORKERS).map_err(|e| format!("Pool::new: {e}"))?;
    let out: Vec<u64> = pool
        .map(square, 0..10_000u64)
        .map_err(|e| format!("warm-up map: {e}"))?;
    check_squares(&out, 10_000)?;
    Ok(pool)
}

fn check_squares(out: &[u64], n: u64) -> Result<(), String> {
    if out.len() as u64 != n {
        return Err(format!("{} results for {n} tasks", out.len()));
    }
    if let Some(i) = out
        .iter()
        .enumerate()
        .position(|(i, &v)| v != square(i as u64))
    {
        return Err(format!(
            "result {i} is {}, not {}",
            out[i],
            square(i as u64)
        ));
    }
    Ok(())
}

/// The best of `POOL_RUNS` runs of `f` over `n` tasks, in tasks/s.
fn best_rate(n: u64, mut f: impl FnMut() -> multiproc::Result<Vec<u64>>) -> Result<f64, String> {
    let mut best: f64 = 0.0;
    for _ in 0..POOL_RUNS {
        let t = Instant::now();
        let out = f().map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        check_squares(&out, n)?;
        best = best.max(n as f64 / secs);
    }
    Ok(best)
}

fn pool_chunk1(sz: &Sizes, cpython: Option<f64>) -> Result<Figures, String> {
    let pool = warm_pool()?;
    let n = sz.chunk1_n;
    let ours = best_rate(n, || pool.imap(square, 0..n).chunksize(1).collect())?;
    Ok(Figures {
        ours,
        baseline: cpython,
    })
}

fn pool_auto(sz: &Sizes, cpython: Option<f64>, info: &mut Vec<String>) -> Result<Figures, String> {
    let pool = warm_pool()?;
    let n = sz.auto_n;
    let ours = best_rate(n, || pool.map(square, 0..n))?;
    #[cfg(target_os = "linux")]
    {
        let rss: Vec<String> = pool
            .pids()
            .iter()
            .map(|&pid| vm_rss_kib(pid).map_or_else(|e| e, |k| format!("{k} KiB")))
            .collect();
        info.push(format!(
            "pool worker RSS after the auto-chunk runs ({POOL_RUNS} x {n} tasks): {}",
            rss.join(", ")
        ));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = info;
    Ok(Figures {
        ours,
        baseline: cpython,
    })
}

/// `submit` + await of `async_n` tasks on a current-thread runtime vs a
/// blocking `imap_unordered` with chunksize 1, alternating; the best rate
/// of each.
fn pool_async(sz: &Sizes) -> Result<Figures, String> {
    let pool = warm_pool()?;
    let n = sz.async_n;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let (mut ours, mut baseline) = (0f64, 0f64);
    for _ in 0..POOL_RUNS {
        let t = Instant::now();
        let out: Vec<u64> = rt
            .block_on(futures_util::future::join_all(
                (0..n).map(|i| pool.submit(square, i)),
            ))
            .into_iter()
            .collect::<multiproc::Result<_>>()
            .map_err(|e| e.to_string())?;
        ours = ours.max(n as f64 / t.elapsed().as_secs_f64());
        check_squares(&out, n)?;

        let t = Instant::now();
        let mut out: Vec<u64> = pool
            .imap_unordered(square, 0..n)
            .chunksize(1)
            .collect::<multiproc::Result<_>>()
            .map_err(|e| e.to_string())?;
        baseline = baseline.max(n as f64 / t.elapsed().as_secs_f64());
        out.sort_unstable();
        check_squares(&out, n)?;
    }
    Ok(Figures {
        ours,
        baseline: Some(baseline),
    })
}

// ---------------------------------------------------------------- CPython

/// What `scripts/bench_cpython.py` reported.
struct Cpython {
    python: String,
    runs: u64,
    n_chunk1: u64,
    n_chunk1000: u64,
    /// tasks/s per start method, in the script's order.
    chunk1: Vec<(String, f64)>,
    chunk1000: Vec<(String, f64)>,
    best_chunk1: Option<f64>,
    best_chunk1000: Option<f64>,
    errors: Vec<(String, String)>,
}

/// Runs `scripts/bench_cpython.py` with `python3` from `PATH`; `Err`
/// says why there are no CPython figures.
fn cpython_baseline(quick: bool, n_chunk1: u64, n_chunk1000: u64) -> Result<Cpython, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_cpython.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg("--n-chunk1")
        .arg(n_chunk1.to_string())
        .arg("--n-chunk1000")
        .arg(n_chunk1000.to_string());
    if quick {
        cmd.arg("--quick");
    }
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("python3 is not on PATH".into())
        }
        Err(e) => return Err(format!("cannot run python3: {e}")),
    };
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let until = Instant::now() + CPYTHON_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} took over {} s and was killed",
                    script.display(),
                    CPYTHON_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for python3: {e}")),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        let last = err.lines().last().unwrap_or("").trim().to_string();
        return Err(format!("{} failed ({status}): {last}", script.display()));
    }
    let json: serde_json::Value =
        serde_json::from_str(out.trim()).map_err(|e| format!("bad JSON from the script: {e}"))?;
    // `preserve_order` keeps the script's order (spawn, forkserver, fork).
    let rates = |key: &str| -> Vec<(String, f64)> {
        json.get(key)
            .and_then(serde_json::Value::as_object)
            .map(|kv| {
                kv.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let errors = json
        .get("errors")
        .and_then(serde_json::Value::as_object)
        .map(|kv| {
            kv.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let num = |key: &str| json.get(key).and_then(serde_json::Value::as_f64);
    Ok(Cpython {
        python: json
            .get("python")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
            .to_string(),
        runs: num("runs").unwrap_or(0.0) as u64,
        n_chunk1: num("n_chunk1").unwrap_or(0.0) as u64,
        n_chunk1000: num("n_chunk1000").unwrap_or(0.0) as u64,
        chunk1: rates("chunk1"),
        chunk1000: rates("chunk1000"),
        best_chunk1: num("best_chunk1"),
        best_chunk1000: num("best_chunk1000"),
        errors,
    })
}

// ---------------------------------------------------------------- broadcast

/// The broadcast row: a child spawned with a 1 GiB frozen block sums it
/// (spawn to join) vs the parent summing its own mapping, GiB/s from the
/// mean of `big_rounds` interleaved runs. Under the table: which pages the
/// block got (Linux); where they were huge pages, the same measured with
/// base pages in the same run; where they were not, how to reserve them;
/// the cause line; CPython's figure.
fn broadcast(sz: &Sizes, no_cpython: bool, info: &mut Vec<String>) -> Result<Figures, String> {
    let (child, parent, page_kb, thp_kb) = broadcast_rounds(sz, Some(&mut *info))?;
    if cfg!(target_os = "linux") {
        if thp_kb > 0 {
            info.push(format!(
                "broadcast: the block got {page_kb} kB pages, {thp_kb} kB of them mapped as \
                 transparent huge pages (shmem THP: {})",
                shmem_thp()
            ));
        } else if page_kb > 4 {
            multiproc::test_hooks::set_huge_pages(false);
            let base = broadcast_rounds(sz, None);
            multiproc::test_hooks::set_huge_pages(true);
            let (c, p, kb, _) = base?;
            info.push(format!(
                "broadcast: the block got {page_kb} kB pages (hugetlb); the same row with \
                 {kb} kB pages, same run: child {:.2} vs parent {:.2} GiB/s, ratio {:.2}x",
                1.0 / c,
                1.0 / p,
                p / c
            ));
        } else {
            let free = meminfo("HugePages_Free:").unwrap_or(0);
            let total = meminfo("HugePages_Total:").unwrap_or(0);
            info.push(format!(
                "broadcast: the block got {page_kb} kB pages: huge pages were not available \
                 ({free} of {total} 2 MiB pages free, 512 needed); as root, \
                 `echo 600 > /proc/sys/vm/nr_hugepages` reserves 1.2 GiB of them \
                 (`vm.nr_hugepages = 600` in /etc/sysctl.d/ keeps it across boots)"
            ));
        }
    }
    let line = if no_cpython {
        "broadcast: cpython n/a (not run: --no-cpython)".to_string()
    } else {
        match cpython_broadcast() {
            Ok((rate, python)) => format!(
                "broadcast: cpython {python} shared_memory + numpy, a spawned Process sums 1 GiB: \
                 {rate:.2} GiB/s (including the child's start)"
            ),
            Err(why) => format!("broadcast: cpython n/a ({why})"),
        }
    };
    info.push(line);
    Ok(Figures {
        ours: 1.0 / child,
        baseline: Some(1.0 / parent),
    })
}

/// One measurement of the broadcast row with a new 1 GiB block: seconds
/// per GiB of the child and of the parent, the page size (kB) of the
/// block's mapping here (Linux; 4 elsewhere) and how much of it (kB) is
/// mapped as transparent huge pages (after the parent's sums). With
/// `cause`, the cause line (Linux) goes there.
fn broadcast_rounds(
    sz: &Sizes,
    cause: Option<&mut Vec<String>>,
) -> Result<(f64, f64, u64, u64), String> {
    const GIB: usize = 1 << 30;
    let mut block = multiproc::SharedMut::<u64>::zeroed(GIB / 8).map_err(|e| e.to_string())?;
    for (i, x) in block.iter_mut().enumerate() {
        *x = i as u64;
    }
    let block = block.freeze().map_err(|e| e.to_string())?;
    let page_kb = smaps_kb(block.as_ptr() as usize, "KernelPageSize:").unwrap_or(4);
    let expected = sum_u64(&block);
    let mut bad = None;
    let (child, parent) = interleaved(
        sz.big_rounds,
        || match Process::spawn(sum_block, &block).and_then(|mut p| p.join()) {
            Ok(got) if got == expected => {}
            Ok(got) => bad = Some(format!("the child summed {got}, not {expected}")),
            Err(e) => bad = Some(e.to_string()),
        },
        || assert_eq!(std::hint::black_box(sum_u64(&block)), expected),
    );
    if let Some(why) = bad {
        return Err(why);
    }
    let thp_kb = smaps_kb(block.as_ptr() as usize, "ShmemPmdMapped:").unwrap_or(0);
    if let (Some(info), true) = (cause, cfg!(target_os = "linux")) {
        info.push(broadcast_cause(&block, expected, page_kb, thp_kb)?);
    }
    Ok((child, parent, page_kb, thp_kb))
}

/// Linux: the shared-memory transparent huge page setting.
fn shmem_thp() -> String {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .ok()
        .and_then(|s| Some(s.split_once('[')?.1.split_once(']')?.0.to_string()))
        .unwrap_or_else(|| "n/a".into())
}

/// Linux: the `field` (kB) of this process's mapping that holds `addr`
/// (/proc/self/smaps: `KernelPageSize:`, `ShmemPmdMapped:`); `None`
/// elsewhere.
fn smaps_kb(addr: usize, field: &str) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split_once(' ').and_then(|(r, _)| r.split_once('-'));
        if let Some((lo, hi)) = range {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= addr && addr < hi;
                continue;
            }
        }
        if inside && line.starts_with(field) {
            return line.split_whitespace().nth(1)?.parse().ok();
        }
    }
    None
}

/// A field of /proc/meminfo (a count, or kB); `None` where there is none.
fn meminfo(field: &str) -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = m.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Linux: why the child is slower than the parent, measured (CPU time, not
/// wall clock, so other load doesn't blur it): the parent's sum of its
/// mapped block against one more child's passes (see `sum_block_costs`),
/// the block's page size (`page_kb`) and, for base pages, the
/// shared-memory transparent huge page setting.
fn broadcast_cause(
    block: &multiproc::Frozen<u64>,
    expected: u64,
    page_kb: u64,
    thp_kb: u64,
) -> Result<String, String> {
    let t0 = Cost::now();
    let sum = std::hint::black_box(sum_u64(block));
    let parent = Cost::now().since(t0);
    if sum != expected {
        return Err(format!("the parent summed {sum}, not {expected}"));
    }
    let ([first, second, unmap], a, b) = Process::spawn(sum_block_costs, block)
        .and_then(|mut p| p.join())
        .map_err(|e| e.to_string())?;
    if (a, b) != (expected, expected) {
        return Err(format!("the child summed {a} and {b}, not {expected}"));
    }
    let pages = block.len() * 8 / (page_kb as usize * 1024);
    let kind = match (page_kb, thp_kb) {
        (4, 0) => format!("shmem THP: {}", shmem_thp()),
        (4, _) => format!("{thp_kb} kB as THP, shmem THP: {}", shmem_thp()),
        _ => "hugetlb".to_string(),
    };
    Ok(format!(
        "broadcast, why (CPU ms per /proc/thread-self/schedstat, one more child): parent sum \
         {:.0}; child: first pass {:.0} with {} page faults mapping {pages} {page_kb}-KiB pages \
         ({kind}), second pass {:.0}, unmap {:.0}; ratio in CPU {:.2}x",
        parent.ms(),
        first.ms(),
        first.faults,
        second.ms(),
        unmap.ms(),
        parent.ms() / (first.ms() + unmap.ms()),
    ))
}

/// `scripts/bench_cpython.py --broadcast`: (GiB/s, python version).
fn cpython_broadcast() -> Result<(f64, String), String> {
    let json = cpython_json("--broadcast")?;
    let rate = json
        .get("broadcast_gib_s")
        .and_then(serde_json::Value::as_f64)
        .ok_or("no broadcast_gib_s in the script's JSON")?;
    let python = json
        .get("python")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    Ok((rate, python.to_string()))
}

// ---------------------------------------------------------------- locks

/// Acquisitions per lock run.
const LOCK_N: u64 = 1_000_000;

/// The lock row: ns per uncontended `Lock` acquire + release (best of 3
/// runs of 1 M) vs CPython's `multiprocessing.Lock`, measured by the
/// script in the same run.
fn lock_uncontended(no_cpython: bool, info: &mut Vec<String>) -> Result<Figures, String> {
    let lock = multiproc::Lock::new().map_err(|e| e.to_string())?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..LOCK_N {
            drop(std::hint::black_box(
                lock.acquire().map_err(|e| e.to_string())?,
            ));
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / LOCK_N as f64);
    }
    let baseline = if no_cpython {
        info.push("lock: cpython n/a (not run: --no-cpython)".into());
        None
    } else {
        match cpython_json("--lock").and_then(|j| {
            let ns = j
                .get("lock_ns")
                .and_then(serde_json::Value::as_f64)
                .ok_or("no lock_ns in the script's JSON")?;
            let python = j
                .get("python")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            Ok((ns, python.to_string()))
        }) {
            Ok((ns, python)) => {
                info.push(format!(
                    "lock: baseline is cpython {python} multiprocessing.Lock acquire + release ({ns:.0} ns, best of 3 x 1 M)"
                ));
                Some(ns)
            }
            Err(why) => {
                info.push(format!("lock: cpython n/a ({why})"));
                None
            }
        }
    };
    Ok(Figures {
        ours: best,
        baseline,
    })
}

/// The lock-contended row: 2 processes x 500 000 acquisitions of a
/// `Value<u64>`'s lock (timed from the start signal to both joined), ns
/// per acquisition, vs a `std::sync::Mutex<u64>` between 2 threads.
fn lock_contended() -> Result<Figures, String> {
    let err = |e: multiproc::Error| e.to_string();
    let half = LOCK_N / 2;
    let args = (
        multiproc::Value::new(0u64).map_err(err)?,
        multiproc::Semaphore::new(0).map_err(err)?,
        multiproc::Event::new().map_err(err)?,
        half,
    );
    let mut ps = Vec::new();
    for _ in 0..2 {
        ps.push(Process::<()>::spawn(contend, &args).map_err(err)?);
    }
    for _ in 0..2 {
        args.1.acquire().map_err(err)?.forget();
    }
    let t = Instant::now();
    args.2.set().map_err(err)?;
    for p in &mut ps {
        p.join().map_err(err)?;
    }
    let ours = t.elapsed().as_secs_f64() * 1e9 / LOCK_N as f64;
    let total = args.0.get().map_err(err)?;
    if total != LOCK_N {
        return Err(format!("the counter reads {total}, not {LOCK_N}"));
    }

    let m = std::sync::Arc::new(Mutex::new(0u64));
    let t = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = std::sync::Arc::clone(&m);
            std::thread::spawn(move || {
                for _ in 0..half {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for th in threads {
        th.join().map_err(|_| "a thread panicked".to_string())?;
    }
    let threads = t.elapsed().as_secs_f64() * 1e9 / LOCK_N as f64;
    Ok(Figures {
        ours,
        baseline: Some(threads),
    })
}

/// `scripts/bench_cpython.py <mode>`'s JSON object.
fn cpython_json(mode: &str) -> Result<serde_json::Value, String> {
    cpython_json_args(&[mode])
}

/// `scripts/bench_cpython.py <args>`'s JSON object; `Err` with the reason
/// (no python3, bad output, or the script's own `error`).
fn cpython_json_args(args: &[&str]) -> Result<serde_json::Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_cpython.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "python3 is not on PATH".to_string(),
            _ => format!("cannot run python3: {e}"),
        })?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        let err = String::from_utf8_lossy(&out.stderr);
        format!(
            "bad JSON from the script ({e}): {}",
            err.lines().last().unwrap_or("")
        )
    })?;
    if let Some(why) = json.get("error").and_then(serde_json::Value::as_str) {
        return Err(why.to_string());
    }
    Ok(json)
}

// ---------------------------------------------------------------- queue

/// The queue row's producer: puts `0..n`.
fn queue_produce((q, n): (multiproc::Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).expect("put");
    }
}

/// The big-item rows' producer: puts `n` items of `len` bytes.
fn queue_produce_big((q, n, len): (multiproc::Queue<serde_bytes::ByteBuf>, u64, usize)) {
    let item = serde_bytes::ByteBuf::from(vec![7u8; len]);
    for _ in 0..n {
        q.put(&item).expect("put");
    }
}

/// The 4 x 4 row's consumer: takes items until the queue is closed.
fn queue_consume(q: multiproc::Queue<u64>) -> u64 {
    let mut n = 0;
    while q.get().is_ok() {
        n += 1;
    }
    n
}

multiproc::entry!(queue_produce, queue_produce_big, queue_consume);

/// [`BIG`] bytes in items of `len` bytes from a child, through a queue
/// whose ring is `ring` bytes (the default if `None`), vs the same bytes
/// streamed through raw pipes.
fn queue_big(exe: &Path, sz: &Sizes, len: usize, ring: Option<usize>) -> Result<Figures, String> {
    const MIB: usize = 1 << 20;
    let n = (BIG / len) as u64;
    let data: Vec<u8> = vec![7u8; BIG];
    let mut raw = RawEcho::start(exe);
    let RawEcho { input, output, .. } = &mut raw;
    let raw_in = input.as_mut().expect("stdin");
    let mut bad = None;
    let (ours, base) = interleaved(
        sz.big_rounds,
        || {
            let run = || -> multiproc::Result<()> {
                let mut b = multiproc::Queue::<serde_bytes::ByteBuf>::builder();
                if let Some(ring) = ring {
                    b.max_bytes(ring);
                }
                let args = (b.build()?, n, len);
                let mut child = Process::spawn(queue_produce_big, &args)?;
                for _ in 0..n {
                    let item = args.0.get()?;
                    assert_eq!(item.len(), len);
                }
                child.join()
            };
            if let Err(e) = run() {
                bad = Some(e.to_string());
            }
        },
        || {
            std::thread::scope(|s| {
                s.spawn(|| raw_in.write_all(&data).expect("raw write"));
                let mut back = vec![0u8; data.len()];
                output.read_exact(&mut back).expect("raw read");
            })
        },
    );
    if let Some(why) = bad {
        return Err(why);
    }
    let mib = |d: f64| BIG as f64 / d / MIB as f64;
    Ok(Figures {
        ours: mib(ours),
        baseline: Some(mib(base)),
    })
}

/// 4 producer processes and 4 consumer processes on one queue: items/s
/// from the first spawn to the last consumer's end, the best of 3.
fn queue_4x4(quick: bool) -> Result<Figures, String> {
    let per: u64 = if quick { 100_000 } else { 500_000 };
    let mut best = 0.0f64;
    for _ in 0..POOL_RUNS {
        let run = || -> multiproc::Result<f64> {
            let args = (multiproc::Queue::<u64>::new()?, per);
            let t = Instant::now();
            let mut consumers = (0..4)
                .map(|_| Process::spawn(queue_consume, &args.0))
                .collect::<multiproc::Result<Vec<Process<u64>>>>()?;
            let producers = (0..4)
                .map(|_| Process::<()>::spawn(queue_produce, &args))
                .collect::<multiproc::Result<Vec<_>>>()?;
            for mut p in producers {
                p.join()?;
            }
            args.0.close()?;
            let mut got = 0;
            for c in &mut consumers {
                got += c.join()?;
            }
            let dt = t.elapsed().as_secs_f64();
            assert_eq!(got, 4 * per);
            Ok(got as f64 / dt)
        };
        best = best.max(run().map_err(|e| e.to_string())?);
    }
    Ok(Figures {
        ours: best,
        baseline: None,
    })
}

/// A child puts `n` items, the parent gets them: the best of 3 runs of
/// items/s from the first item received to the last; the baseline is
/// CPython's `multiprocessing.Queue` measured the same way.
fn queue_row(quick: bool, no_cpython: bool, info: &mut Vec<String>) -> Result<Figures, String> {
    let n: u64 = if quick { 200_000 } else { 2_000_000 };
    let mut best = 0.0f64;
    for _ in 0..POOL_RUNS {
        let args = (
            multiproc::Queue::<u64>::new().map_err(|e| e.to_string())?,
            n,
        );
        let mut child = Process::spawn(queue_produce, &args).map_err(|e| e.to_string())?;
        let q = &args.0;
        let mut sum = q.get().map_err(|e| e.to_string())?;
        let t = Instant::now();
        for _ in 1..n {
            sum = sum.wrapping_add(q.get().map_err(|e| e.to_string())?);
        }
        let dt = t.elapsed().as_secs_f64();
        child.join().map_err(|e| e.to_string())?;
        if sum != n * (n - 1) / 2 {
            return Err(format!(
                "the items summed to {sum}, not {}",
                n * (n - 1) / 2
            ));
        }
        best = best.max((n - 1) as f64 / dt);
    }
    let baseline = if no_cpython {
        info.push("queue: cpython n/a (not run: --no-cpython)".into());
        None
    } else {
        match cpython_queue(if quick { 50_000 } else { 200_000 }) {
            Ok((q, simple, python)) => {
                info.push(format!(
                    "queue: cpython {python} (scripts/bench_cpython.py --queue, best of 3): \
                     Queue {q:.0} items/s, SimpleQueue {simple:.0} items/s; \
                     multiproc / SimpleQueue = {:.1} (target 10)",
                    best / simple
                ));
                Some(q)
            }
            Err(why) => {
                info.push(format!("queue: cpython n/a ({why})"));
                None
            }
        }
    };
    Ok(Figures {
        ours: best,
        baseline,
    })
}

/// `scripts/bench_cpython.py --queue N`: (Queue items/s, SimpleQueue
/// items/s, python version).
fn cpython_queue(n: u64) -> Result<(f64, f64, String), String> {
    let json = cpython_json_args(&["--queue", &n.to_string()])?;
    let num = |k: &str| {
        json.get(k)
            .and_then(serde_json::Value::as_f64)
            .ok_or(format!("no {k} in the script's JSON"))
    };
    let python = json
        .get("python")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    Ok((
        num("queue_items_s")?,
        num("simple_queue_items_s")?,
        python.to_string(),
    ))
}

// ---------------------------------------------------------------- remote

/// The launcher command of the remote rows: the worker started by `sh -c
/// 'exec …'` (Windows has no `sh`: the worker program itself).
fn launcher_command() -> multiproc::Launcher {
    if cfg!(unix) {
        multiproc::Launcher::command(["sh", "-c", "exec \"$0\"", "{exe}"])
    } else {
        multiproc::Launcher::command(["{exe}"])
    }
}

/// A pool of `workers` started by `launcher`.
fn launched_pool(launcher: multiproc::Launcher, workers: usize) -> Result<Pool, String> {
    Pool::builder()
        .workers(workers)
        .launcher(launcher)
        .build()
        .map_err(|e| format!("launched pool: {e}"))
}

/// `n` tiny tasks (`chunksize` 1, or automatic chunking) on a pool of
/// workers started by the launcher command vs the local pool; the two
/// alternate, best of `POOL_RUNS` runs each. On Linux, where the time
/// goes: the CPU time of this process and the pool's workers per task,
/// user and system, over all runs (an info line).
fn remote_pool(
    n: u64,
    chunksize: Option<usize>,
    info: &mut Vec<String>,
) -> Result<Figures, String> {
    let local = warm_pool()?;
    let remote = launched_pool(launcher_command(), POOL_WORKERS)?;
    check_squares(
        &remote
            .map(square, 0..10_000u64)
            .map_err(|e| format!("warm-up map: {e}"))?,
        10_000,
    )?;
    let run = |pool: &Pool| -> multiproc::Result<Vec<u64>> {
        match chunksize {
            Some(c) => pool.imap(square, 0..n).chunksize(c).collect(),
            None => pool.map(square, 0..n),
        }
    };
    let (mut ours, mut base) = (0f64, 0f64);
    let (mut cpu_ours, mut cpu_base) = ([0f64; 2], [0f64; 2]);
    for _ in 0..POOL_RUNS {
        let before = cpu_secs(&remote);
        ours = ours.max(rate_of(n, || run(&remote))?);
        add_cpu(&mut cpu_ours, before, cpu_secs(&remote));
        let before = cpu_secs(&local);
        base = base.max(rate_of(n, || run(&local))?);
        add_cpu(&mut cpu_base, before, cpu_secs(&local));
    }
    if cfg!(target_os = "linux") {
        let per_task = |c: [f64; 2]| {
            let us = |s: f64| s * 1e6 / (n * POOL_RUNS as u64) as f64;
            format!(
                "{:.2} us (user {:.2}, system {:.2})",
                us(c[0] + c[1]),
                us(c[0]),
                us(c[1])
            )
        };
        info.push(format!(
            "remote pool, {}: CPU per task, this process + workers: over TCP {}, local {}",
            chunksize.map_or("auto chunks".to_string(), |c| format!("chunksize {c}")),
            per_task(cpu_ours),
            per_task(cpu_base)
        ));
    }
    Ok(Figures {
        ours,
        baseline: Some(base),
    })
}

/// User and system CPU seconds so far of this process and of `pool`'s
/// workers (Linux: `/proc/PID/stat`; zero elsewhere).
fn cpu_secs(pool: &Pool) -> [f64; 2] {
    let mut total = [0f64; 2];
    let pids = std::iter::once(std::process::id()).chain(pool.pids());
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // utime and stime are the 14th and 15th fields; the 2nd (comm)
        // may hold spaces. In clock ticks, 100 a second on Linux.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        for (i, f) in [11, 12].into_iter().enumerate() {
            total[i] += fields
                .get(f)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 100.0;
        }
    }
    total
}

fn add_cpu(sum: &mut [f64; 2], before: [f64; 2], after: [f64; 2]) {
    for i in 0..2 {
        sum[i] += after[i] - before[i];
    }
}

/// One run of `f` over `n` tasks, checked, in tasks/s.
fn rate_of(n: u64, f: impl FnOnce() -> multiproc::Result<Vec<u64>>) -> Result<f64, String> {
    let t = Instant::now();
    let out = f().map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    check_squares(&out, n)?;
    Ok(n as f64 / secs)
}

/// A pool of one worker through `launcher`, until it ran a task, vs the
/// same with a local worker; alternating, the mean of `rounds` each. The
/// pools' ends are not timed: each is closed and joined (its worker exits
/// on its own) before the next start — a dropped pool kills its srun, and
/// Slurm then takes seconds to clean up the killed job, which a next srun
/// waits for.
fn remote_start(launcher: multiproc::Launcher, rounds: usize) -> Result<Figures, String> {
    let end = |pool: Pool| -> Result<(), String> {
        pool.close();
        pool.join().map_err(|e| format!("join: {e}"))
    };
    let start = |launcher: multiproc::Launcher| -> Result<(Duration, Pool), String> {
        let t = Instant::now();
        let pool = launched_pool(launcher, 1)?;
        let r = pool
            .submit(square, 3u64)
            .get()
            .map_err(|e| format!("first task: {e}"))?;
        let took = t.elapsed();
        if r != 9 {
            return Err(format!("square(3) = {r}"));
        }
        Ok((took, pool))
    };
    // Warm-up, untimed.
    end(start(launcher.clone())?.1)?;
    end(start(multiproc::Launcher::local())?.1)?;
    let (mut ours, mut base) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let (t, pool) = start(launcher.clone())?;
        ours += t;
        end(pool)?;
        let (t, pool) = start(multiproc::Launcher::local())?;
        base += t;
        end(pool)?;
    }
    let mean = |d: Duration| us(d.as_secs_f64() / rounds as f64);
    Ok(Figures {
        ours: mean(ours),
        baseline: Some(mean(base)),
    })
}

/// `Ok` when `srun` is on `PATH` and the cluster answers (`sinfo` lists a
/// node that is up, within 10 s); else why not.
fn slurm_answers() -> Result<(), String> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("srun").is_file()));
    if !on_path {
        return Err("srun is not on PATH".into());
    }
    let mut child = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sinfo: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while child
        .try_wait()
        .map_err(|e| format!("sinfo: {e}"))?
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the cluster does not answer (sinfo still running after 10 s)".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("sinfo: {e}"))?;
    let states = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "sinfo failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // Up: any state but down, drained, failed or not responding (`*`).
    let up = |s: &str| {
        !s.ends_with('*')
            && !["down", "drain", "fail", "unk", "no_resp", "future"]
                .iter()
                .any(|d| s.starts_with(d))
    };
    if !states.split_whitespace().any(up) {
        return Err(format!(
            "no node of the cluster is up (sinfo: {})",
            states.trim()
        ));
    }
    Ok(())
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
