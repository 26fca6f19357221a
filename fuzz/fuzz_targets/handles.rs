//! The wire forms of handles in a value: a passed `Connection` end (kind
//! tag, tokens, flags) and the handle block that starts a message carrying
//! handles (count, values). Garbage, unknown tags, token counts the tag
//! doesn't list, blocks cut off or over the cap end in an error, never a
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiproc::fuzzing::connection_wire(data);
    let _ = multiproc::fuzzing::handle_block(data);
});
