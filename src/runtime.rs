//! One configuration generation as the workers run it: the parsed config plus the shared
//! state of every upstream. A reload builds a new `Runtime`; old workers keep theirs.

use crate::config::{Config, Settings};
use crate::upstream::UpstreamState;

pub struct Runtime {
    pub cfg: Config,
    pub upstreams: Vec<UpstreamState>,
    pub generation: u64,
}

impl Runtime {
    pub fn new(cfg: Config, generation: u64) -> Runtime {
        let upstreams = cfg.http.upstreams.iter().cloned().map(UpstreamState::new).collect();
        Runtime { cfg, upstreams, generation }
    }

    /// Settings of a location, or of its server when no location matched.
    pub fn location_settings(&self, server: usize, loc: usize) -> &Settings {
        let s = &self.cfg.http.servers[server];
        s.locations.get(loc).map_or(&s.settings, |l| &l.settings)
    }
}
