//! TLS termination, the configuration side: for every `server` on a `listen ... ssl` address
//! a rustls `ServerConfig` (its certificates, protocols, client-certificate verification, ALPN
//! `http/1.1`, session tickets), and for every such address the servers its SNI chooses among.
//! Built with each configuration generation (so `-t` and a reload load and check every
//! certificate and key; a bad one fails the reload and the running generation keeps serving).
//! Ticket keys are shared by all workers and kept across reloads, so a session resumes
//! whichever worker, or generation, takes the next connection. The connection side is
//! `transport::tls`.

pub(crate) mod certs;
pub(crate) mod info;
mod x509;

use crate::config::{Config, Settings, VerifyClient};
use rustls::crypto::GetRandomFailed;
use rustls::server::{NoServerSessionStorage, ProducesTickets};
use rustls::{ServerConfig, SupportedProtocolVersion};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// The TLS side of one configuration generation.
#[derive(Default)]
pub(crate) struct Tls {
    /// By listen index: the TLS side of a `listen ... ssl` address.
    listeners: Vec<Option<Arc<TlsListener>>>,
    /// Session-ticket producers by ticket lifetime (`ssl_session_timeout`).
    ticketers: Vec<(Duration, Arc<dyn ProducesTickets>)>,
}

/// A `listen ... ssl` address: the servers on it, chosen by SNI, and its counters.
pub(crate) struct TlsListener {
    servers: Vec<TlsServer>,
    /// The one for a missing or unknown SNI (the address's default server).
    default: usize,
    /// `ssl_handshake_timeout` of the default server (the server is not known before SNI).
    pub(crate) handshake_timeout: Duration,
    pub(crate) stats: TlsStats,
}

struct TlsServer {
    names: Vec<String>,
    config: Arc<ServerConfig>,
}

/// Per listening address, for the status page.
#[derive(Default, Debug)]
pub(crate) struct TlsStats {
    pub(crate) handshakes: AtomicU64,
    pub(crate) resumed: AtomicU64,
    pub(crate) failures: AtomicU64,
}

impl TlsStats {
    /// Takes over what `old` counted (a reload: counters go on from where they were).
    pub(crate) fn absorb(&self, old: &TlsStats) {
        for (new, old) in [(&self.handshakes, &old.handshakes), (&self.resumed, &old.resumed), (&self.failures, &old.failures)] {
            new.fetch_add(old.swap(0, Relaxed), Relaxed);
        }
    }
}

impl Tls {
    /// Loads every certificate and key the configuration names. `previous`: the running
    /// generation, whose ticket keys are kept.
    pub(crate) fn build(cfg: &Config, previous: Option<&Tls>) -> Result<Tls, String> {
        let http = &cfg.http;
        let mut tls = Tls { listeners: Vec::new(), ticketers: Vec::new() };
        let mut configs: Vec<Option<Arc<ServerConfig>>> = vec![None; http.servers.len()];
        for l in &http.listens {
            if !l.ssl {
                tls.listeners.push(None);
                continue;
            }
            let mut servers = Vec::new();
            for &s in &l.servers {
                let config = match &configs[s] {
                    Some(c) => c.clone(),
                    None => {
                        let settings = &http.servers[s].settings;
                        let ticketer = tls.ticketer(settings.ssl_session_timeout, previous)?;
                        let c = server_config(settings, ticketer)?;
                        configs[s] = Some(c.clone());
                        c
                    }
                };
                servers.push(TlsServer { names: http.servers[s].names.clone(), config });
            }
            let default = l.servers.iter().position(|&s| s == l.default_server).unwrap_or(0);
            let handshake_timeout = http.servers[l.default_server].settings.ssl_handshake_timeout;
            tls.listeners.push(Some(Arc::new(TlsListener { servers, default, handshake_timeout, stats: TlsStats::default() })));
        }
        Ok(tls)
    }

    /// The TLS side of listening address `listen`, if it is `ssl`.
    pub(crate) fn listener(&self, listen: usize) -> Option<&Arc<TlsListener>> {
        self.listeners.get(listen).and_then(Option::as_ref)
    }

    /// Every TLS listening address (by its index in `Http::listens`) with its counters.
    pub(crate) fn listeners(&self) -> impl Iterator<Item = (usize, &TlsStats)> {
        self.listeners.iter().enumerate().filter_map(|(i, l)| l.as_ref().map(|l| (i, &l.stats)))
    }

    /// The ticket producer for `lifetime`: the running generation's when it has one.
    fn ticketer(&mut self, lifetime: Duration, previous: Option<&Tls>) -> Result<Arc<dyn ProducesTickets>, String> {
        if let Some((_, t)) = self.ticketers.iter().find(|(l, _)| *l == lifetime) {
            return Ok(t.clone());
        }
        let kept = previous.and_then(|p| p.ticketers.iter().find(|(l, _)| *l == lifetime)).map(|(_, t)| t.clone());
        let t = match kept {
            Some(t) => t,
            None => {
                let secs = lifetime.as_secs().clamp(1, u32::MAX as u64) as u32;
                let rotator = rustls::ticketer::TicketRotator::new(secs, fresh_keys).map_err(|e| format!("cannot make session ticket keys: {}", e))?;
                Arc::new(rotator) as Arc<dyn ProducesTickets>
            }
        };
        self.ticketers.push((lifetime, t.clone()));
        Ok(t)
    }
}

impl TlsListener {
    /// The configuration for a ClientHello's SNI: the server whose `server_name` matches
    /// (exact names, then wildcards, as for Host), else the address's default server.
    pub(crate) fn config_for(&self, sni: Option<&str>) -> Arc<ServerConfig> {
        let chosen = sni.and_then(|name| crate::proxy::route::pick_by_name(self.servers.iter().map(|s| s.names.as_slice()), name.as_bytes()));
        let s = chosen.or(Some(self.default)).and_then(|i| self.servers.get(i));
        match s {
            Some(s) => s.config.clone(),
            None => self.servers[0].config.clone(),
        }
    }
}

/// Ticket keys for one rotation period: rustls' own ticketer (ChaCha20-Poly1305, random keys),
/// replaced by `TicketRotator` every `ssl_session_timeout` while the previous keys still
/// decrypt, so a ticket is accepted for between one and two periods.
fn fresh_keys() -> Result<Box<dyn ProducesTickets>, GetRandomFailed> {
    rustls::crypto::ring::Ticketer::new().map(|t| Box::new(Keys(t)) as Box<dyn ProducesTickets>).map_err(|_| GetRandomFailed)
}

#[derive(Debug)]
struct Keys(Arc<dyn ProducesTickets>);

impl ProducesTickets for Keys {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(cipher)
    }
}

/// ring's suites in pounce's order (used when the server's order is preferred, the default):
/// TLS 1.3 AES-128-GCM first — as strong in practice, and its SHA-256 key schedule makes a
/// handshake cheaper than AES-256's SHA-384 — then AES-256-GCM, then ChaCha20-Poly1305; TLS 1.2
/// likewise, ECDSA before RSA.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::CipherSuite as C;
    const ORDER: [C; 9] = [
        C::TLS13_AES_128_GCM_SHA256,
        C::TLS13_AES_256_GCM_SHA384,
        C::TLS13_CHACHA20_POLY1305_SHA256,
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| ORDER.iter().position(|&c| c == s.suite()).unwrap_or(ORDER.len()));
    Arc::new(p)
}

/// One server block's rustls configuration.
fn server_config(s: &Settings, ticketer: Arc<dyn ProducesTickets>) -> Result<Arc<ServerConfig>, String> {
    if s.ssl_certificate.len() != s.ssl_certificate_key.len() {
        let cert = s.ssl_certificate.get(s.ssl_certificate_key.len()).or(s.ssl_certificate.last());
        return Err(format!("{}: each \"ssl_certificate\" needs its own \"ssl_certificate_key\"", cert.map_or(String::new(), |p| p.display().to_string())));
    }
    let keys = s.ssl_certificate.iter().zip(&s.ssl_certificate_key).map(|(c, k)| certs::load_pair(c, k)).collect::<Result<Vec<_>, _>>()?;
    let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
    if s.ssl_protocols.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if s.ssl_protocols.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let builder = ServerConfig::builder_with_provider(provider()).with_protocol_versions(&versions).map_err(|e| format!("TLS configuration: {}", e))?;
    let builder = match (s.ssl_verify_client, &s.ssl_client_certificate) {
        (VerifyClient::Off, _) => builder.with_no_client_auth(),
        (mode, Some(ca)) => builder.with_client_cert_verifier(certs::client_verifier(ca, mode == VerifyClient::On)?),
        (_, None) => {
            return Err("\"ssl_verify_client\" needs \"ssl_client_certificate\" (the certificate authorities clients are verified against)".to_string())
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(certs::KeyChoice::new(keys)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = s.ssl_prefer_server_ciphers;
    // Resumption is stateless (tickets), so it works whichever worker takes the connection.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    if s.ssl_session_tickets {
        config.ticketer = ticketer;
        // One ticket per handshake (OpenSSL sends one after a resumption, two after a full
        // handshake): a resumption gets a fresh ticket each time, and each ticket costs an
        // encryption.
        config.send_tls13_tickets = 1;
    } else {
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}
