//! The benchmark: each figure next to a baseline measured in the same run.
//!
//! ```text
//! cargo run --release --example bench            # Linux
//! scripts/bench-windows.sh                       # the same under Wine
//! cargo run --release --example bench -- --quick # fewer rounds
//! ```
//!
//! Rows (ours vs baseline, ratio, target from the issues):
//! - spawn + wait: `Popen` (spawn, bootstrap, exit, wait) vs bare
//!   `std::process::Command` spawn + wait of the same binary;
//! - spawn + join: `Process` of a trivial entry, the same baseline;
//! - 64 MiB echo round trip through a child: `Connection` vs raw pipes
//!   (the child copies stdin to stdout);
//! - ping-pong of 8-byte messages through a child: `Connection` vs raw pipes.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::{Connection, Pipe, Popen, Process};

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

const BIG: usize = 64 << 20;

fn main() {
    multiproc::init();
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--exit") => return,
        Some("--raw-echo") => return raw_echo(),
        _ => {}
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 20 } else { 100 };

    println!(
        "multiproc bench ({} {}, {} rounds)",
        std::env::consts::OS,
        std::env::consts::ARCH,
        rounds
    );
    println!(
        "{:<34} {:>14} {:>14} {:>8}  target",
        "row", "multiproc", "baseline", "ratio"
    );

    let exe = std::env::current_exe().expect("current_exe");
    let bare = || {
        let st = Command::new(&exe)
            .arg("--exit")
            .status()
            .expect("bare spawn");
        assert!(st.success());
    };
    let popen = || {
        let p = Popen::spawn(nothing, &()).expect("spawn");
        assert!(p.wait(None).expect("wait").expect("status").success());
    };
    let process = || {
        Process::spawn(nothing, ())
            .expect("spawn")
            .join()
            .expect("join")
    };
    // Warm up the page cache and the dynamic loader.
    for _ in 0..3 {
        bare();
        popen();
    }
    let (ours, base) = interleaved(rounds, popen, bare);
    row(
        "spawn + wait (Popen)",
        us(ours),
        us(base),
        ours / base,
        "<= 1.2x",
        false,
    );
    let (ours, base) = interleaved(rounds, process, bare);
    row(
        "spawn + join (Process)",
        us(ours),
        us(base),
        ours / base,
        "<= 1.2x",
        false,
    );

    // 64 MiB echo round trip.
    let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let (mine, theirs) = Pipe::duplex().expect("pipe");
    let echo = Process::spawn(echo_loop, theirs).expect("spawn echo");
    let mut raw = Command::new(&exe)
        .arg("--raw-echo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("raw echo");
    let mut raw_in = raw.stdin.take().expect("stdin");
    let mut raw_out = raw.stdout.take().expect("stdout");
    let big_rounds = if quick { 2 } else { 5 };
    let (ours, base) = interleaved(
        big_rounds,
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
                raw_out.read_exact(&mut back).expect("raw read");
            })
        },
    );
    let mib = |d: f64| (2 * BIG) as f64 / d / (1 << 20) as f64;
    row(
        "64 MiB echo round trip (MiB/s)",
        mib(ours),
        mib(base),
        mib(ours) / mib(base),
        ">= 0.8x",
        true,
    );

    // Ping-pong of small messages.
    let n = if quick { 500 } else { 2_000 };
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
                raw_out.read_exact(&mut buf).expect("raw read");
            }
        },
    );
    let rate = |d: f64| n as f64 / d;
    row(
        "ping-pong 8 B (round trips/s)",
        rate(ours),
        rate(base),
        rate(ours) / rate(base),
        ">= 0.8x",
        true,
    );

    drop(mine);
    echo.join().expect("echo join");
    drop(raw_in);
    raw.wait().expect("raw wait");
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

fn row(name: &str, ours: f64, base: f64, ratio: f64, target: &str, higher_is_better: bool) {
    let unit = if higher_is_better { "" } else { " us" };
    println!(
        "{name:<34} {:>11.1}{unit:<3} {:>11.1}{unit:<3} {ratio:>7.2}x  {target}",
        ours, base
    );
}
