//! `Pool`: long-lived workers that run many tasks, with pipelining,
//! automatic chunking, crash recovery and timeouts.
//!
//! # How it works
//!
//! Each worker is a [`Popen`] running an internal loop over a duplex
//! [`Connection`]. The parent keeps several chunks of tasks in flight per
//! worker and packs many chunks into one write; the worker answers each
//! chunk with one message as soon as that chunk is done. Because a worker
//! runs its chunks in order and reports each before starting the next, the
//! parent always knows which chunk a worker was running when it died: that
//! chunk's tasks fail ([`Error::is_worker_died`]), the chunks queued behind
//! it are handed to other workers, and the dead worker is replaced.
//!
//! Per worker, one thread reads results and one writes frames, so neither
//! side can block the other. Callers only wait for their own results.
//!
//! The reader learns that its worker died from the worker's pidfd (Linux
//! 5.3+) or process handle (Windows), not only from the end of its pipe:
//! a task that started a child holding the worker's end of the channel (a
//! forked child inherits it) can't delay the failure until that child
//! exits. (Without a pidfd, on macOS and older Linux, the end of the pipe
//! is all there is.)
//!
//! A queued task holds no OS resource: inputs are pulled from the caller's
//! iterator only as the workers catch up (at most [`WINDOW`] tasks of one
//! `imap` are pulled and not yet yielded), so a million-task iterator runs in
//! bounded memory.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connection::{Connection, Pipe};
use crate::deadline;
use crate::encode::{self, EncodeError};
use crate::error::{Error, Kind, Result};
use crate::popen::{Popen, PopenBuilder};
use crate::process::Stdio;
use crate::spawn::{self, TaskFail};
use crate::status::{ExitStatus, PanicReport};

/// At most this many tasks of one `imap`/`map` are pulled from its input
/// and not yet handed back to the caller.
pub const WINDOW: u64 = 16 * 1024;

/// A pool whose workers die this many times in a row before they are
/// ready gives up instead of respawning forever.
const MAX_FAILED_STARTS: u32 = 5;

/// The largest automatic chunk.
const MAX_AUTO_CHUNK: usize = 4096;
/// The most chunks packed into one frame.
const MAX_FRAME_CHUNKS: usize = 256;
/// Aim for frames that keep a worker busy this long.
const FRAME_TARGET: Duration = Duration::from_millis(2);

// ---------------------------------------------------------------- wire

#[derive(Serialize, Deserialize)]
enum ToWorker {
    Work {
        frame: u64,
        entries: Vec<String>,
        chunks: Vec<WireChunk>,
    },
    Shutdown,
}

/// The sending side of [`ToWorker`], borrowing the payloads (the same
/// encoding: postcard writes a slice and a `Vec` alike).
#[derive(Serialize)]
enum ToWorkerRef<'a> {
    Work {
        frame: u64,
        entries: &'a [&'a str],
        chunks: &'a [WireChunkRef<'a>],
    },
}

#[derive(Serialize)]
struct WireChunkRef<'a> {
    id: u64,
    entry: u16,
    #[serde(with = "serde_bytes")]
    tasks: &'a [u8],
}

/// A chunk: its tasks' arguments, each length-prefixed, back to back.
#[derive(Serialize, Deserialize)]
struct WireChunk {
    id: u64,
    entry: u16,
    #[serde(with = "serde_bytes")]
    tasks: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
enum FromWorker {
    Ready,
    /// The worker read frame `0` and starts on its chunks, in order.
    Started(u64),
    InitFailed(String),
    /// Chunk `id` is done: the results of the tasks that succeeded, each
    /// length-prefixed, in order; the ones that failed, by index.
    Done {
        id: u64,
        #[serde(with = "serde_bytes")]
        values: Vec<u8>,
        fails: Vec<(u32, TaskFail)>,
    },
}

#[derive(Serialize, Deserialize)]
struct WorkerConfig {
    initializer: Option<(String, Vec<u8>)>,
}

/// Decodes `data` as each of the pool's messages; whether each decoded.
pub(crate) fn decode_messages(data: &[u8]) -> (bool, bool) {
    (
        postcard::from_bytes::<ToWorker>(data).is_ok(),
        postcard::from_bytes::<FromWorker>(data).is_ok(),
    )
}

/// Runs the pool's initializer; why it failed, if it did.
fn run_initializer(name: &str, payload: &[u8]) -> std::result::Result<(), String> {
    let entry = spawn::find_entry(name)
        .ok_or_else(|| format!("the initializer: unknown entry `{name}` in the worker"))?;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (entry.run)(payload))) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(msg)) => Err(format!("the initializer: {msg}")),
        Err(_) => Err(format!(
            "the initializer panicked: {}",
            spawn::take_panic_report().message
        )),
    }
}

/// A pool worker's channel to its parent, for [`worker_connection`].
static WORKER_CONN: OnceLock<Arc<Connection>> = OnceLock::new();

/// In a pool worker: its channel to the parent; `None` elsewhere. The hook
/// behind the fault tests (a task that forges frames as a hostile worker
/// would, or hands the channel to a grandchild).
pub(crate) fn worker_connection() -> Option<&'static Connection> {
    WORKER_CONN.get().map(|c| &**c)
}

/// The loop a pool worker runs.
fn pool_worker_main((conn, cfg): (Connection, WorkerConfig)) {
    let conn = Arc::new(conn);
    let _ = WORKER_CONN.set(Arc::clone(&conn));
    if let Some((name, payload)) = cfg.initializer {
        if let Err(why) = run_initializer(&name, &payload) {
            let _ = conn.send(&FromWorker::InitFailed(why));
            return;
        }
    }
    if conn.send(&FromWorker::Ready).is_err() {
        return;
    }
    loop {
        let Ok(frame) = conn.recv_bytes() else { return };
        let Ok(msg) = postcard::from_bytes::<ToWorker>(&frame) else {
            eprintln!("multiproc pool worker: undecodable frame from the parent");
            return;
        };
        let (entries, chunks) = match msg {
            ToWorker::Shutdown => return,
            ToWorker::Work {
                frame,
                entries,
                chunks,
            } => {
                if conn.send(&FromWorker::Started(frame)).is_err() {
                    return;
                }
                (entries, chunks)
            }
        };
        let defs: Vec<_> = entries.iter().map(|n| spawn::find_entry(n)).collect();
        for c in chunks {
            let mut values = Vec::new();
            let mut fails = Vec::new();
            match defs.get(c.entry as usize).copied().flatten() {
                Some(def) => {
                    (def.run_batch)(&c.tasks, &mut values, &mut fails);
                }
                None => {
                    let name = entries.get(c.entry as usize).map_or("", String::as_str);
                    let why = format!("unknown entry `{name}` in the worker");
                    fails.push((0, TaskFail::BadArgs(why)));
                }
            }
            let done = FromWorker::Done {
                id: c.id,
                values,
                fails,
            };
            if conn.send(&done).is_err() {
                return;
            }
        }
    }
}

#[allow(unsafe_code)] // linkme registers the entry through a link section
mod registration {
    crate::entry!(super::pool_worker_main);
}

/// How long a worker whose channel ended may take to exit before it is
/// killed. Its exit follows at once (the OS closes a process's handles as
/// it exits, a moment before the exit is visible); only a worker that
/// closed its channel and kept running waits this long.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// After we killed a worker, how long to wait for the OS to confirm it.
/// A kill takes effect at once; this bounds only a process the OS can't
/// end (stuck in the kernel), which the reaper then collects later.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The signal `Popen::kill` sends on Unix (SIGKILL; there is no signal on
/// Windows, where a kill ends the process with `TERMINATE`).
const KILL_SIGNAL: i32 = 9;

/// The reader thread's loop: hands each message from a worker to
/// `on_message` until the stream ends. `None` when it ended (the worker
/// exited, or closed its channel); `Some(why)` when the worker sent
/// something that is not a pool message.
fn read_worker(conn: &Connection, mut on_message: impl FnMut(FromWorker)) -> Option<String> {
    loop {
        let frame = match conn.recv_bytes() {
            Ok(frame) => frame,
            // The end of the stream, whole or cut off in the middle of a
            // message (a worker killed while it wrote).
            Err(e) if e.is_eof() || e.is_poisoned() => return None,
            Err(e) if e.is_message_too_large() => {
                return Some(format!("it announced a frame that was refused: {e}"))
            }
            Err(e) => return Some(format!("its messages can't be read: {e}")),
        };
        match postcard::from_bytes::<FromWorker>(&frame) {
            Ok(msg) => on_message(msg),
            Err(e) => {
                return Some(format!(
                    "it sent a message of {} bytes that is not a pool message: {e}",
                    frame.len()
                ))
            }
        }
    }
}

/// After [`read_worker`]: makes sure the worker is gone and tells how it
/// ended. A worker that broke the protocol is killed at once; one whose
/// stream ended is given [`EXIT_GRACE`] to exit, and killed (a protocol
/// violation too) if it is still running then.
fn worker_end(popen: &Popen, violation: Option<String>) -> (Option<ExitStatus>, Option<String>) {
    let why = match violation {
        Some(why) => why,
        None => match popen.wait(Some(EXIT_GRACE)) {
            Ok(Some(status)) => return (Some(status), None),
            _ => format!("it closed its channel but was still running {EXIT_GRACE:?} later"),
        },
    };
    let _ = popen.kill();
    (popen.wait(Some(KILL_WAIT)).ok().flatten(), Some(why))
}

// ---------------------------------------------------------------- state

/// Why a task produced no value.
#[derive(Clone, Debug)]
enum Failure {
    Panic(PanicReport),
    BadArgs(String),
    /// The task ran; its result could not be serialized.
    BadResult(String),
    Died {
        pid: u32,
        status: Option<ExitStatus>,
    },
    Timeout {
        pid: u32,
        timeout: Duration,
    },
    /// The worker sent something that is not a pool message; we killed it.
    Protocol {
        pid: u32,
        why: String,
    },
    /// The input could not be serialized here.
    Encode {
        entry: &'static str,
        source: EncodeError,
    },
    Broken(String),
    Terminated,
    Closed,
}

impl Failure {
    fn into_error(self) -> Error {
        Error::new(match self {
            Failure::Panic(report) => Kind::TaskPanicked { report },
            Failure::BadArgs(why) => Kind::TaskBadArgs(why),
            Failure::BadResult(why) => Kind::ResultEncode {
                pid: None,
                status: None,
                why,
            },
            Failure::Died { pid, status } => Kind::WorkerDied { pid, status },
            Failure::Timeout { pid, timeout } => Kind::TaskTimeout { pid, timeout },
            Failure::Protocol { pid, why } => Kind::WorkerProtocol { pid, why },
            Failure::Encode { entry, source } => Kind::Encode {
                entry: entry.to_string(),
                source,
            },
            Failure::Broken(why) => Kind::PoolBroken(why),
            Failure::Terminated => Kind::PoolClosed("the pool was terminated"),
            Failure::Closed => Kind::PoolClosed("the pool is closed"),
        })
    }
}

/// A chunk waiting to be sent or in flight.
struct ChunkRec {
    job: u64,
    first: u64,
    entry: &'static str,
    /// How many tasks; their arguments, each length-prefixed.
    n: u32,
    tasks: Vec<u8>,
}

/// A chunk's results, handed out one task at a time.
struct ChunkResults {
    first: u64,
    n: u32,
    next: u32,
    /// The length-prefixed results of the tasks that succeeded, in order.
    values: Vec<u8>,
    pos: usize,
    /// The tasks that failed, by index, in order.
    fails: VecDeque<(u32, Failure)>,
    /// Every task of the chunk failed this way.
    all: Option<Failure>,
}

impl ChunkResults {
    fn failed(first: u64, n: u32, why: Failure) -> Self {
        ChunkResults {
            first,
            n,
            next: 0,
            values: Vec::new(),
            pos: 0,
            fails: VecDeque::new(),
            all: Some(why),
        }
    }

    fn has_next(&self) -> bool {
        self.next < self.n
    }

    fn next_result<R: DeserializeOwned>(&mut self) -> Option<Result<R>> {
        if self.next >= self.n {
            return None;
        }
        let i = self.next;
        self.next += 1;
        if let Some(why) = &self.all {
            return Some(Err(why.clone().into_error()));
        }
        if self.fails.front().is_some_and(|(j, _)| *j == i) {
            let (_, why) = self.fails.pop_front()?;
            return Some(Err(why.into_error()));
        }
        let Some((item, rest)) = spawn::take_frame(&self.values[self.pos..]) else {
            return Some(Err(Error::new(Kind::PoolBroken(
                "a worker sent fewer results than tasks".into(),
            ))));
        };
        self.pos = self.values.len() - rest.len();
        Some(decode(item))
    }
}

#[derive(Default)]
struct JobRec {
    results: Vec<ChunkResults>,
}

struct WorkerSlot {
    id: u64,
    popen: Arc<Popen>,
    tx: Option<mpsc::Sender<Vec<u8>>>,
    /// Chunks sent, in order, with the frame that carried each.
    inflight: VecDeque<(u64, u64)>,
    /// The last frame the worker said it started.
    started_frame: u64,
    head_since: Instant,
    sent_tasks: u64,
    ready: bool,
    retiring: bool,
    timed_out: bool,
}

#[derive(Clone, Copy)]
struct EntryStats {
    /// Exponential average of the time one task takes.
    per_task: Duration,
}

struct State {
    workers: Vec<WorkerSlot>,
    queue: VecDeque<u64>,
    chunks: HashMap<u64, ChunkRec>,
    jobs: HashMap<u64, JobRec>,
    stats: HashMap<&'static str, EntryStats>,
    threads: Vec<JoinHandle<()>>,
    next_id: u64,
    closed: bool,
    terminated: bool,
    broken: Option<String>,
    starting: usize,
    failed_starts: u32,
    /// Where the next dispatch starts its round.
    next_worker: usize,
}

#[derive(Clone, Debug)]
struct Config {
    workers: usize,
    initializer: Option<(String, Vec<u8>)>,
    max_tasks_per_child: Option<u64>,
    task_timeout: Option<Duration>,
    popen: PopenBuilder,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    cfg: Config,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Chunks per frame and chunks in flight per worker for `entry`.
    fn pacing(&self, entry: &str) -> (usize, usize) {
        let per_chunk_task = self.stats.get(entry).map(|s| s.per_task);
        match per_chunk_task {
            None => (1, 2),
            Some(t) => {
                let n = (FRAME_TARGET.as_nanos() / t.as_nanos().max(1)) as usize;
                let n = n.clamp(1, MAX_FRAME_CHUNKS);
                (n, 2 * n)
            }
        }
    }

    fn fail_chunk(&mut self, cid: u64, why: Failure) {
        if let Some(c) = self.chunks.remove(&cid) {
            if let Some(job) = self.jobs.get_mut(&c.job) {
                job.results.push(ChunkResults::failed(c.first, c.n, why));
            }
        }
    }
}

impl Shared {
    /// Sends queued chunks to workers with room, round robin from where
    /// the last call stopped (so no worker is always served first).
    fn dispatch(&self, st: &mut State) {
        if st.queue.is_empty() && !st.workers.iter().any(|w| w.retiring) {
            return;
        }
        let now = Instant::now();
        let n = st.workers.len();
        let start = st.next_worker % n.max(1);
        for k in (start..n).chain(0..start) {
            if st.queue.is_empty() {
                break;
            }
            let w = &st.workers[k];
            if !w.ready || w.retiring || w.tx.is_none() {
                continue;
            }
            let Some(&head) = st.queue.front() else { break };
            let entry = st.chunks.get(&head).map_or("", |c| c.entry);
            let (per_frame, window) = st.pacing(entry);
            let room = window.saturating_sub(w.inflight.len()).min(per_frame);
            // A busy worker gets a new frame only when a whole one fits (or
            // the queue is shorter): topping it up chunk by chunk would
            // cost a write and a `Started` reply per chunk.
            if room == 0 || (!w.inflight.is_empty() && room < per_frame && room < st.queue.len()) {
                continue;
            }
            let frame_id = st.next_id();
            let State {
                queue,
                chunks,
                workers,
                ..
            } = &mut *st;
            let w = &mut workers[k];
            let mut entries: Vec<&str> = Vec::new();
            let mut wire = Vec::new();
            let mut tasks_sent = 0;
            while wire.len() < room {
                let Some(cid) = queue.pop_front() else {
                    break;
                };
                let Some(c) = chunks.get(&cid) else {
                    continue;
                };
                let e = match entries.iter().position(|x| *x == c.entry) {
                    Some(i) => i,
                    None => {
                        entries.push(c.entry);
                        entries.len() - 1
                    }
                };
                tasks_sent += u64::from(c.n);
                wire.push(WireChunkRef {
                    id: cid,
                    entry: e as u16,
                    tasks: &c.tasks,
                });
                if let Some(max) = self.cfg.max_tasks_per_child {
                    if w.sent_tasks + tasks_sent >= max {
                        break;
                    }
                }
            }
            if wire.is_empty() {
                continue;
            }
            let frame = postcard::to_allocvec(&ToWorkerRef::Work {
                frame: frame_id,
                entries: &entries,
                chunks: &wire,
            })
            .unwrap_or_default();
            if w.inflight.is_empty() {
                w.head_since = now;
            }
            w.inflight.extend(wire.iter().map(|c| (c.id, frame_id)));
            w.sent_tasks += tasks_sent;
            if let Some(max) = self.cfg.max_tasks_per_child {
                if w.sent_tasks >= max {
                    w.retiring = true;
                }
            }
            if let Some(tx) = &w.tx {
                let _ = tx.send(frame);
            }
            st.next_worker = k + 1;
        }
        // Retiring workers with nothing left in flight: ask them to exit.
        for w in st.workers.iter_mut() {
            if w.retiring && w.inflight.is_empty() {
                if let Some(tx) = w.tx.take() {
                    let frame = postcard::to_allocvec(&ToWorker::Shutdown).unwrap_or_default();
                    let _ = tx.send(frame);
                }
            }
        }
    }

    fn on_message(self: &Arc<Self>, wid: u64, msg: FromWorker) {
        let mut st = lock(&self.state);
        let Some(k) = st.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        match msg {
            FromWorker::Ready => {
                st.workers[k].ready = true;
                st.failed_starts = 0;
                st.starting = st.starting.saturating_sub(1);
            }
            FromWorker::InitFailed(why) => {
                st.broken.get_or_insert(why);
                st.starting = st.starting.saturating_sub(1);
            }
            FromWorker::Started(frame) => {
                let w = &mut st.workers[k];
                w.started_frame = w.started_frame.max(frame);
                if w.inflight.front().is_some_and(|&(_, f)| f == frame) {
                    w.head_since = Instant::now();
                }
            }
            FromWorker::Done { id, values, fails } => {
                let now = Instant::now();
                let w = &mut st.workers[k];
                if w.inflight.front().map(|&(c, _)| c) == Some(id) {
                    w.inflight.pop_front();
                } else {
                    w.inflight.retain(|&(c, _)| c != id);
                }
                let took = now.saturating_duration_since(w.head_since);
                w.head_since = now;
                if let Some(c) = st.chunks.remove(&id) {
                    if c.n > 0 {
                        let per_task = took / c.n;
                        let s = st.stats.entry(c.entry).or_insert(EntryStats { per_task });
                        s.per_task = (s.per_task * 3 + per_task) / 4;
                    }
                    if let Some(job) = st.jobs.get_mut(&c.job) {
                        let fails = fails
                            .into_iter()
                            .map(|(i, f)| {
                                (
                                    i,
                                    match f {
                                        TaskFail::Panic(p) => Failure::Panic(p),
                                        TaskFail::BadArgs(m) => Failure::BadArgs(m),
                                        TaskFail::BadResult(m) => Failure::BadResult(m),
                                    },
                                )
                            })
                            .collect();
                        job.results.push(ChunkResults {
                            first: c.first,
                            n: c.n,
                            next: 0,
                            values,
                            pos: 0,
                            fails,
                            all: None,
                        });
                    }
                }
            }
        }
        self.dispatch(&mut st);
        drop(st);
        self.cond.notify_all();
    }

    /// Worker `wid` is gone: `status` is how it ended (if known);
    /// `violation`, what it sent that made us kill it.
    fn on_exit(self: &Arc<Self>, wid: u64, status: Option<ExitStatus>, violation: Option<String>) {
        let mut st = lock(&self.state);
        let Some(k) = st.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        let w = st.workers.remove(k);
        let pid = w.popen.pid();
        if !w.ready && st.broken.is_none() && !st.terminated {
            // Killed from outside while starting, or unable to start at
            // all: retry, but not forever.
            st.starting = st.starting.saturating_sub(1);
            st.failed_starts += 1;
            if st.failed_starts >= MAX_FAILED_STARTS {
                st.broken = Some(match status {
                    Some(s) => format!(
                        "{MAX_FAILED_STARTS} workers in a row ended before they were ready; the last, {pid}, with {s}"
                    ),
                    None => format!("{MAX_FAILED_STARTS} workers in a row ended before they were ready"),
                });
            }
        }
        let started = w.started_frame;
        let mut inflight = w.inflight.into_iter().peekable();
        // The head chunk was running only if the worker had started its
        // frame; otherwise nothing in flight was started, and all of it
        // goes back to the queue.
        let head = inflight
            .next_if(|&(_, frame)| frame <= started)
            .map(|(c, _)| c);
        if let Some(head) = head {
            // A timed-out worker was killed by us; if it ended some other
            // way first (an abort, say), that is what happened.
            let killed_by_us =
                status.is_none_or(|s| s.signal() == Some(KILL_SIGNAL) || s.is_terminated());
            let why = if st.terminated {
                Failure::Terminated
            } else if let Some(why) = violation {
                Failure::Protocol { pid, why }
            } else if w.timed_out && killed_by_us {
                Failure::Timeout {
                    pid,
                    timeout: self.cfg.task_timeout.unwrap_or_default(),
                }
            } else {
                Failure::Died { pid, status }
            };
            st.fail_chunk(head, why);
        }
        // Never started: back to the front of the queue, in order.
        let rest: Vec<u64> = inflight.map(|(c, _)| c).collect();
        for cid in rest.into_iter().rev() {
            st.queue.push_front(cid);
        }
        let replace = !st.terminated
            && st.broken.is_none()
            && !(st.closed && st.queue.is_empty())
            && st.workers.len() < self.cfg.workers;
        if replace {
            if let Err(e) = self.spawn_worker(&mut st) {
                st.broken
                    .get_or_insert(format!("cannot replace worker {pid}: {e}"));
            }
        }
        // Terminated, or broken just now or before: nothing queued will
        // run (and `enqueue` refuses new work), so it fails now rather
        // than wait for a worker that will never come.
        if st.terminated || st.broken.is_some() {
            let why = if st.terminated {
                Failure::Terminated
            } else {
                Failure::Broken(st.broken.clone().unwrap_or_default())
            };
            let queued: Vec<u64> = st.queue.drain(..).collect();
            for cid in queued {
                st.fail_chunk(cid, why.clone());
            }
        }
        self.dispatch(&mut st);
        drop(st);
        self.cond.notify_all();
    }

    fn spawn_worker(self: &Arc<Self>, st: &mut State) -> Result<()> {
        let (mine, theirs) = Pipe::duplex_read_ahead()?;
        let cfg = WorkerConfig {
            initializer: self.cfg.initializer.clone(),
        };
        let popen = Arc::new(self.cfg.popen.spawn(pool_worker_main, &(theirs, cfg))?);
        let conn = Arc::new(mine);
        // The worker's exit ends the reader's stream even while children it
        // started hold its end of the channel.
        conn.watch_peer(&popen);
        let id = st.next_id();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let writer_conn = Arc::clone(&conn);
        let writer = std::thread::Builder::new()
            .name(format!("multiproc-pool-w{}", popen.pid()))
            .spawn(move || {
                for frame in rx {
                    if writer_conn.send_bytes(&frame).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("cannot start a pool thread", e))?;
        let shared = Arc::clone(self);
        let reader_popen = Arc::clone(&popen);
        let reader = std::thread::Builder::new()
            .name(format!("multiproc-pool-r{}", popen.pid()))
            .spawn(move || {
                let violation = read_worker(&conn, |msg| shared.on_message(id, msg));
                let (status, violation) = worker_end(&reader_popen, violation);
                shared.on_exit(id, status, violation);
            })
            .map_err(|e| Error::io("cannot start a pool thread", e))?;
        // Join the threads of workers already gone (finished, so this
        // doesn't wait), so a pool that keeps replacing workers doesn't
        // keep their threads (or, on Windows, their handles). A reader
        // calling this from `on_exit` is still running and stays.
        let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut st.threads)
            .into_iter()
            .partition(|t| t.is_finished());
        st.threads = live;
        for t in done {
            let _ = t.join();
        }
        st.threads.push(writer);
        st.threads.push(reader);
        st.starting += 1;
        st.workers.push(WorkerSlot {
            id,
            popen,
            tx: Some(tx),
            inflight: VecDeque::new(),
            started_frame: 0,
            head_since: Instant::now(),
            sent_tasks: 0,
            ready: false,
            retiring: false,
            timed_out: false,
        });
        Ok(())
    }

    fn enqueue(
        &self,
        st: &mut State,
        job: u64,
        entry: &'static str,
        first: u64,
        (n, tasks): (u32, Vec<u8>),
    ) -> std::result::Result<(), Failure> {
        if let Some(why) = &st.broken {
            return Err(Failure::Broken(why.clone()));
        }
        if st.closed {
            return Err(if st.terminated {
                Failure::Terminated
            } else {
                Failure::Closed
            });
        }
        let cid = st.next_id();
        st.chunks.insert(
            cid,
            ChunkRec {
                job,
                first,
                entry,
                n,
                tasks,
            },
        );
        st.queue.push_back(cid);
        Ok(())
    }

    /// Kills workers whose current chunk is past its deadline.
    fn enforce_timeouts(&self, st: &mut State) -> Option<Instant> {
        let timeout = self.cfg.task_timeout?;
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for w in st.workers.iter_mut() {
            let Some(&(head, _)) = w.inflight.front() else {
                continue;
            };
            let n = st.chunks.get(&head).map_or(1, |c| c.n.max(1));
            // Overflow (a huge timeout) means no deadline.
            let Some(deadline) = timeout
                .checked_mul(n)
                .and_then(|t| w.head_since.checked_add(t))
            else {
                continue;
            };
            if now >= deadline {
                if !w.timed_out {
                    w.timed_out = true;
                    let _ = w.popen.kill();
                }
            } else {
                next = Some(next.map_or(deadline, |d: Instant| d.min(deadline)));
            }
        }
        next
    }

    /// Waits for something to change (or `until`), enforcing timeouts.
    fn wait<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        let mut st = st;
        let next = self.enforce_timeouts(&mut st);
        let wake = match (next, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match wake {
            None => self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                let d = t.saturating_duration_since(Instant::now());
                self.cond
                    .wait_timeout(st, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        }
    }

    fn terminate(&self) {
        let threads = {
            let mut st = lock(&self.state);
            st.terminated = true;
            st.closed = true;
            for w in st.workers.iter_mut() {
                w.tx = None;
                let _ = w.popen.kill();
            }
            let queued: Vec<u64> = st.queue.drain(..).collect();
            for cid in queued {
                st.fail_chunk(cid, Failure::Terminated);
            }
            std::mem::take(&mut st.threads)
        };
        self.cond.notify_all();
        for t in threads {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- API

/// Options for a [`Pool`]: `&mut self` setters, then [`build`](PoolBuilder::build).
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    workers: usize,
    initializer: Option<std::result::Result<(String, Vec<u8>), String>>,
    max_tasks_per_child: Option<u64>,
    task_timeout: Option<Duration>,
    stdio: Stdio,
    popen: PopenBuilder,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolBuilder {
    /// Defaults: one worker per available CPU, no initializer, no task
    /// limit, no timeout, stdio inherited, workers die with this process.
    pub fn new() -> Self {
        let mut popen = PopenBuilder::new();
        popen.kill_on_parent_death(true);
        PoolBuilder {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            initializer: None,
            max_tasks_per_child: None,
            task_timeout: None,
            stdio: Stdio::Inherit,
            popen,
        }
    }

    /// The number of worker processes. It must be at least 1:
    /// [`build`](PoolBuilder::build) refuses 0 with [`Error::is_usage`]
    /// (Python's `Pool(0)` raises `ValueError`).
    pub fn workers(&mut self, n: usize) -> &mut Self {
        self.workers = n;
        self
    }

    /// Runs `entry(args)` once in every worker before its first task. If it
    /// panics, the pool fails with [`Error::is_pool_broken`] instead of
    /// respawning workers forever.
    pub fn initializer<F, A, R>(&mut self, _entry: F, args: A) -> &mut Self
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize,
    {
        let name = std::any::type_name::<F>();
        self.initializer = Some(
            encode::to_vec(&args)
                .map(|p| (name.to_string(), p))
                .map_err(|e| format!("cannot serialize the initializer's arguments: {e}")),
        );
        self
    }

    /// Replace each worker after it ran `n` tasks (Python's
    /// `maxtasksperchild`). `n` must be at least 1:
    /// [`build`](PoolBuilder::build) refuses 0 with [`Error::is_usage`].
    pub fn max_tasks_per_child(&mut self, n: u64) -> &mut Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// A task that runs longer than this fails with
    /// [`Error::is_timeout`]; its worker is killed and replaced. With a
    /// timeout, automatic chunking sends one task per chunk; with an
    /// explicit chunk size the limit is `timeout × chunksize` per chunk.
    /// Enforced while some thread waits on the pool. A timeout too long to
    /// be a deadline (`Duration::MAX`) is no limit.
    pub fn task_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Where the workers' stdin, stdout and stderr go: [`Stdio::Inherit`]
    /// (the default) or [`Stdio::Null`].
    ///
    /// [`Stdio::Capture`] is refused: [`build`](PoolBuilder::build) fails
    /// with [`Error::is_usage`]. A pool's workers are shared by all its
    /// tasks and replaced as they die, so there is no one stream to hand
    /// back; run the work in a [`Process`](crate::Process) to capture its
    /// output.
    pub fn stdio(&mut self, stdio: Stdio) -> &mut Self {
        self.popen.null_stdio(stdio == Stdio::Null);
        self.stdio = stdio;
        self
    }

    /// Whether workers die when this process dies (default: true).
    pub fn kill_on_parent_death(&mut self, yes: bool) -> &mut Self {
        self.popen.kill_on_parent_death(yes);
        self
    }

    /// Runs this program as the workers (see [`set_executable`](crate::set_executable)).
    pub fn executable(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.popen.executable(path.into());
        self
    }

    /// Starts the workers and waits until all are ready (initializer done).
    ///
    /// Fails with [`Error::is_usage`] for options that make no pool: 0
    /// workers, `max_tasks_per_child(0)`, [`Stdio::Capture`].
    pub fn build(&self) -> Result<Pool> {
        if self.workers == 0 {
            return Err(Error::new(Kind::Usage(
                "a pool needs at least one worker (got 0)".into(),
            )));
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::new(Kind::Usage(
                "max_tasks_per_child must be at least 1 (got 0)".into(),
            )));
        }
        if self.stdio == Stdio::Capture {
            return Err(Error::new(Kind::Usage(
                "a pool cannot capture its workers' output (Stdio::Capture): use \
                 Stdio::Inherit or Stdio::Null, or a Process to capture a task's output"
                    .into(),
            )));
        }
        let initializer = match &self.initializer {
            None => None,
            Some(Ok((name, payload))) => {
                if spawn::find_entry(name).is_none() {
                    return Err(Error::new(Kind::UnknownEntry(name.clone())));
                }
                Some((name.clone(), payload.clone()))
            }
            Some(Err(e)) => return Err(Error::new(Kind::PoolBroken(e.clone()))),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                workers: Vec::new(),
                queue: VecDeque::new(),
                chunks: HashMap::new(),
                jobs: HashMap::new(),
                stats: HashMap::new(),
                threads: Vec::new(),
                next_id: 0,
                closed: false,
                terminated: false,
                broken: None,
                starting: 0,
                failed_starts: 0,
                next_worker: 0,
            }),
            cond: Condvar::new(),
            cfg: Config {
                workers: self.workers,
                initializer,
                max_tasks_per_child: self.max_tasks_per_child,
                task_timeout: self.task_timeout,
                popen: self.popen.clone(),
            },
        });
        let pool = Pool { shared };
        {
            let mut st = lock(&pool.shared.state);
            for _ in 0..self.workers {
                pool.shared.spawn_worker(&mut st)?;
            }
            while st.starting > 0 && st.broken.is_none() {
                st = pool.shared.wait(st, None);
            }
            if let Some(why) = st.broken.clone() {
                drop(st);
                pool.shared.terminate();
                return Err(Error::new(Kind::PoolBroken(why)));
            }
        }
        Ok(pool)
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// multiproc::entry!(square);
///
/// # fn main() -> Result<(), multiproc::Error> {
/// # multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// assert_eq!(pool.map(square, 1..=4)?, vec![1, 4, 9, 16]);
/// let mut sum = 0;
/// for r in pool.imap_unordered(square, 0..100) {
///     sum += r?;
/// }
/// assert_eq!(sum, 328350);
/// # Ok(()) }
/// ```
///
/// # Faults
///
/// - A worker that dies (killed from outside, `abort`, `process::exit`,
///   stack overflow) fails only the chunk it was running
///   ([`Error::is_worker_died`], naming the worker and how it ended); the
///   chunks queued behind it run elsewhere and the worker is replaced.
/// - A task that panics fails with [`Error::is_panic`]; the worker
///   survives and goes on.
/// - A task past [`PoolBuilder::task_timeout`] fails with
///   [`Error::is_timeout`]; its worker is killed and replaced.
/// - A worker that sends something that is not a pool message (an
///   undecodable frame, a frame over the connection's size cap) is killed
///   at once; the task it was running fails with
///   [`Error::is_protocol_violation`], naming the worker and what it sent.
/// - A worker that can't be replaced (the executable is gone, no
///   resources) breaks the pool: every queued task and every later call
///   fails at once with [`Error::is_pool_broken`], whose message says why;
///   tasks already running on other workers finish. So do workers that
///   keep dying before they are ready (5 in a row).
/// - Misuse is [`Error::is_usage`]: 0 workers, `max_tasks_per_child(0)`,
///   [`Stdio::Capture`], [`join`](Pool::join) before [`close`](Pool::close).
///
/// # Drop
///
/// Dropping the pool terminates it: workers are killed (even ones stuck in
/// an endless loop) and reaped, and its threads are joined. Use
/// [`close`](Pool::close) and [`join`](Pool::join) to let work finish first.
pub struct Pool {
    shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.shared.cfg.workers)
            .finish()
    }
}

impl Pool {
    /// A pool of `n` workers with default options; `n == 0` is an error
    /// ([`Error::is_usage`]).
    pub fn new(n: usize) -> Result<Pool> {
        PoolBuilder::new().workers(n).build()
    }

    /// A builder for more options.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// The process ids of the workers that are ready for tasks (changes
    /// as workers are replaced).
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.shared.state)
            .workers
            .iter()
            .filter(|w| w.ready)
            .map(|w| w.popen.pid())
            .collect()
    }

    /// `entry` over every input, results in input order; fails on the
    /// first task that fails (the remaining tasks are cancelled). Chunks
    /// are sized automatically.
    pub fn map<F, A, R, I>(&self, entry: F, inputs: I) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        self.imap(entry, inputs).collect()
    }

    /// Like [`map`](Pool::map) with an explicit chunk size.
    pub fn map_chunked<F, A, R, I>(&self, entry: F, inputs: I, chunksize: usize) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        self.imap(entry, inputs).chunksize(chunksize).collect()
    }

    /// `entry` over every input, every task's own result in input order:
    /// failures don't stop the others.
    pub fn map_results<F, A, R, I>(&self, entry: F, inputs: I) -> Vec<Result<R>>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        self.imap(entry, inputs).collect()
    }

    /// A lazy, ordered stream of results; inputs are pulled as workers
    /// catch up. Set [`Imap::chunksize`] before iterating to fix the chunk
    /// size.
    pub fn imap<F, A, R, I>(&self, _entry: F, inputs: I) -> Imap<I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        Imap::new(self, entry_name::<F, A, R>(), inputs.into_iter(), true)
    }

    /// Like [`imap`](Pool::imap), results in the order they complete.
    pub fn imap_unordered<F, A, R, I>(&self, _entry: F, inputs: I) -> Imap<I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        Imap::new(self, entry_name::<F, A, R>(), inputs.into_iter(), false)
    }

    /// Runs `entry(arg)` on some worker; returns at once.
    pub fn submit<F, A, R>(&self, _entry: F, arg: A) -> AsyncResult<R>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize,
        R: DeserializeOwned,
    {
        let name = entry_name::<F, A, R>();
        let mut st = lock(&self.shared.state);
        let job = st.next_id();
        st.jobs.insert(job, JobRec::default());
        let early = match encode::to_vec(&arg) {
            _ if spawn::find_entry(name).is_none() => {
                Some(Error::new(Kind::UnknownEntry(name.to_string())))
            }
            Err(e) => Some(Error::new(Kind::Encode {
                entry: name.to_string(),
                source: e,
            })),
            Ok(payload) => {
                let mut task = Vec::with_capacity(payload.len() + 2);
                spawn::put_frame(&mut task, &payload);
                let r = self.shared.enqueue(&mut st, job, name, 0, (1, task));
                self.shared.dispatch(&mut st);
                r.err().map(Failure::into_error)
            }
        };
        drop(st);
        AsyncResult {
            shared: Arc::clone(&self.shared),
            job,
            done: early.map(Err),
            _r: PhantomData,
        }
    }

    /// No more work will be submitted; workers exit once the queued work is
    /// done ([`join`](Pool::join) waits for that).
    pub fn close(&self) {
        lock(&self.shared.state).closed = true;
    }

    /// Waits for the queued work to finish and the workers to exit. Call
    /// [`close`](Pool::close) (or [`terminate`](Pool::terminate)) first;
    /// called on an open pool it fails at once with [`Error::is_usage`]
    /// (as Python's `Pool.join` raises `ValueError`).
    pub fn join(&self) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if !st.closed {
            return Err(Error::new(Kind::Usage(
                "Pool::join() was called before close() or terminate(): \
                 the pool is still open, so its work would never end"
                    .into(),
            )));
        }
        while !st.queue.is_empty() || st.workers.iter().any(|w| !w.inflight.is_empty()) {
            st = self.shared.wait(st, None);
        }
        for w in st.workers.iter_mut() {
            if let Some(tx) = w.tx.take() {
                let _ = tx.send(postcard::to_allocvec(&ToWorker::Shutdown).unwrap_or_default());
            }
        }
        while !st.workers.is_empty() {
            st = self.shared.wait(st, None);
        }
        let threads = std::mem::take(&mut st.threads);
        drop(st);
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }

    /// Waits until some worker is running a task (it said it started the
    /// frame that holds its oldest chunk); returns those workers' pids.
    /// The hook that lets fault tests kill a worker mid-task.
    #[doc(hidden)]
    pub fn wait_busy(&self, timeout: Duration) -> Vec<u32> {
        let until = deadline::deadline(timeout);
        let mut st = lock(&self.shared.state);
        loop {
            let busy: Vec<u32> = st
                .workers
                .iter()
                .filter(|w| {
                    w.inflight
                        .front()
                        .is_some_and(|&(_, f)| f <= w.started_frame)
                })
                .map(|w| w.popen.pid())
                .collect();
            if !busy.is_empty() || deadline::passed(until) {
                return busy;
            }
            st = self.shared.wait(st, until);
        }
    }

    /// Kills worker `pid` as an outside killer would (SIGKILL /
    /// `TerminateProcess`): the hook behind the fault tests.
    #[doc(hidden)]
    pub fn kill_worker(&self, pid: u32) -> bool {
        let st = lock(&self.shared.state);
        match st.workers.iter().find(|w| w.popen.pid() == pid) {
            Some(w) => w.popen.kill().is_ok(),
            None => false,
        }
    }

    /// Kills the workers now; unfinished tasks fail.
    pub fn terminate(&self) {
        self.shared.terminate();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.terminate();
    }
}

fn entry_name<F, A, R>() -> &'static str
where
    F: Fn(A) -> R + Copy + 'static,
{
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a multiproc entry must be a plain fn item: closures that capture can't cross processes"
        )
    };
    std::any::type_name::<F>()
}

/// A task submitted with [`Pool::submit`].
pub struct AsyncResult<R> {
    shared: Arc<Shared>,
    job: u64,
    done: Option<Result<R>>,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job)
            .finish()
    }
}

fn decode<R: DeserializeOwned>(bytes: &[u8]) -> Result<R> {
    postcard::from_bytes(bytes).map_err(|source| {
        Error::new(Kind::Decode {
            what: "a task's result",
            source,
        })
    })
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// Whether the result is there.
    pub fn is_ready(&mut self) -> bool {
        if self.done.is_none() {
            let mut st = lock(&self.shared.state);
            if let Some(mut r) = st.jobs.get_mut(&self.job).and_then(|j| j.results.pop()) {
                self.done = r.next_result();
            }
        }
        self.done.is_some()
    }

    /// Waits for the result.
    pub fn get(mut self) -> Result<R> {
        match self.wait_until(None) {
            true => self.done.take().expect("set when ready"),
            false => unreachable!("no deadline"),
        }
    }

    /// Waits at most `timeout` (forever if it is too long to be a
    /// deadline, such as `Duration::MAX`): `None` if the result isn't
    /// there yet. Once
    /// it returned `Some`, the result is gone; later calls give an error.
    pub fn get_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        if self.wait_until(deadline::deadline(timeout)) {
            let r = self.done.take();
            self.done = Some(Err(Error::new(Kind::AlreadyJoined)));
            r
        } else {
            None
        }
    }

    fn wait_until(&mut self, until: Option<Instant>) -> bool {
        if self.done.is_some() {
            return true;
        }
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(mut r) = st.jobs.get_mut(&self.job).and_then(|j| j.results.pop()) {
                st.jobs.remove(&self.job);
                self.done = r.next_result();
                return true;
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return false;
            }
            st = self.shared.wait(st, until);
        }
    }
}

impl<R> Drop for AsyncResult<R> {
    fn drop(&mut self) {
        lock(&self.shared.state).jobs.remove(&self.job);
    }
}

/// Results that arrived and wait to be handed out, a chunk at a time: in
/// input order (the chunk that starts where the last one ended) or as
/// they came.
struct Ready {
    ordered: bool,
    /// Ordered: the sequence number of the next task to hand out.
    next_seq: u64,
    current: Option<ChunkResults>,
    waiting: HashMap<u64, ChunkResults>,
    arrived: VecDeque<ChunkResults>,
}

impl Ready {
    fn new(ordered: bool) -> Self {
        Ready {
            ordered,
            next_seq: 0,
            current: None,
            waiting: HashMap::new(),
            arrived: VecDeque::new(),
        }
    }

    fn insert(&mut self, c: ChunkResults) {
        if c.n == 0 {
            return;
        }
        if self.ordered {
            self.waiting.insert(c.first, c);
        } else {
            self.arrived.push_back(c);
        }
    }

    fn has_next(&self) -> bool {
        self.current.as_ref().is_some_and(ChunkResults::has_next)
            || if self.ordered {
                self.waiting.contains_key(&self.next_seq)
            } else {
                !self.arrived.is_empty()
            }
    }

    fn next_result<R: DeserializeOwned>(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.current.as_mut().and_then(ChunkResults::next_result) {
                self.next_seq += 1;
                return Some(r);
            }
            self.current = Some(if self.ordered {
                self.waiting.remove(&self.next_seq)?
            } else {
                self.arrived.pop_front()?
            });
        }
    }
}

/// The stream of results of [`Pool::imap`] / [`Pool::imap_unordered`].
///
/// Dropping it cancels the tasks that haven't been sent to a worker yet.
///
/// # Panics
///
/// Inputs are pulled from the caller's iterator ahead of the results, so
/// a panic in that iterator (or in an input's `Serialize` impl) happens
/// before the results of the inputs that came before it are in. It is
/// caught and held: those results are handed out first (in input order
/// for `imap`; all of them, as they complete, for `imap_unordered`), and
/// the `next()` call that would have produced the panicking input's result
/// resumes the panic instead, with its original payload
/// ([`std::panic::resume_unwind`]). Nothing after it is pulled. That is
/// where a sequential `inputs.map(f)` would have panicked (CPython's
/// `imap` raises the iterator's exception at the same point). The panic
/// hook runs when the panic happens, so its message may be printed before
/// the earlier results are handed out; an `Imap` dropped before reaching
/// that position drops the panic. [`Pool::map`] and
/// [`Pool::map_results`] collect an `Imap`, so they panic the same way
/// once they reach it.
pub struct Imap<I, R> {
    pool: Arc<Shared>,
    job: u64,
    entry: &'static str,
    inputs: std::iter::Fuse<I>,
    chunksize: Option<usize>,
    pulled: u64,
    yielded: u64,
    exhausted: bool,
    ready: Ready,
    /// Reused to encode each input.
    scratch: Vec<u8>,
    failed: Option<Error>,
    /// The panic of the caller's iterator (or `Serialize` impl), resumed
    /// after the results of the inputs before it. In a `Mutex` only so that
    /// `Imap` stays `Sync`; never contended.
    input_panic: Mutex<Option<Box<dyn Any + Send>>>,
    _r: PhantomData<fn() -> R>,
}

impl<I: Iterator, R> fmt::Debug for Imap<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("pulled", &self.pulled)
            .field("yielded", &self.yielded)
            .finish()
    }
}

impl<I, R> Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    fn new(pool: &Pool, entry: &'static str, inputs: I, ordered: bool) -> Self {
        let failed = spawn::find_entry(entry)
            .is_none()
            .then(|| Error::new(Kind::UnknownEntry(entry.to_string())));
        let job = {
            let mut st = lock(&pool.shared.state);
            let job = st.next_id();
            st.jobs.insert(job, JobRec::default());
            job
        };
        Imap {
            pool: Arc::clone(&pool.shared),
            job,
            entry,
            inputs: inputs.fuse(),
            chunksize: None,
            pulled: 0,
            yielded: 0,
            exhausted: false,
            ready: Ready::new(ordered),
            scratch: Vec::new(),
            failed,
            input_panic: Mutex::new(None),
            _r: PhantomData,
        }
    }

    /// Sends the tasks in chunks of `n` (a chunk fails or succeeds on one
    /// worker; larger chunks cost less per task). Default: automatic, from
    /// the measured time per task.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.max(1));
        self
    }

    fn auto_chunk(&self, st: &State) -> usize {
        if let Some(n) = self.chunksize {
            return n;
        }
        if self.pool.cfg.task_timeout.is_some() {
            return 1;
        }
        match st.stats.get(self.entry) {
            None => 1,
            Some(s) => {
                let per = s.per_task.as_nanos().max(1);
                ((FRAME_TARGET.as_nanos() / 2 / per) as usize).clamp(1, MAX_AUTO_CHUNK)
            }
        }
    }

    /// Pulls and queues more inputs while the pool has room for them,
    /// then hands them to the workers in one go (so frames fill up).
    fn feed(&mut self) {
        self.feed_queue();
        let mut st = lock(&self.pool.state);
        self.pool.dispatch(&mut st);
    }

    fn feed_queue(&mut self) {
        loop {
            if self.exhausted || self.pulled - self.yielded >= WINDOW {
                return;
            }
            let (chunk, room) = {
                let st = lock(&self.pool.state);
                let workers = st.workers.len().max(1);
                let (per_frame, _) = st.pacing(self.entry);
                // Keep about two frames per worker queued ahead.
                let target = 2 * workers * per_frame;
                (self.auto_chunk(&st), st.queue.len() < target)
            };
            if !room {
                return;
            }
            // The caller's iterator may panic: keep the items it gave
            // before that, and hand the panic back at its position, after
            // their results (see `Imap`).
            let mut items: Vec<I::Item> = Vec::new();
            let inputs = &mut self.inputs;
            let pulling = std::panic::catch_unwind(AssertUnwindSafe(|| {
                for item in inputs.by_ref().take(chunk) {
                    items.push(item);
                }
            }));
            match pulling {
                Ok(()) if items.len() < chunk => self.exhausted = true,
                Ok(()) => {}
                Err(payload) => self.stop_at_panic(payload),
            }
            // Each argument length-prefixed, back to back, in one buffer.
            let mut tasks = Vec::new();
            let mut n = 0u32;
            let mut scratch = std::mem::take(&mut self.scratch);
            for item in items {
                scratch.clear();
                // A `Serialize` impl is the caller's code too.
                let encoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    encode::append(&item, &mut scratch)
                }));
                match encoded {
                    Ok(Ok(())) => {
                        spawn::put_frame(&mut tasks, &scratch);
                        n += 1;
                    }
                    Ok(Err(source)) => {
                        // This task can't be sent: its own error, now (the
                        // same error `submit` gives).
                        if n > 0 {
                            let at = self.pulled;
                            self.pulled += u64::from(n);
                            self.submit_chunk(at, (n, std::mem::take(&mut tasks)));
                            n = 0;
                        }
                        let why = Failure::Encode {
                            entry: self.entry,
                            source,
                        };
                        self.ready.insert(ChunkResults::failed(self.pulled, 1, why));
                        self.pulled += 1;
                    }
                    Err(payload) => {
                        // At an earlier position than an iterator panic of
                        // this chunk, so it replaces that one.
                        self.stop_at_panic(payload);
                        break;
                    }
                }
            }
            self.scratch = scratch;
            if n > 0 {
                let at = self.pulled;
                self.pulled += u64::from(n);
                self.submit_chunk(at, (n, tasks));
            }
        }
    }

    /// The caller's code panicked while the next input was pulled or
    /// encoded: nothing more is pulled, and the panic resumes once every
    /// earlier task's result was handed out.
    fn stop_at_panic(&mut self, payload: Box<dyn Any + Send>) {
        self.exhausted = true;
        *self
            .input_panic
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) = Some(payload);
    }

    /// At the end of the results: resumes a panic of the caller's input
    /// (see [`stop_at_panic`](Self::stop_at_panic)), else the end.
    fn end(&mut self) -> Option<Result<R>> {
        let payload = self
            .input_panic
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(payload) = payload {
            std::panic::resume_unwind(payload);
        }
        None
    }

    fn submit_chunk(&mut self, first: u64, (n, tasks): (u32, Vec<u8>)) {
        let res = {
            let mut st = lock(&self.pool.state);
            self.pool
                .enqueue(&mut st, self.job, self.entry, first, (n, tasks))
        };
        if let Err(why) = res {
            self.ready.insert(ChunkResults::failed(first, n, why));
        }
    }
}

impl<I, R> Iterator for Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if let Some(e) = self.failed.take() {
            self.exhausted = true;
            self.yielded = self.pulled;
            return Some(Err(e));
        }
        loop {
            // Something to hand out?
            if let Some(r) = self.ready.next_result() {
                self.yielded += 1;
                return Some(r);
            }
            if self.exhausted && self.yielded == self.pulled {
                return self.end();
            }
            self.feed();
            if self.exhausted && self.yielded == self.pulled {
                return self.end();
            }
            // Collect what arrived, or wait for it.
            let mut st = lock(&self.pool.state);
            loop {
                let got = st
                    .jobs
                    .get_mut(&self.job)
                    .map(|j| std::mem::take(&mut j.results))
                    .unwrap_or_default();
                if !got.is_empty() {
                    for c in got {
                        self.ready.insert(c);
                    }
                    break;
                }
                if self.ready.has_next() {
                    break;
                }
                // Room to feed more before sleeping?
                let workers = st.workers.len().max(1);
                let (per_frame, _) = st.pacing(self.entry);
                if !self.exhausted
                    && self.pulled - self.yielded < WINDOW
                    && st.queue.len() < 2 * workers * per_frame
                {
                    break;
                }
                st = self.pool.wait(st, None);
            }
        }
    }
}

impl<I, R> Drop for Imap<I, R> {
    fn drop(&mut self) {
        let mut st = lock(&self.pool.state);
        st.jobs.remove(&self.job);
        let job = self.job;
        let mine: Vec<u64> = st
            .queue
            .iter()
            .copied()
            .filter(|c| st.chunks.get(c).is_some_and(|c| c.job == job))
            .collect();
        st.queue.retain(|c| !mine.contains(c));
        for c in mine {
            st.chunks.remove(&c);
        }
    }
}

/// An [`Imap`] that draws a progress bar (count, rate, ETA) on stderr while
/// it is iterated; from [`Imap::progress`]. Nothing is drawn when stderr is
/// not a terminal.
#[cfg(feature = "progress")]
pub struct Progress<I: Iterator> {
    inner: I,
    bar: indicatif::ProgressBar,
}

#[cfg(feature = "progress")]
impl<I, R> Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// Shows a progress bar while iterating (feature `progress`, on by
    /// default). The total is known when the input iterator knows its
    /// exact length; otherwise the bar shows a count and rate.
    pub fn progress(self) -> Progress<Self> {
        let (lo, hi) = self.inputs.size_hint();
        let bar = match hi {
            Some(hi) if hi == lo => indicatif::ProgressBar::new(lo as u64 + self.pulled),
            _ => indicatif::ProgressBar::no_length(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} tasks  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress { inner: self, bar }
    }
}

#[cfg(feature = "progress")]
impl<I: Iterator> Iterator for Progress<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next();
        match item {
            Some(_) => self.bar.inc(1),
            None => self.bar.finish_and_clear(),
        }
        item
    }
}

#[cfg(feature = "progress")]
impl<I: Iterator> fmt::Debug for Progress<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("pos", &self.bar.position())
            .finish()
    }
}
