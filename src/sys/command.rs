//! Launcher commands: an arbitrary program (`sh -c …`, `srun …`, `ssh
//! host …`) that starts a pool worker somewhere, which then connects back
//! (`pool/launcher.rs`). std's `Command`, with stdin the null device and
//! stdout and stderr pipes that a thread each copies to this process's
//! stdout and stderr, line by line, each line prefixed with who wrote it
//! (`[host:pid] `, see [`CommandChild::set_output_prefix`]); or, unprefixed,
//! stdout inherited and stderr copied as it comes. The stderr thread keeps
//! the last [`STDERR_TAIL`] bytes for the error of a launch that fails. The
//! child's pid stays ours (unreaped) until it is waited for, so `kill`
//! never hits a reused pid.
//!
//! One thread per stream rather than one thread polling all of them:
//! std's pipe ends are blocking, and waiting on several at once would take
//! platform code of its own (`poll` on Unix; on Windows an anonymous pipe
//! can't be waited on, it would take overlapped named pipes), for threads
//! that cost no CPU while they wait in `read`. A line is written with one
//! `write_all` under the lock of this process's `stdout`/`stderr`, which
//! every writer of this process takes (`println!` too), so no line is
//! split by another worker's. A line is kept in memory only up to
//! [`MAX_LINE`] bytes: a longer one is written in pieces of that size, each
//! a line of its own with the prefix.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::RawStatus;
use crate::deadline;

/// How much of a launcher command's stderr is kept for its error.
pub(crate) const STDERR_TAIL: usize = 2048;

/// The longest line kept whole in prefixed output; a longer one is cut into
/// pieces of this size, each written as a line of its own.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// How long dropping a [`CommandChild`] waits for its output to end (the
/// last lines copied), once the command has exited.
const OUTPUT_LINGER: Duration = Duration::from_secs(1);

/// What the copying threads share with the [`CommandChild`].
#[derive(Debug, Default)]
struct Streams {
    state: Mutex<StreamState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct StreamState {
    /// The last [`STDERR_TAIL`] bytes of stderr.
    tail: Vec<u8>,
    /// Stderr ended (or nothing copies it).
    stderr_ended: bool,
    /// Streams still being copied.
    open: usize,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `done` holds or `until` passes.
    fn wait_until(&self, until: Option<Instant>, done: impl Fn(&StreamState) -> bool) {
        let mut st = self.lock();
        while !done(&st) && !deadline::passed(until) {
            let left = until.map_or(Duration::from_secs(3600), |u| {
                u.saturating_duration_since(Instant::now())
            });
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The prefix of each line a command's output gets, `[who:pid] `.
type Prefix = Mutex<Arc<[u8]>>;

fn prefix_text(who: &str, pid: u32) -> Arc<[u8]> {
    format!("[{who}:{pid}] ").into_bytes().into()
}

/// A started launcher command.
#[derive(Debug)]
pub(crate) struct CommandChild {
    child: Mutex<Child>,
    status: Mutex<Option<RawStatus>>,
    pid: u32,
    streams: Arc<Streams>,
    /// `None`: output not prefixed.
    prefix: Option<Arc<Prefix>>,
}

/// Which of this process's streams a copy goes to.
#[derive(Clone, Copy)]
enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    /// Writes `bytes` whole under the stream's lock; errors are dropped (a
    /// closed stdout of ours must not stop the command).
    fn write(self, bytes: &[u8]) {
        match self {
            Sink::Stdout => write_to(&mut io::stdout().lock(), bytes),
            Sink::Stderr => write_to(&mut io::stderr().lock(), bytes),
        }
    }
}

/// Writes `bytes`; where the stream takes only UTF-8 (std's stdout and
/// stderr on a Windows console write the valid start of a buffer, then
/// refuse the rest with `InvalidData`), the rest as lossy UTF-8, so that a
/// line with other bytes (or a piece of a long line cut inside a
/// character) still shows, once.
fn write_to(to: &mut impl Write, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match to.write(rest) {
            Ok(0) => return,
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = to.write_all(String::from_utf8_lossy(rest).as_bytes());
                return;
            }
            Err(_) => return,
        }
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes: whole
/// lines (without their `\n`), pieces of longer ones, and at the end the
/// last line if it had no `\n`.
#[derive(Default)]
struct Lines {
    /// The start of a line whose end has not come yet (at most
    /// [`MAX_LINE`] bytes).
    partial: Vec<u8>,
}

impl Lines {
    /// Hands `emit` each line (or piece of [`MAX_LINE`] bytes) that
    /// `data` completes; keeps the rest.
    fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = MAX_LINE - self.partial.len();
            // A `\n` among the next `room + 1` bytes ends a line of at
            // most MAX_LINE bytes.
            let newline = data.iter().take(room + 1).position(|&b| b == b'\n');
            match newline {
                Some(i) if self.partial.is_empty() => emit(&data[..i]),
                Some(i) => {
                    self.partial.extend_from_slice(&data[..i]);
                    emit(&self.partial);
                    self.partial.clear();
                }
                None if data.len() > room => {
                    // More than fits, and no end in sight: a piece.
                    self.partial.extend_from_slice(&data[..room]);
                    emit(&self.partial);
                    self.partial.clear();
                    data = &data[room..];
                    continue;
                }
                None => {
                    self.partial.extend_from_slice(data);
                    return;
                }
            }
            data = &data[newline.map_or(data.len(), |i| i + 1)..];
        }
    }

    /// At the end of the stream: the last line, if it had no `\n`.
    fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }
}

/// Copies `from` to `to` until it ends: as it comes without a prefix, else
/// line by line, each line after the prefix as it is then. Keeps the last
/// [`STDERR_TAIL`] bytes in `streams` if `keep_tail`.
fn copy_stream(
    mut from: impl Read,
    to: Sink,
    prefix: Option<&Prefix>,
    streams: &Streams,
    keep_tail: bool,
) {
    let mut buf = [0u8; 8192];
    let mut lines = Lines::default();
    let mut out = Vec::new();
    let mut write_line = |line: &[u8]| {
        let Some(prefix) = prefix else { return };
        let prefix = Arc::clone(&prefix.lock().unwrap_or_else(|e| e.into_inner()));
        out.clear();
        out.extend_from_slice(&prefix);
        out.extend_from_slice(line);
        out.push(b'\n');
        to.write(&out);
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if prefix.is_some() {
            lines.feed(&buf[..n], &mut write_line);
        } else {
            to.write(&buf[..n]);
        }
        if keep_tail {
            let mut st = streams.lock();
            st.tail.extend_from_slice(&buf[..n]);
            if st.tail.len() > STDERR_TAIL {
                let cut = st.tail.len() - STDERR_TAIL;
                st.tail.drain(..cut);
            }
        }
    }
    lines.finish(&mut write_line);
    let mut st = streams.lock();
    st.open -= 1;
    if keep_tail {
        st.stderr_ended = true;
    }
    drop(st);
    streams.changed.notify_all();
}

/// Starts `argv` (the program, then its arguments) with `env` added to
/// this process's environment; with `prefix_output`, its stdout and stderr
/// lines are prefixed, `[program:pid] ` until
/// [`CommandChild::set_output_prefix`] says who writes.
pub(crate) fn spawn_command(
    argv: &[OsString],
    env: &[(String, String)],
    prefix_output: bool,
) -> io::Result<CommandChild> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::piped());
    if prefix_output {
        cmd.stdout(Stdio::piped());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let prefix = prefix_output.then(|| {
        let name = std::path::Path::new(program)
            .file_name()
            .unwrap_or(program.as_os_str())
            .to_string_lossy();
        Arc::new(Mutex::new(prefix_text(&name, pid)))
    });
    let streams = Arc::new(Streams::default());
    let started = (|| {
        let copiers = [
            child
                .stdout
                .take()
                .map(|s| (Box::new(s) as Box<dyn Read + Send>, Sink::Stdout)),
            child
                .stderr
                .take()
                .map(|s| (Box::new(s) as Box<dyn Read + Send>, Sink::Stderr)),
        ];
        for (from, to) in copiers.into_iter().flatten() {
            let keep_tail = matches!(to, Sink::Stderr);
            streams.lock().open += 1;
            let (mine, prefix) = (Arc::clone(&streams), prefix.clone());
            let copier = std::thread::Builder::new()
                .name(format!(
                    "multiproc-launch-{}{pid}",
                    if keep_tail { 'e' } else { 'o' }
                ))
                .spawn(move || copy_stream(from, to, prefix.as_deref(), &mine, keep_tail));
            if let Err(e) = copier {
                streams.lock().open -= 1;
                return Err(e);
            }
        }
        Ok(())
    })();
    let command = CommandChild {
        pid,
        child: Mutex::new(child),
        status: Mutex::new(None),
        streams,
        prefix,
    };
    match started {
        Ok(()) => Ok(command),
        Err(e) => {
            // A copier did not start (its pipe closed with its closure):
            // the command is killed and reaped by the drop.
            drop(command);
            Err(e)
        }
    }
}

fn raw_status(s: std::process::ExitStatus) -> RawStatus {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return RawStatus::Signaled(sig);
        }
    }
    RawStatus::Exited(s.code().unwrap_or(-1))
}

impl CommandChild {
    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// From now on its output's lines are prefixed `[host:pid] ` (the
    /// worker it started said it is `pid` on `host`); nothing if its
    /// output is not prefixed.
    pub(crate) fn set_output_prefix(&self, host: &str, pid: u32) {
        if let Some(prefix) = &self.prefix {
            *prefix.lock().unwrap_or_else(|e| e.into_inner()) = prefix_text(host, pid);
        }
    }

    /// The last [`STDERR_TAIL`] bytes of its stderr (lossy UTF-8, trimmed),
    /// after waiting at most `linger` for the stream to end (it ends when
    /// the command and everything it started that holds it have exited).
    pub(crate) fn stderr_tail(&self, linger: Duration) -> String {
        let until = deadline::deadline(linger);
        self.streams.wait_until(until, |st| st.stderr_ended);
        String::from_utf8_lossy(&self.streams.lock().tail)
            .trim()
            .to_string()
    }

    /// How it ended, if it did (without waiting).
    pub(crate) fn try_wait(&self) -> io::Result<Option<RawStatus>> {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            *status = child.try_wait()?.map(raw_status);
        }
        Ok(*status)
    }

    /// Waits at most `timeout` (`None`: forever) for it to end. std has no
    /// wait with a timeout for a `Child`: this looks every 10 ms (a
    /// launcher's end is waited for only once its worker's channel ended).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<RawStatus>> {
        let deadline = deadline::deadline_of(timeout);
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if deadline::passed(deadline) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it (SIGKILL / `TerminateProcess`); `Ok` if it already ended.
    pub(crate) fn kill(&self) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.kill() {
            Ok(()) => Ok(()),
            // It ended between the two looks.
            Err(_) if child.try_wait().ok().flatten().is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for CommandChild {
    /// Kills a launcher still running and reaps it, so it leaves no
    /// zombie and no orphan; then waits at most [`OUTPUT_LINGER`] for the
    /// rest of its output to be copied (its streams end when it and
    /// everything it started that holds them have exited), so that the
    /// last lines of a worker are out when its pool is gone.
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.streams
            .wait_until(deadline::deadline(OUTPUT_LINGER), |st| st.open == 0);
    }
}

/// This machine's host name, as a launched worker reports it (`uname`'s
/// node name; on Windows `COMPUTERNAME`); `"?"` if it has none.
pub(crate) fn hostname() -> String {
    #[cfg(unix)]
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    #[cfg(windows)]
    let name = std::env::var("COMPUTERNAME").unwrap_or_default();
    if name.is_empty() {
        "?".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `chunks`, fed in that order, come out as.
    fn lines_of(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        let mut emit = |l: &[u8]| got.push(l.to_vec());
        for c in chunks {
            lines.feed(c, &mut emit);
        }
        lines.finish(&mut emit);
        got
    }

    /// A stream that, like std's stdout on a Windows console, takes only
    /// UTF-8: the valid start of a buffer, then `InvalidData`.
    struct Utf8Only(Vec<u8>);

    impl Write for Utf8Only {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let valid = match std::str::from_utf8(buf) {
                Ok(_) => buf.len(),
                Err(e) if e.valid_up_to() == 0 => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e))
                }
                Err(e) => e.valid_up_to(),
            };
            self.0.extend_from_slice(&buf[..valid]);
            Ok(valid)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_reaches_a_utf8_only_stream_lossily() {
        let mut to = Utf8Only(Vec::new());
        write_to(&mut to, b"[host:1] caf\xc3\n");
        write_to(&mut to, "[host:1] caf\u{e9}\n".as_bytes());
        assert_eq!(
            String::from_utf8(to.0).unwrap(),
            "[host:1] caf\u{fffd}\n[host:1] caf\u{e9}\n"
        );
    }

    #[test]
    fn lines_are_whole_however_the_reads_cut_them() {
        let want = vec![b"one".to_vec(), b"".to_vec(), b"three".to_vec()];
        assert_eq!(lines_of(&[b"one\n\nthree\n"]), want);
        assert_eq!(lines_of(&[b"o", b"ne\n", b"\nth", b"ree", b"\n"]), want);
    }

    #[test]
    fn a_last_line_without_a_newline_comes_at_the_end() {
        assert_eq!(
            lines_of(&[b"a\nparti", b"al"]),
            vec![b"a".to_vec(), b"partial".to_vec()]
        );
        assert_eq!(lines_of(&[b"", b""]), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn a_line_of_exactly_the_cap_stays_whole() {
        let line = vec![b'x'; MAX_LINE];
        let mut data = line.clone();
        data.push(b'\n');
        assert_eq!(lines_of(&[&data]), vec![line.clone()]);
        // The newline in a read of its own.
        assert_eq!(lines_of(&[&line, b"\n"]), vec![line]);
    }

    #[test]
    fn a_longer_line_comes_in_pieces_of_the_cap() {
        let n = 2 * MAX_LINE + 5;
        let data: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        let mut with_end = data.clone();
        with_end.extend_from_slice(b"\nnext\n");
        for got in [
            lines_of(&[&with_end]),
            // In reads of 8 KiB, as the copier reads.
            lines_of(&with_end.chunks(8192).collect::<Vec<_>>()),
            lines_of(&with_end.chunks(1000).collect::<Vec<_>>()),
        ] {
            assert_eq!(got.len(), 4, "three pieces and `next`");
            assert_eq!(got[0].len(), MAX_LINE);
            assert_eq!(got[1].len(), MAX_LINE);
            assert_eq!(got[2].len(), 5);
            assert_eq!(got[..3].concat(), data);
            assert_eq!(got[3], b"next");
        }
    }
}
