//! The wire form of a shared-memory block (token, length, frozen flag):
//! garbage, lengths over the cap and a frozen flag other than the
//! receiving type expects end in an error, never a panic or an allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiproc::fuzzing::shared_wire(data);
});
