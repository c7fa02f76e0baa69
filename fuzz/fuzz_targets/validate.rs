//! Stages 1 and 2 on arbitrary bytes: a contract or located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onex_gen::fuzzing::check_validate(data);
});
