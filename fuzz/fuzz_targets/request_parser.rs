//! Request heads: parse, and when accepted check what the rest of pounce relies on.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pounce::http::request::{empty_headers, parse, BodyKind, Parse, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    let mut headers = empty_headers();
    if let Parse::Done(req, meta) = parse(data, &mut headers, MAX_HEAD) {
        assert!(meta.head_len <= data.len() && meta.head_len <= MAX_HEAD);
        assert!(req.method.is_some() && req.path.is_some());
        // One framing only: never a length and chunked at once (the smuggling rule).
        let cl = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")).count();
        let te = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding")).count();
        assert!(cl <= 1 && te <= 1 && !(cl == 1 && te == 1));
        if meta.body == BodyKind::Chunked {
            assert_eq!(te, 1);
        }
    }
});
