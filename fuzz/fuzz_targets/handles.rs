//! The wire form of a passed `Connection` end (kind tag, tokens, flags):
//! garbage, unknown tags and token counts the tag doesn't list end in an
//! error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiproc::fuzzing::connection_wire(data);
});
