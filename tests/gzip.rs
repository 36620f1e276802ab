//! gzip (nginx's directives and rules): static files, HTTP and AJP backends, real Tomcat. A
//! compressed answer must gunzip to exactly the bytes an uncompressed one carries; everything
//! nginx leaves alone (no Accept-Encoding, q=0, HEAD, 204/304, already encoded, no-transform,
//! ranges, short bodies, proxied requests under `gzip_proxied off`) must come through as it is.

mod support;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::ajp::{body_chunks, end_response, send_headers, AjpBackend, AjpReply, Behaviour};
use support::tomcat::{require_tomcat, Opts, Tomcat};
use support::*;

/// Decompresses a whole gzip stream (std cannot: flate2 is a dev-dependency for this).
fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut out).expect("a valid gzip stream");
    out
}

/// Text that compresses like HTML does (about 4:1), different everywhere.
fn text(n: usize, seed: u32) -> Vec<u8> {
    let words = ["<div class=\"row\">", "pounce", "tomcat", "gzip", "</div>\n", "balancer", "session", "<p>", "</p>", "route"];
    let mut out = Vec::with_capacity(n + 32);
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(words[(x % words.len() as u32) as usize].as_bytes());
        out.extend_from_slice(format!(" {} ", x % 1000).as_bytes());
    }
    out.truncate(n);
    out
}

fn get(port: u16, path: &str, extra: &str) -> Resp {
    request(port, format!("GET {} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n", path, extra).as_bytes())
}

const GZ: &str = "Accept-Encoding: gzip, deflate\r\n";

/// Asserts a compressed answer: the headers nginx sets and the original bytes inside.
fn assert_gzipped(r: &Resp, original: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.raw_head);
    assert_eq!(r.header("content-encoding"), Some("gzip"), "{what}: {}", r.raw_head);
    assert_eq!(r.header("content-length"), None, "{what}: {}", r.raw_head);
    assert_eq!(r.header("accept-ranges"), None, "{what}: {}", r.raw_head);
    assert!(r.body.len() < original.len(), "{what}: compressed {} of {}", r.body.len(), original.len());
    assert!(gunzip(&r.body) == original, "{what}: the body does not gunzip to the original");
}

fn assert_identity(r: &Resp, original: &[u8], what: &str) {
    assert_eq!(r.header("content-encoding"), None, "{what}: {}", r.raw_head);
    assert!(r.body == original, "{what}: the body changed ({} bytes of {})", r.body.len(), original.len());
}

#[test]
fn static_files() {
    let dir = TempDir::new("gzip-static");
    let page = text(100_000, 1);
    let big = text(3 << 20, 2);
    std::fs::write(dir.0.join("index.html"), &page).expect("write");
    std::fs::write(dir.0.join("big.txt"), &big).expect("write");
    std::fs::write(dir.0.join("small.html"), b"<p>hi</p>\n").expect("write");
    std::fs::write(dir.0.join("image.png"), text(5000, 3)).expect("write");
    let conf = Conf::new().server(
        Server::new()
            .line(format!("root {};", dir.0.display()))
            .line("gzip on; gzip_types text/plain; gzip_vary on;")
            .location(Location::new("/"))
            .location(Location::new("/proxied/").line(format!("alias {}/;", dir.0.display())).line("gzip_proxied any;")),
    );
    let p = Pounce::start(&conf);

    let r = get(p.port, "/index.html", GZ);
    assert_gzipped(&r, &page, "html");
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let etag = r.header("etag").expect("ETag").to_string();
    assert!(etag.starts_with("W/\""), "a strong ETag made weak: {etag}");
    let plain = get(p.port, "/index.html", "");
    assert_identity(&plain, &page, "no Accept-Encoding");
    assert_eq!(plain.header("content-length"), Some("100000"));
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"), "gzip_vary: also on the uncompressed variant");
    assert_eq!(format!("W/{}", plain.header("etag").expect("ETag")), etag);

    // A multi-MB file through the 16 KiB buffer: every byte comes back.
    assert_gzipped(&get(p.port, "/big.txt", "Accept-Encoding: gzip\r\n"), &big, "3 MiB text");

    // What stays as it is.
    assert_identity(&get(p.port, "/index.html", "Accept-Encoding: gzip;q=0\r\n"), &page, "q=0");
    assert_identity(&get(p.port, "/index.html", "Accept-Encoding: br, x-gzip\r\n"), &page, "no gzip coding");
    assert_identity(&get(p.port, "/small.html", GZ), b"<p>hi</p>\n", "under gzip_min_length 20");
    let png = get(p.port, "/image.png", GZ);
    assert_identity(&png, &text(5000, 3), "a type not in gzip_types");
    assert_eq!(png.header("vary"), None, "not compressible: no Vary");
    let head = request(p.port, format!("HEAD /index.html HTTP/1.1\r\nHost: x\r\n{GZ}Connection: close\r\n\r\n").as_bytes());
    assert_eq!((head.status, head.header("content-encoding"), head.header("content-length")), (200, None, Some("100000")), "HEAD: {}", head.raw_head);
    let inm = format!("If-None-Match: {}\r\n{GZ}", plain.header("etag").expect("ETag"));
    let not_modified = get(p.port, "/index.html", &inm);
    assert_eq!((not_modified.status, not_modified.header("content-encoding")), (304, None), "304: {}", not_modified.raw_head);
    let old = request(p.port, format!("GET /index.html HTTP/1.0\r\n{GZ}\r\n").as_bytes());
    assert_identity(&old, &page, "HTTP/1.0 (gzip_http_version 1.1)");
    assert_identity(&get(p.port, "/index.html", &format!("Via: 1.1 cache\r\n{GZ}")), &page, "proxied, gzip_proxied off");
    assert_gzipped(&get(p.port, "/proxied/index.html", &format!("Via: 1.1 cache\r\n{GZ}")), &page, "proxied, gzip_proxied any");

    // Range: without gzip a 206; with it nginx ignores the range and sends the whole file
    // compressed (its range filter skips a body whose length is unknown).
    let part = get(p.port, "/index.html", "Range: bytes=0-9\r\n");
    assert_eq!((part.status, &part.body[..]), (206, &page[..10]));
    assert_gzipped(&get(p.port, "/index.html", &format!("Range: bytes=0-9\r\n{GZ}")), &page, "Range with gzip");

    // Two compressed answers on one keep-alive connection: the framing holds.
    let mut s = connect(p.port);
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    for _ in 0..2 {
        s.write_all(format!("GET /index.html HTTP/1.1\r\nHost: x\r\n{GZ}\r\n").as_bytes()).expect("send");
        assert_gzipped(&read_response(&mut r, false).expect("response"), &page, "keep-alive");
    }
}

/// The HTTP backend's answers by path.
fn http_backend(page: Vec<u8>) -> Backend {
    Backend::with("gz", move |r: &Req| {
        let html = || ("Content-Type".to_string(), "text/html; charset=utf-8".to_string());
        let send = |status: u16, mut headers: Vec<(String, String)>, framing: Framing| {
            headers.push(html());
            Reply::Send { status, headers, body: page.clone(), framing }
        };
        // By the last segment, so `/old/length` is `/length`.
        match format!("/{}", r.path.rsplit('/').next().unwrap_or("")).as_str() {
            "/length" => send(200, vec![("ETag".into(), "\"v1\"".into()), ("Accept-Ranges".into(), "bytes".into())], Framing::Length),
            "/chunked" => send(200, vec![], Framing::Chunked),
            "/close" => send(200, vec![], Framing::Close),
            "/404" => send(404, vec![], Framing::Length),
            "/500" => send(500, vec![], Framing::Length),
            "/encoded" => send(200, vec![("Content-Encoding".into(), "br".into())], Framing::Length),
            "/no-transform" => send(200, vec![("Cache-Control".into(), "public, no-transform".into())], Framing::Length),
            "/json" => {
                Reply::Send { status: 200, headers: vec![("Content-Type".into(), "application/json".into())], body: page.clone(), framing: Framing::Length }
            }
            "/tiny" => Reply::Send { status: 200, headers: vec![html()], body: b"tiny".to_vec(), framing: Framing::Length },
            "/206" => send(206, vec![("Content-Range".into(), format!("bytes 0-{}/{}", page.len() - 1, page.len() * 2))], Framing::Length),
            "/204" => Reply::Send { status: 204, headers: vec![html()], body: vec![], framing: Framing::Length },
            "/304" => Reply::Raw(b"HTTP/1.1 304 Not Modified\r\nContent-Type: text/html\r\nETag: \"v1\"\r\n\r\n".to_vec()),
            _ => Reply::status(404, "no"),
        }
    })
}

#[test]
fn proxied_http_backend() {
    let page = text(60_000, 4);
    let b = http_backend(page.clone());
    let conf = Conf::new().http("gzip on; gzip_vary on; gzip_comp_level 6;").upstream(Upstream::new("app").server(b.addr())).server(
        Server::new()
            .location(Location::new("/").proxy_pass("http://app"))
            .location(Location::new("/old/").proxy_pass("http://app").line("gzip_http_version 1.0;"))
            .location(Location::new("/via/").proxy_pass("http://app").line("gzip_proxied any;"))
            .location(Location::new("/off/").proxy_pass("http://app").line("gzip off;")),
    );
    let p = Pounce::start(&conf);

    for path in ["/length", "/chunked", "/close", "/404"] {
        let r = get(p.port, path, GZ);
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{path}");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{path}");
        let mut r = r;
        r.status = 200;
        assert_gzipped(&r, &page, path);
        let plain = get(p.port, path, "");
        assert_identity(&plain, &page, path);
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"), "{path} uncompressed");
    }
    let r = get(p.port, "/length", GZ);
    assert_eq!(r.header("etag"), Some("W/\"v1\""), "weak ETag: {}", r.raw_head);
    assert_eq!(get(p.port, "/length", "").header("etag"), Some("\"v1\""));

    // Left alone.
    for (path, why) in
        [("/500", "a status nginx does not compress"), ("/no-transform", "Cache-Control: no-transform"), ("/json", "not in gzip_types"), ("/206", "a 206")]
    {
        let r = get(p.port, path, GZ);
        assert_identity(&r, &page, why);
        assert_eq!(r.header("vary"), None, "{why}: {}", r.raw_head);
    }
    let encoded = get(p.port, "/encoded", GZ);
    assert_eq!((encoded.header("content-encoding"), encoded.header("vary")), (Some("br"), None), "already encoded: {}", encoded.raw_head);
    assert!(encoded.body == page, "already encoded: the body as the backend sent it");
    assert_identity(&get(p.port, "/tiny", GZ), b"tiny", "under gzip_min_length");
    assert_identity(&get(p.port, "/off/length", GZ), &page, "gzip off in the location");
    assert_identity(&get(p.port, "/length", &format!("Via: 1.0 squid\r\n{GZ}")), &page, "gzip_proxied off");
    assert_gzipped(&get(p.port, "/via/length", &format!("Via: 1.0 squid\r\n{GZ}")), &page, "gzip_proxied any");
    // Bad input for gzip: a HEAD, a 204 and a 304 asked for with gzip get their plain heads.
    let head = request(p.port, format!("HEAD /length HTTP/1.1\r\nHost: x\r\n{GZ}Connection: close\r\n\r\n").as_bytes());
    assert_eq!((head.status, head.header("content-encoding"), head.header("etag")), (200, None, Some("\"v1\"")), "{}", head.raw_head);
    assert_eq!(head.header("content-length"), Some(page.len().to_string().as_str()));
    for path in ["/204", "/304"] {
        let r = get(p.port, path, GZ);
        assert!(r.body.is_empty() && r.header("content-encoding").is_none() && r.header("transfer-encoding").is_none(), "{path}: {}", r.raw_head);
    }

    // HTTP/1.0 with gzip_http_version 1.0: close-delimited, compressed.
    let old = request(p.port, format!("GET /old/chunked HTTP/1.0\r\n{GZ}\r\n").as_bytes());
    assert_eq!(old.header("transfer-encoding"), None);
    assert_eq!(old.header("connection"), Some("close"));
    assert_gzipped(&old, &page, "HTTP/1.0 close-delimited");
    assert_identity(&request(p.port, format!("GET /chunked HTTP/1.0\r\n{GZ}\r\n").as_bytes()), &page, "HTTP/1.0 by default");
}

#[test]
fn ajp_backend() {
    let page = text(80_000, 5);
    let body = page.clone();
    let ajp = AjpBackend::start(Behaviour {
        answer_cping: true,
        handler: Box::new(move |r| AjpReply::Send {
            status: if r.uri == "/missing" { 404 } else { 200 },
            headers: vec![("Content-Type".into(), "text/html;charset=UTF-8".into()), ("Content-Length".into(), body.len().to_string())],
            body: body.clone(),
            reuse: true,
        }),
    });
    let conf =
        Conf::new().upstream(Upstream::new("tc").server(ajp.addr())).server(Server::new().line("gzip on;").location(Location::new("/").proxy_pass("ajp://tc")));
    let p = Pounce::start(&conf);
    assert_gzipped(&get(p.port, "/index.jsp", GZ), &page, "AJP");
    let mut missing = get(p.port, "/missing", GZ);
    assert_eq!(missing.status, 404);
    missing.status = 200;
    assert_gzipped(&missing, &page, "AJP 404");
    let plain = get(p.port, "/index.jsp", "");
    assert_identity(&plain, &page, "AJP without Accept-Encoding");
    assert_eq!(plain.header("vary"), None, "gzip_vary off by default");
    let head = request(p.port, format!("HEAD /index.jsp HTTP/1.1\r\nHost: x\r\n{GZ}Connection: close\r\n\r\n").as_bytes());
    assert_eq!(head.header("content-encoding"), None, "{}", head.raw_head);
}

/// A response the backend sends in two parts with a pause between: the first part reaches the
/// client, decompressible, before the second is sent (what zlib holds is flushed when the
/// backend's input runs dry, as an uncompressed response's bytes go on at once). Over AJP the
/// same holds once Tomcat flushes.
#[test]
fn compressed_stream_is_flushed_while_the_backend_waits() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let go_on = Arc::new(AtomicBool::new(false));
    let go = go_on.clone();
    let backend = std::thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let mut w = s;
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nfirst part here.\r\n");
        for _ in 0..1000 {
            if go.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = w.write_all(b"b\r\n second one\r\n0\r\n\r\n");
    });
    let conf = Conf::new().server(Server::new().line("gzip on;").location(Location::new("/").proxy_pass(format!("http://127.0.0.1:{}", port))));
    let p = Pounce::start(&conf);
    let mut s = connect(p.port);
    s.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\n{GZ}Connection: close\r\n\r\n").as_bytes()).expect("send");
    let mut r = BufReader::new(s);
    let mut head = String::new();
    while r.read_line(&mut head).is_ok_and(|n| n > 2) {}
    assert!(head.to_ascii_lowercase().contains("content-encoding: gzip"), "{head}");
    // Read chunks until the first part decompresses (a sync flush), before the backend goes on.
    let mut gz = Vec::new();
    let mut first = Vec::new();
    while first.len() < 16 {
        let mut size = String::new();
        r.read_line(&mut size).expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex");
        assert!(n > 0, "the body ended before the backend's second part");
        let mut chunk = vec![0u8; n + 2];
        r.read_exact(&mut chunk).expect("chunk");
        gz.extend_from_slice(&chunk[..n]);
        let mut d = flate2::Decompress::new_gzip(15);
        let mut out = vec![0u8; 1024];
        let _ = d.decompress(&gz, &mut out, flate2::FlushDecompress::Sync);
        first = out[..d.total_out() as usize].to_vec();
    }
    assert_eq!(first, b"first part here.");
    go_on.store(true, Ordering::Relaxed);
    let rest = read_chunked(&mut r).expect("the rest");
    gz.extend_from_slice(&rest);
    assert_eq!(gunzip(&gz), b"first part here. second one");
    backend.join().expect("backend");
}

/// 16 MiB through a client that reads slowly: the bytes are exact, pounce's memory stays
/// bounded (one deflate state and its buffers, not the body), and every buffer comes back.
#[test]
fn large_body_to_a_slow_reader() {
    let body = text(16 << 20, 6);
    let b = http_backend(body.clone());
    let conf = Conf::new()
        .upstream(Upstream::new("app").server(b.addr()))
        .server(Server::new().line("gzip on;").location(Location::new("/").proxy_pass("http://app")));
    let p = Pounce::start(&conf);
    let rss_before = rss_kib(p.child.id());
    let mut s = connect(p.port);
    s.write_all(format!("GET /chunked HTTP/1.1\r\nHost: x\r\n{GZ}Connection: close\r\n\r\n").as_bytes()).expect("send");
    let mut r = BufReader::with_capacity(4096, s);
    let mut head = String::new();
    while r.read_line(&mut head).is_ok_and(|n| n > 2) {}
    assert!(head.to_ascii_lowercase().contains("content-encoding: gzip"), "{head}");
    // Slow at first (pounce fills its buffer and the socket's, then must stop reading the
    // backend), then at full speed.
    let mut wire = Vec::new();
    let mut piece = [0u8; 4096];
    let mut peak = 0;
    loop {
        let n = r.read(&mut piece).expect("read");
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&piece[..n]);
        if wire.len() < (256 << 10) {
            std::thread::sleep(Duration::from_millis(2));
            peak = peak.max(rss_kib(p.child.id()));
        }
    }
    let gz = read_chunked(&mut BufReader::new(&wire[..])).expect("chunked");
    assert!(gunzip(&gz) == body, "16 MiB gunzip to the original");
    let growth = peak.saturating_sub(rss_before);
    eprintln!("16 MiB compressed to {} bytes; pounce's RSS {} KiB before, at most {} KiB while the client read slowly", gz.len(), rss_before, peak);
    assert!(growth < 8 * 1024, "RSS grew by {growth} KiB while 16 MiB waited for a slow reader");
}

/// Content-Length bodies of sizes around the buffer's from a backend that keeps its connection,
/// to a client that reads nothing at first: the end of each gzip stream may have to wait for
/// room after the backend's last byte, and must still come (within 10 s, not at
/// proxy_read_timeout). The case of an end that does not fit after a complete flush is
/// `gzip::stream`'s `an_unwritten_end_is_pending`.
#[test]
fn the_end_of_a_stream_is_written_after_the_backend_is_done() {
    let sizes = [20_000usize, 70_000, 300_000, 2 << 20];
    let bodies: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| text(n, 10 + i as u32)).collect();
    let served = bodies.clone();
    let b = Backend::with("gz", move |r: &Req| {
        let i: usize = r.path.trim_start_matches('/').parse().unwrap_or(0);
        Reply::Send { status: 200, headers: vec![("Content-Type".into(), "text/html".into())], body: served[i].clone(), framing: Framing::Length }
    });
    let conf = Conf::new()
        .upstream(Upstream::new("app").server(b.addr()).line("keepalive 4;"))
        .server(Server::new().line("gzip on; gzip_comp_level 9; proxy_read_timeout 30s;").location(Location::new("/").proxy_pass("http://app")));
    let p = Pounce::start(&conf);
    for (i, body) in bodies.iter().enumerate() {
        let mut s = connect(p.port);
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n{GZ}Connection: close\r\n\r\n").as_bytes()).expect("send");
        // Let pounce fill its buffer and the socket before anything is read.
        std::thread::sleep(Duration::from_millis(300));
        let r = read_response(&mut BufReader::with_capacity(1024, s), false).expect("the whole response within 10 s");
        assert_gzipped(&r, body, &format!("{} bytes", body.len()));
    }
}

#[test]
fn tomcat_over_ajp() {
    if !require_tomcat() {
        return;
    }
    let tc = Tomcat::start_many(&["gz1"], &Opts::default());
    let conf = Conf::new()
        .upstream(Upstream::new("tc").server(format!("127.0.0.1:{}", tc[0].ajp)))
        .server(Server::new().line("gzip on; gzip_types text/plain; gzip_min_length 1; gzip_vary on;").location(Location::new("/").proxy_pass("ajp://tc")));
    let p = Pounce::start(&conf);
    for path in ["/", "/hello.txt"] {
        let plain = get(p.port, path, "");
        assert_eq!(plain.status, 200, "{path}: {}", plain.raw_head);
        let r = get(p.port, path, GZ);
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}: {}", r.raw_head);
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert!(gunzip(&r.body) == plain.body, "{path}: Tomcat's page, compressed by pounce, gunzips to the page");
    }
}

/// The body chunks and END of an AJP response (the helpers' bytes) make a compressed answer
/// that ends cleanly even when SEND_HEADERS and the body arrive in separate writes.
#[test]
fn ajp_pieces() {
    let page = text(30_000, 7);
    let body = page.clone();
    let ajp = AjpBackend::start(Behaviour {
        answer_cping: true,
        handler: Box::new(move |_| AjpReply::Pieces {
            pieces: vec![send_headers(200, &[("Content-Type".into(), "text/html".into())]), body_chunks(&body), end_response(true)],
            gap: Duration::from_millis(20),
        }),
    });
    let conf =
        Conf::new().upstream(Upstream::new("tc").server(ajp.addr())).server(Server::new().line("gzip on;").location(Location::new("/").proxy_pass("ajp://tc")));
    let p = Pounce::start(&conf);
    assert_gzipped(&get(p.port, "/", GZ), &page, "AJP in pieces");
}

#[test]
fn status_page() {
    let conf = Conf::new().server(
        Server::new()
            .line("gzip on; gzip_types application/json; gzip_vary on;")
            .location(Location::new("/pounce-status").line("status; allow 127.0.0.1; deny all;")),
    );
    let p = Pounce::start(&conf);
    let plain_html = get(p.port, "/pounce-status", "");
    assert_eq!((plain_html.status, plain_html.header("content-encoding")), (200, None), "{}", plain_html.raw_head);
    assert_eq!(plain_html.header("vary"), Some("Accept-Encoding"));

    let html = get(p.port, "/pounce-status", GZ);
    assert_eq!((html.status, html.header("content-encoding")), (200, Some("gzip")), "{}", html.raw_head);
    assert_eq!(html.header("content-length"), Some(html.body.len().to_string().as_str()), "whole, so it keeps a Content-Length");
    assert!(html.body.len() < plain_html.body.len(), "compressed {} of {}", html.body.len(), plain_html.body.len());
    let page = String::from_utf8(gunzip(&html.body)).expect("UTF-8");
    assert!(page.starts_with("<!doctype html>") && page.contains("pounce"), "{page}");

    let json = get(p.port, "/pounce-status?format=json", GZ);
    assert_eq!(json.header("content-encoding"), Some("gzip"), "{}", json.raw_head);
    let doc = String::from_utf8(gunzip(&json.body)).expect("UTF-8");
    assert!(doc.starts_with('{') && doc.trim_end().ends_with('}') && doc.contains("\"upstreams\""), "{doc}");

    // text/plain is not in this gzip_types; HEAD and refused clients get it as it is.
    let prom = get(p.port, "/pounce-status?format=prometheus", GZ);
    assert_eq!((prom.status, prom.header("content-encoding"), prom.header("vary")), (200, None, None), "{}", prom.raw_head);
    assert!(String::from_utf8_lossy(&prom.body).contains("pounce_"), "prometheus text");
    let head = request(p.port, format!("HEAD /pounce-status HTTP/1.1\r\nHost: x\r\n{GZ}Connection: close\r\n\r\n").as_bytes());
    assert_eq!((head.status, head.header("content-encoding")), (200, None), "{}", head.raw_head);
    assert_eq!(get(p.port, "/pounce-status", "Accept-Encoding: gzip;q=0\r\n").header("content-encoding"), None);
}

/// `$gzip_ratio`: nginx's "%ui.%02ui" of bytes in over the gzip stream's bytes out, rounded
/// half up from the thousandths.
fn ratio(original: usize, compressed: usize) -> String {
    let x1000 = original * 1000 / compressed;
    let x100 = x1000 / 10 + usize::from(x1000 % 10 > 4);
    format!("{}.{:02}", x100 / 100, x100 % 100)
}

#[test]
fn gzip_ratio_in_the_access_log() {
    let dir = TempDir::new("gzip-ratio");
    let page = text(50_000, 7);
    std::fs::write(dir.0.join("index.html"), &page).expect("write");
    let b = http_backend(page.clone());
    let conf = Conf::new().http("log_format r '$request_uri $gzip_ratio';").upstream(Upstream::new("app").server(b.addr())).server(
        Server::new()
            .line(format!("root {};", dir.0.display()))
            .line("gzip on; gzip_min_length 0; access_log logs/access.log r;")
            .location(Location::new("/"))
            .location(Location::new("/app/").proxy_pass("http://app"))
            .location(Location::new("/st").line("status; allow 127.0.0.1; deny all;")),
    );
    let p = Pounce::start(&conf);
    let file = get(p.port, "/index.html", GZ);
    assert_gzipped(&file, &page, "file");
    // The same file again: a worker's deflate state used again counts from zero.
    let again = get(p.port, "/index.html?again", GZ);
    assert!(again.body == file.body, "the same bytes compressed alike");
    let plain = get(p.port, "/index.html?plain", "");
    assert_identity(&plain, &page, "no Accept-Encoding");
    let proxied = get(p.port, "/app/chunked", GZ);
    assert_gzipped(&proxied, &page, "proxied");
    let st = get(p.port, "/st", GZ);
    assert_eq!(st.header("content-encoding"), Some("gzip"));
    let st_len = gunzip(&st.body).len();
    // A compressed empty body: nginx logs 0.00, not "-".
    std::fs::write(dir.0.join("empty.html"), b"").expect("write");
    let empty = get(p.port, "/empty.html", GZ);
    assert_eq!(empty.header("content-encoding"), Some("gzip"), "{}", empty.raw_head);
    assert!(gunzip(&empty.body).is_empty());
    let want = [
        format!("/index.html {}", ratio(page.len(), file.body.len())),
        format!("/index.html?again {}", ratio(page.len(), file.body.len())),
        "/index.html?plain -".to_string(),
        format!("/app/chunked {}", ratio(page.len(), proxied.body.len())),
        format!("/st {}", ratio(st_len, st.body.len())),
        "/empty.html 0.00".to_string(),
    ];
    eventually(Duration::from_secs(5), || p.access_log().lines().count() >= want.len());
    let log = p.access_log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines, want, "{log}");
    assert!(page.len() * 2 > file.body.len() * 3, "HTML-like text compresses better than 1.5:1: {}", lines[0]);
}
