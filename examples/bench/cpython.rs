//! `scripts/bench_cpython.py`, the CPython baselines, run as a subprocess.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the CPython script may take before it is killed.
const CPYTHON_TIMEOUT: Duration = Duration::from_secs(300);

/// What `scripts/bench_cpython.py` reported.
pub(crate) struct Cpython {
    pub(crate) python: String,
    pub(crate) runs: u64,
    pub(crate) n_chunk1: u64,
    pub(crate) n_chunk1000: u64,
    /// tasks/s per start method, in the script's order.
    pub(crate) chunk1: Vec<(String, f64)>,
    pub(crate) chunk1000: Vec<(String, f64)>,
    pub(crate) best_chunk1: Option<f64>,
    pub(crate) best_chunk1000: Option<f64>,
    pub(crate) errors: Vec<(String, String)>,
}

/// Runs `scripts/bench_cpython.py` with `python3` from `PATH`; `Err`
/// says why there are no CPython figures.
pub(crate) fn cpython_baseline(
    quick: bool,
    n_chunk1: u64,
    n_chunk1000: u64,
) -> Result<Cpython, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_cpython.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg("--n-chunk1")
        .arg(n_chunk1.to_string())
        .arg("--n-chunk1000")
        .arg(n_chunk1000.to_string());
    if quick {
        cmd.arg("--quick");
    }
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("python3 is not on PATH".into())
        }
        Err(e) => return Err(format!("cannot run python3: {e}")),
    };
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let until = Instant::now() + CPYTHON_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} took over {} s and was killed",
                    script.display(),
                    CPYTHON_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for python3: {e}")),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        let last = err.lines().last().unwrap_or("").trim().to_string();
        return Err(format!("{} failed ({status}): {last}", script.display()));
    }
    let json: serde_json::Value =
        serde_json::from_str(out.trim()).map_err(|e| format!("bad JSON from the script: {e}"))?;
    // `preserve_order` keeps the script's order (spawn, forkserver, fork).
    let rates = |key: &str| -> Vec<(String, f64)> {
        json.get(key)
            .and_then(serde_json::Value::as_object)
            .map(|kv| {
                kv.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let errors = json
        .get("errors")
        .and_then(serde_json::Value::as_object)
        .map(|kv| {
            kv.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let num = |key: &str| json.get(key).and_then(serde_json::Value::as_f64);
    Ok(Cpython {
        python: json
            .get("python")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
            .to_string(),
        runs: num("runs").unwrap_or(0.0) as u64,
        n_chunk1: num("n_chunk1").unwrap_or(0.0) as u64,
        n_chunk1000: num("n_chunk1000").unwrap_or(0.0) as u64,
        chunk1: rates("chunk1"),
        chunk1000: rates("chunk1000"),
        best_chunk1: num("best_chunk1"),
        best_chunk1000: num("best_chunk1000"),
        errors,
    })
}

/// `scripts/bench_cpython.py <mode>`'s JSON object.
pub(crate) fn cpython_json(mode: &str) -> Result<serde_json::Value, String> {
    cpython_json_args(&[mode])
}

/// `scripts/bench_cpython.py <args>`'s JSON object; `Err` with the reason
/// (no python3, bad output, or the script's own `error`).
pub(crate) fn cpython_json_args(args: &[&str]) -> Result<serde_json::Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_cpython.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "python3 is not on PATH".to_string(),
            _ => format!("cannot run python3: {e}"),
        })?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        let err = String::from_utf8_lossy(&out.stderr);
        format!(
            "bad JSON from the script ({e}): {}",
            err.lines().last().unwrap_or("")
        )
    })?;
    if let Some(why) = json.get("error").and_then(serde_json::Value::as_str) {
        return Err(why.to_string());
    }
    Ok(json)
}
