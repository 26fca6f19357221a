//! The spawn rows (`Popen`, `Process`) and the pipe rows (64 MiB echo,
//! ping-pong), against bare `Command` children and raw pipes.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use multiproc::{Connection, Pipe, Popen, Process};

use crate::table::Figures;
use crate::{interleaved, us, Sizes, BIG};

fn nothing(_: ()) {}

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

multiproc::entry!(nothing, echo_loop);

/// Bare `Command` spawn + wait of this binary, which exits at once.
pub(crate) fn bare_spawn_wait(exe: &Path) {
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

pub(crate) fn spawn_wait(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
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

pub(crate) fn spawn_join(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
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
pub(crate) struct RawEcho {
    child: Child,
    pub(crate) input: Option<ChildStdin>,
    pub(crate) output: ChildStdout,
}

impl RawEcho {
    pub(crate) fn start(exe: &Path) -> RawEcho {
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

pub(crate) fn echo_big(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
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

pub(crate) fn ping_pong(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
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
pub(crate) fn raw_echo() {
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
