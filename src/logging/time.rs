//! Wall-clock text for `Date:` headers and access-log lines, formatted once per second.

use std::time::{SystemTime, UNIX_EPOCH};

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Cached clock texts; `tick` refreshes them when the second changes.
pub struct Clock {
    secs: u64,
    /// Milliseconds since the epoch at the last tick (`$msec`).
    pub unix_ms: u64,
    pub http_date: String,
    pub log_time: String,
    /// `2026-11-21T23:52:51+00:00` (`$time_iso8601`).
    pub iso8601: String,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        let mut c = Clock { secs: u64::MAX, unix_ms: 0, http_date: String::new(), log_time: String::new(), iso8601: String::new() };
        c.tick();
        c
    }

    pub fn tick(&mut self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.unix_ms = now.as_millis() as u64;
        let secs = now.as_secs();
        if secs != self.secs {
            self.secs = secs;
            self.http_date = http_date(secs);
            self.log_time = log_time(secs);
            self.iso8601 = iso8601(secs);
        }
    }
}

pub fn http_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil(days);
    format!("{}, {:02} {} {} {:02}:{:02}:{:02} GMT", DAYS[days.rem_euclid(7) as usize], d, MONTHS[m as usize - 1], y, rem / 3600, rem / 60 % 60, rem % 60)
}

pub fn log_time(secs: u64) -> String {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{:02}/{}/{}:{:02}:{:02}:{:02} +0000", d, MONTHS[m as usize - 1], y, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `2026-11-21T23:59:59+00:00` (UTC), as nginx's `$time_iso8601`.
pub fn iso8601(secs: u64) -> String {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00", y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `2026/11/21 23:59:59` as nginx's error log writes it (UTC).
pub fn error_log_time(secs: u64) -> String {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{}/{:02}/{:02} {:02}:{:02}:{:02}", y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(log_time(971_186_136), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(iso8601(971_186_136), "2000-10-10T13:55:36+00:00");
    }
}
