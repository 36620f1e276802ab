//! The proxy proper: routing a request to a location, and the session state machine that
//! ties a client connection to a backend connection.

pub mod exchange;
pub mod route;
pub mod session;
