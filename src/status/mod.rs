//! The status and manager page (`location ... { status; }`): what mod_jk's jk-status and
//! Apache's balancer-manager show, as HTML, JSON or Prometheus text, plus runtime changes of a
//! server's weight and activation by POST. It reads only atomics: rendering never stalls a
//! worker, and a change takes effect in every worker at once.

mod manager;
mod render;
pub(crate) mod snapshot;

use crate::runtime::Runtime;

/// A request to the status location.
pub(crate) struct StatusRequest<'a> {
    pub(crate) method: &'a str,
    /// Path and query as the client sent them.
    pub(crate) target: &'a str,
    pub(crate) accept: &'a [u8],
    /// The form body of a POST.
    pub(crate) body: &'a [u8],
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

/// Answers one request to the status location.
pub(crate) fn handle(rt: &Runtime, req: &StatusRequest) -> StatusResponse {
    let (path, query) = req.target.split_once('?').unwrap_or((req.target, ""));
    let format = format_of(query, req.accept);
    match req.method {
        "GET" | "HEAD" => {
            let snap = snapshot::take(rt);
            match format {
                Format::Html => StatusResponse { status: 200, content_type: "text/html; charset=utf-8", body: render::html(&snap, path), location: None },
                Format::Json => StatusResponse { status: 200, content_type: "application/json", body: render::json(&snap), location: None },
                Format::Prometheus => {
                    StatusResponse { status: 200, content_type: "text/plain; version=0.0.4; charset=utf-8", body: render::prometheus(&snap), location: None }
                }
            }
        }
        "POST" => match manager::apply(rt, req.body) {
            Err((status, msg)) => StatusResponse::text(status, msg),
            Ok(change) => {
                if format == Format::Json {
                    StatusResponse { status: 200, content_type: "application/json", body: change.into_bytes(), location: None }
                } else {
                    StatusResponse { status: 303, content_type: "text/plain; charset=utf-8", body: b"changed\n".to_vec(), location: Some(path.to_string()) }
                }
            }
        },
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
