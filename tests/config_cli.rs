//! `pounce -t` and friends: config errors name the file and line, exit codes are right.

mod support;
use std::process::Command;
use support::*;

fn test_conf(text: &str) -> (i32, String, String) {
    let dir = TempDir::new("conf");
    let path = dir.0.join("t.conf");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(BIN).arg("-t").arg("-p").arg(&dir.0).arg("-c").arg(&path).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "FILE");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn valid_config_passes() {
    let (code, out, _) = test_conf("worker_processes auto;\nhttp {\n upstream u { server 127.0.0.1:9 weight=2; keepalive 4; }\n server { listen 127.0.0.1:8080 reuseport; location / { proxy_pass http://u; } }\n}\n");
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "pounce: configuration file FILE test is successful");
}

#[test]
fn errors_have_file_and_line() {
    let cases = [
        ("http {\n  bogus on;\n}\n", "FILE:2: unknown directive \"bogus\""),
        ("http {\n server {\n  listen 8080;\n  listen 8080;\n }\n}\n", "FILE:4: duplicate listen 0.0.0.0:8080"),
        ("http {\n server {\n  location / {\n   proxy_pass http://nowhere_upstream_x;\n  }\n }\n}\n", "FILE:4: unknown upstream \"nowhere_upstream_x\""),
        ("http {\n upstream u {\n  server 127.0.0.1:9 max_fails=x;\n }\n}\n", "FILE:3: invalid number \"x\""),
        ("http {\n keepalive_timeout 1y;\n}\n", "FILE:2: invalid time \"1y\""),
        ("http {\n server {\n  listen;\n }\n}\n", "FILE:3: invalid number of arguments in \"listen\" directive"),
        ("worker_processes two;\n", "FILE:1: invalid number \"two\""),
        ("http {\n server {\n", "FILE:3: unexpected end of file"),
        ("http {\n upstream u { server 127.0.0.1:9; }\n upstream u { server 127.0.0.1:9; }\n}\n", "FILE:3: duplicate upstream \"u\""),
    ];
    for (text, want) in cases {
        let (code, _, err) = test_conf(text);
        assert_eq!(code, 1, "{}", text);
        assert!(err.lines().next().unwrap_or("").starts_with(want), "for {:?}\n got: {}\nwant: {}", text, err, want);
        assert!(err.contains("test failed"));
    }
}

#[test]
fn typos_and_nginx_only_directives_are_explained() {
    let cases = [
        ("http {\n server {\n  location / {\n   proxy_pas http://u;\n  }\n }\n}\n", "FILE:4: unknown directive \"proxy_pas\", did you mean \"proxy_pass\"?"),
        ("http {\n proxy_buffering off;\n}\n", "FILE:2: \"proxy_buffering\" is an nginx directive pounce does not support"),
    ];
    for (text, want) in cases {
        let (code, _, err) = test_conf(text);
        assert_eq!(code, 1, "{}", text);
        assert_eq!(err.lines().next().unwrap_or(""), want);
    }
}

#[test]
fn include_reports_the_included_file() {
    let dir = TempDir::new("inc");
    std::fs::create_dir_all(dir.0.join("conf.d")).expect("dir");
    std::fs::write(dir.0.join("conf.d/a.conf"), "upstream u { server 127.0.0.1:9; }\n").expect("a");
    std::fs::write(dir.0.join("conf.d/b.conf"), "\n\nnope;\n").expect("b");
    let main = dir.0.join("main.conf");
    std::fs::write(&main, "http {\n include conf.d/*.conf;\n}\n").expect("main");
    let out = Command::new(BIN).arg("-t").arg("-p").arg(&dir.0).arg("-c").arg(&main).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("conf.d/b.conf:3: unknown directive \"nope\""), "{}", err);
}

#[test]
fn version_help_and_bad_signal() {
    let out = Command::new(BIN).arg("-V").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pounce version "));
    let out = Command::new(BIN).arg("-h").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("-s SIGNAL"));
    let dir = TempDir::new("sig");
    let path = dir.0.join("t.conf");
    std::fs::write(&path, "pid logs/none.pid;\n").expect("write");
    let out = Command::new(BIN).arg("-p").arg(&dir.0).arg("-c").arg(&path).arg("-s").arg("reload").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read pid file"));
}
