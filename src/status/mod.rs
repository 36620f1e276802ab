//! The status and manager page (`location ... { status; }`): what mod_jk's jk-status and
//! Apache's balancer-manager show, as HTML, JSON or Prometheus text, plus runtime changes of a
//! server's weight and activation by POST, guarded against cross-site requests (`guard`). It
//! reads only atomics: rendering never stalls a worker, and a change takes effect in every
//! worker at once.

mod guard;
mod html;
mod json;
mod manager;
mod prometheus;
pub(crate) mod snapshot;
mod text;

pub(crate) use guard::init_nonce;

use crate::config::StatusAccess;
use crate::runtime::Runtime;
use std::net::SocketAddr;

/// Headers of every status answer: never framed by another page (clickjacking), nothing
/// loaded from elsewhere, forms posted only back here, content types taken as given.
pub(crate) const HEADERS: &str = "X-Frame-Options: DENY\r\n\
Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'\r\n\
X-Content-Type-Options: nosniff\r\nReferrer-Policy: same-origin\r\n";

/// A request to the status location, kept until its (small) form body is in. Not the hot
/// path: allocations are fine.
pub(crate) struct StatusRequest {
    pub(crate) method: String,
    /// Path and query as the client sent them.
    pub(crate) target: String,
    pub(crate) accept: Vec<u8>,
    /// The form body of a POST.
    pub(crate) form: Vec<u8>,
    /// Who asks, the Host it named, and where a browser says the request comes from.
    pub(crate) client: SocketAddr,
    pub(crate) host: String,
    pub(crate) origin: Option<String>,
    pub(crate) referer: Option<String>,
    /// Whether this location takes changes.
    pub(crate) access: StatusAccess,
}

pub(crate) struct StatusResponse {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
    /// Where a browser goes after a form POST (303 See Other).
    pub(crate) location: Option<String>,
}

impl StatusResponse {
    fn text(status: u16, msg: impl Into<String>) -> StatusResponse {
        let mut body = msg.into().into_bytes();
        body.push(b'\n');
        StatusResponse { status, content_type: "text/plain; charset=utf-8", body, location: None }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Html,
    Json,
    Prometheus,
}

fn format_of(query: &str, accept: &[u8]) -> Format {
    match query_param(query, "format").as_deref() {
        Some("json") => Format::Json,
        Some("prometheus") => Format::Prometheus,
        Some(_) => Format::Html,
        None if accept.windows(16).any(|w| w.eq_ignore_ascii_case(b"application/json")) => Format::Json,
        None => Format::Html,
    }
}

/// The page's auto-refresh period (`?refresh=SECONDS`, 1 to 3600), if asked for.
fn refresh_of(query: &str) -> Option<u32> {
    query_param(query, "refresh").and_then(|r| r.parse().ok()).filter(|r| (1..=3600).contains(r))
}

/// Answers one request to the status location.
pub(crate) fn handle(rt: &Runtime, req: &StatusRequest) -> StatusResponse {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let format = format_of(query, &req.accept);
    match req.method.as_str() {
        "GET" | "HEAD" => {
            let snap = snapshot::take(rt, req.access);
            match format {
                Format::Html => {
                    StatusResponse { status: 200, content_type: "text/html; charset=utf-8", body: html::page(&snap, path, refresh_of(query)), location: None }
                }
                Format::Json => StatusResponse { status: 200, content_type: "application/json", body: json::render(&snap), location: None },
                Format::Prometheus => {
                    StatusResponse { status: 200, content_type: "text/plain; version=0.0.4; charset=utf-8", body: prometheus::render(&snap), location: None }
                }
            }
        }
        "POST" => {
            let form = String::from_utf8_lossy(&req.form);
            if let Err(r) = guard::check_post(req, &form) {
                log::warn!("status page: POST from {} refused: {}", req.client, r.message());
                return StatusResponse::text(403, r.message());
            }
            match manager::apply(rt, &form, req.client) {
                Err((status, msg)) => StatusResponse::text(status, msg),
                Ok(change) if format == Format::Json => {
                    StatusResponse { status: 200, content_type: "application/json", body: change.into_bytes(), location: None }
                }
                Ok(_) => {
                    let back = match refresh_of(query) {
                        Some(r) => format!("{}?refresh={}", path, r),
                        None => path.to_string(),
                    };
                    StatusResponse { status: 303, content_type: "text/plain; charset=utf-8", body: b"changed\n".to_vec(), location: Some(back) }
                }
            }
        }
        _ => StatusResponse::text(405, "the status page takes GET, HEAD and POST"),
    }
}

/// A query or form parameter, percent-decoded (`+` is a space).
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode(k).as_deref() == Some(name)).then(|| decode(v)).flatten()
    })
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        assert_eq!(query_param("a=1&format=json", "format").as_deref(), Some("json"));
        assert_eq!(query_param("server=127.0.0.1%3A80&x=a+b", "server").as_deref(), Some("127.0.0.1:80"));
        assert_eq!(query_param("x=a+b", "x").as_deref(), Some("a b"));
        assert_eq!(query_param("x=%zz", "x"), None);
        assert_eq!(format_of("", b"text/html, application/json"), Format::Json);
        assert_eq!(format_of("format=prometheus", b""), Format::Prometheus);
    }
}
