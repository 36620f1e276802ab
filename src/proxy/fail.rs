//! Why a backend attempt failed, in `proxy_next_upstream` terms, and what each failure means
//! for the server's health and the client's answer.

use crate::config::next;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    Error,
    /// The adapter's handshake failed (no or a wrong CPONG): a connect failure, nothing of
    /// the request was sent.
    Handshake,
    Timeout,
    InvalidHeader,
    Status(u16),
    /// The server went out for its health (a failed check, a freeze) while the request
    /// waited on it: a timeout, seen early.
    Frozen,
}

impl Fail {
    pub(crate) fn bit(self) -> u16 {
        match self {
            Fail::Error | Fail::Handshake => next::ERROR,
            Fail::Timeout | Fail::Frozen => next::TIMEOUT,
            Fail::InvalidHeader => next::INVALID_HEADER,
            Fail::Status(s) => match s {
                500 => next::HTTP_500,
                502 => next::HTTP_502,
                503 => next::HTTP_503,
                504 => next::HTTP_504,
                403 => next::HTTP_403,
                404 => next::HTTP_404,
                429 => next::HTTP_429,
                _ => 0,
            },
        }
    }

    /// The status the client gets when no retry is left.
    pub(crate) fn status(self) -> u16 {
        match self {
            Fail::Timeout | Fail::Frozen => 504,
            _ => 502,
        }
    }

    /// nginx: errors, timeouts, invalid headers and 500/502/503/504 count against the
    /// server; 403, 404 and 429 only move the request on.
    pub(crate) fn counts_as_failure(self) -> bool {
        !matches!(self, Fail::Status(403 | 404 | 429))
    }
}
