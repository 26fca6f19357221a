//! Building a Windows command line: quoting each argument the way the
//! Microsoft C runtime splits it again, and reading our own.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::windows::ffi::OsStrExt;

/// Appends `arg` to a command line so that the MSVC C runtime's parser (and
/// Rust's `std::env::args`) reads it back unchanged, as Rust's std
/// (`make_command_line`/`append_arg`) does: quoted if it has a space or a tab
/// or is empty; inside, a `"` gets a backslash, and backslashes are doubled
/// only where they precede a `"` (including the closing one). "Parsing C
/// Command-Line Arguments" on MSDN has the rules.
pub(super) fn append_arg(cmd: &mut Vec<u16>, arg: &OsStr) -> io::Result<()> {
    const QUOTE: u16 = b'"' as u16;
    const BACKSLASH: u16 = b'\\' as u16;
    let wide: Vec<u16> = arg.encode_wide().collect();
    if wide.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("argument {arg:?} contains a NUL character"),
        ));
    }
    let quote = wide.is_empty()
        || wide
            .iter()
            .any(|&c| c == u16::from(b' ') || c == u16::from(b'\t'));
    if quote {
        cmd.push(QUOTE);
    }
    let mut backslashes = 0usize;
    for &c in &wide {
        if c == BACKSLASH {
            backslashes += 1;
        } else {
            if c == QUOTE {
                // n backslashes before a quote become 2n + 1.
                cmd.extend(std::iter::repeat_n(BACKSLASH, backslashes + 1));
            }
            backslashes = 0;
        }
        cmd.push(c);
    }
    if quote {
        // n backslashes before the closing quote become 2n.
        cmd.extend(std::iter::repeat_n(BACKSLASH, backslashes));
        cmd.push(QUOTE);
    }
    Ok(())
}

/// The full, NUL-terminated command line: the program, always quoted, then
/// the arguments.
///
/// The program name is parsed by simpler rules (everything up to the next
/// `"`, no escapes), so it is quoted as is and may not contain `"`, which
/// Windows file names cannot anyway.
pub(super) fn make_command_line(exe: &OsStr, args: &[OsString]) -> io::Result<Vec<u16>> {
    let mut cmd = vec![u16::from(b'"')];
    for c in exe.encode_wide() {
        if c == 0 || c == u16::from(b'"') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("program path {exe:?} contains a NUL or '\"'"),
            ));
        }
        cmd.push(c);
    }
    cmd.push(u16::from(b'"'));
    for arg in args {
        cmd.push(u16::from(b' '));
        append_arg(&mut cmd, arg)?;
    }
    cmd.push(0);
    Ok(cmd)
}

/// This process's command line (std has it before `main` too).
pub(crate) fn args_os() -> Vec<std::ffi::OsString> {
    std::env::args_os().collect()
}
