//! Rendering a compiled `log_format` into a line: literal text as it is, each variable's
//! value escaped as the format says (nginx's three escapings), a missing value as `-` (or
//! nothing in `json` and `none`).

use crate::config::{Escape, LogFormat, LogPart, LogVar};

/// Where a line's values come from (the session, for one request).
pub trait ValueSource {
    /// Appends the raw value of `var` to `out`; false when the value is missing.
    fn value(&self, var: LogVar, out: &mut Vec<u8>) -> bool;
}

/// Appends one line (without its newline) to `out`. A value is written straight into `out`
/// and escaped only if it has a byte that needs it (then by way of `scratch`).
pub fn render(out: &mut Vec<u8>, scratch: &mut Vec<u8>, format: &LogFormat, values: &impl ValueSource) {
    for part in &format.parts {
        match part {
            LogPart::Lit(s) => out.extend_from_slice(s.as_bytes()),
            LogPart::Var(v) if v.unescaped() => {
                values.value(*v, out);
            }
            LogPart::Var(v) => {
                let start = out.len();
                if !values.value(*v, out) {
                    out.truncate(start);
                    put_value(out, format.escape, None);
                } else if needs_escaping(format.escape, &out[start..]) {
                    scratch.clear();
                    scratch.extend_from_slice(&out[start..]);
                    out.truncate(start);
                    put_value(out, format.escape, Some(scratch));
                }
            }
        }
    }
}

/// Bytes the default escaping writes as `\xXX`.
fn escaped_by_default(c: u8) -> bool {
    c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c)
}

/// Bytes JSON escaping changes.
fn escaped_in_json(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

fn needs_escaping(escape: Escape, v: &[u8]) -> bool {
    match escape {
        Escape::Default => v.iter().any(|&c| escaped_by_default(c)),
        Escape::Json => v.iter().any(|&c| escaped_in_json(c)),
        Escape::None => false,
    }
}

/// One value, escaped; `None` when it is missing.
pub fn put_value(out: &mut Vec<u8>, escape: Escape, value: Option<&[u8]>) {
    let Some(v) = value else {
        if escape == Escape::Default {
            out.push(b'-');
        }
        return;
    };
    match escape {
        Escape::Default => put_escaped(out, v),
        Escape::Json => put_json(out, v),
        Escape::None => out.extend_from_slice(v),
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// nginx's default log escaping: `"`, `\`, control bytes and bytes from 0x7f as `\xXX`.
pub fn put_escaped(out: &mut Vec<u8>, v: &[u8]) {
    for run in v.split_inclusive(|&c| escaped_by_default(c)) {
        match run.split_last() {
            Some((&c, head)) if escaped_by_default(c) => {
                out.extend_from_slice(head);
                out.extend_from_slice(&[b'\\', b'x', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
            }
            _ => out.extend_from_slice(run),
        }
    }
}

/// JSON string escaping (nginx's `ngx_escape_json`): quotes, backslashes and control bytes;
/// other bytes as they are.
pub fn put_json(out: &mut Vec<u8>, v: &[u8]) {
    for &c in v {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapings() {
        let mut o = Vec::new();
        put_value(&mut o, Escape::Default, Some(b"a\"b\\c\x01\x7f\xc3\xa9 d"));
        assert_eq!(o, b"a\\x22b\\x5Cc\\x01\\x7F\\xC3\\xA9 d");
        o.clear();
        put_value(&mut o, Escape::Json, Some(b"a\"b\\c\n\x01\xc3\xa9"));
        assert_eq!(o, b"a\\\"b\\\\c\\n\\u0001\xc3\xa9");
        o.clear();
        put_value(&mut o, Escape::Default, None);
        put_value(&mut o, Escape::Json, None);
        put_value(&mut o, Escape::None, None);
        assert_eq!(o, b"-");
    }
}
