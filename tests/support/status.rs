//! The status page from a test's side: its JSON, one server in it, the manager's nonce, and
//! a form POST with the headers a browser (or a script) would send.

use super::json::Json;
use super::{request, Pounce, Resp};

/// The status JSON at `path` (`/pounce-status`).
pub fn status_json(p: &Pounce, path: &str) -> Json {
    let r = p.get(&format!("{}?format=json", path));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    Json::parse(&r.text()).unwrap_or_else(|e| panic!("{}: {}", e, r.text()))
}

/// A server of any upstream, by address.
pub fn server_in<'a>(j: &'a Json, addr: &str) -> &'a Json {
    j.get("upstreams").arr().iter().flat_map(|u| u.get("servers").arr()).find(|s| s.get("address").str() == addr).expect("server in JSON")
}

/// The manager's nonce, as a script takes it from the JSON.
pub fn nonce(p: &Pounce, path: &str) -> String {
    let j = status_json(p, path);
    let n = j.get("nonce").str().to_string();
    assert_eq!(n.len(), 32, "a nonce in {:?}", j.get("nonce"));
    n
}

/// POSTs `form` to `target` with extra header lines (`Origin: ...\r\n`), Host `host`.
pub fn post_form(p: &Pounce, target: &str, host: &str, headers: &str, form: &str) -> Resp {
    request(
        p.port,
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            target,
            host,
            headers,
            form.len(),
            form
        )
        .as_bytes(),
    )
}
