//! The PROXY protocol header parser (versions 1 and 2): any bytes give a header, a need for
//! more, or an error, never a panic, and the parser's answers are monotone as the socket
//! reader relies on (see `pounce::fuzzing::proxy_header`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Longer inputs add nothing: every header is decided within its first 536 bytes.
    pounce::fuzzing::proxy_header(&data[..data.len().min(1024)]);
});
