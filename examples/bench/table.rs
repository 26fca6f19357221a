//! The table: rows measured and printed as they come, their targets and
//! ratios, a panic inside a row caught as its error, and `--json`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Mutex;

use crate::Opts;

/// The rows measured so far, printed as they come.
pub(crate) struct Table<'a> {
    pub(crate) opts: &'a Opts,
    pub(crate) rows: Vec<Row>,
}

impl Table<'_> {
    pub(crate) fn add(
        &mut self,
        name: &'static str,
        unit: &'static str,
        target: Target,
        f: impl FnOnce() -> Result<Figures, String>,
    ) {
        if self.opts.wants(name) {
            let row = measure(name, unit, target, f);
            row.print();
            self.rows.push(row);
        }
    }

    /// A row that can't be measured on this platform.
    pub(crate) fn skip(
        &mut self,
        name: &'static str,
        unit: &'static str,
        target: Target,
        why: &str,
    ) {
        if self.opts.wants(name) {
            let row = Row {
                name,
                unit,
                target,
                result: Err(why.to_string()),
                skipped: Some(why.to_string()),
            };
            row.print();
            self.rows.push(row);
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Target {
    AtMost(f64),
    AtLeast(f64),
    Info,
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::AtMost(x) => format!("<= {x}x"),
            Target::AtLeast(x) => format!(">= {x}x"),
            Target::Info => "info".to_string(),
        }
    }

    /// Whether `ratio` meets the target; `None` for info rows.
    fn met(self, ratio: f64) -> Option<bool> {
        match self {
            Target::AtMost(x) => Some(ratio <= x),
            Target::AtLeast(x) => Some(ratio >= x),
            Target::Info => None,
        }
    }
}

/// Our figure and its baseline (`None`: not available in this run).
pub(crate) struct Figures {
    pub(crate) ours: f64,
    pub(crate) baseline: Option<f64>,
}

pub(crate) struct Row {
    name: &'static str,
    unit: &'static str,
    target: Target,
    pub(crate) result: Result<Figures, String>,
    /// Not measured on this platform, and why (not an error).
    pub(crate) skipped: Option<String>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let f = self.result.as_ref().ok()?;
        let b = f.baseline?;
        (b != 0.0).then(|| f.ours / b)
    }

    fn print(&self) {
        match &self.result {
            Ok(f) => {
                let base = f.baseline.map_or("n/a".to_string(), num);
                let (ratio, verdict) = match self.ratio() {
                    Some(r) => (
                        format!("{r:.2}x"),
                        match self.target.met(r) {
                            Some(false) => "  MISS",
                            _ => "",
                        },
                    ),
                    None => ("n/a".to_string(), ""),
                };
                println!(
                    "{:<44} {:>13} {:>13} {:>9}  {}{}",
                    self.name,
                    num(f.ours),
                    base,
                    ratio,
                    self.target.text(),
                    verdict
                );
            }
            Err(_) if self.skipped.is_some() => println!(
                "{:<44} {:>13} {:>13} {:>9}  {} (skipped: {})",
                self.name,
                "n/a",
                "n/a",
                "n/a",
                self.target.text(),
                self.skipped.as_deref().unwrap_or_default()
            ),
            Err(e) => println!("{:<44} error: {e}", self.name),
        }
    }
}

/// A number with precision that suits its size.
pub(crate) fn num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Runs one row's measurement; an error or a panic becomes that row's
/// error.
fn measure(
    name: &'static str,
    unit: &'static str,
    target: Target,
    f: impl FnOnce() -> Result<Figures, String>,
) -> Row {
    take_panic_message();
    let result = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(take_panic_message().unwrap_or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panicked".to_string())
        })),
    };
    Row {
        name,
        unit,
        target,
        result,
        skipped: None,
    }
}

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Panics inside a row are reported in its line of the table, not on
/// stderr in the middle of it.
pub(crate) fn install_panic_capture() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".to_string());
        let msg = match info.location() {
            Some(l) => format!("panicked at {l}: {msg}"),
            None => format!("panicked: {msg}"),
        };
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            slot.get_or_insert(msg);
        }
    }));
}

fn take_panic_message() -> Option<String> {
    PANIC_MESSAGE.lock().ok().and_then(|mut s| s.take())
}

pub(crate) fn write_json(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut out = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        let (ours, baseline, error) = match &r.result {
            Ok(f) => (json_num(Some(f.ours)), json_num(f.baseline), None),
            Err(e) => ("null".to_string(), "null".to_string(), Some(e)),
        };
        let ratio = r.ratio();
        let met = match ratio.and_then(|x| r.target.met(x)) {
            Some(m) => m.to_string(),
            None => "null".to_string(),
        };
        out.push_str(&format!(
            "  {{\"row\": {}, \"ours\": {ours}, \"baseline\": {baseline}, \"ratio\": {}, \
             \"unit\": {}, \"target\": {}, \"met\": {met}",
            json_str(r.name),
            json_num(ratio),
            json_str(r.unit),
            json_str(&r.target.text()),
        ));
        match (r.skipped.as_deref(), error) {
            (Some(why), _) => out.push_str(&format!(", \"skipped\": {}", json_str(why))),
            (None, Some(e)) => out.push_str(&format!(", \"error\": {}", json_str(e))),
            (None, None) => {}
        }
        out.push('}');
        if i + 1 < rows.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push_str("]\n");
    std::fs::write(path, out)
}

fn json_num(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => "null".to_string(),
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
