//! The request body on its way from the client: how much is still to come (a length or a
//! chunked stream), and the sinks it can go to — a backend's adapter, the status page's
//! form, or nowhere (discarded so the connection can be kept).

use crate::backend::{Adapter, Protocol};
use crate::buffer::Buf;
use crate::http::chunked::{ChunkError, ChunkedDecoder};
use crate::http::request::BodyKind;

/// The request body still to come from the client.
#[derive(Debug, Clone)]
pub(crate) enum ReqBody {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl ReqBody {
    pub(crate) fn new(kind: BodyKind) -> ReqBody {
        match kind {
            BodyKind::None => ReqBody::Done,
            BodyKind::Length(n) => ReqBody::Length(n),
            BodyKind::Chunked => ReqBody::Chunked(ChunkedDecoder::new()),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, ReqBody::Done)
    }

    /// What a chunked body's size lines announce, the next one in `pending` included (0 for
    /// other bodies: their length was checked against the limit up front).
    pub(crate) fn declared_ahead(&self, pending: &[u8]) -> u64 {
        match self {
            ReqBody::Chunked(dec) => dec.declared_ahead(pending),
            _ => 0,
        }
    }

    /// Moves body bytes from `cin` into `sink`, never more than the sink can take at that
    /// moment (its room is asked afresh each step: an AJP sink takes one packet per ask).
    /// Returns `(input bytes used, payload bytes moved)`.
    pub(crate) fn feed(&mut self, cin: &mut Buf, sink: &mut dyn BodySink) -> Result<(usize, usize), ChunkError> {
        let mut used_total = 0;
        let mut moved = 0;
        loop {
            match self {
                ReqBody::Done => break,
                ReqBody::Length(rem) => {
                    let n = (cin.len() as u64).min(*rem).min(sink.room() as u64) as usize;
                    if n == 0 {
                        break;
                    }
                    let taken = sink.take(&cin.data()[..n]);
                    if taken == 0 {
                        break;
                    }
                    cin.consume(taken);
                    *rem -= taken as u64;
                    used_total += taken;
                    moved += taken;
                    if *rem == 0 {
                        *self = ReqBody::Done;
                    }
                }
                ReqBody::Chunked(dec) => {
                    let limit = sink.room();
                    if limit == 0 {
                        break;
                    }
                    let (used, data) = dec.decode(cin.data(), limit)?;
                    if let Some((off, len)) = data {
                        // `limit` was the sink's room, so it takes all of it.
                        moved += sink.take(&cin.data()[off..off + len]);
                    }
                    let done = dec.is_done();
                    cin.consume(used);
                    used_total += used;
                    if done {
                        *self = ReqBody::Done;
                    } else if used == 0 {
                        break;
                    }
                }
            }
        }
        Ok((used_total, moved))
    }
}

/// Where decoded request-body bytes go.
pub(crate) trait BodySink {
    /// Takes some of `data`; returns how many bytes.
    fn take(&mut self, data: &[u8]) -> usize;
    fn room(&self) -> usize;
}

/// Drops the body (pounce answered itself; the connection is kept).
pub(crate) struct Discard;

impl BodySink for Discard {
    fn take(&mut self, data: &[u8]) -> usize {
        data.len()
    }
    fn room(&self) -> usize {
        usize::MAX
    }
}

/// Collects a small body (the status page's form), up to `limit` bytes.
pub(crate) struct Collect<'a> {
    pub(crate) into: &'a mut Vec<u8>,
    pub(crate) limit: usize,
}

impl BodySink for Collect<'_> {
    fn take(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        self.into.extend_from_slice(&data[..n]);
        n
    }
    fn room(&self) -> usize {
        self.limit - self.into.len()
    }
}

/// Frames body bytes for the backend through its adapter.
pub(crate) struct Forward<'a> {
    pub(crate) adapter: &'a mut Adapter,
    pub(crate) out: &'a mut Buf,
}

impl BodySink for Forward<'_> {
    fn take(&mut self, data: &[u8]) -> usize {
        self.adapter.encode_body(data, self.out)
    }
    fn room(&self) -> usize {
        // What the backend accepts now (AJP: one packet per GET_BODY_CHUNK), leaving room in
        // the buffer for framing (chunk lines, AJP packet headers).
        self.out.room().saturating_sub(24).min(self.adapter.body_credit())
    }
}
