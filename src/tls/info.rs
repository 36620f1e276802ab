//! What a backend and the `$ssl_*` variables learn of a client's TLS connection, taken once
//! when its handshake completes: protocol, cipher suite (OpenSSL's names, as mod_ssl and nginx
//! give them to Tomcat and to headers), key size, a session identifier, and the client
//! certificate (PEM, subject DN, verification result).

use rustls::{CipherSuite, HandshakeKind, ProtocolVersion, ServerConnection};

#[derive(Debug, Clone)]
pub(crate) struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3` (`$ssl_protocol`, AJP's `AJP_SSL_PROTOCOL`).
    pub(crate) protocol: &'static str,
    /// OpenSSL's name of the suite (`$ssl_cipher`, AJP's `ssl_cipher`).
    pub(crate) cipher: &'static str,
    /// The symmetric key's size in bits (AJP's `ssl_key_size`).
    pub(crate) key_bits: u16,
    /// Identifies the TLS connection (AJP's `ssl_session`). rustls exposes no session ID, so
    /// this is 32 bytes of the connection's keying material exporter (RFC 8446 §7.5): the
    /// same for every request on one connection, different on every other.
    pub(crate) session_id: [u8; 32],
    pub(crate) resumed: bool,
    pub(crate) sni: Option<Box<str>>,
    pub(crate) client: Option<ClientCert>,
}

/// A client certificate that rustls verified against `ssl_client_certificate`.
#[derive(Debug, Clone)]
pub(crate) struct ClientCert {
    /// The leaf certificate in PEM.
    pub(crate) pem: String,
    /// Its subject, RFC 2253 (`$ssl_client_s_dn`).
    pub(crate) subject: String,
}

impl TlsInfo {
    /// Reads a connection whose handshake is complete.
    pub(crate) fn of(conn: &ServerConnection) -> TlsInfo {
        let protocol = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            _ => "TLSv1.2",
        };
        let (cipher, key_bits) = conn.negotiated_cipher_suite().map_or(("", 0), |s| openssl_name(s.suite()));
        let mut session_id = [0u8; 32];
        if let Ok(k) = conn.export_keying_material([0u8; 32], b"EXPERIMENTAL pounce session id", None) {
            session_id = k;
        }
        let client = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|leaf| ClientCert { pem: pem(leaf.as_ref()), subject: super::x509::subject_dn(leaf.as_ref()).unwrap_or_default() });
        TlsInfo {
            protocol,
            cipher,
            key_bits,
            session_id,
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            sni: conn.server_name().map(Into::into),
            client,
        }
    }

    /// `$ssl_client_verify`: SUCCESS with a verified certificate, NONE without one (a bad
    /// one never gets this far: the handshake fails).
    pub(crate) fn client_verify(&self) -> &'static str {
        if self.client.is_some() {
            "SUCCESS"
        } else {
            "NONE"
        }
    }

    /// The session identifier in hex (64 characters), written into `out`.
    pub(crate) fn session_hex<'o>(&self, out: &'o mut [u8; 64]) -> &'o str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in self.session_id.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 15) as usize];
        }
        std::str::from_utf8(&out[..]).unwrap_or("")
    }
}

/// OpenSSL's name of a suite and its key size.
fn openssl_name(s: CipherSuite) -> (&'static str, u16) {
    match s {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => ("TLS_AES_128_GCM_SHA256", 128),
        CipherSuite::TLS13_AES_256_GCM_SHA384 => ("TLS_AES_256_GCM_SHA384", 256),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => ("TLS_CHACHA20_POLY1305_SHA256", 256),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-ECDSA-AES128-GCM-SHA256", 128),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-ECDSA-AES256-GCM-SHA384", 256),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => ("ECDHE-ECDSA-CHACHA20-POLY1305", 256),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-RSA-AES128-GCM-SHA256", 128),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-RSA-AES256-GCM-SHA384", 256),
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => ("ECDHE-RSA-CHACHA20-POLY1305", 256),
        _ => ("UNKNOWN", 0),
    }
}

/// A DER certificate as PEM (base64 in 64-column lines).
pub(crate) fn pem(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_is_base64_in_lines() {
        assert_eq!(pem(b"Man"), "-----BEGIN CERTIFICATE-----\nTWFu\n-----END CERTIFICATE-----\n");
        assert_eq!(pem(b"Ma"), "-----BEGIN CERTIFICATE-----\nTWE=\n-----END CERTIFICATE-----\n");
        assert_eq!(pem(b"M"), "-----BEGIN CERTIFICATE-----\nTQ==\n-----END CERTIFICATE-----\n");
        let long = pem(&[0u8; 60]);
        assert_eq!(long.lines().nth(1).map(str::len), Some(64));
        assert_eq!(long.lines().nth(2).map(str::len), Some(16));
    }

    #[test]
    fn suite_names() {
        assert_eq!(openssl_name(CipherSuite::TLS13_AES_256_GCM_SHA384), ("TLS_AES_256_GCM_SHA384", 256));
        assert_eq!(openssl_name(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256), ("ECDHE-RSA-AES128-GCM-SHA256", 128));
    }
}
