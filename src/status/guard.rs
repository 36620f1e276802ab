//! What makes the manager safe to open in an operator's browser: a page elsewhere on the web
//! must not be able to change servers through it (cross-site request forgery). A POST is
//! taken only when
//! - the location is not `status read_only`,
//! - the browser's `Origin` (or, without one, its `Referer`) names the status page's own
//!   origin, the `Host` it was asked under: every browser sends `Origin` with a cross-site
//!   POST, form or `fetch`. A client that sends neither (curl, a script) is not a browser
//!   carrying someone else's page, and is let through to the next check;
//! - it carries this instance's nonce (as Apache's balancer-manager requires): 128 random
//!   bits read from /dev/urandom once when pounce starts, the same in every worker and
//!   across reloads, a new one for a new process. It is in the page's forms and in the JSON,
//!   which another site cannot read (no CORS), so it cannot be put in a forged request.
//!
//! Anything else gets 403, logged with the client's address.

use super::StatusRequest;
use crate::config::StatusAccess;
use std::io::Read;
use std::sync::OnceLock;

static NONCE: OnceLock<String> = OnceLock::new();

/// Reads this instance's nonce (at start, before any worker runs).
pub(crate) fn init_nonce() -> Result<(), String> {
    if NONCE.get().is_some() {
        return Ok(());
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for the status page's nonce: {}", e))?;
    let hex: String = bytes.iter().map(|b| format!("{:02x}", b)).collect();
    let _ = NONCE.set(hex);
    Ok(())
}

/// The nonce; None before `init_nonce` (then no POST is taken).
pub(crate) fn nonce() -> Option<&'static str> {
    NONCE.get().map(String::as_str)
}

/// Why a POST was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    ReadOnly,
    /// The browser says the request comes from another site (what it said).
    CrossSite(String),
    NoNonce,
    WrongNonce,
}

impl Refusal {
    pub(crate) fn message(&self) -> String {
        match self {
            Refusal::ReadOnly => "this status page is read-only (status read_only)".to_string(),
            Refusal::CrossSite(from) => format!("cross-site request refused: it comes from {}, not from this status page", from),
            Refusal::NoNonce => "missing \"nonce\": take it from the page's forms or the JSON (\"nonce\")".to_string(),
            Refusal::WrongNonce => "wrong \"nonce\": take it from the page's forms or the JSON (\"nonce\")".to_string(),
        }
    }
}

/// Whether a POST with this form may change anything.
pub(crate) fn check_post(req: &StatusRequest, form: &str) -> Result<(), Refusal> {
    if req.access == StatusAccess::ReadOnly {
        return Err(Refusal::ReadOnly);
    }
    let source = match (&req.origin, &req.referer) {
        (Some(o), _) => Some(o),
        (None, Some(r)) => Some(r),
        (None, None) => None,
    };
    if let Some(from) = source {
        if !same_origin(from, &req.host) {
            return Err(Refusal::CrossSite(from.chars().take(200).collect()));
        }
    }
    let given = super::query_param(form, "nonce").ok_or(Refusal::NoNonce)?;
    match nonce() {
        Some(n) if equal_in_constant_time(given.as_bytes(), n.as_bytes()) => Ok(()),
        _ => Err(Refusal::WrongNonce),
    }
}

/// `http://host[:port]` (an Origin, or a Referer's beginning) names the authority `host`.
/// Default ports are left out on both sides; "null" and other schemes never match.
fn same_origin(url: &str, host: &str) -> bool {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
        (r, ":80")
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, ":443")
    } else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let strip = |a: &str| a.strip_suffix(default_port).unwrap_or(a).to_ascii_lowercase();
    !host.is_empty() && !authority.contains('@') && strip(authority) == strip(host)
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(origin: Option<&str>, referer: Option<&str>, access: StatusAccess) -> StatusRequest {
        StatusRequest {
            method: "POST".into(),
            target: "/s".into(),
            accept: vec![],
            form: vec![],
            client: ([127, 0, 0, 1], 5000).into(),
            host: "127.0.0.1:8080".into(),
            origin: origin.map(String::from),
            referer: referer.map(String::from),
            access,
        }
    }

    #[test]
    fn origins() {
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("http://Status.Example", "status.example:80"));
        assert!(same_origin("https://status.example", "status.example"));
        assert!(same_origin("http://127.0.0.1:8080/pounce-status?x=1", "127.0.0.1:8080"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:8080"));
        assert!(!same_origin("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!same_origin("http://127.0.0.1:8080.evil.example", "127.0.0.1:8080"));
        assert!(!same_origin("http://127.0.0.1:8080@evil.example", "127.0.0.1:8080"));
        assert!(!same_origin("null", "127.0.0.1:8080"));
        assert!(!same_origin("http://x", ""));
    }

    #[test]
    fn posts() {
        init_nonce().expect("urandom");
        let n = nonce().expect("nonce");
        assert_eq!(n.len(), 32);
        let form = format!("upstream=a&nonce={}", n);
        let manage = StatusAccess::Manage;
        assert_eq!(check_post(&req(None, None, manage), &form), Ok(()));
        assert_eq!(check_post(&req(Some("http://127.0.0.1:8080"), None, manage), &form), Ok(()));
        assert_eq!(check_post(&req(None, Some("http://127.0.0.1:8080/s"), manage), &form), Ok(()));
        assert!(matches!(check_post(&req(Some("http://evil.example"), None, manage), &form), Err(Refusal::CrossSite(_))));
        assert!(matches!(check_post(&req(Some("null"), Some("http://127.0.0.1:8080/s"), manage), &form), Err(Refusal::CrossSite(_))));
        assert!(matches!(check_post(&req(None, Some("http://evil.example/x"), manage), &form), Err(Refusal::CrossSite(_))));
        assert_eq!(check_post(&req(None, None, manage), "upstream=a"), Err(Refusal::NoNonce));
        assert_eq!(check_post(&req(None, None, manage), "upstream=a&nonce=00"), Err(Refusal::WrongNonce));
        assert_eq!(check_post(&req(None, None, StatusAccess::ReadOnly), &form), Err(Refusal::ReadOnly));
    }
}
