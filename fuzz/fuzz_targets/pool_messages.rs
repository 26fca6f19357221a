//! The pool's task and result messages (both directions).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiproc::fuzzing::pool_messages(data);
});
