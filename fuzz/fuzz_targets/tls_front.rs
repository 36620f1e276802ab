//! The TLS front end fed arbitrary client bytes in arbitrary pieces: sniffing (TLS or plain
//! HTTP), rustls' acceptor and SNI choice, the handshake and records. It must end (an error,
//! an EOF, plaintext), never panic or spin.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let piece = data[0] as usize * 64 + 1;
    pounce::fuzzing::tls_front(&data[1..], piece);
});
