//! The bootstrap protocol: how a parent tells a fresh worker what to run.
//!
//! The child is started as `<exe> --multiproc-worker=<version>,<parent pid>,<handle>`.
//! It takes its end of the bootstrap channel (see `sys`), then reads the
//! header ([`codec::header`](crate::codec::header): magic, version, flags,
//! build identity and the three lengths), then:
//!
//! | bytes | field |
//! |---|---|
//! | n | entry id (the entry function's type name) |
//! | n | options (process name, parent-death policy; postcard) |
//! | n | payload (the arguments, postcard) |
//!
//! Every check that fails ends the worker with a one-line message on stderr
//! and a documented exit code ([`crate::exit_code`]); lengths are checked
//! against their caps before anything is allocated, and the payload buffer
//! grows only with bytes that actually arrived.

use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::handles;
use crate::codec::header::{self, Header};
use crate::codec::reply::Reply;
use crate::exit_code;
use crate::status::PanicReport;
use crate::sys;

use crate::codec::header::PROTOCOL_VERSION;

/// The command-line argument that makes a process a worker.
pub(crate) const MARKER: &str = "--multiproc-worker=";

/// One registered entry function.
#[doc(hidden)]
pub struct EntryDef {
    /// The id: `type_name` of the function item.
    pub name: fn() -> &'static str,
    /// The signature: `type_name` of `fn(A) -> R`.
    pub sig: fn() -> &'static str,
    /// Decodes the arguments, calls the function, encodes its result.
    pub run: fn(&[u8]) -> Result<Vec<u8>, RunFail>,
    /// The same over a batch of length-prefixed arguments, each task's
    /// failure listed in the third argument instead of a result: the hook a
    /// worker loop runs its batches with (the pool's, which
    /// [`entry!`](crate::entry) fills in); returns how many tasks it ran.
    pub run_batch: fn(&[u8], &mut Vec<u8>, &mut TaskFails) -> u32,
}

/// The tasks of a batch that failed: (index in the batch, why).
#[doc(hidden)]
pub type TaskFails = Vec<(u32, TaskFail)>;

/// Why one task of a batch produced no value.
#[doc(hidden)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TaskFail {
    /// It panicked.
    Panic(PanicReport),
    /// Its argument could not be decoded (it did not run).
    BadArgs(String),
    /// It ran, but its result could not be serialized.
    BadResult(String),
}

/// Why an entry produced no result bytes, other than a panic.
#[doc(hidden)]
#[derive(Debug)]
pub enum RunFail {
    /// The arguments could not be decoded: the function did not run.
    BadArgs(String),
    /// The function ran, but its result could not be serialized.
    BadResult(String),
}

impl std::fmt::Display for RunFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFail::BadArgs(why) => write!(f, "cannot decode the arguments: {why}"),
            RunFail::BadResult(why) => {
                write!(f, "ran, but cannot serialize the result: {why}")
            }
        }
    }
}

/// Every entry registered with [`entry!`](crate::entry) anywhere in the
/// program: a link-time slice (linkme) where the linker supports it.
#[doc(hidden)]
#[cfg(not(windows))]
#[linkme::distributed_slice]
pub static ENTRIES: [EntryDef];

// MinGW's linker does not gather linkme's `$`-suffixed sections, so on
// Windows entries register through C-runtime constructors in `.CRT$XCU`
// (inventory); `test_support!` runs from `.CRT$XCY`, which the C runtime
// calls after every `.CRT$XCU` entry, so the registry is complete by then.
#[cfg(windows)]
inventory::collect!(EntryDef);

/// All registered entries.
fn entries() -> impl Iterator<Item = &'static EntryDef> {
    #[cfg(not(windows))]
    return ENTRIES.iter();
    #[cfg(windows)]
    return inventory::iter::<EntryDef>.into_iter();
}

/// The stable id of the entry function `F`: its type name, which
/// [`entry!`](crate::entry) registers and a worker looks up.
///
/// Every place that takes an entry gets its id here — registration, and
/// the five public sites (`PopenBuilder::spawn`, through which
/// `Process::spawn` goes; `PoolBuilder::initializer`; `Pool::imap`, through
/// which `map*` go; `Pool::imap_unordered`; `Pool::submit`) — so a closure
/// that captures fails to compile at each of them alike: its captures could
/// not cross into another process. (A closure that captures nothing passes
/// this check, but no `entry!` can name it, so it is an unknown entry.)
#[doc(hidden)]
pub fn entry_id<F, A, R>(_: &F) -> &'static str
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

/// The signature of the function item `F`.
#[doc(hidden)]
pub fn signature_of<F: Fn(A) -> R, A, R>(_: &F) -> &'static str {
    std::any::type_name::<fn(A) -> R>()
}

/// The child half of an entry: decode, call, encode.
#[doc(hidden)]
pub fn run_entry<F, A, R>(f: F, input: &[u8]) -> Result<Vec<u8>, RunFail>
where
    F: Fn(A) -> R,
    A: DeserializeOwned,
    R: Serialize,
{
    // What the parent sent at spawn: the only decoding that takes handles
    // from the bootstrap channel (`codec::handles::bootstrap_decode`).
    let args: A = handles::bootstrap_decode(|| crate::encode::from_bytes(input))
        .map_err(|e| RunFail::BadArgs(e.to_string()))?;
    let out = f(args);
    crate::encode::to_vec(&out).map_err(|e| RunFail::BadResult(e.to_string()))
}

pub(crate) fn find_entry(name: &str) -> Option<&'static EntryDef> {
    entries().find(|e| (e.name)() == name)
}

/// The build identity: a hash of the protocol and crate versions, the entry
/// table (every entry's name and signature) and the link-time identity of
/// the binary that holds this code (`sys::image_build_id`: the GNU build id
/// on Linux, the PE time stamp, checksum and size on Windows). See
/// [`set_executable`](crate::set_executable) for what it does and does not
/// catch.
pub(crate) fn build_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let mut table: Vec<(&str, &str)> = entries().map(|e| ((e.name)(), (e.sig)())).collect();
        table.sort_unstable();
        // SipHash with fixed keys: the same in every process of one build.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        env!("CARGO_PKG_VERSION").hash(&mut h);
        PROTOCOL_VERSION.hash(&mut h);
        table.hash(&mut h);
        sys::image_build_id().hash(&mut h);
        h.finish()
    })
}

/// What a worker should know about itself besides its arguments.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct WorkerOptions {
    /// The name `current_process_name()` returns in the worker.
    pub name: Option<String>,
    /// Die when the parent dies (Linux: PR_SET_PDEATHSIG).
    pub die_with_parent: bool,
    /// Passed-handle tokens to install as stdout / stderr (captured output).
    pub capture: [Option<u64>; 2],
}

/// Builds the header, entry id and options that precede the payload.
pub(crate) fn encode_header(
    entry: &str,
    want_reply: bool,
    options: &WorkerOptions,
    payload_len: usize,
) -> Vec<u8> {
    let options = postcard::to_allocvec(options).unwrap_or_default();
    let header = Header {
        want_reply,
        build: build_id(),
        entry_len: entry.len() as u32,
        options_len: options.len() as u32,
        payload_len: payload_len as u64,
    };
    let mut out = Vec::with_capacity(header::LEN + entry.len() + options.len() + payload_len);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(entry.as_bytes());
    out.extend_from_slice(&options);
    out
}

/// The worker's command-line argument.
pub(crate) fn marker_arg(t: sys::BootToken) -> String {
    format!("{MARKER}{PROTOCOL_VERSION},{},{}", t.parent_pid, t.handle)
}

fn parse_marker(s: &str) -> Option<(u32, sys::BootToken)> {
    let mut it = s.split(',');
    let version = it.next()?.parse().ok()?;
    let parent_pid = it.next()?.parse().ok()?;
    let handle = it.next()?.parse().ok()?;
    it.next()
        .is_none()
        .then_some((version, sys::BootToken { parent_pid, handle }))
}

/// A bootstrap that failed: the exit code and a one-line reason.
#[derive(Debug)]
pub(crate) struct Fail(pub i32, pub String);

/// Checks a header (see [`Header::decode`]) against this build.
fn decode_header(b: &[u8; header::LEN]) -> Result<Header, Fail> {
    Header::decode(b, build_id()).map_err(|e| Fail(e.exit_code(), e.to_string()))
}

/// Reads exactly `len` bytes, growing the buffer only as bytes arrive.
fn read_bounded(r: &mut impl Read, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

struct ChannelReader<'a>(&'a sys::ChildChannel);

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

static CURRENT_NAME: OnceLock<String> = OnceLock::new();

fn set_current_name(name: String) {
    let _ = CURRENT_NAME.set(name);
}

/// This process's name: the one given to [`ProcessBuilder::name`](crate::ProcessBuilder::name)
/// in a worker, `"MainProcess"` elsewhere (Python's `current_process().name`).
pub fn current_process_name() -> &'static str {
    CURRENT_NAME
        .get()
        .map(String::as_str)
        .unwrap_or("MainProcess")
}

static INIT_CALLED: AtomicBool = AtomicBool::new(false);
/// Whether this process called [`init`] (so its executable can be a worker).
pub(crate) fn init_called() -> bool {
    INIT_CALLED.load(Ordering::Relaxed)
}

static IMAGE: OnceLock<Option<sys::RunningImage>> = OnceLock::new();
/// This process's executable as [`init`] found it, to start workers from;
/// `None` before `init`, or if it could not be opened then (spawns then
/// start `current_exe()` as a path).
pub(crate) fn running_image() -> Option<&'static sys::RunningImage> {
    IMAGE.get().and_then(Option::as_ref)
}

/// Turns this process into a worker if it was started as one.
///
/// Call it first thing in `main` (or use [`test_support!`](crate::test_support)
/// in test binaries, which runs it before `main`). In an ordinary run it
/// returns at once; in a worker it runs the requested entry function and
/// exits the process, never returning. See [`exit_code`]
/// for how a worker ends. On Windows it also runs a queue's lane keeper,
/// the process that keeps the queue's items larger than its ring (see
/// [`Queue`](crate::Queue)), when this program is started as one.
///
/// Calling `init()` also tells multiproc that this executable can act as a
/// worker; spawning without it (and without
/// [`set_executable`](crate::set_executable)) fails, so a program that forgot
/// it can't recursively run its own `main` in every child.
///
/// # Security
///
/// `init()` trusts its command line: whoever can start this executable with
/// the worker marker and feed it bootstrap data can run any registered entry
/// with arguments of their choosing. That is no more than they could do by
/// running the program themselves, unless the program runs with privileges
/// its caller lacks: don't call `init()` in a setuid/setgid executable or
/// one whose command line an untrusted party controls (a CGI script, a
/// helper started with user-supplied arguments). On Unix the bootstrap
/// channel is only ever taken from fd 3, where the spawn places it: a
/// program started by inetd or a socket-activating service manager, which
/// has a socket as stdin/stdout, is not a worker however its command line
/// reads (a marker that names another fd fails with
/// [`exit_code::NO_CHANNEL`]).
pub fn init() {
    // Before anything else, so that a replacement of the binary on disk
    // from now on is seen (in a worker too: its entry may spawn).
    IMAGE.get_or_init(|| sys::RunningImage::open().ok());
    INIT_CALLED.store(true, Ordering::Relaxed);
    sys::lane_keeper_init(running_image());
    // A queue's lane keeper (Windows: `sys/windows/keeper.rs`).
    if let Some(code) = sys::args_os()
        .get(1)
        .and_then(|first| sys::run_lane_keeper(first))
    {
        std::process::exit(code)
    }
    if let Some(entry) = std::env::var_os(LAUNCHED_ENTRY_ENV) {
        launched_worker_main(entry);
    }
    let mut args = sys::args_os().into_iter().skip(1);
    let Some(first) = args.next() else { return };
    let Some(rest) = first.to_str().and_then(|s| s.strip_prefix(MARKER)) else {
        if first.as_encoded_bytes().starts_with(MARKER.as_bytes()) {
            fail(Fail(
                exit_code::BAD_COMMAND_LINE,
                "worker marker is not valid UTF-8".into(),
            ));
        }
        return;
    };
    sys::ignore_sigpipe();
    let code = match worker_main(rest) {
        Ok(code) => code,
        Err(f) => fail(f),
    };
    // Children the entry started and dropped may still be taking their
    // bootstrap channel out of this process (Windows).
    sys::before_exit();
    std::process::exit(code)
}

/// The environment variable that makes this program a worker started by
/// a pool's launcher command ([`Launcher::command`](crate::Launcher::command)):
/// it names the entry to run, with `()`, which connects back to the pool
/// (the pool layer's `launched_worker`; the address and key are in the
/// environment too, never on the command line).
pub(crate) const LAUNCHED_ENTRY_ENV: &str = "MULTIPROC_LAUNCHED_ENTRY";

/// Runs the entry a launcher named, and exits: 0 when it returned, the
/// documented codes otherwise.
fn launched_worker_main(entry: std::ffi::OsString) -> ! {
    // Not for the worker's own children, which are ordinary workers.
    std::env::remove_var(LAUNCHED_ENTRY_ENV);
    sys::ignore_sigpipe();
    let name = entry.to_string_lossy().into_owned();
    let Some(def) = find_entry(&name) else {
        fail(Fail(
            exit_code::UNKNOWN_ENTRY,
            format!("unknown entry `{name}` (a launched worker of another build?)"),
        ))
    };
    install_panic_hook();
    let unit = postcard::to_allocvec(&()).unwrap_or_default();
    let code = match catch_task(|| (def.run)(&unit)) {
        Ok(Ok(_)) => exit_code::SUCCESS,
        Ok(Err(_)) => exit_code::BAD_PAYLOAD,
        Err(_) => exit_code::PANIC,
    };
    sys::before_exit();
    std::process::exit(code)
}

/// Makes this process a worker from inside its own program, as an SPMD
/// rank does in `PoolBuilder::build` (`pool/spmd.rs`): runs `serve`, whose
/// result is the exit code, with the panic hook that tasks' panic
/// reports need, and exits. Never returns.
pub(crate) fn become_worker(serve: impl FnOnce() -> i32) -> ! {
    sys::ignore_sigpipe();
    install_panic_hook();
    let code = serve();
    sys::before_exit();
    std::process::exit(code)
}

fn fail(f: Fail) -> ! {
    eprintln!(
        "multiproc worker {}: bootstrap failed: {}",
        std::process::id(),
        f.1
    );
    std::process::exit(f.0)
}

fn read_failure(e: io::Error) -> Fail {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Fail(
            exit_code::TRUNCATED,
            "the bootstrap data ended early (the parent died or closed the channel)".into(),
        )
    } else {
        Fail(
            exit_code::NO_CHANNEL,
            format!("cannot read the bootstrap channel: {e}"),
        )
    }
}

/// A validated bootstrap, as read after the header.
pub(crate) struct Bootstrap {
    pub entry_name: String,
    pub entry: &'static EntryDef,
    pub options: WorkerOptions,
    pub payload: Vec<u8>,
}

/// Validates `hdr` and reads the rest of the bootstrap from `r`: every
/// length checked against its cap first, buffers grown only as bytes
/// arrive. The decoder the fuzz target `bootstrap` drives.
pub(crate) fn read_bootstrap(
    hdr: &[u8; header::LEN],
    r: &mut impl Read,
) -> Result<Bootstrap, Fail> {
    let header = decode_header(hdr)?;
    let entry_name = read_bounded(r, header.entry_len.into()).map_err(read_failure)?;
    let entry_name = String::from_utf8_lossy(&entry_name).into_owned();
    let entry = find_entry(&entry_name).ok_or_else(|| {
        Fail(
            exit_code::UNKNOWN_ENTRY,
            format!("unknown entry `{entry_name}`"),
        )
    })?;
    let options = read_bounded(r, header.options_len.into()).map_err(read_failure)?;
    let options: WorkerOptions = postcard::from_bytes(&options).map_err(|e| {
        Fail(
            exit_code::BAD_PAYLOAD,
            format!("cannot decode the worker options: {e}"),
        )
    })?;
    let payload = read_bounded(r, header.payload_len).map_err(read_failure)?;
    Ok(Bootstrap {
        entry_name,
        entry,
        options,
        payload,
    })
}

fn worker_main(marker: &str) -> Result<i32, Fail> {
    let (version, token) = parse_marker(marker).ok_or_else(|| {
        Fail(
            exit_code::BAD_COMMAND_LINE,
            format!("malformed worker marker `{marker}`"),
        )
    })?;
    if version != PROTOCOL_VERSION {
        return Err(Fail(
            exit_code::VERSION_MISMATCH,
            format!("protocol version {version}, this worker speaks {PROTOCOL_VERSION}"),
        ));
    }
    let mut chan = sys::open_bootstrap(token).map_err(|e| {
        Fail(
            exit_code::NO_CHANNEL,
            format!("cannot open the bootstrap channel: {e}"),
        )
    })?;
    let mut hdr = [0u8; header::LEN];
    chan.recv_header(&mut hdr).map_err(read_failure)?;
    // From here on a failure is also reported over the channel when the
    // parent reads replies, so that it learns why from the worker itself.
    let wants_reply = Header::wants_reply(&hdr);
    let failed = |f: Fail, chan: Option<&sys::ChildChannel>| {
        if let (true, Some(chan)) = (wants_reply, chan) {
            let _ = send_reply(chan, &Reply::BootFailed(f.1.clone()));
        }
        f
    };
    let boot =
        read_bootstrap(&hdr, &mut ChannelReader(&chan)).map_err(|f| failed(f, Some(&chan)))?;
    let (entry_name, options, payload) = (boot.entry_name, boot.options, boot.payload);
    let entry = boot.entry;
    if options.die_with_parent {
        sys::die_with_parent(token.parent_pid).map_err(|e| {
            let f = Fail(
                exit_code::NO_CHANNEL,
                format!("cannot arm parent-death: {e}"),
            );
            failed(f, Some(&chan))
        })?;
    }
    if let Some(name) = options.name {
        set_current_name(name);
    }
    install_panic_hook();
    handles::receiving(chan);
    for (which, token) in [(1u8, options.capture[0]), (2u8, options.capture[1])] {
        if let Some(token) = token {
            handles::bootstrap_decode(|| handles::take_passed_handle(token))
                .and_then(|h| sys::set_std_handle(which, h))
                .map_err(|e| {
                    let f = Fail(
                        exit_code::NO_CHANNEL,
                        format!("cannot install the captured output handle: {e}"),
                    );
                    handles::with_receiving(|chan| failed(f, chan))
                })?;
        }
    }
    if wants_reply {
        // The bootstrap is through: whatever ends this process from here
        // on (its own `exit(205)` included) is the entry's doing.
        handles::with_receiving(|chan| {
            if let Some(chan) = chan {
                let _ = send_reply(chan, &Reply::Started);
            }
        });
    }
    let outcome = catch_task(|| (entry.run)(&payload));
    let chan = handles::stop_receiving();
    let (reply, code) = match outcome {
        Ok(Ok(bytes)) => (Reply::Value(bytes), exit_code::SUCCESS),
        Ok(Err(RunFail::BadArgs(why))) => {
            let msg = format!("cannot decode the arguments of `{entry_name}`: {why}");
            eprintln!(
                "multiproc worker {}: bootstrap failed: {msg}",
                std::process::id()
            );
            (Reply::BadArgs(msg), exit_code::BAD_PAYLOAD)
        }
        Ok(Err(RunFail::BadResult(why))) => {
            eprintln!(
                "multiproc worker {}: `{entry_name}` returned, but its result cannot be serialized: {why}",
                std::process::id()
            );
            (Reply::BadResult(why), exit_code::BAD_RESULT)
        }
        Err(report) => (Reply::Panic(report), exit_code::PANIC),
    };
    if wants_reply {
        if let Some(chan) = chan {
            if send_reply(&chan, &reply).is_err() {
                return Ok(exit_code::RESULT_UNDELIVERED.max(code));
            }
        }
    }
    Ok(code)
}

/// Writes one reply frame (see [`codec::reply`](crate::codec::reply)).
fn send_reply(chan: &sys::ChildChannel, reply: &Reply) -> io::Result<()> {
    let frame = reply.encode().map_err(io::Error::other)?;
    write_all(chan, &frame)
}

fn write_all(chan: &sys::ChildChannel, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = chan.write(buf)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

thread_local! {
    /// The latest panic on this thread, as the panic hook saw it (message
    /// and location); cleared by [`catch_task`] before each task or entry.
    /// Per thread: `catch_unwind` catches only this thread's panics, so a
    /// panic on another thread of the entry must not be taken for its own.
    static PANIC_REPORT: std::cell::Cell<Option<PanicReport>> = const { std::cell::Cell::new(None) };
}

fn install_panic_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| l.to_string());
        let report = PanicReport {
            message: payload_message(info.payload()),
            location,
        };
        // The latest panic wins: one the task caught itself came earlier.
        let _ = PANIC_REPORT.try_with(|slot| slot.set(Some(report)));
        previous(info);
    }));
}

/// A panic payload's message: the `&str` or `String` of `panic!`.
fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_string())
}

/// Runs one task or entry, catching a panic: the report of the panic that
/// ended it. The captured report is cleared first, so a panic that an
/// earlier task (or this one) caught itself is never reported for it.
pub(crate) fn catch_task<T>(f: impl FnOnce() -> T) -> Result<T, PanicReport> {
    let _ = PANIC_REPORT.try_with(|slot| slot.set(None));
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload_message(&*payload);
        // The hook's location belongs to this payload only if the messages
        // agree (a panic caught inside a destructor while unwinding would
        // otherwise lend its location).
        let location = take_latest_panic()
            .filter(|r| r.message == message)
            .and_then(|r| r.location);
        PanicReport { message, location }
    })
}

fn take_latest_panic() -> Option<PanicReport> {
    PANIC_REPORT.try_with(|slot| slot.take()).ok().flatten()
}

/// The latest panic the hook saw on this thread, taken (empty if none);
/// for code that catches panics itself. Prefer [`catch_task`].
pub(crate) fn take_panic_report() -> PanicReport {
    take_latest_panic().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(entry: &str, payload_len: usize) -> [u8; header::LEN] {
        let v = encode_header(entry, false, &WorkerOptions::default(), payload_len);
        let mut h = [0u8; header::LEN];
        h.copy_from_slice(&v[..header::LEN]);
        h
    }

    #[test]
    fn header_carries_entry_and_options_lengths() {
        let h = decode_header(&header("a::b", 12)).unwrap();
        assert_eq!(
            h,
            Header {
                want_reply: false,
                build: build_id(),
                entry_len: 4,
                options_len: postcard::to_allocvec(&WorkerOptions::default())
                    .unwrap()
                    .len() as u32,
                payload_len: 12
            }
        );
    }

    #[test]
    fn header_of_another_build_fails_with_its_exit_code() {
        let mut h = header("x", 0);
        h[header::offset::BUILD.start] ^= 1;
        let f = decode_header(&h).unwrap_err();
        assert_eq!(f.0, exit_code::BUILD_MISMATCH);
        assert!(f.1.contains("not the parent's build"), "{}", f.1);
    }

    #[test]
    fn marker_parses_only_exact_form() {
        let t = sys::BootToken {
            parent_pid: 7,
            handle: 3,
        };
        let m = marker_arg(t);
        assert_eq!(
            parse_marker(m.strip_prefix(MARKER).unwrap()),
            Some((PROTOCOL_VERSION, t))
        );
        assert_eq!(parse_marker("1,2"), None);
        assert_eq!(parse_marker("1,2,3,4"), None);
        assert_eq!(parse_marker("1,x,3"), None);
    }

    #[test]
    fn read_bounded_reports_truncation() {
        let mut r: &[u8] = b"abc";
        let e = read_bounded(&mut r, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
