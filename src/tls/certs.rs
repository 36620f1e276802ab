//! Certificates and keys from PEM files, checked the way an operator needs (`FILE: what is
//! wrong`), the choice between a server's RSA and ECDSA certificates by what the client can
//! verify, and the client-certificate verifier of `ssl_verify_client`.

use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The certificates of a PEM file (a chain: the server's first).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {}", path.display(), e);
    std::fs::metadata(path).map_err(|e| what(&e))?;
    let chain = CertificateDer::pem_file_iter(path).map_err(|e| what(&e))?.collect::<Result<Vec<_>, _>>().map_err(|e| what(&e))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it (PEM \"BEGIN CERTIFICATE\" blocks expected)", path.display()));
    }
    Ok(chain)
}

/// A certificate chain and its private key, checked to belong together.
pub(crate) fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = read_chain(cert)?;
    std::fs::metadata(key).map_err(|e| format!("{}: {}", key.display(), e))?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!("{}: no private key in it (PEM \"BEGIN PRIVATE KEY\" block expected)", key.display()),
        e => format!("{}: {}", key.display(), e),
    })?;
    let signing = any_supported_type(&der).map_err(|e| format!("{}: unusable private key ({})", key.display(), e))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|_| format!("{}: the private key does not match the certificate in {}", key.display(), cert.display()))?;
    Ok(Arc::new(ck))
}

/// The certificate authorities of `ssl_client_certificate`.
pub(crate) fn client_verifier(ca: &Path, required: bool) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_chain(ca)? {
        roots.add(cert).map_err(|e| format!("{}: {}", ca.display(), e))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(rustls::crypto::ring::default_provider()));
    let builder = if required { builder } else { builder.allow_unauthenticated() };
    builder.build().map_err(|e| format!("{}: {}", ca.display(), e))
}

/// A server block's certificates (say RSA and ECDSA): each handshake gets the first one whose
/// key can sign with a scheme the client offers, ECDSA first (smaller and faster), as nginx
/// serves both kinds from one server.
#[derive(Debug)]
pub(crate) struct KeyChoice {
    keys: Vec<Arc<CertifiedKey>>,
}

impl KeyChoice {
    pub(crate) fn new(mut keys: Vec<Arc<CertifiedKey>>) -> KeyChoice {
        let ecdsa = |k: &Arc<CertifiedKey>| k.key.algorithm() == rustls::SignatureAlgorithm::ECDSA;
        keys.sort_by_key(|k| !ecdsa(k));
        KeyChoice { keys }
    }
}

impl ResolvesServerCert for KeyChoice {
    fn resolve(&self, hello: ClientHello) -> Option<Arc<CertifiedKey>> {
        let offered: &[SignatureScheme] = hello.signature_schemes();
        self.keys.iter().find(|k| k.key.choose_scheme(offered).is_some()).or(self.keys.first()).cloned()
    }
}
