//! The hook of the zone contention benchmark (`bench/zone.rs`): one `limit_req` lookup as a
//! request makes it (key from the client address, keyed hash, shard lock, table, LRU).

use super::bucket::ReqZone;
use super::key::request_key;
use crate::config::KeyPart;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// A `limit_req_zone $binary_remote_addr` of `capacity` states in `shards` shards.
#[derive(Clone)]
pub struct ZoneBench {
    zone: Arc<ReqZone>,
}

impl ZoneBench {
    pub fn new(capacity: usize, shards: usize) -> ZoneBench {
        ZoneBench { zone: Arc::new(ReqZone::with_shards(capacity, shards)) }
    }

    /// Times a lookup found its shard's lock held by another thread.
    pub fn lock_waits(&self) -> u64 {
        self.zone.totals().0[3]
    }

    /// One request from `client` at `now_ms`, at a rate nobody reaches; true if it passed.
    pub fn request(&self, client: u32, now_ms: u64) -> bool {
        let ip = IpAddr::V4(Ipv4Addr::from(client));
        let Some(key) = request_key(&[KeyPart::BinaryRemoteAddr], ip, "", &self.zone.seed) else { return false };
        matches!(self.zone.lookup(&key, 1 << 40, u64::MAX, (1 << 31) + now_ms, true), super::bucket::Looked::Passed(_))
    }
}
