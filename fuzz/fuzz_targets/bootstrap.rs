//! The worker's bootstrap decoder: header, entry id, options, payload.
//! Every input ends in Ok or a documented exit code; libFuzzer's
//! `-malloc_limit_mb` (set by scripts/fuzz.sh) catches any allocation that
//! a length field alone could make.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (fix, rest) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => return,
    };
    match multiproc::fuzzing::bootstrap(rest, fix) {
        Ok(()) => {}
        Err(code) => assert!(
            (multiproc::exit_code::BAD_COMMAND_LINE..=multiproc::exit_code::BAD_PAYLOAD)
                .contains(&code),
            "undocumented exit code {code}"
        ),
    }
});
