//! Directive tree → `Config`: the top level read through the directive table (every block
//! below it by its row's function), then every `proxy_pass` target resolved and the listening
//! addresses collected. Errors are reported as `FILE:LINE: message`.

use super::builder::{Builder, Scope};
use super::lexer::{err, resolve, ConfError, Directive, Pos};
use super::values::resolve_addr;
use super::*;

pub(super) fn build(tree: Vec<Directive>, path: &Path, prefix: &Path) -> Result<Config, ConfError> {
    let mut b = Builder {
        table: directives::TABLE,
        prefix: prefix.to_path_buf(),
        cfg: Config {
            path: path.to_path_buf(),
            prefix: prefix.to_path_buf(),
            worker_processes: 1,
            worker_connections: 10240,
            worker_buffers: None,
            worker_shutdown_timeout: Duration::from_secs(30),
            error_log: None,
            error_level: log::LevelFilter::Error,
            pid: Some(resolve(prefix, "logs/pounce.pid")),
            http: Http { log_formats: logformat::builtin(), ..Http::default() },
        },
        upstream_pos: Vec::new(),
        pending_proxy: Vec::new(),
        listen_decl: Vec::new(),
        http_seen: false,
    };
    b.walk(&tree, &mut Scope::Main, |_| true)?;
    resolve_proxies(&mut b)?;
    collect_listens(&mut b)?;
    Ok(b.cfg)
}

/// Turns every `proxy_pass` target into an upstream index, creating implicit upstreams for
/// `host:port` targets (shared when two locations name the same one).
fn resolve_proxies(b: &mut Builder) -> Result<(), ConfError> {
    for p in std::mem::take(&mut b.pending_proxy) {
        let upstreams = &mut b.cfg.http.upstreams;
        let idx = match upstreams.iter().position(|u| u.name == p.target && !u.implicit) {
            Some(i) => i,
            None => match upstreams.iter().position(|u| u.implicit && u.name == p.target) {
                Some(i) => i,
                None => {
                    let d = Directive { name: "proxy_pass".into(), args: vec![p.target.clone()], pos: p.pos.clone(), block: None };
                    let addrs = resolve_addr(&d, &p.target, Some(if p.ajp { 8009 } else { 80 })).map_err(|_| ConfError {
                        pos: Some(p.pos.clone()),
                        msg: format!("unknown upstream \"{}\": no upstream block has that name and it is not a host[:port]", p.target),
                    })?;
                    let mut up = Upstream::new(p.target.clone(), true);
                    up.servers = addrs.into_iter().map(|addr| Peer::new(addr, p.target.clone())).collect();
                    upstreams.push(up);
                    upstreams.len() - 1
                }
            },
        };
        let up = &mut upstreams[idx];
        let location = &mut b.cfg.http.servers[p.server].locations[p.location];
        let backend = if p.ajp { BackendConf::Ajp(location.settings.ajp.resolve(&up.ajp)) } else { BackendConf::Http };
        if p.ajp {
            up.protocol = BackendProtocol::Ajp;
        }
        location.handler = Handler::Proxy { upstream: idx, backend };
    }
    Ok(())
}

/// Every distinct listening address with the servers on it, and its default server.
fn collect_listens(b: &mut Builder) -> Result<(), ConfError> {
    let mut listens: Vec<Listen> = Vec::new();
    let mut default_pos: Vec<Option<Pos>> = Vec::new();
    for l in std::mem::take(&mut b.listen_decl) {
        let i = match listens.iter().position(|x| x.addr == l.addr) {
            Some(i) => i,
            None => {
                listens.push(Listen { addr: l.addr, ssl: false, proxy_protocol: false, servers: Vec::new(), default_server: l.server });
                default_pos.push(None);
                listens.len() - 1
            }
        };
        listens[i].servers.push(l.server);
        listens[i].ssl |= l.ssl;
        listens[i].proxy_protocol |= l.proxy_protocol;
        if l.ssl && b.cfg.http.servers[l.server].settings.ssl_certificate.is_empty() {
            return err(&l.pos, "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive");
        }
        if l.default {
            if let Some(first) = &default_pos[i] {
                return err(&l.pos, format!("a duplicate default server for {} (first at {})", l.addr, first));
            }
            default_pos[i] = Some(l.pos);
            listens[i].default_server = l.server;
        }
    }
    b.cfg.http.listens = listens;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::config) fn load_str(text: &str) -> Result<Config, ConfError> {
        let dir = std::env::temp_dir().join(format!("pounce-conf-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("t.conf");
        std::fs::write(&path, text).expect("write");
        let r = super::super::load(&path, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        r.map_err(|mut e| {
            if let Some(p) = &mut e.pos {
                p.file = "t.conf".into();
            }
            e
        })
    }

    #[test]
    fn full_example() {
        let c = load_str(
            "worker_processes 2;\nhttp {\n keepalive_timeout 5s;\n upstream b { server 127.0.0.1:81 weight=5 max_fails=3 fail_timeout=2s; server 127.0.0.1:82 backup; keepalive 8; }\n server { listen 127.0.0.1:8080; server_name A.example; client_max_body_size 2m;\n location / { proxy_pass http://b; proxy_read_timeout 3s; }\n location = /x { return 204; }\n location /h { proxy_pass http://127.0.0.1:9; }\n }\n}\n",
        )
        .expect("valid");
        assert_eq!(c.worker_processes, 2);
        let s = &c.http.servers[0];
        assert_eq!(s.names, vec!["a.example"]);
        assert_eq!(s.locations[0].handler, Handler::Proxy { upstream: 0, backend: BackendConf::Http });
        assert_eq!(s.locations[0].settings.proxy_read_timeout, Duration::from_secs(3));
        assert_eq!(s.locations[0].settings.keepalive_timeout, Duration::from_secs(5));
        assert_eq!(s.locations[0].settings.client_max_body_size, 2 << 20);
        assert_eq!(s.locations[1].kind, Match::Exact);
        assert_eq!(s.locations[2].handler, Handler::Proxy { upstream: 1, backend: BackendConf::Http });
        let up = &c.http.upstreams[0];
        assert_eq!((up.servers[0].weight, up.servers[0].max_fails, up.keepalive), (5, 3, Keepalive::Max(8)));
        assert!(up.servers[1].backup);
        assert!(c.http.upstreams[1].implicit);
        assert_eq!(c.http.upstreams[1].keepalive, Keepalive::Auto, "keep-alive is on by default, sized by demand");
        assert_eq!(c.http.listens.len(), 1);
    }

    #[test]
    fn keepalive_auto_cap_and_off() {
        let ka = |v: &str| {
            let c = load_str(&format!("http {{\n upstream u {{ server 127.0.0.1:81; {} }}\n}}\n", v)).expect("valid");
            c.http.upstreams[0].keepalive
        };
        assert_eq!(ka(""), Keepalive::Auto);
        assert_eq!(ka("keepalive auto;"), Keepalive::Auto);
        assert_eq!(ka("keepalive 32;"), Keepalive::Max(32));
        assert_eq!(ka("keepalive off;"), Keepalive::Off);
        assert_eq!(ka("keepalive 0;"), Keepalive::Off);
        assert_eq!(error("http {\n upstream u {\n  keepalive some;\n }\n}\n"), "t.conf:3: invalid number \"some\" in \"keepalive\" directive");
    }

    #[test]
    fn upstreams_of_a_thousand_servers() {
        let servers: String = (0..1024).map(|i| format!("server 127.0.{}.{}:80;\n", i / 200, i % 200 + 1)).collect();
        let c = load_str(&format!("http {{\n upstream big {{\n{}}}\n}}\n", servers)).expect("valid");
        assert_eq!(c.http.upstreams[0].servers.len(), 1024);
        let too_many: String = (0..=MAX_SERVERS).map(|i| format!("server 127.1.{}.{}:80;\n", i / 200, i % 200 + 1)).collect();
        assert!(error(&format!("http {{\n upstream big {{\n{}}}\n}}\n", too_many)).starts_with("t.conf:2: too many servers in upstream \"big\""));
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            ("http {\n  bogus 1;\n}\n", "t.conf:2: unknown directive \"bogus\""),
            ("http {\n server {\n  listen 80;\n  listen 80;\n }\n}\n", "t.conf:4: duplicate listen 0.0.0.0:80"),
            (
                "http {\n server {\n  location / {\n   proxy_pass http://nosuch_upstream_xyz;\n  }\n }\n}\n",
                "t.conf:4: unknown upstream \"nosuch_upstream_xyz\"",
            ),
            ("http {\n keepalive_timeout 5x;\n}\n", "t.conf:2: invalid time \"5x\" in \"keepalive_timeout\" directive"),
            ("http {\n upstream u {\n  server 127.0.0.1:1 weight=abc;\n }\n}\n", "t.conf:3: invalid number \"abc\""),
            ("http {\n send_timeout;\n}\n", "t.conf:2: invalid number of arguments in \"send_timeout\" directive"),
            ("listen 80;\n", "t.conf:1: \"listen\" directive is not allowed here"),
            ("http {\n upstream u { }\n}\n", "t.conf:2: no servers are inside upstream \"u\""),
            ("http {\n client_max_body_size 1q;\n}\n", "t.conf:2: invalid size \"1q\""),
            ("events {\n worker_buffers 8;\n}\nhttp { }\n", "t.conf:2: \"worker_buffers\" must be between 16 and 100000000"),
        ];
        for (text, want) in cases {
            let got = load_str(text).expect_err(text).to_string();
            assert!(got.starts_with(want), "for {:?}: got {:?}, want {:?}", text, got, want);
        }
    }

    /// The first line of the error for `text`, with the file named `t.conf`.
    fn error(text: &str) -> String {
        load_str(text).expect_err(text).to_string()
    }

    #[test]
    fn unknown_directives_get_the_nearest_name() {
        let loc = |d: &str| format!("http {{\n server {{\n  location / {{\n   {}\n  }}\n }}\n}}\n", d);
        assert_eq!(error(&loc("proxy_pas http://u;")), "t.conf:4: unknown directive \"proxy_pas\", did you mean \"proxy_pass\"?");
        assert_eq!(error("http {\n keepalive_timout 5s;\n}\n"), "t.conf:2: unknown directive \"keepalive_timout\", did you mean \"keepalive_timeout\"?");
        assert_eq!(error("http {\n zzzz 1;\n}\n"), "t.conf:2: unknown directive \"zzzz\"");
        // Nothing close is allowed in http: the nearest name of any block.
        assert_eq!(error("http {\n proxy_pas http://u;\n}\n"), "t.conf:2: unknown directive \"proxy_pas\", did you mean \"proxy_pass\"?");
        // In an upstream block too.
        assert_eq!(error("http {\n upstream u {\n  keepalve 2;\n }\n}\n"), "t.conf:3: unknown directive \"keepalve\", did you mean \"keepalive\"?");
    }

    #[test]
    fn nginx_directives_pounce_lacks_say_so() {
        let cases = [
            ("http {\n proxy_buffering off;\n}\n", "t.conf:2: \"proxy_buffering\" is an nginx directive pounce does not support"),
            ("http {\n gzip_static on;\n}\n", "t.conf:2: \"gzip_static\" is an nginx directive pounce does not support"),
            ("http {\n sendfile on;\n}\n", "t.conf:2: \"sendfile\" is an nginx directive pounce does not support"),
            (
                "http {\n server {\n  location / {\n   if ($host) { return 404; }\n  }\n }\n}\n",
                "t.conf:4: \"if\" is an nginx directive pounce does not support",
            ),
            ("http {\n server {\n  ssl_stapling on;\n }\n}\n", "t.conf:3: \"ssl_stapling\" is an nginx directive pounce does not support"),
            ("user nobody;\n", "t.conf:1: \"user\" is an nginx directive pounce does not support"),
        ];
        for (text, want) in cases {
            assert!(error(text).starts_with(want), "for {:?}: got {:?}, want {:?}", text, error(text), want);
        }
    }

    #[test]
    fn directives_in_the_wrong_block() {
        let cases = [
            ("http {\n proxy_pass http://u;\n}\n", "t.conf:2: \"proxy_pass\" directive is not allowed here"),
            ("worker_connections 10;\n", "t.conf:1: \"worker_connections\" directive is not allowed here"),
            ("http {\n use epoll;\n}\n", "t.conf:2: \"use\" directive is not allowed here"),
            ("http {\n server {\n  keepalive 4;\n }\n}\n", "t.conf:3: \"keepalive\" directive is not allowed here"),
            ("http {\n upstream u {\n  listen 80;\n }\n}\n", "t.conf:3: \"listen\" directive is not allowed here"),
            ("http {\n upstream u {\n  root /srv;\n }\n}\n", "t.conf:3: \"root\" directive is not allowed here"),
            ("http {\n server {\n  alias /srv;\n }\n}\n", "t.conf:3: \"alias\" directive is not allowed here"),
            ("events {\n http { }\n}\n", "t.conf:2: \"http\" directive is not allowed here"),
            ("http {\n server {\n  location / {\n   location /a { }\n  }\n }\n}\n", "t.conf:4: nested locations are not supported"),
        ];
        for (text, want) in cases {
            assert_eq!(error(text), want, "for {:?}", text);
        }
    }

    #[test]
    fn argument_counts_and_blocks_come_from_the_table() {
        let loc = |d: &str| format!("http {{\n server {{\n  location / {{\n   {}\n  }}\n }}\n}}\n", d);
        let arity = |name: &str, line: usize| format!("t.conf:{}: invalid number of arguments in \"{}\" directive", line, name);
        assert_eq!(error(&loc("status read_only 1;")), arity("status", 4));
        assert_eq!(error(&loc("status 1;")), "t.conf:4: invalid parameter \"1\" in \"status\" (only \"read_only\")");
        assert_eq!(error(&loc("return;")), arity("return", 4));
        assert_eq!(error(&loc("return 200 a b;")), arity("return", 4));
        assert_eq!(error("http {\n proxy_set_header X;\n}\n"), arity("proxy_set_header", 2));
        assert_eq!(error("http {\n index;\n}\n"), arity("index", 2));
        assert_eq!(error("http {\n upstream u {\n  sticky_route a b;\n }\n}\n"), arity("sticky_route", 3));
        assert_eq!(error("error_log a info b;\n"), arity("error_log", 1));
        assert_eq!(error("events x { }\n"), arity("events", 1));
        assert_eq!(error("http {\n upstream { }\n}\n"), arity("upstream", 2));
        let no_opening = |name: &str, line: usize| format!("t.conf:{}: directive \"{}\" has no opening \"{{\"", line, name);
        assert_eq!(error("events;\n"), no_opening("events", 1));
        assert_eq!(error("pid x { }\n"), no_opening("pid", 1));
        assert_eq!(error("http {\n types;\n}\n"), no_opening("types", 2));
        assert_eq!(error(&loc("ajp_ping on { }")), no_opening("ajp_ping", 4));
    }

    #[test]
    fn nginx_tuning_and_mime_types_are_accepted() {
        let c = load_str(
            "events {\n use epoll;\n multi_accept on;\n accept_mutex off;\n worker_connections 64;\n}\nhttp {\n types { text/x-foo foo bar; proxy_pass x; }\n proxy_http_version 1.1;\n server { listen 127.0.0.1:1 reuseport default_server; }\n}\n",
        )
        .expect("valid");
        assert_eq!(c.worker_connections, 64);
        let types = &c.http.servers[0].settings.types;
        assert_eq!(types, &[("foo".into(), "text/x-foo".into()), ("bar".into(), "text/x-foo".into()), ("x".into(), "proxy_pass".into())]);
        assert_eq!(error("http {\n types {\n  text/x-foo;\n }\n}\n"), "t.conf:3: no extensions for type \"text/x-foo\"");
    }
}
