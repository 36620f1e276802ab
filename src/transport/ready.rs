//! What epoll last reported for a client socket (edge-triggered), kept by each transport.

use mio::event::Event;

#[derive(Default)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// EPOLLRDHUP (or an error) was reported: the client sent its FIN; read on until 0.
    pub(crate) rdhup: bool,
}

impl Readiness {
    /// Records an event; an error or a hang-up wakes both directions so the next call sees it.
    #[inline]
    pub(crate) fn on_event(&mut self, ev: &Event) {
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.readable = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            self.rdhup = true;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            self.writable = true;
        }
    }
}
