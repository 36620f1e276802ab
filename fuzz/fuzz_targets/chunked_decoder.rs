//! The chunked body decoder, fed in arbitrary pieces with arbitrary output limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pounce::http::chunked::ChunkedDecoder;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // First byte: piece size; second: payload limit per call.
    let piece = (data[0] as usize % 64) + 1;
    let limit = (data[1] as usize % 32) + 1;
    let input = &data[2..];
    let mut dec = ChunkedDecoder::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut payload = 0usize;
    loop {
        if fed < input.len() {
            let end = (fed + piece).min(input.len());
            pending.extend_from_slice(&input[fed..end]);
            fed = end;
        }
        let mut progressed = false;
        loop {
            match dec.decode(&pending, limit) {
                Ok((used, out)) => {
                    assert!(used <= pending.len());
                    if let Some((off, len)) = out {
                        assert!(len <= limit && off + len <= used, "payload outside the used part");
                        payload += len;
                    }
                    pending.drain(..used);
                    if used == 0 || dec.is_done() {
                        break;
                    }
                    progressed = true;
                }
                Err(_) => return,
            }
        }
        if dec.is_done() {
            break;
        }
        if fed >= input.len() && !progressed {
            break;
        }
    }
    assert!(payload <= input.len());
});
