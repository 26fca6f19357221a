//! `Stdio` per stream, observed by real workers: what a worker reads from
//! stdin and writes to stdout and stderr ends where its settings say (the
//! null device, this process's own stream, a pipe back to the parent), the
//! same through `Popen`, `Process` and `Pool`; what can't be honored is a
//! `Usage` error.
//!
//! The combinations run in a scenario (a fresh copy of this binary, see
//! `common::scenario`) whose stdin is a file holding one line and whose
//! stdout and stderr are pipes the test reads: what reaches those is what
//! the workers' inherited streams carried. On Windows that takes real
//! inheritance of the scenario's standard handles (a file and two pipes,
//! not a console the workers could share anyway).

use std::io::Read;

use multiproc::{Pool, PoolBuilder, Popen, PopenBuilder, Process, ProcessBuilder, Stdio};

multiproc::test_support!();

mod common;
use common::{in_scenario, scenario, square};

/// Reads stdin to its end, then writes `OUT-<tag>` to stdout and
/// `ERR-<tag>` to stderr; returns how many bytes it read.
fn report(tag: String) -> usize {
    use std::io::Write;
    let mut input = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut input);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "OUT-{tag}");
    let _ = out.flush();
    eprintln!("ERR-{tag}");
    input.len()
}

multiproc::entry!(report);

/// What the scenario's stdin holds.
const LINE: &str = "hello\n";

/// `Process` cases, run in this order: tag, stdin, stdout, stderr. `F`
/// is the first to inherit stdin, so it reads the line (a worker before it
/// that read the shared file by mistake would leave it nothing); `B`,
/// inheriting it after `F`, finds the file at its end.
const PROCESS_CASES: [(&str, Stdio, Stdio, Stdio); 7] = [
    ("A", Stdio::Null, Stdio::Inherit, Stdio::Inherit),
    ("C", Stdio::Null, Stdio::Inherit, Stdio::Null),
    ("D", Stdio::Null, Stdio::Null, Stdio::Null),
    ("E", Stdio::Null, Stdio::Capture, Stdio::Null),
    ("F", Stdio::Inherit, Stdio::Null, Stdio::Capture),
    ("G", Stdio::Null, Stdio::Capture, Stdio::Capture),
    ("B", Stdio::Inherit, Stdio::Null, Stdio::Inherit),
];

/// Reads a captured stream to its end (empty if it was not captured).
fn read_all(out: Option<multiproc::ChildOutput>) -> String {
    let mut text = String::new();
    if let Some(mut out) = out {
        out.read_to_string(&mut text).unwrap();
    }
    text
}

#[test]
#[ignore = "a scenario, run by each_stream_goes_where_its_setting_says"]
fn scenario_streams() {
    if !in_scenario("scenario_streams") {
        return;
    }
    for (tag, stdin, stdout, stderr) in PROCESS_CASES {
        let mut p = ProcessBuilder::new()
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn(report, tag.to_string())
            .unwrap();
        let (out, err) = (p.take_stdout(), p.take_stderr());
        assert_eq!(out.is_some(), stdout == Stdio::Capture, "{tag}");
        assert_eq!(err.is_some(), stderr == Stdio::Capture, "{tag}");
        // Small enough for a pipe: read one, then the other.
        let (out, err) = (read_all(out), read_all(err));
        let read = p.join().unwrap();
        if stdout == Stdio::Capture {
            assert_eq!(out, format!("OUT-{tag}\n"), "{tag}'s captured stdout");
        }
        if stderr == Stdio::Capture {
            assert_eq!(err, format!("ERR-{tag}\n"), "{tag}'s captured stderr");
        }
        println!("read {tag}: {read} bytes");
    }

    // Popen: stdout captured, stderr inherited, stdin the default (null).
    let mut p = PopenBuilder::new()
        .stdout(Stdio::Capture)
        .spawn(report, "H".to_string())
        .unwrap();
    assert!(p.take_stderr().is_none());
    assert_eq!(read_all(p.take_stdout()), "OUT-H\n");
    assert!(p.take_stdout().is_none(), "taken once");
    let status = common::wait_done(&p);
    assert_eq!(status.code(), Some(0));

    // A pool: stdout to the null device, stderr inherited.
    let pool = PoolBuilder::new()
        .workers(1)
        .stdout(Stdio::Null)
        .build()
        .unwrap();
    let read = pool.submit(report, "P".to_string()).get().unwrap();
    println!("read P: {read} bytes");
}

#[test]
fn each_stream_goes_where_its_setting_says() {
    let path = std::env::temp_dir().join(format!("multiproc-stdio-{}.txt", std::process::id()));
    std::fs::write(&path, LINE).unwrap();
    let out = scenario("scenario_streams", |cmd| {
        cmd.stdin(std::fs::File::open(&path).unwrap());
    });
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
    // Where each tag's output reached the scenario's own streams: only
    // through `Inherit`.
    let cases = PROCESS_CASES
        .iter()
        .map(|&(tag, _, o, e)| (tag, o, e))
        .chain([
            ("H", Stdio::Capture, Stdio::Inherit),
            ("P", Stdio::Null, Stdio::Inherit),
        ]);
    for (tag, o, e) in cases {
        assert_eq!(
            stdout.contains(&format!("OUT-{tag}\n")),
            o == Stdio::Inherit,
            "{tag}'s stdout ({o:?}) in the scenario's stdout: {stdout}"
        );
        assert_eq!(
            stderr.contains(&format!("ERR-{tag}\n")),
            e == Stdio::Inherit,
            "{tag}'s stderr ({e:?}) in the scenario's stderr: {stderr}"
        );
    }
    // stdin: only the first worker that inherits it reads the line; the
    // null device gives end of file at once.
    let len = LINE.len();
    for (tag, read) in [
        ("A", 0),
        ("C", 0),
        ("D", 0),
        ("E", 0),
        ("F", len),
        ("G", 0),
        ("B", 0),
        ("P", 0),
    ] {
        assert!(
            stdout.contains(&format!("read {tag}: {read} bytes")),
            "{tag} should have read {read} bytes: {stdout}"
        );
    }
}

#[test]
fn capture_where_it_cannot_be_honored_is_a_usage_error() {
    let e = ProcessBuilder::new()
        .stdin(Stdio::Capture)
        .spawn::<_, _, u64>(square, 2u64)
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("stdin"), "{e}");
    let e = Popen::builder()
        .stdin(Stdio::Capture)
        .spawn(square, 2u64)
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    for stream in 0..3 {
        let mut b = Pool::builder();
        b.workers(1);
        match stream {
            0 => b.stdin(Stdio::Capture),
            1 => b.stdout(Stdio::Capture),
            _ => b.stderr(Stdio::Capture),
        };
        let e = b.build().unwrap_err();
        assert!(e.is_usage(), "{e}");
        let name = ["stdin", "stdout", "stderr"][stream];
        assert!(e.to_string().contains(name), "{e}");
    }
    // What can be honored is.
    let mut p = Process::builder()
        .stdin(Stdio::Inherit)
        .stdio(Stdio::Null)
        .spawn(square, 3u64)
        .unwrap();
    assert_eq!(p.join().unwrap(), 9);
}
