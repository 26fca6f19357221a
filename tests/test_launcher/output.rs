//! The launched workers' output, prefixed or not, and the launcher
//! command's own.

use super::*;

// ------------------------------------------------------- prefixed output
//
// The workers' output reaches the parent's stdout and stderr: each
// scenario below is a copy of this binary run as a program whose output
// the test captures.

/// Lines each `chatter` task writes to stdout and to stderr.
const CHATTER_LINES: u32 = 40;

/// The body of line `k` of task `i` on `stream`: long enough that lines
/// cross the copier's 8 KiB reads.
fn chatter_line(stream: &str, i: u32, k: u32) -> String {
    format!("{stream} task {i} line {k} {}", "~".repeat(300))
}

/// Writes [`CHATTER_LINES`] lines to stdout and to stderr, alternating;
/// the worker's pid.
fn chatter(i: u32) -> u32 {
    for k in 0..CHATTER_LINES {
        println!("{}", chatter_line("out", i, k));
        eprintln!("{}", chatter_line("err", i, k));
    }
    std::process::id()
}

/// Length of the line `long_line` writes: two pieces of 16 KiB and a rest.
const LONG_LINE: usize = 2 * 16 * 1024 + 100;

/// Writes one line of [`LONG_LINE`] bytes to stdout; the worker's pid.
fn long_line(_: ()) -> u32 {
    let line: String = (0..LONG_LINE)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    println!("{line}");
    std::process::id()
}

/// Writes a last line without a newline to stdout and stderr; the
/// worker's pid.
fn no_newline(_: ()) -> u32 {
    use std::io::Write;
    print!("stdout without a newline");
    std::io::stdout().flush().unwrap();
    eprint!("stderr without a newline");
    std::process::id()
}

multiproc::entry!(chatter, long_line, no_newline);

/// The lines of `out` that start with `[` (the prefixed ones), in order.
fn prefixed(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.starts_with('['))
        .map(str::to_string)
        .collect()
}

/// The values after `key=` on the scenario's report line (`REPORT ...`).
fn report(out: &[u8], key: &str) -> Vec<u32> {
    let text = String::from_utf8_lossy(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("REPORT "))
        .expect("the scenario's report line");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn each_line_of_a_launched_worker_arrives_once_whole_and_prefixed_with_its_host_and_pid() {
    let out = scenario("output::scenario_prefixed_output", |_| {});
    assert!(out.status.success(), "{}", out.status);
    let pids = report(&out.stdout, "chatter");
    let long_pid = report(&out.stdout, "long")[0];
    let partial_pid = report(&out.stdout, "partial")[0];
    let host = host_name();
    let prefix = |pid: u32| format!("[{host}:{pid}] ");

    // Every prefixed line is one we expect, exactly once: nothing split,
    // doubled, lost or run into another worker's line.
    let mut want_out: Vec<String> = Vec::new();
    let mut want_err: Vec<String> = Vec::new();
    for (i, &pid) in pids.iter().enumerate() {
        for k in 0..CHATTER_LINES {
            want_out.push(format!(
                "{}{}",
                prefix(pid),
                chatter_line("out", i as u32, k)
            ));
            want_err.push(format!(
                "{}{}",
                prefix(pid),
                chatter_line("err", i as u32, k)
            ));
        }
    }
    let long: String = (0..LONG_LINE)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for piece in [&long[..16384], &long[16384..32768], &long[32768..]] {
        want_out.push(format!("{}{piece}", prefix(long_pid)));
    }
    want_out.push(format!("{}stdout without a newline", prefix(partial_pid)));
    want_err.push(format!("{}stderr without a newline", prefix(partial_pid)));
    for (stream, got, mut want) in [
        ("stdout", prefixed(&out.stdout), want_out),
        ("stderr", prefixed(&out.stderr), want_err),
    ] {
        let mut got = got;
        got.sort();
        want.sort();
        assert_eq!(got.len(), want.len(), "prefixed lines on {stream}");
        for (g, w) in got.iter().zip(&want) {
            assert!(g == w, "on {stream}:\n got {g:.120}\nwant {w:.120}");
        }
    }
    // The long line's pieces came in order, one after the other among its
    // worker's lines (one stream, one copier; the other worker's lines
    // may come in between).
    let lines: Vec<String> = prefixed(&out.stdout)
        .into_iter()
        .filter(|l| l.starts_with(&prefix(long_pid)))
        .collect();
    let first = lines
        .iter()
        .position(|l| l.ends_with(&long[..16384]))
        .expect("the first piece");
    assert!(lines[first + 1].ends_with(&long[16384..32768]));
    assert!(lines[first + 2].ends_with(&long[32768..]));
}

#[test]
#[ignore = "a scenario, run by each_line_of_a_launched_worker_arrives_once_whole_and_prefixed_with_its_host_and_pid"]
fn scenario_prefixed_output() {
    if !in_scenario("output::scenario_prefixed_output") {
        return;
    }
    // Ends libtest's "test NAME ... " line, so that the workers' lines
    // start lines of their own.
    println!();
    let p = launched(&["{exe}"], 2);
    // Both workers write at the same time (one task each in flight).
    let chatter_pids: Vec<u32> = p.map_chunked(chatter, 0..6u32, 1).unwrap();
    let long = p.submit(long_line, ()).get().unwrap();
    // The last output of that worker: nothing follows the partial lines.
    let partial = p.submit(no_newline, ()).get().unwrap();
    // The workers' last lines are out once the pool is gone.
    drop(p);
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    println!(
        "REPORT chatter={} long={long} partial={partial}",
        list(&chatter_pids)
    );
}

#[test]
fn with_prefix_output_off_a_launched_worker_writes_its_lines_as_they_are() {
    let out = scenario("output::scenario_unprefixed_output", |_| {});
    assert!(out.status.success(), "{}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for k in 0..CHATTER_LINES {
        let line = chatter_line("out", 7, k);
        assert_eq!(
            stdout.lines().filter(|l| *l == line).count(),
            1,
            "{line:.40}"
        );
        let line = chatter_line("err", 7, k);
        assert_eq!(
            stderr.lines().filter(|l| *l == line).count(),
            1,
            "{line:.40}"
        );
    }
    assert!(prefixed(&out.stdout).is_empty(), "{stdout}");
    assert!(prefixed(&out.stderr).is_empty(), "{stderr}");
}

#[test]
#[ignore = "a scenario, run by with_prefix_output_off_a_launched_worker_writes_its_lines_as_they_are"]
fn scenario_unprefixed_output() {
    if !in_scenario("output::scenario_unprefixed_output") {
        return;
    }
    // Ends libtest's "test NAME ... " line, so that the workers' lines
    // start lines of their own.
    println!();
    let p = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command(["{exe}"]).prefix_output(false))
        .build()
        .unwrap();
    p.submit(chatter, 7).get().unwrap();
}

#[cfg(unix)]
#[test]
fn a_launcher_commands_own_lines_are_prefixed_with_its_program_and_pid() {
    let out = scenario("output::scenario_launcher_complaint", |_| {});
    assert!(out.status.success(), "{}", out.status);
    let pid = report(&out.stdout, "pid")[0];
    assert_eq!(
        prefixed(&out.stderr),
        vec![
            format!("[sh:{pid}] srun: error: Invalid partition name specified"),
            format!("[sh:{pid}] and a last line without a newline"),
        ]
    );
    // The error's tail has the lines as they were written.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "the end of its stderr:\nsrun: error: Invalid partition name specified\n\
             and a last line without a newline"
        ),
        "{text}"
    );
}

#[cfg(unix)]
#[test]
#[ignore = "a scenario, run by a_launcher_commands_own_lines_are_prefixed_with_its_program_and_pid"]
fn scenario_launcher_complaint() {
    if !in_scenario("output::scenario_launcher_complaint") {
        return;
    }
    // Ends libtest's "test NAME ... " line, so that the workers' lines
    // start lines of their own.
    println!();
    let e = PoolBuilder::new()
        .workers(1)
        .launcher(Launcher::command([
            "sh",
            "-c",
            "echo 'srun: error: Invalid partition name specified' >&2; \
             printf 'and a last line without a newline' >&2; exit 3",
        ]))
        .build()
        .unwrap_err();
    let msg = e.to_string();
    let pid = msg
        .split("the launcher command (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no pid in {msg}"));
    println!("{msg}");
    println!("REPORT pid={pid}");
}
