//! pounce: an event-driven load-balancing reverse proxy for Tomcat clusters, on raw mio.
//! See README.md for the architecture map. The modules that are `pub` are what the binary
//! (`main.rs`) and the fuzz targets (`fuzz/`) use; the rest is crate-private.

pub mod backend;
pub mod buffer;
pub mod config;
pub(crate) mod files;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod gzip;
pub mod http;
pub mod limits;
pub mod logging;
pub mod master;
pub mod pidfile;
pub(crate) mod proxy;
pub(crate) mod ratelimit;
pub(crate) mod reactor;
pub(crate) mod runtime;
pub(crate) mod status;
pub(crate) mod tls;
pub(crate) mod transport;
pub(crate) mod upstream;
pub(crate) mod worker;

/// The selection micro-benchmark's hook (`bench/select.rs`).
#[doc(hidden)]
pub use upstream::bench::SelectBench;

/// The limit zone contention benchmark's hook (`bench/zone.rs`).
#[doc(hidden)]
pub use ratelimit::bench::ZoneBench;
