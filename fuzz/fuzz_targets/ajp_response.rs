//! The AJP13 response decoder (and the HTTP/1 one), fed backend bytes in arbitrary pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pounce::backend::ajp::AjpAdapter;
use pounce::backend::http::HttpAdapter;
use pounce::backend::{Protocol, RetryMask, Step};
use pounce::buffer::Buf;
use pounce::http::request::{BodyKind, Method};
use pounce::http::writer::{ReqFacts, ResponseWriter};

fn run(adapter: &mut dyn Protocol, data: &[u8], piece: usize, room: usize, head: bool) {
    let facts = ReqFacts { head, minor: 1, keep_alive: true, host: b"h", rewrite_from: [b"http://b:1", b""], rewrite: true, scheme: "http", date: "d", via: None, add_headers: &[], gzip: None };
    let mut input = Buf::standalone(16 * 1024);
    let mut out = Buf::standalone(room);
    let mut w = ResponseWriter::new();
    let mut fed = 0;
    for _ in 0..100_000 {
        let before = (fed, input.len());
        if fed < data.len() {
            let end = (fed + piece).min(data.len());
            fed += input.put(&data[fed..end]);
        }
        match adapter.decode(&mut input, &mut out, &mut w, &facts, RetryMask(0xFFFF)) {
            Ok(Step::Done { .. }) | Ok(Step::RetryStatus(_)) | Err(_) => return,
            Ok(Step::Blocked) => {}
        }
        // The client takes what was written.
        let wrote = out.len();
        out.consume(wrote);
        // No input left, or stuck with a full buffer: the backend closes.
        if (fed >= data.len() && input.is_empty()) || (before == (fed, input.len()) && wrote == 0) {
            let _ = adapter.eof(&mut out, &mut w);
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let piece = (data[0] as usize % 200) + 1;
    let room = 512 + (data[1] as usize) * 64;
    let head = data[2] & 1 == 1;
    let body = &data[3..];
    if data[2] & 2 == 0 {
        run(&mut AjpAdapter::new(BodyKind::None, 8192), body, piece, room, head);
    } else {
        let m = if head { Method::Head } else { Method::Get };
        run(&mut HttpAdapter::new(m, BodyKind::None, false), body, piece, room, head);
    }
});
