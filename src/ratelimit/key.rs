//! A zone's key: what `limit_req_zone`/`limit_conn_zone` say it is, made for one request
//! without allocating. Keys are fixed-size values carrying their hash (computed once, outside
//! any lock, with the zone's SipHash seed so clients cannot aim at one bucket); a key longer
//! than the inline room keeps its first bytes and a 128-bit digest of the whole.

use crate::config::KeyPart;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write as _;
use std::net::IpAddr;

/// Inline key bytes.
const ROOM: usize = 31;
/// Bytes kept of a longer key before its digest.
const HEAD: usize = ROOM - 16;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    hash: u64,
    /// Bytes in use; `u8::MAX` for a long key (`HEAD` bytes and a digest).
    len: u8,
    bytes: [u8; ROOM],
}

impl Key {
    /// `data` hashed with `seed`. None: an empty key, which nginx does not account.
    pub(crate) fn new(data: &[u8], seed: &RandomState) -> Option<Key> {
        if data.is_empty() {
            return None;
        }
        let mut bytes = [0u8; ROOM];
        let len = if data.len() <= ROOM {
            bytes[..data.len()].copy_from_slice(data);
            data.len() as u8
        } else {
            bytes[..HEAD].copy_from_slice(&data[..HEAD]);
            bytes[HEAD..HEAD + 8].copy_from_slice(&seed.hash_one((1u8, data)).to_le_bytes());
            bytes[HEAD + 8..].copy_from_slice(&seed.hash_one((2u8, data)).to_le_bytes());
            u8::MAX
        };
        Some(Key { hash: seed.hash_one(data), len, bytes })
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// Which of `n` (a power of two) shards holds it: bits the hash table does not lean on.
    pub(crate) fn shard(&self, n: usize) -> usize {
        (self.hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (n - 1)
    }
}

/// The key of a request to a zone keyed by `parts`: the client's address (the one place
/// that decides which address that is: today the connection's peer) and the server name.
pub(crate) fn request_key(parts: &[KeyPart], client: IpAddr, server_name: &str, seed: &RandomState) -> Option<Key> {
    if let [KeyPart::BinaryRemoteAddr] = parts {
        // The usual key, without the general path's buffer.
        return match client {
            IpAddr::V4(a) => Key::new(&a.octets(), seed),
            IpAddr::V6(a) => Key::new(&a.octets(), seed),
        };
    }
    let mut buf = [0u8; 256];
    let mut out = &mut buf[..];
    for p in parts {
        let _ = match p {
            KeyPart::BinaryRemoteAddr => match client {
                IpAddr::V4(a) => out.write(&a.octets()),
                IpAddr::V6(a) => out.write(&a.octets()),
            },
            KeyPart::RemoteAddr => write!(out, "{}", client).map(|_| 0),
            KeyPart::ServerName => out.write(server_name.as_bytes()),
            KeyPart::Lit(s) => out.write(s.as_bytes()),
        };
    }
    let left = out.len();
    let used = buf.len() - left;
    Key::new(&buf[..used], seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_their_bytes() {
        let seed = RandomState::new();
        let a = Key::new(&[127, 0, 0, 1], &seed).expect("key");
        assert!(a == Key::new(&[127, 0, 0, 1], &seed).expect("key"));
        assert!(a != Key::new(&[127, 0, 0, 2], &seed).expect("key"));
        assert!(Key::new(b"", &seed).is_none(), "an empty key is not accounted");
        let long = |c: u8| Key::new(&[b'x', b'y', c].repeat(40), &seed).expect("key");
        assert!(long(b'1') == long(b'1'));
        assert!(long(b'1') != long(b'2'), "long keys differ by their digest");
    }

    #[test]
    fn request_keys() {
        let seed = RandomState::new();
        let v4: IpAddr = "10.1.2.3".parse().expect("ip");
        let bin = request_key(&[KeyPart::BinaryRemoteAddr], v4, "s", &seed).expect("key");
        assert!(bin == Key::new(&[10, 1, 2, 3], &seed).expect("key"));
        let text = request_key(&[KeyPart::RemoteAddr, KeyPart::Lit(":".into()), KeyPart::ServerName], v4, "a.example", &seed).expect("key");
        assert!(text == Key::new(b"10.1.2.3:a.example", &seed).expect("key"));
        assert!(request_key(&[KeyPart::ServerName], v4, "", &seed).is_none());
    }
}
