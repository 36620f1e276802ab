//! Request and connection limits with nginx's semantics (`limit_req`, `limit_conn`): the
//! zones of one configuration generation, shared by every worker thread, and the two checks a
//! request goes through before it is served (nginx's preaccess phase: `limit_req` first, then
//! `limit_conn`; a `return` or a request refused as malformed is answered before them).
//!
//! A zone is sharded by key hash, each shard behind its own mutex held for one table lookup
//! (`bucket`, `conn`); a reload keeps a zone whose kind, key and size are unchanged, with its
//! states and counters, as nginx keeps a shared zone.

pub(crate) mod bench;
mod bucket;
mod conn;
mod key;
mod table;

pub(crate) use conn::ConnHold;

use crate::config::{Http, LimitLogLevel, LimitZone, Settings, ZoneKind, MAX_LIMITS};
use bucket::{delay_ms, Held, Looked, Outcome, ReqZone};
use conn::{ConnZone, Refused};
use key::{request_key, Key};
use std::net::IpAddr;
use std::sync::Arc;

/// nginx counts from its monotonic clock (boot), so a key's first `last = 0` is long ago; the
/// shared millisecond clock counts from the process start, so it is moved on by this much.
const CLOCK_BASE: u64 = 1 << 31;

enum Zone {
    Req(Arc<ReqZone>),
    Conn(Arc<ConnZone>),
}

/// The zones of a generation, in the order of `Http::limit_zones`.
#[derive(Default)]
pub(crate) struct Zones(Vec<Zone>);

/// `$limit_req_status` (nginx 1.17.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReqStatus {
    Passed,
    Delayed,
    Rejected,
    DelayedDryRun,
    RejectedDryRun,
}

/// `$limit_conn_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnStatus {
    Passed,
    Rejected,
    RejectedDryRun,
}

impl ReqStatus {
    pub(crate) fn text(self) -> &'static str {
        match self {
            ReqStatus::Passed => "PASSED",
            ReqStatus::Delayed => "DELAYED",
            ReqStatus::Rejected => "REJECTED",
            ReqStatus::DelayedDryRun => "DELAYED_DRY_RUN",
            ReqStatus::RejectedDryRun => "REJECTED_DRY_RUN",
        }
    }
}

impl ConnStatus {
    pub(crate) fn text(self) -> &'static str {
        match self {
            ConnStatus::Passed => "PASSED",
            ConnStatus::Rejected => "REJECTED",
            ConnStatus::RejectedDryRun => "REJECTED_DRY_RUN",
        }
    }
}

/// What the limits decided of the current request (for the access log, and so a delayed
/// request is not limited twice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    pub(crate) req: Option<ReqStatus>,
    pub(crate) conn: Option<ConnStatus>,
}

/// What a check says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Go,
    /// Wait this many milliseconds, then go on (`limit_req` without `nodelay`).
    Delay(u64),
    /// Answer this status.
    Refuse(u16),
}

/// Who the request is from, for the keys and for the error log's words.
pub(crate) struct Who<'a> {
    /// The client's address: the one input of `$binary_remote_addr` and `$remote_addr`.
    pub(crate) client: IpAddr,
    pub(crate) server_name: &'a str,
    pub(crate) request: &'a [u8],
    pub(crate) host: Option<&'a [u8]>,
}

impl std::fmt::Display for Who<'_> {
    /// nginx's error-log context of a request.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client: {}, server: {}, request: \"{}\"", self.client, self.server_name, String::from_utf8_lossy(self.request))?;
        if let Some(h) = self.host {
            write!(f, ", host: \"{}\"", String::from_utf8_lossy(h))?;
        }
        Ok(())
    }
}

/// One zone on the status page.
pub(crate) struct ZoneView {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    /// Requests per second (`limit_req_zone`), or 0.
    pub(crate) rate: f64,
    pub(crate) capacity: usize,
    pub(crate) used: usize,
    pub(crate) passed: u64,
    pub(crate) delayed: u64,
    pub(crate) rejected: u64,
    /// Times a worker found a shard's lock held by another (contention).
    pub(crate) lock_waits: u64,
}

impl Zones {
    /// The zones of `conf`; a zone of `previous` with the same name, kind, key and size is
    /// kept (its states and counters go on).
    pub(crate) fn build(conf: &[LimitZone], previous: Option<(&[LimitZone], &Zones)>) -> Zones {
        let same = |a: &LimitZone, b: &LimitZone| {
            a.name == b.name && a.key_text == b.key_text && a.size == b.size && matches!(a.kind, ZoneKind::Req { .. }) == matches!(b.kind, ZoneKind::Req { .. })
        };
        let zones = conf
            .iter()
            .map(|z| {
                let kept = previous.and_then(|(pc, pz)| pc.iter().position(|o| same(o, z)).and_then(|i| pz.0.get(i)));
                match (kept, z.kind) {
                    (Some(Zone::Req(r)), ZoneKind::Req { .. }) => Zone::Req(Arc::clone(r)),
                    (Some(Zone::Conn(c)), ZoneKind::Conn) => Zone::Conn(Arc::clone(c)),
                    (_, ZoneKind::Req { .. }) => Zone::Req(Arc::new(ReqZone::new(z.capacity()))),
                    (_, ZoneKind::Conn) => Zone::Conn(Arc::new(ConnZone::new(z.capacity()))),
                }
            })
            .collect();
        Zones(zones)
    }

    /// True when `self` and `other` share zone `i` (a reload kept it).
    #[cfg(test)]
    fn shares(&self, other: &Zones, i: usize) -> bool {
        match (&self.0[i], &other.0[i]) {
            (Zone::Req(a), Zone::Req(b)) => Arc::ptr_eq(a, b),
            (Zone::Conn(a), Zone::Conn(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub(crate) fn views(&self, conf: &[LimitZone]) -> Vec<ZoneView> {
        self.0
            .iter()
            .zip(conf)
            .map(|(z, c)| {
                let (kind, rate, capacity, used, [passed, delayed, rejected, lock_waits]) = match z {
                    Zone::Req(z) => {
                        let (t, used) = z.totals();
                        let rate = if let ZoneKind::Req { rate } = c.kind { rate as f64 / 1000.0 } else { 0.0 };
                        ("limit_req", rate, z.capacity, used, t)
                    }
                    Zone::Conn(z) => {
                        let ([p, r, w], used) = z.totals();
                        ("limit_conn", 0.0, z.capacity, used, [p, 0, r, w])
                    }
                };
                ZoneView { name: c.name.clone(), kind, rate, capacity, used, passed, delayed, rejected, lock_waits }
            })
            .collect()
    }
}

/// Both checks, in nginx's order: `limit_req`, then `limit_conn`.
pub(crate) fn check(zones: &Zones, http: &Http, s: &Settings, who: &Who, now_ms: u64, marks: &mut Marks, holds: &mut Vec<ConnHold>) -> Verdict {
    match limit_req(zones, http, s, who, now_ms, marks) {
        Verdict::Go => limit_conn(zones, http, s, who, holds, marks),
        v => v,
    }
}

fn log_at(level: LimitLogLevel, args: std::fmt::Arguments) {
    log::log!(level.level(), "{}", args);
}

/// nginx's `limit_req` handler for a request under `s` at `now_ms` (the shared ms clock).
pub(crate) fn limit_req(zones: &Zones, http: &Http, s: &Settings, who: &Who, now_ms: u64, marks: &mut Marks) -> Verdict {
    let limits = &s.limit_req;
    if limits.is_empty() || marks.req.is_some() {
        return Verdict::Go;
    }
    let now = now_ms + CLOCK_BASE;
    let rate = |zone: usize| match http.limit_zones[zone].kind {
        ZoneKind::Req { rate } => rate,
        ZoneKind::Conn => 1000,
    };
    let mut held: [Option<(usize, Held, Key)>; MAX_LIMITS] = [None; MAX_LIMITS];
    let mut found: Option<(usize, Looked, Key)> = None;
    let mut last = limits.len() - 1;
    for (n, l) in limits.iter().enumerate() {
        let Some(Zone::Req(z)) = zones.0.get(l.zone) else { continue };
        last = n;
        let Some(key) = request_key(&http.limit_zones[l.zone].key, who.client, who.server_name, &z.seed) else { continue };
        let looked = z.lookup(&key, rate(l.zone), l.burst, now, n == limits.len() - 1);
        found = Some((n, looked, key));
        match looked {
            Looked::Held(h) => held[n] = Some((n, h, key)),
            _ => break,
        }
    }
    let Some((n, looked, key)) = found else { return Verdict::Go };
    let zone_of = |i: usize| match zones.0.get(limits[i].zone) {
        Some(Zone::Req(z)) => Some(z),
        _ => None,
    };
    let name = |i: usize| http.limit_zones[limits[i].zone].name.as_str();
    let dry = if s.limit_req_dry_run { ", dry run" } else { "" };
    if let Looked::Busy(_) | Looked::NoRoom = looked {
        match looked {
            Looked::Busy(e) => {
                log_at(s.limit_req_log_level, format_args!("limiting requests{}, excess: {}.{:03} by zone \"{}\", {}", dry, e / 1000, e % 1000, name(n), who))
            }
            _ => log::error!("could not allocate node in limit_req zone \"{}\", {}", name(n), who),
        }
        for (i, h, _) in held.iter().flatten() {
            if let Some(z) = zone_of(*i) {
                z.unhold(*h);
            }
        }
        if let Some(z) = zone_of(n) {
            z.count(&key, Outcome::Rejected);
        }
        marks.req = Some(if s.limit_req_dry_run { ReqStatus::RejectedDryRun } else { ReqStatus::Rejected });
        return if s.limit_req_dry_run { Verdict::Go } else { Verdict::Refuse(s.limit_req_status) };
    }
    // Passed the last limit, or every limit was held (the last had no key): account them.
    let mut excess = if let Looked::Passed(e) = looked { e } else { 0 };
    let mut by = if matches!(looked, Looked::Passed(_)) { n } else { last };
    let mut max_delay = delay_ms(excess, limits[by].delay, rate(limits[by].zone));
    if let (Looked::Passed(_), Some(z)) = (looked, zone_of(n)) {
        z.count(&key, if max_delay > 0 { Outcome::Delayed } else { Outcome::Passed });
    }
    for (i, h, k) in held.iter().flatten().rev() {
        let Some(z) = zone_of(*i) else { continue };
        let r = rate(limits[*i].zone);
        let e = z.account(*h, r, now);
        let d = delay_ms(e, limits[*i].delay, r);
        z.count(k, if d > 0 { Outcome::Delayed } else { Outcome::Passed });
        if d > max_delay {
            (max_delay, excess, by) = (d, e, *i);
        }
    }
    if max_delay == 0 {
        marks.req = Some(ReqStatus::Passed);
        return Verdict::Go;
    }
    let e = excess;
    log_at(s.limit_req_log_level.lower(), format_args!("delaying request{}, excess: {}.{:03}, by zone \"{}\", {}", dry, e / 1000, e % 1000, name(by), who));
    if s.limit_req_dry_run {
        marks.req = Some(ReqStatus::DelayedDryRun);
        return Verdict::Go;
    }
    marks.req = Some(ReqStatus::Delayed);
    Verdict::Delay(max_delay)
}

/// nginx's `limit_conn` handler: counts the request under each zone's key (in `holds`, given
/// back when the request ends) unless one has its limit of requests in progress.
pub(crate) fn limit_conn(zones: &Zones, http: &Http, s: &Settings, who: &Who, holds: &mut Vec<ConnHold>, marks: &mut Marks) -> Verdict {
    if s.limit_conn.is_empty() || marks.conn.is_some() {
        return Verdict::Go;
    }
    for l in &s.limit_conn {
        let Some(Zone::Conn(z)) = zones.0.get(l.zone) else { continue };
        let Some(key) = request_key(&http.limit_zones[l.zone].key, who.client, who.server_name, &z.seed) else { continue };
        marks.conn = Some(ConnStatus::Passed);
        match z.enter(key, l.conn) {
            Ok(h) => holds.push(h),
            Err(why) => {
                let name = &http.limit_zones[l.zone].name;
                match why {
                    Refused::Limit => {
                        let dry = if s.limit_conn_dry_run { ", dry run," } else { "" };
                        log_at(s.limit_conn_log_level, format_args!("limiting connections{} by zone \"{}\", {}", dry, name, who));
                    }
                    Refused::NoRoom => log::error!("could not allocate node in limit_conn zone \"{}\", {}", name, who),
                }
                holds.clear();
                if s.limit_conn_dry_run {
                    marks.conn = Some(ConnStatus::RejectedDryRun);
                    return Verdict::Go;
                }
                marks.conn = Some(ConnStatus::Rejected);
                return Verdict::Refuse(s.limit_conn_status);
            }
        }
    }
    Verdict::Go
}

#[cfg(test)]
mod tests;
