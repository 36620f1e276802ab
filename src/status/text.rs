//! Text helpers of the three views: escaping, and numbers written without float noise
//! (fixed-point from integer micro- or milliseconds), sizes and ages for people.

use std::fmt::Write;

pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `n` thousandths (or millionths, `digits` = 6) as a decimal: 677 µs as seconds is
/// "0.000677", never "0.0006770000000000001".
pub(crate) fn decimal(n: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    format!("{}.{:0width$}", n / scale, n % scale, width = digits as usize)
}

/// Microseconds as milliseconds for people: "0.41 ms", "12.3 ms", "1520 ms".
pub(crate) fn ms(us: u64) -> String {
    match us {
        0..=9_999 => format!("{}.{:02} ms", us / 1000, us % 1000 / 10),
        10_000..=99_999 => format!("{}.{} ms", us / 1000, us % 1000 / 100),
        _ => format!("{} ms", us / 1000),
    }
}

/// Milliseconds as an age or a duration for people: "0.4 s", "12 s", "3 min 4 s", "2 h 5 min".
pub(crate) fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=9 => format!("{}.{} s", s, ms % 1000 / 100),
        10..=59 => format!("{} s", s),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

pub(crate) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{} B", n),
    }
}

/// Unix seconds as "2026-11-21 23:59:59 UTC".
pub(crate) fn utc(secs: u64) -> String {
    let t = crate::logging::time::error_log_time(secs).replace('/', "-");
    format!("{} UTC", t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_without_noise() {
        assert_eq!(decimal(677, 6), "0.000677");
        assert_eq!(decimal(1_500_000, 6), "1.500000");
        assert_eq!(decimal(12_345, 3), "12.345");
        assert_eq!(decimal(0, 3), "0.000");
        assert_eq!(ms(412), "0.41 ms");
        assert_eq!(ms(12_345), "12.3 ms");
        assert_eq!(ms(1_520_000), "1520 ms");
        assert_eq!(age(400), "0.4 s");
        assert_eq!(age(184_000), "3 min 4 s");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(json_str("a\"b\n"), "\"a\\\"b\\u000a\"");
    }
}
