//! The pool's wire format and the loop a worker runs over it.
//!
//! The parent writes [`ToWorker`] frames (many chunks of tasks each); the
//! worker answers with [`FromWorker`] messages: `Started` when it reads a
//! frame, `Done` for each chunk as soon as that chunk is finished.
//!
//! A chunk's tasks travel as their arguments, each length-prefixed
//! ([`put_frame`]/[`take_frame`]), back to back; the worker runs them with
//! the entry's [`run_batch`] and answers with the results the same way,
//! plus the failed tasks by index ([`TaskFails`]).
//!
//! Handles go both ways with the frames: a chunk's with its `Work` frame,
//! a chunk's results' with its `Done` message, each with how many handles
//! each task has (`handles`), so that a task's tokens index its own only.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::handles::{self, Carried, MAX_HANDLES};
use crate::connection::Connection;
use crate::encode::{self, EncodeError};
use crate::spawn::{self, catch_task};
pub(super) use crate::spawn::{TaskFail, TaskFails};

// ---------------------------------------------------------------- wire

/// Appends `item` to `out` as a LEB128 length, then its bytes.
pub(super) fn put_frame(out: &mut Vec<u8>, item: &[u8]) {
    let mut n = item.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(item);
}

/// Splits the next length-prefixed item off `buf`; `None` when the length
/// is malformed or runs past the end.
pub(super) fn take_frame(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let rest = &buf[i + 1..];
            let len = usize::try_from(len).ok().filter(|&l| l <= rest.len())?;
            return Some(rest.split_at(len));
        }
    }
    None
}

thread_local! {
    /// In a pool worker, while it runs a chunk: the handles its results
    /// carry so far (see [`run_batch`]).
    static RESULT_HANDLES: RefCell<Option<HandlesBuilder>> = const { RefCell::new(None) };
}

/// Task `index`'s result carries `carried`: kept for the chunk's `Done`
/// message. Why not, when the results can't carry handles here (not in a
/// pool worker's chunk) or the chunk's would be too many.
fn keep_result_handles(index: u32, carried: Carried) -> std::result::Result<(), String> {
    RESULT_HANDLES.with(|r| {
        let mut r = r.borrow_mut();
        let Some(builder) = r.as_mut() else {
            return Err("a result can carry handles only from a pool worker's task".into());
        };
        if builder.len() + carried.len() > MAX_HANDLES {
            return Err(format!(
                "the results of one chunk can carry at most {MAX_HANDLES} handles in all"
            ));
        }
        builder.add(index, carried);
        Ok(())
    })
}

/// Runs `f` (which runs a chunk of tasks) collecting the handles their
/// results carry; returns what it returned and those handles.
fn collecting_results<R>(f: impl FnOnce() -> (R, u32)) -> (R, TaskHandles) {
    let outer = RESULT_HANDLES.with(|r| r.borrow_mut().replace(HandlesBuilder::default()));
    let (out, n) = f();
    let mut mine = RESULT_HANDLES.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
    let handles = mine.as_mut().map(|b| b.finish(n)).unwrap_or_default();
    (out, handles)
}

/// The child half of a pool chunk: for every length-prefixed argument in
/// `input`, decode, call, and append the length-prefixed result to `out`;
/// a task that fails appends nothing and is listed in `fails` instead.
/// Handles in a result (see [`pass_handle`](crate::pass_handle)) are kept
/// for the chunk's answer, in a pool worker; elsewhere the task fails.
#[doc(hidden)]
pub fn run_batch<F, A, R>(f: F, input: &[u8], out: &mut Vec<u8>, fails: &mut TaskFails) -> u32
where
    F: Fn(A) -> R,
    A: DeserializeOwned,
    R: Serialize,
{
    let mut rest = input;
    let mut i = 0u32;
    let mut scratch = Vec::new();
    // One transfer for the chunk's results: a result without handles
    // costs a thread-local load (see `TaskTransfer`).
    let mut transfer = handles::TaskTransfer::open();
    while !rest.is_empty() {
        let Some((arg, next)) = take_frame(rest) else {
            fails.push((i, TaskFail::BadArgs("a truncated batch".into())));
            return i + 1;
        };
        rest = next;
        // The task's handles (if the chunk came with any) are what its
        // tokens name, only while it is decoded.
        handles::next_task();
        let decoded = crate::encode::from_bytes::<A>(arg);
        handles::task_decoded();
        match decoded {
            Err(e) => fails.push((i, TaskFail::BadArgs(e.to_string()))),
            Ok(a) => match catch_task(|| f(a)) {
                Err(report) => fails.push((i, TaskFail::Panic(report))),
                Ok(v) => {
                    scratch.clear();
                    // Handles passed while the task ran, outside any
                    // serialization of its own, are not its result's:
                    // closed here.
                    drop(transfer.take());
                    let encoded = crate::encode::append(&v, &mut scratch);
                    let carried = transfer.take();
                    drop(v);
                    let kept = match encoded {
                        Err(e) => Err(e.to_string()),
                        Ok(()) if carried.is_empty() => Ok(()),
                        Ok(()) => keep_result_handles(i, carried),
                    };
                    match kept {
                        Ok(()) => put_frame(out, &scratch),
                        Err(why) => fails.push((i, TaskFail::BadResult(why))),
                    }
                }
            },
        }
        i += 1;
    }
    i
}

#[derive(Serialize, Deserialize)]
pub(super) enum ToWorker {
    Work {
        frame: u64,
        entries: Vec<String>,
        chunks: Vec<WireChunk>,
    },
    Shutdown,
    /// The parent is there (to a launched worker or rank, see [`Heartbeat`]); the
    /// worker's thread that reads the connection takes it.
    Heartbeat,
}

/// The sending side of [`ToWorker`], borrowing the payloads (the same
/// encoding: postcard writes a slice and a `Vec` alike).
#[derive(Serialize)]
pub(super) enum ToWorkerRef<'a> {
    Work {
        frame: u64,
        entries: &'a [&'a str],
        chunks: &'a [WireChunkRef<'a>],
    },
}

#[derive(Serialize)]
pub(super) struct WireChunkRef<'a> {
    pub(super) id: u64,
    pub(super) entry: u16,
    #[serde(with = "serde_bytes")]
    pub(super) tasks: &'a [u8],
    pub(super) handles: &'a [u32],
}

/// A chunk: its tasks' arguments, each length-prefixed, back to back.
#[derive(Serialize, Deserialize)]
pub(super) struct WireChunk {
    pub(super) id: u64,
    pub(super) entry: u16,
    #[serde(with = "serde_bytes")]
    pub(super) tasks: Vec<u8>,
    /// How many handles each task has, in task order (empty: none). The
    /// frame's handles are the chunks' handles, in chunk order.
    pub(super) handles: Vec<u32>,
}

/// The handles of a chunk's tasks: the copies this process sends with it
/// (kept until the chunk is done, to send again if its worker dies), and
/// how many each task has (empty: none).
#[derive(Debug, Default)]
pub(super) struct TaskHandles {
    pub(super) carried: Option<Arc<Carried>>,
    pub(super) counts: Vec<u32>,
}

impl TaskHandles {
    /// How many handles the chunk has.
    pub(super) fn len(&self) -> usize {
        self.carried.as_ref().map_or(0, |c| c.len())
    }
}

/// Collects the handles of a chunk's tasks as they are encoded.
#[derive(Default)]
pub(super) struct HandlesBuilder {
    carried: Carried,
    counts: Vec<u32>,
}

impl HandlesBuilder {
    /// How many handles so far.
    pub(super) fn len(&self) -> usize {
        self.carried.len()
    }

    /// Task `index` of the chunk (the tasks before it were added) has
    /// `carried`. Once per task: nothing to do while no task had any.
    #[inline]
    pub(super) fn add(&mut self, index: u32, carried: Carried) {
        if carried.is_empty() && self.counts.is_empty() {
            return;
        }
        self.counts.resize(index as usize, 0);
        self.counts.push(carried.len() as u32);
        self.carried.append(carried);
    }

    /// The handles of a chunk of `n` tasks; the builder is empty again.
    pub(super) fn finish(&mut self, n: u32) -> TaskHandles {
        if self.counts.is_empty() {
            return TaskHandles::default();
        }
        let mut counts = std::mem::take(&mut self.counts);
        counts.resize(n as usize, 0);
        TaskHandles {
            carried: Some(Arc::new(std::mem::take(&mut self.carried))),
            counts,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) enum FromWorker {
    Ready,
    /// The worker read frame `0` and starts on its chunks, in order.
    Started(u64),
    InitFailed(String),
    /// Chunk `id` is done: the results of the tasks that succeeded, each
    /// length-prefixed, in order; the ones that failed, by index; how many
    /// handles each task's result carries, in task order (empty: none),
    /// which came with this message.
    Done {
        id: u64,
        #[serde(with = "serde_bytes")]
        values: Vec<u8>,
        fails: Vec<(u32, TaskFail)>,
        handles: Vec<u32>,
    },
    /// After its last `Done`: the worker's resident memory is `rss`
    /// bytes, over `max_memory_per_child`; it exits without starting
    /// anything more (the chunks it was sent after that one never ran).
    Recycle {
        rss: u64,
    },
    /// The worker is there (a launched worker or rank, see [`Heartbeat`]; sent by
    /// a thread of its own, also while a task runs); the parent's reader
    /// takes it.
    Heartbeat,
}

/// Heartbeats on a launched worker's (or an SPMD rank's) connection, both
/// ways: each side sends one every `interval` (the parent when it has
/// written nothing else for that long; the worker always, from a thread
/// of its own), and a side that hears nothing from the other for
/// `timeout` counts it as gone: the parent gives the worker up (its task
/// fails with `WorkerDied`, "no heartbeat for …"), the worker exits
/// ([`PARENT_GONE`](crate::exit_code::PARENT_GONE)). Local workers have
/// none (their process is watched instead).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(super) struct Heartbeat {
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WorkerConfig {
    pub(super) initializer: Option<(String, InitArgs)>,
    /// `max_memory_per_child`: checked after each chunk.
    pub(super) max_memory: Option<u64>,
    /// A launched worker's or an SPMD rank's heartbeats (a rank learns
    /// them here); `None` for a local worker.
    pub(super) heartbeat: Option<Heartbeat>,
}

/// The initializer's arguments. The parent keeps the value and serializes
/// it anew for each worker, while that worker is spawned, so that the
/// handles in it (a `Connection`, a `Frozen` block) pass to that worker;
/// the worker receives the bytes and decodes them in the initializer,
/// still inside its bootstrap (where passed handles can be taken).
#[derive(Clone)]
pub(crate) enum InitArgs {
    /// The parent's side: writes the value.
    Value(Arc<WriteArgs>),
    /// The worker's side: the value's bytes.
    Received(Vec<u8>),
}

/// Appends the initializer's arguments, serialized.
type WriteArgs = dyn Fn(&mut Vec<u8>) -> Result<(), EncodeError> + Send + Sync;

impl InitArgs {
    pub(crate) fn new<A: Serialize + Send + Sync + 'static>(args: A) -> Self {
        InitArgs::Value(Arc::new(move |out| encode::append(&args, out)))
    }
}

impl std::fmt::Debug for InitArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitArgs::Value(_) => f.write_str("InitArgs::Value(..)"),
            InitArgs::Received(b) => write!(f, "InitArgs::Received({} bytes)", b.len()),
        }
    }
}

impl Serialize for InitArgs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InitArgs::Received(bytes) => s.serialize_bytes(bytes),
            InitArgs::Value(write) => {
                let mut bytes = Vec::new();
                match write(&mut bytes) {
                    Ok(()) => s.serialize_bytes(&bytes),
                    // Keep the handle's error for the spawn's encoder.
                    Err(EncodeError::Handle(e)) => Err(match Arc::try_unwrap(e) {
                        Ok(e) => encode::handle_error(e),
                        Err(e) => serde::ser::Error::custom(e),
                    }),
                    Err(e) => Err(serde::ser::Error::custom(e)),
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for InitArgs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_bytes::ByteBuf::deserialize(d).map(|b| InitArgs::Received(b.into_vec()))
    }
}

/// Decodes `data` as each of the pool's messages; whether each decoded.
#[cfg(feature = "test-hooks")]
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

/// A pool worker's channel to its parent, for the test hooks
/// (`worker_connection`, `forge_answer`).
static WORKER_CONN: OnceLock<Arc<Connection>> = OnceLock::new();

/// In a pool worker: its channel to the parent; `None` elsewhere. The hook
/// behind the fault tests (a task that forges frames as a hostile worker
/// would, or hands the channel to a grandchild).
#[cfg(feature = "test-hooks")]
pub(crate) fn worker_connection() -> Option<&'static Connection> {
    WORKER_CONN.get().map(|c| &**c)
}

/// In a pool worker: the chunk it is running (for [`forge_answer`]).
#[cfg(feature = "test-hooks")]
static CURRENT_CHUNK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// In a pool worker's task, as a hostile or broken worker would: sends an
/// answer for the chunk being run whose first task's result is a
/// [`PassedHandle`](crate::PassedHandle) (token 0) and which says that
/// result carries `claimed` handles. With `values`, the frame's handle
/// block names those values and nothing else is sent (Windows: values the
/// parent is to take out of this process); without, `handles` really go
/// with it. The worker's own answer for the chunk, later, is ignored (the
/// chunk is done by then).
#[cfg(feature = "test-hooks")]
pub(crate) fn forge_answer(
    claimed: u32,
    handles: Vec<crate::sys::OwnedRaw>,
    values: &[u64],
) -> crate::Result<()> {
    let conn = WORKER_CONN.get().ok_or_else(|| {
        crate::Error::io("not a pool worker", std::io::Error::other("no channel"))
    })?;
    let mut result = Vec::new();
    put_frame(&mut result, &[0]); // postcard's 0u64: token 0
    let done = FromWorker::Done {
        id: CURRENT_CHUNK.load(std::sync::atomic::Ordering::Relaxed),
        values: result,
        fails: Vec::new(),
        handles: vec![claimed],
    };
    let bytes = postcard::to_allocvec(&done).expect("encodes");
    if values.is_empty() {
        let carried = Carried::from_received(handles);
        return conn.send_with_handles(&bytes, &[&carried]);
    }
    let mut body = Vec::new();
    handles::put_block(&mut body, values.len(), values);
    body.extend_from_slice(&bytes);
    let mut frame = (body.len() as u64 | 1 << 62).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    conn.send_unframed(&frame)
}

/// A frame from the parent and its handles (or why they could not be
/// taken); `None` once there are no more.
pub(super) type InFrame = (Vec<u8>, crate::Result<Carried>);

/// The loop a local pool worker runs, reading its frames itself.
pub(super) fn pool_worker_main((conn, cfg): (Connection, WorkerConfig)) {
    let conn = Arc::new(conn);
    let reader = Arc::clone(&conn);
    worker_loop(conn, cfg, move || reader.recv_frame().ok());
}

/// The loop a pool worker runs: answers on `conn`, takes the parent's
/// frames from `next` (a local worker reads them from `conn` itself; a
/// launched one from a thread that watches the connection).
pub(super) fn worker_loop(
    conn: Arc<Connection>,
    cfg: WorkerConfig,
    mut next: impl FnMut() -> Option<InFrame>,
) {
    // A local worker's end was marked as its channel to the parent at its
    // spawn, so it carries handles both ways on Windows too; a launched
    // worker's connection (TCP, to a pool that did not start it) does not:
    // its tasks and results can't carry handles.
    let _ = WORKER_CONN.set(Arc::clone(&conn));
    if let Some((name, InitArgs::Received(payload))) = cfg.initializer {
        if let Err(why) = run_initializer(&name, &payload) {
            let _ = conn.send(&FromWorker::InitFailed(why));
            return;
        }
    }
    if conn.send(&FromWorker::Ready).is_err() {
        return;
    }
    loop {
        let Some((frame, carried)) = next() else {
            return;
        };
        // Handles that could not be taken: the tasks that have some fail
        // to decode (their tokens name nothing), the others run; the
        // worker goes on (exiting would have the frame sent to the next
        // worker, to fail the same way).
        let mut carried = carried.unwrap_or_else(|e| {
            eprintln!("multiproc pool worker: {e}");
            Carried::default()
        });
        let Ok(msg) = postcard::from_bytes::<ToWorker>(&frame) else {
            eprintln!("multiproc pool worker: undecodable frame from the parent");
            return;
        };
        let (entries, chunks) = match msg {
            ToWorker::Shutdown => return,
            ToWorker::Heartbeat => continue,
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
            #[cfg(feature = "test-hooks")]
            CURRENT_CHUNK.store(c.id, std::sync::atomic::Ordering::Relaxed);
            let mut values = Vec::new();
            let mut fails = Vec::new();
            let ((), out) = collecting_results(|| {
                let n = match defs.get(c.entry as usize).copied().flatten() {
                    Some(def) if c.handles.is_empty() => {
                        (def.run_batch)(&c.tasks, &mut values, &mut fails)
                    }
                    Some(def) => {
                        let n: usize = c.handles.iter().map(|&k| k as usize).sum();
                        let mine = carried.take_front(n);
                        handles::receiving_batch(mine, c.handles, || {
                            (def.run_batch)(&c.tasks, &mut values, &mut fails)
                        })
                    }
                    None => {
                        let name = entries.get(c.entry as usize).map_or("", String::as_str);
                        let why = format!("unknown entry `{name}` in the worker");
                        fails.push((0, TaskFail::BadArgs(why)));
                        1
                    }
                };
                ((), n)
            });
            if !send_done(&conn, c.id, values, fails, out) {
                return;
            }
            if let Some(max) = cfg.max_memory {
                // Not measurable here (an error): never recycled.
                match crate::sys::resident_memory() {
                    Ok(rss) if rss > max => {
                        let _ = conn.send(&FromWorker::Recycle { rss });
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Sends chunk `id`'s answer with the handles its results carry; whether
/// the channel can still be used. When the handles can't be sent (and the
/// stream is not poisoned by it), the tasks whose results carry them fail
/// instead, and the others' results go.
fn send_done(
    conn: &Connection,
    id: u64,
    values: Vec<u8>,
    fails: TaskFails,
    out: TaskHandles,
) -> bool {
    let Some(carried) = out.carried.as_deref() else {
        let done = FromWorker::Done {
            id,
            values,
            fails,
            handles: Vec::new(),
        };
        return conn.send(&done).is_ok();
    };
    let done = FromWorker::Done {
        id,
        values,
        fails,
        handles: out.counts,
    };
    let sent = encode::to_vec(&done)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            conn.send_with_handles(&bytes, &[carried])
                .map_err(|e| e.to_string())
        });
    let why = match sent {
        Ok(()) => return true,
        Err(why) => why,
    };
    let FromWorker::Done {
        values,
        fails,
        handles,
        ..
    } = done
    else {
        unreachable!("built above")
    };
    let (values, fails) = drop_results_with_handles(values, fails, &handles, &why);
    let done = FromWorker::Done {
        id,
        values,
        fails,
        handles: Vec::new(),
    };
    conn.send(&done).is_ok()
}

/// A chunk's results without those of the tasks whose results carry
/// handles (`counts`): those tasks fail with `why` instead. Fails stay in
/// task order.
fn drop_results_with_handles(
    values: Vec<u8>,
    fails: TaskFails,
    counts: &[u32],
    why: &str,
) -> (Vec<u8>, TaskFails) {
    let failed: std::collections::HashSet<u32> = fails.iter().map(|(i, _)| *i).collect();
    let mut kept = Vec::new();
    let mut fails = fails;
    let mut rest = &values[..];
    let mut i = 0u32;
    while let Some((item, next)) = take_frame(rest) {
        while failed.contains(&i) {
            i += 1;
        }
        rest = next;
        if counts.get(i as usize).is_some_and(|&k| k > 0) {
            let msg = format!("its result's handles could not be sent to the parent: {why}");
            fails.push((i, TaskFail::BadResult(msg)));
        } else {
            put_frame(&mut kept, item);
        }
        i += 1;
    }
    fails.sort_by_key(|(i, _)| *i);
    (kept, fails)
}

#[allow(unsafe_code)] // linkme registers the entry through a link section
mod registration {
    crate::entry!(super::pool_worker_main);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_overruns() {
        let mut buf = Vec::new();
        for item in [&b""[..], b"a", &[7u8; 300]] {
            put_frame(&mut buf, item);
        }
        let (a, rest) = take_frame(&buf).unwrap();
        let (b, rest) = take_frame(rest).unwrap();
        let (c, rest) = take_frame(rest).unwrap();
        assert_eq!((a, b, c.len(), rest.len()), (&b""[..], &b"a"[..], 300, 0));
        assert_eq!(take_frame(&[0x05, 1, 2]), None); // claims 5, has 2
        assert_eq!(take_frame(&[0xff; 11]), None); // no end to the length
    }

    #[test]
    fn results_whose_handles_could_not_be_sent_become_failures_in_task_order() {
        // Tasks 0..5: 1 failed already; 2 and 4 carry handles.
        let mut values = Vec::new();
        for item in [&b"a"[..], b"c", b"d", b"e"] {
            put_frame(&mut values, item);
        }
        let fails = vec![(1, TaskFail::BadArgs("x".into()))];
        let (kept, fails) = drop_results_with_handles(values, fails, &[0, 0, 1, 0, 2], "full");
        let (a, rest) = take_frame(&kept).unwrap();
        let (d, rest) = take_frame(rest).unwrap();
        assert_eq!((a, d, rest.len()), (&b"a"[..], &b"d"[..], 0));
        let idx: Vec<u32> = fails.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, [1, 2, 4]);
        assert!(matches!(&fails[1].1, TaskFail::BadResult(m) if m.contains("full")));
    }

    #[test]
    fn a_result_with_handles_outside_a_pool_worker_is_a_bad_result() {
        fn give(_: ()) -> crate::PassedHandle {
            let (r, _w) = std::io::pipe().unwrap();
            crate::PassedHandle::new(r.into())
        }
        let mut input = Vec::new();
        put_frame(&mut input, &[]);
        let (mut out, mut fails) = (Vec::new(), Vec::new());
        assert_eq!(run_batch(give, &input, &mut out, &mut fails), 1);
        assert!(out.is_empty());
        assert!(
            matches!(&fails[..], [(0, TaskFail::BadResult(m))] if m.contains("only from a pool worker")),
            "{fails:?}"
        );
    }
}
