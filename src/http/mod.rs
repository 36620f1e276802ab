//! HTTP/1.x pieces: request heads, chunked coding, status texts, the client response writer.

pub mod chunked;
pub mod request;
pub mod status;
pub mod uri;
pub mod writer;
