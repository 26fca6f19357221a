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

use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::handles::{self, Carried};
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

/// The child half of a pool chunk: for every length-prefixed argument in
/// `input`, decode, call, and append the length-prefixed result to `out`;
/// a task that fails appends nothing and is listed in `fails` instead.
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
                    match crate::encode::append(&v, &mut scratch) {
                        Ok(_) => put_frame(out, &scratch),
                        Err(e) => fails.push((i, TaskFail::BadResult(e.to_string()))),
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
    /// length-prefixed, in order; the ones that failed, by index.
    Done {
        id: u64,
        #[serde(with = "serde_bytes")]
        values: Vec<u8>,
        fails: Vec<(u32, TaskFail)>,
    },
    /// After its last `Done`: the worker's resident memory is `rss`
    /// bytes, over `max_memory_per_child`; it exits without starting
    /// anything more (the chunks it was sent after that one never ran).
    Recycle {
        rss: u64,
    },
}

#[derive(Serialize, Deserialize)]
pub(super) struct WorkerConfig {
    pub(super) initializer: Option<(String, InitArgs)>,
    /// `max_memory_per_child`: checked after each chunk.
    pub(super) max_memory: Option<u64>,
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

/// A pool worker's channel to its parent, for [`worker_connection`].
static WORKER_CONN: OnceLock<Arc<Connection>> = OnceLock::new();

/// In a pool worker: its channel to the parent; `None` elsewhere. The hook
/// behind the fault tests (a task that forges frames as a hostile worker
/// would, or hands the channel to a grandchild).
#[cfg(feature = "test-hooks")]
pub(crate) fn worker_connection() -> Option<&'static Connection> {
    WORKER_CONN.get().map(|c| &**c)
}

/// The loop a pool worker runs.
pub(super) fn pool_worker_main((conn, cfg): (Connection, WorkerConfig)) {
    let conn = Arc::new(conn);
    // Windows: handles in task frames arrive as values the parent
    // duplicated into this process.
    conn.take_handles_from_parent();
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
        let Ok((frame, carried)) = conn.recv_frame() else {
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
                Some(def) if c.handles.is_empty() => {
                    (def.run_batch)(&c.tasks, &mut values, &mut fails);
                }
                Some(def) => {
                    let n: usize = c.handles.iter().map(|&k| k as usize).sum();
                    let mine = carried.take_front(n);
                    handles::receiving_batch(mine, c.handles, || {
                        (def.run_batch)(&c.tasks, &mut values, &mut fails)
                    });
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
}
