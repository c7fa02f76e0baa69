//! Stages 1 to 5 in memory on arbitrary bytes: a contract that validates
//! always renders, wires and verifies; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onex_gen::fuzzing::check_pipeline(data);
});
