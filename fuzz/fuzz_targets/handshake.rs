//! The Listener/Client authentication handshake, both sides, with the
//! peer's bytes from the fuzzer: every input ends in a pass or an
//! authentication error, never a panic, a hang, or an allocation a length
//! prefix alone asks for (scripts/fuzz.sh sets `-malloc_limit_mb`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((side, rest)) = data.split_first() else {
        return;
    };
    // A listener can't pass: that needs the HMAC of its random challenge.
    let passed = multiproc::fuzzing::handshake(rest, side & 1 == 1);
    assert!(!(passed && side & 1 == 1), "a listener passed a forged handshake");
});
