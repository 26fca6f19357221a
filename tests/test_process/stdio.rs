//! Captured and silenced standard streams.

use super::*;

#[test]
fn captured_stdout_and_stderr_reach_the_parent() {
    use std::io::Read;
    let mut p = ProcessBuilder::new()
        .stdout(multiproc::Stdio::Capture)
        .stderr(multiproc::Stdio::Capture)
        .spawn(talk, 2000)
        .unwrap();
    let (mut out, mut err) = (p.take_stdout().unwrap(), p.take_stderr().unwrap());
    assert!(p.take_stdout().is_none());
    // Read stdout to the end while the worker writes (more than a pipe holds).
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    let mut etext = String::new();
    err.read_to_string(&mut etext).unwrap();
    assert_eq!(p.join().unwrap(), 2000);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2000);
    assert_eq!(lines[1999], "out 1999");
    assert_eq!(etext, "err done\n");
}

#[test]
fn stdout_or_stderr_null_silences_that_stream_only() {
    use std::io::Read;
    for which in [1u8, 2] {
        // The scenario runs in a middle process whose output we capture: what
        // reaches its stdout/stderr is what the grandchild's parent would see.
        let mut middle = ProcessBuilder::new()
            .stdout(multiproc::Stdio::Capture)
            .stderr(multiproc::Stdio::Capture)
            .spawn(quiet_grandchild, which)
            .unwrap();
        let (mut out, mut err) = (middle.take_stdout().unwrap(), middle.take_stderr().unwrap());
        let (mut otext, mut etext) = (String::new(), String::new());
        std::thread::scope(|s| {
            s.spawn(|| out.read_to_string(&mut otext).unwrap());
            err.read_to_string(&mut etext).unwrap();
        });
        middle.join().unwrap();
        if which == 1 {
            assert_eq!(otext, "", "stdout(Null) leaked");
            assert!(etext.contains("LEAK err"), "stderr lost: {etext:?}");
        } else {
            assert_eq!(otext, "LEAK out\n", "stdout lost");
            assert!(!etext.contains("LEAK"), "stderr(Null) leaked: {etext:?}");
        }
    }
}
