//! TLS at pounce, Tomcat 10 behind it over AJP: Tomcat sees a secure https request with the
//! cipher suite, key size, session id and protocol, and a client certificate both as the
//! X509Certificate attribute and as a CLIENT-CERT login (`scripts/demo-webapp/tls.jsp` and
//! `secure/whoami.jsp`), as behind mod_jk.

mod support;
use support::conf::{Conf, Location, Server, Upstream};
use support::tls::{tls_client, Key, Pki};
use support::tomcat::{require_tomcat, Opts, Tomcat};
use support::*;

fn field(body: &str, name: &str) -> String {
    body.lines().find_map(|l| l.strip_prefix(&format!("{}=", name))).unwrap_or("").to_string()
}

#[test]
fn tomcat_sees_https_cipher_and_the_client_certificate_over_ajp() {
    if !require_tomcat() {
        return;
    }
    let dir = TempDir::new("pki");
    let pki = Pki::new(&dir.0);
    let (cert, key) = pki.server("localhost", "localhost", Key::Ec);
    let (cc, ck) = pki.client("alice", "alice");
    let user = "CN=alice, O=pounce tests, C=DE";
    let nodes = Tomcat::start_many(&["tomcat1"], &Opts { cert_user: Some(user.into()), ..Default::default() });
    let t = &nodes[0];
    let conf = Conf::new().upstream(Upstream::new("tc").server(format!("127.0.0.1:{}", t.ajp))).server(
        Server::new()
            .listen("127.0.0.1:{port} ssl")
            .line(format!("ssl_certificate {}; ssl_certificate_key {};", cert.display(), key.display()))
            .line(format!("ssl_verify_client optional; ssl_client_certificate {};", pki.ca().display()))
            .location(Location::new("/").proxy_pass("ajp://tc")),
    );
    let p = Pounce::start(&conf);
    let ca = pki.ca();
    let ca = ca.to_str().expect("path");

    let r = tls_client(p.port, &["--ca", ca, "--path", "/tls.jsp", "--version", "1.2"]);
    assert!(r.ok(), "{}", r.error());
    let body = r.body();
    println!("{}", body);
    assert_eq!(r.status(), 200, "{}", body);
    assert_eq!(field(&body, "secure"), "true", "isSecure()");
    assert_eq!(field(&body, "scheme"), "https", "getScheme()");
    assert_eq!(field(&body, "cipher"), r.cipher(), "the cipher-suite attribute");
    assert!(["128", "256"].contains(&field(&body, "keysize").as_str()), "{}", body);
    assert_eq!(field(&body, "session").len(), 64, "{}", body);
    assert_eq!(field(&body, "protocol"), "TLSv1.2");
    assert_eq!(field(&body, "cert"), "none");

    let with = ["--ca", ca, "--cert", cc.to_str().expect("p"), "--key", ck.to_str().expect("p")];
    let r = tls_client(p.port, &[&with[..], &["--path", "/tls.jsp"]].concat());
    assert!(r.ok(), "{}", r.error());
    assert_eq!(field(&r.body(), "cert"), user, "jakarta.servlet.request.X509Certificate: {}", r.body());
    assert_eq!(field(&r.body(), "protocol"), "TLSv1.3");

    // CLIENT-CERT login: the realm knows alice's certificate subject.
    let r = tls_client(p.port, &[&with[..], &["--path", "/secure/whoami.jsp"]].concat());
    assert!(r.ok(), "{}", r.error());
    assert_eq!(r.status(), 200, "{}", r.body());
    assert_eq!(field(&r.body(), "user"), user);
    assert_eq!(field(&r.body(), "auth"), "CLIENT_CERT");
    let r = tls_client(p.port, &["--ca", ca, "--path", "/secure/whoami.jsp"]);
    assert!(r.ok(), "{}", r.error());
    assert!(r.status() == 401 || r.status() == 403, "no certificate, no login: {} {}", r.status(), r.body());
}
