//! pounce: an event-driven load-balancing reverse proxy for Tomcat clusters, on raw mio.
//! See README.md for the architecture map.

pub mod backend;
pub mod buffer;
pub mod config;
pub mod files;
pub mod http;
pub mod logging;
pub mod master;
pub mod proxy;
pub(crate) mod reactor;
pub mod runtime;
pub mod status;
pub(crate) mod transport;
pub mod upstream;
pub mod worker;
