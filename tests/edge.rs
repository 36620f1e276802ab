//! Edge features: static files, location precedence, WebSocket tunnelling, Via, `return`.

mod support;
use std::io::{BufReader, Read, Write};
use std::time::Duration;
use support::ajp::AjpBackend;
use support::ws::{accept_key, read_frame, write_frame, EchoServer};
use support::*;

struct Site {
    dir: TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = TempDir::new("site");
        let w = dir.0.join("www");
        std::fs::create_dir_all(w.join("docs")).expect("docs");
        std::fs::create_dir_all(w.join("empty")).expect("empty");
        std::fs::create_dir_all(dir.0.join("pics")).expect("pics");
        std::fs::write(w.join("index.html"), "<h1>home</h1>\n").expect("index");
        std::fs::write(w.join("a.txt"), "0123456789abcdefghij").expect("a");
        std::fs::write(w.join("style.css"), "body{}").expect("css");
        std::fs::write(w.join("docs/index.html"), "docs\n").expect("docs index");
        std::fs::write(dir.0.join("secret.txt"), "TOP SECRET").expect("secret");
        std::fs::write(dir.0.join("pics/cat.png"), b"\x89PNG fake").expect("png");
        std::os::unix::fs::symlink(dir.0.join("secret.txt"), w.join("link.txt")).expect("symlink");
        Site { dir }
    }

    fn www(&self) -> String {
        self.dir.0.join("www").display().to_string()
    }
}

fn get_raw(p: &Pounce, raw: &str) -> Resp {
    request(p.port, raw.as_bytes())
}

#[test]
fn static_files_with_conditionals_and_ranges() {
    let site = Site::new();
    let p = Pounce::start(
        &Conf::new().server(
            Server::new()
                .line(format!("root {};", site.www()))
                .location(Location::new("/img/").line(format!("alias {}/pics/;", site.dir.0.display())))
                .location(Location::new("/safe/").line(format!("alias {}/;", site.www())).line("disable_symlinks on;")),
        ),
    );
    let r = p.get("/a.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"0123456789abcdefghij");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("20"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").expect("etag").to_string();
    let lm = r.header("last-modified").expect("last-modified").to_string();
    assert!(etag.starts_with('"') && etag.ends_with("-14\""), "{}", etag);
    assert_eq!(p.get("/style.css").header("content-type"), Some("text/css"));
    assert_eq!(p.get("/").text(), "<h1>home</h1>\n", "index");
    assert_eq!(p.get("/img/cat.png").header("content-type"), Some("image/png"), "alias");
    let head = get_raw(&p, "HEAD /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((head.status, head.header("content-length")), (200, Some("20")));
    assert!(head.body.is_empty());

    let r = get_raw(&p, &format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {}\r\nConnection: close\r\n\r\n", etag));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = get_raw(&p, &format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {}\r\nConnection: close\r\n\r\n", lm));
    assert_eq!(r.status, 304);
    let r = get_raw(&p, "GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"other\"\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);

    let r = get_raw(&p, "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (206, "56789"));
    assert_eq!(r.header("content-range"), Some("bytes 5-9/20"));
    let r = get_raw(&p, "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=-3\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (206, "hij"));
    let r = get_raw(&p, "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=50-60\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */20"));

    // Directories: a trailing-slash redirect, an index, or 403 (no listings).
    let r = p.get("/docs");
    assert_eq!((r.status, r.header("location")), (301, Some("/docs/")));
    assert_eq!(p.get("/docs/").text(), "docs\n");
    assert_eq!(p.get("/empty/").status, 403);
    assert_eq!(p.get("/nothing.txt").status, 404);
    assert_eq!(get_raw(&p, "POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").status, 405);

    // No escape from the root.
    for bad in ["/../secret.txt", "/%2e%2e/secret.txt", "/docs/..%2f..%2fsecret.txt", "/a.txt%00.png", "/docs/%2E%2E/%2E%2E/secret.txt"] {
        let r = p.get(bad);
        assert!(matches!(r.status, 400 | 403 | 404), "{} -> {}", bad, r.status);
        assert!(!r.text().contains("TOP SECRET"), "{} leaked the secret", bad);
    }
    // A symlink out of the root: followed by default (as nginx), refused with disable_symlinks on.
    assert_eq!(p.get("/link.txt").text(), "TOP SECRET");
    assert_eq!(p.get("/safe/link.txt").status, 403);
    assert_eq!(p.get("/safe/a.txt").status, 200);
}

#[test]
fn a_1_gib_file_is_served_with_flat_memory() {
    let dir = TempDir::new("big");
    let f = std::fs::File::create(dir.0.join("big.bin")).expect("create");
    f.set_len(1 << 30).expect("sparse 1 GiB");
    let p = Pounce::start(&Conf::new().server(Server::new().line(format!("root {};", dir.0.display()))));
    let before = rss_kib(p.child.id());
    let mut s = connect(p.port);
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut r = BufReader::new(s);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).expect("head");
        head.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains("Content-Length: 1073741824"));
    let mut total: u64 = 0;
    let mut peak = before;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).expect("body");
        if n == 0 {
            break;
        }
        total += n as u64;
        if total % (64 << 20) < n as u64 {
            peak = peak.max(rss_kib(p.child.id()));
        }
    }
    assert_eq!(total, 1 << 30);
    println!("1 GiB download: pounce RSS {} KiB before, {} KiB peak", before, peak);
    assert!(peak < before + 32 * 1024, "RSS grew by {} KiB", peak - before);
}

#[test]
fn location_precedence_exact_prefix_stop_longest() {
    let (a, b, c, d) = (Backend::named("root"), Backend::named("app"), Backend::named("exact"), Backend::named("stop"));
    let p = Pounce::start(
        &Conf::new().server(
            Server::new()
                .location(Location::new("/").proxy_pass(format!("http://{}", a.addr())))
                .location(Location::new("/app/").proxy_pass(format!("http://{}", b.addr())))
                .location(Location::exact("/app/x").proxy_pass(format!("http://{}", c.addr())))
                .location(Location::modified("^~", "/app/static/").proxy_pass(format!("http://{}", d.addr()))),
        ),
    );
    for (path, want) in
        [("/", "root"), ("/other", "root"), ("/app/y", "app"), ("/app/x", "exact"), ("/app/xy", "app"), ("/app/static/a.css", "stop"), ("/app", "root")]
    {
        assert_eq!(p.get(path).text(), want, "{}", path);
    }
}

#[test]
fn static_and_proxy_side_by_side() {
    let site = Site::new();
    let app = Backend::named("app");
    let p = Pounce::start(
        &Conf::new().server(
            Server::new()
                .location(Location::new("/images/").line(format!("alias {}/pics/;", site.dir.0.display())))
                .location(Location::new("/").proxy_pass(format!("http://{}", app.addr()))),
        ),
    );
    assert_eq!(p.get("/images/cat.png").body, b"\x89PNG fake");
    assert_eq!(p.get("/page").text(), "app");
    assert_eq!(app.requests(), 1, "static requests never reach the backend");
}

fn ws_handshake(port: u16, path: &str) -> (std::net::TcpStream, Resp) {
    let mut s = connect(port);
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    s.write_all(
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            path, key
        )
        .as_bytes(),
    )
    .expect("handshake");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).expect("read") == 0 {
            break;
        }
        head.push(b[0]);
    }
    let r = read_response(&mut BufReader::new(&head[..]), true).expect("101");
    (s, r)
}

#[test]
fn websocket_echo_of_10_mib_both_ways() {
    let echo = EchoServer::start();
    let p = Pounce::start(
        &Conf::new().server(Server::new().location(Location::new("/").proxy_pass(format!("http://127.0.0.1:{}", echo.port)).line("proxy_read_timeout 5s;"))),
    );
    let (s, r) = ws_handshake(p.port, "/ws");
    assert_eq!(r.status, 101, "{}", r.raw_head);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(r.header("sec-websocket-accept"), Some(accept_key("dGhlIHNhbXBsZSBub25jZQ==").as_str()));
    let msg: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut w = s.try_clone().expect("clone");
    let msg2 = msg.clone();
    let writer = std::thread::spawn(move || {
        for _ in 0..10 {
            write_frame(&mut w, &msg2, true, 2).expect("send frame");
        }
    });
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut got = 0;
    for _ in 0..10 {
        let (op, payload) = read_frame(&mut r).expect("echoed frame");
        assert_eq!(op, 2);
        assert!(payload == msg);
        got += payload.len();
    }
    writer.join().expect("writer");
    assert_eq!(got, 10 * 1024 * 1024);
    let mut w = s;
    write_frame(&mut w, b"", true, 8).expect("close");
    let (op, _) = read_frame(&mut r).expect("close echoed");
    assert_eq!(op, 8);
}

#[test]
fn upgrade_over_ajp_is_refused_with_501() {
    let b = AjpBackend::echo("t1");
    let p = Pounce::start(&Conf::new().server(Server::new().location(Location::new("/").proxy_pass(format!("ajp://{}", b.addr())))));
    let (_s, r) = ws_handshake(p.port, "/ws");
    assert_eq!(r.status, 501);
    assert_eq!(b.requests(), 0);
}

#[test]
fn via_on_both_directions_and_return_substitutions() {
    let b = Backend::named("a");
    let p = Pounce::start(
        &Conf::new().server(
            Server::new()
                .location(Location::new("/").proxy_pass(format!("http://{}", b.addr())).line("proxy_via on;"))
                .location(Location::new("/full/").proxy_pass(format!("http://{}", b.addr())).line("proxy_via full;"))
                .location(Location::new("/old/").line("return 301 $scheme://$host$request_uri;"))
                .location(Location::exact("/moved").line("return 308 https://new.example$request_uri;"))
                .location(Location::exact("/hello").line("return 200 \"host=$host uri=$request_uri\";")),
        ),
    );
    let r = get_raw(&p, "GET /x HTTP/1.1\r\nHost: x\r\nVia: 1.0 client-proxy\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("via"), Some("1.1 pounce"));
    let seen = b.last().expect("seen");
    let vias: Vec<&str> = seen.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("via")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(vias, vec!["1.0 client-proxy", "1.1 pounce"]);
    let r = p.get("/full/y");
    assert_eq!(r.header("via"), Some(concat!("1.1 pounce (pounce/", env!("CARGO_PKG_VERSION"), ")")));
    let r = get_raw(&p, "GET /old/page?a=1 HTTP/1.1\r\nHost: Www.Example.com:8080\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.header("location")), (301, Some("http://www.example.com/old/page?a=1")));
    let r = p.get("/moved?q=2");
    assert_eq!((r.status, r.header("location")), (308, Some("https://new.example/moved?q=2")));
    assert_eq!(p.get("/hello").text(), "host=localhost uri=/hello");
}

#[test]
fn idle_tunnel_closes_after_proxy_read_timeout() {
    let echo = EchoServer::start();
    let p = Pounce::start(
        &Conf::new().server(Server::new().location(Location::new("/").proxy_pass(format!("http://127.0.0.1:{}", echo.port)).line("proxy_read_timeout 400ms;"))),
    );
    let (mut s, r) = ws_handshake(p.port, "/");
    assert_eq!(r.status, 101);
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let t = std::time::Instant::now();
    let mut b = [0u8; 16];
    assert_eq!(s.read(&mut b).expect("closed by pounce"), 0);
    assert!(t.elapsed() >= Duration::from_millis(350) && t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}
