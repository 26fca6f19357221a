//! Building a Windows command line: quoting each argument the way the
//! Microsoft C runtime splits it again, and reading our own.
//!
//! The quoting works on UTF-16 code units and calls nothing from the OS, so
//! it is compiled, and its tests run, on every platform (`sys/mod.rs`
//! includes this file in the test build elsewhere); only the `OsStr`
//! adapters are Windows code.

use std::io;

#[cfg(windows)]
use std::ffi::{OsStr, OsString};
#[cfg(windows)]
use std::os::windows::ffi::OsStrExt;

const QUOTE: u16 = b'"' as u16;
const BACKSLASH: u16 = b'\\' as u16;

/// Appends `arg` to a command line so that the MSVC C runtime's parser (and
/// Rust's `std::env::args`) reads it back unchanged, as Rust's std
/// (`make_command_line`/`append_arg`) does: quoted if it has a space or a tab
/// or is empty; inside, a `"` gets a backslash, and backslashes are doubled
/// only where they precede a `"` (including the closing one). "Parsing C
/// Command-Line Arguments" on MSDN has the rules.
pub(super) fn append_arg(cmd: &mut Vec<u16>, arg: &[u16]) -> io::Result<()> {
    if arg.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "argument {:?} contains a NUL character",
                String::from_utf16_lossy(arg)
            ),
        ));
    }
    let quote = arg.is_empty()
        || arg
            .iter()
            .any(|&c| c == u16::from(b' ') || c == u16::from(b'\t'));
    if quote {
        cmd.push(QUOTE);
    }
    let mut backslashes = 0usize;
    for &c in arg {
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
/// the arguments, all as UTF-16.
///
/// The program name is parsed by simpler rules (everything up to the next
/// `"`, no escapes), so it is quoted as is and may not contain `"`, which
/// Windows file names cannot anyway.
pub(super) fn command_line<A: AsRef<[u16]>>(
    exe: &[u16],
    args: impl IntoIterator<Item = A>,
) -> io::Result<Vec<u16>> {
    let mut cmd = vec![QUOTE];
    for &c in exe {
        if c == 0 || c == QUOTE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "program path {:?} contains a NUL or '\"'",
                    String::from_utf16_lossy(exe)
                ),
            ));
        }
        cmd.push(c);
    }
    cmd.push(QUOTE);
    for arg in args {
        cmd.push(u16::from(b' '));
        append_arg(&mut cmd, arg.as_ref())?;
    }
    cmd.push(0);
    Ok(cmd)
}

/// [`command_line`] for a program and arguments as `OsStr`s.
#[cfg(windows)]
pub(super) fn make_command_line(exe: &OsStr, args: &[OsString]) -> io::Result<Vec<u16>> {
    let wide = |s: &OsStr| s.encode_wide().collect::<Vec<u16>>();
    command_line(&wide(exe), args.iter().map(|a| wide(a)))
}

/// This process's command line (std has it before `main` too).
#[cfg(windows)]
pub(crate) fn args_os() -> Vec<std::ffi::OsString> {
    std::env::args_os().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `command_line` as a `String`, without the final NUL.
    fn line(exe: &str, args: &[&str]) -> String {
        let exe: Vec<u16> = exe.encode_utf16().collect();
        let args = args.iter().map(|a| a.encode_utf16().collect::<Vec<u16>>());
        let mut cmd = command_line(&exe, args).unwrap();
        assert_eq!(cmd.pop(), Some(0), "NUL-terminated");
        String::from_utf16(&cmd).unwrap()
    }

    /// Splits a command line's arguments (after the program) by the rules
    /// of "Parsing C Command-Line Arguments" (MSDN), as the MSVC C runtime
    /// and std's `args` do: 2n backslashes before a `"` are n backslashes
    /// and the `"` toggles quoting; 2n + 1 are n and a literal `"`; other
    /// backslashes are literal; `""` inside quotes is a literal `"`.
    fn parse_args(args: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut chars = args.chars().peekable();
        loop {
            while chars.next_if(|&c| c == ' ' || c == '\t').is_some() {}
            if chars.peek().is_none() {
                return out;
            }
            let (mut arg, mut quoted, mut backslashes) = (String::new(), false, 0usize);
            while let Some(c) = chars.next() {
                match c {
                    '\\' => backslashes += 1,
                    '"' => {
                        arg.extend(std::iter::repeat_n('\\', backslashes / 2));
                        let escaped = backslashes % 2 == 1;
                        if escaped || (quoted && chars.next_if_eq(&'"').is_some()) {
                            arg.push('"');
                        } else {
                            quoted = !quoted;
                        }
                        backslashes = 0;
                    }
                    _ => {
                        arg.extend(std::iter::repeat_n('\\', backslashes));
                        backslashes = 0;
                        if (c == ' ' || c == '\t') && !quoted {
                            break;
                        }
                        arg.push(c);
                    }
                }
            }
            arg.extend(std::iter::repeat_n('\\', backslashes));
            out.push(arg);
        }
    }

    #[test]
    fn quotes_only_what_needs_it() {
        // The cases of std's `sys/pal/windows/args/tests.rs`.
        assert_eq!(
            line("prog", &["aaa", "bbb", "ccc"]),
            r#""prog" aaa bbb ccc"#
        );
        assert_eq!(
            line(r"C:\Program Files\blah\blah.exe", &["aaa"]),
            r#""C:\Program Files\blah\blah.exe" aaa"#
        );
        assert_eq!(
            line(r"C:\Program Files\test", &[r#"aa"bb"#]),
            r#""C:\Program Files\test" aa\"bb"#
        );
        assert_eq!(line("echo", &["a b c"]), r#""echo" "a b c""#);
        assert_eq!(
            line("\u{03c0}\u{042f}\u{97f3}\u{00e6}\u{221e}", &[]),
            "\"\u{03c0}\u{042f}\u{97f3}\u{00e6}\u{221e}\""
        );
        assert_eq!(line("prog", &[""]), r#""prog" """#);
        assert_eq!(line("prog", &["a\tb"]), "\"prog\" \"a\tb\"");
    }

    #[test]
    fn backslashes_double_only_before_a_quote() {
        assert_eq!(line("p", &[r"a\b\\c"]), r#""p" a\b\\c"#);
        assert_eq!(line("p", &[r#"a\"b"#]), r#""p" a\\\"b"#);
        assert_eq!(line("p", &[r#"a\\"b"#]), r#""p" a\\\\\"b"#);
        // Before the closing quote: doubled, so the quote still closes.
        assert_eq!(line("p", &[r"a b\"]), r#""p" "a b\\""#);
        assert_eq!(line("p", &[r"a b\\"]), r#""p" "a b\\\\""#);
        // Unquoted, a trailing backslash stays single.
        assert_eq!(line("p", &[r"C:\dir\"]), r#""p" C:\dir\"#);
    }

    #[test]
    fn every_argument_reads_back_unchanged() {
        let args = [
            "",
            " ",
            "plain",
            "two words",
            "tab\there",
            r#"""#,
            r#""""#,
            r#"\""#,
            r"\",
            r"\\",
            r"a\",
            r"a b\",
            r#"a\\"b c"#,
            r#"" \" \\" \\\""#,
            "--multiproc-bootstrap=1234:5678",
            "\u{00e9}\u{4e2d}\u{1f600} \u{00e9}",
        ];
        let cmd = line("prog", &args);
        let rest = cmd.strip_prefix(r#""prog""#).unwrap();
        assert_eq!(parse_args(rest), args);
        for arg in args {
            let one = line("prog", &[arg]);
            assert_eq!(parse_args(one.strip_prefix(r#""prog""#).unwrap()), [arg]);
        }
    }

    #[test]
    fn nul_and_quote_in_the_program_are_refused() {
        let nul: Vec<u16> = "a\0b".encode_utf16().collect();
        let quote: Vec<u16> = "a\"b".encode_utf16().collect();
        let none: [&[u16]; 0] = [];
        for exe in [&nul, &quote] {
            let err = command_line(exe, none).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        let err = command_line(&quote[..1], [&nul[..]]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}
