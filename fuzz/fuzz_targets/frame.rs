//! The Connection frame decoder, fed through a real pipe with a 1 MiB cap:
//! frames over the cap are refused before allocation, garbage and
//! truncation end in an error, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = multiproc::fuzzing::frames(data, 1 << 20);
    // Each message needs at least its 8-byte header.
    assert!(n <= data.len() / 8);
});
