//! Streaming decoder for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
//!
//! Fed whatever bytes have arrived, it returns how many it used and where the payload bytes
//! among them are, so callers can copy payload out without an intermediate buffer. Strict:
//! hex sizes only (no sign, no leading space, at most 16 digits), CRLF after every chunk,
//! bounded extensions and trailers.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    BadSize,
    SizeOverflow,
    BadLineEnd,
    ExtensionTooLong,
    TrailersTooLong,
}

const MAX_EXT: usize = 4096;
const MAX_TRAILERS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Reading hex digits of a chunk size; `digits` so far.
    Size {
        digits: u8,
    },
    /// After the size: extension bytes until CR.
    Ext,
    /// Expecting LF after the size line's CR.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf {
        empty: bool,
    },
    Done,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    st: St,
    /// Size of the chunk being read, then bytes left of it.
    remaining: u64,
    /// The sizes of every chunk whose size line was read (what the body will be at least).
    declared: u64,
    ext_len: usize,
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder { st: St::Size { digits: 0 }, remaining: 0, declared: 0, ext_len: 0, trailer_len: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.st == St::Done
    }

    /// The payload the chunk sizes read so far announce: a limit can refuse a body as soon
    /// as a chunk declares too much, before its bytes come (nginx does).
    pub fn declared(&self) -> u64 {
        self.declared
    }

    /// `declared` once the size line at the start of `input` (if any) is read, without
    /// consuming anything.
    pub fn declared_ahead(&self, input: &[u8]) -> u64 {
        let mut peek = self.clone();
        match peek.decode(input, 0) {
            Ok(_) => peek.declared,
            Err(_) => self.declared,
        }
    }

    /// Gives back the last `n` payload bytes the previous `decode` yielded (a writer that
    /// took fewer): they are yielded again, so the caller consumes `used - n`.
    pub fn unread(&mut self, n: usize) {
        if n > 0 {
            self.remaining += n as u64;
            self.st = St::Data;
        }
    }

    /// Decodes from `input`, yielding at most `limit` payload bytes. Returns the number of
    /// input bytes used and the payload as `(offset, len)` inside `input`: payload bytes are
    /// always the tail of the used part, so a caller copies `input[off..off+len]` and
    /// consumes `used`. Call again while `used > 0` and not done.
    pub fn decode(&mut self, input: &[u8], limit: usize) -> Result<(usize, Option<(usize, usize)>), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let c = input[i];
            match self.st {
                St::Size { digits } => {
                    let v = match c {
                        b'0'..=b'9' => c - b'0',
                        b'a'..=b'f' => c - b'a' + 10,
                        b'A'..=b'F' => c - b'A' + 10,
                        b'\r' | b';' | b' ' | b'\t' if digits > 0 => {
                            self.st = if c == b'\r' { St::SizeLf } else { St::Ext };
                            self.ext_len = 0;
                            i += 1;
                            continue;
                        }
                        _ => return Err(ChunkError::BadSize),
                    };
                    if digits >= 16 {
                        return Err(ChunkError::SizeOverflow);
                    }
                    self.remaining = (self.remaining << 4) | v as u64;
                    self.st = St::Size { digits: digits + 1 };
                    i += 1;
                }
                St::Ext => {
                    match c {
                        b'\r' => self.st = St::SizeLf,
                        b'\n' => return Err(ChunkError::BadLineEnd),
                        0..=8 | 10..=31 | 127 => return Err(ChunkError::BadSize),
                        _ => {
                            self.ext_len += 1;
                            if self.ext_len > MAX_EXT {
                                return Err(ChunkError::ExtensionTooLong);
                            }
                        }
                    }
                    i += 1;
                }
                St::SizeLf => {
                    if c != b'\n' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    i += 1;
                    self.declared = self.declared.saturating_add(self.remaining);
                    self.st = if self.remaining == 0 { St::TrailerStart } else { St::Data };
                }
                St::Data => {
                    let avail = (input.len() - i) as u64;
                    let n = self.remaining.min(avail).min(limit as u64) as usize;
                    if n == 0 {
                        return Ok((i, None));
                    }
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.st = St::DataCr;
                    }
                    return Ok((i + n, Some((i, n))));
                }
                St::DataCr => {
                    if c != b'\r' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    self.st = St::DataLf;
                    i += 1;
                }
                St::DataLf => {
                    if c != b'\n' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    self.st = St::Size { digits: 0 };
                    self.remaining = 0;
                    i += 1;
                }
                St::TrailerStart | St::TrailerLine => {
                    let start = self.st == St::TrailerStart;
                    match c {
                        b'\r' => self.st = St::TrailerLf { empty: start },
                        b'\n' => return Err(ChunkError::BadLineEnd),
                        _ => self.st = St::TrailerLine,
                    }
                    self.trailer_len += 1;
                    if self.trailer_len > MAX_TRAILERS {
                        return Err(ChunkError::TrailersTooLong);
                    }
                    i += 1;
                }
                St::TrailerLf { empty } => {
                    if c != b'\n' {
                        return Err(ChunkError::BadLineEnd);
                    }
                    i += 1;
                    if empty {
                        self.st = St::Done;
                        return Ok((i, None));
                    }
                    self.st = St::TrailerStart;
                }
                St::Done => return Ok((i, None)),
            }
        }
        Ok((i, None))
    }
}

/// Writes the chunk-size line for `n` payload bytes (`"1f4\r\n"`) into `out`; returns its length.
pub fn size_line(n: usize, out: &mut [u8; 18]) -> usize {
    let mut digits = [0u8; 16];
    let mut len = 0;
    let mut v = n;
    loop {
        digits[len] = b"0123456789abcdef"[v & 15];
        len += 1;
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    for j in 0..len {
        out[j] = digits[len - 1 - j];
    }
    out[len] = b'\r';
    out[len + 1] = b'\n';
    len + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize, limit: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let mut pending: Vec<u8> = Vec::new();
        while fed < input.len() || !pending.is_empty() {
            let end = (fed + step).min(input.len());
            pending.extend_from_slice(&input[fed..end]);
            fed = end;
            loop {
                let (used, data) = d.decode(&pending, limit)?;
                if let Some((o, n)) = data {
                    out.extend_from_slice(&pending[o..o + n]);
                }
                pending.drain(..used);
                if used == 0 || d.is_done() {
                    break;
                }
            }
            if d.is_done() || fed == input.len() {
                break;
            }
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..body.len() {
            for limit in [1, 3, 100] {
                let (out, done) = decode_all(body, step, limit).expect("valid");
                assert_eq!(out, b"hello world");
                assert!(done, "step {step}");
            }
        }
    }

    #[test]
    fn rejects_bad_framing() {
        for bad in [&b"-5\r\nhello\r\n0\r\n\r\n"[..], b"+5\r\n", b" 5\r\n", b"5\nhello\r\n", b"5\r\nhelloXX", b"11111111111111111\r\n", b"\r\n", b"z\r\n"] {
            assert!(decode_all(bad, 100, 100).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn declared_sizes_are_known_before_the_data() {
        let mut d = ChunkedDecoder::new();
        let input = b"5\r\nhello\r\n6400000\r\nxx";
        assert_eq!(d.declared_ahead(input), 5, "one size line at a time");
        let (used, _) = d.decode(input, 100).expect("valid");
        assert_eq!(d.declared(), 5);
        assert_eq!(d.declared_ahead(&input[used..]), 5 + 0x6400000, "the next chunk's size, nothing consumed");
        assert_eq!(d.declared(), 5);
        assert_eq!(d.declared_ahead(b"zz"), 5, "an invalid line announces nothing");
    }

    #[test]
    fn size_lines() {
        let mut b = [0u8; 18];
        let n = size_line(500, &mut b);
        assert_eq!(&b[..n], b"1f4\r\n");
        let n = size_line(0, &mut b);
        assert_eq!(&b[..n], b"0\r\n");
    }
}
