//! The bytes a session has taken from its core and not yet written: one
//! buffer per session, filled in batches, written from an offset, given back
//! when it empties after a small batch. The async loop and `nova-mio` share
//! it, so both batch, compact and release the same way.

use nova_proto::Session;

/// Most bytes taken from the core per pull: one buffer, one syscall when
/// the socket has room (a vectored write would gain nothing over it).
pub const WRITE_BATCH: usize = 256 * 1024;

/// Batches up to this many bytes leave no buffer behind once written: an
/// allocation this small comes from the allocator's free lists, cheap next
/// to the write.
const SMALL_BATCH: usize = 4096;

/// Bytes taken from the core, written from `written` on.
#[derive(Debug, Default)]
pub struct Outgoing {
    buf: Vec<u8>,
    written: usize,
    /// How many bytes the batch that last drained held.
    last_batch: usize,
}

/// What a [`pull`](Outgoing::pull) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// Bytes were appended.
    pub appended: bool,
    /// The batch is full, or the core filled all the room it was given: it
    /// may hold more to write.
    pub more: bool,
}

impl Outgoing {
    /// Appends what the core has to write, up to [`WRITE_BATCH`] unwritten.
    pub fn pull(&mut self, core: &mut Session) -> Pulled {
        if self.written == self.buf.len() {
            if !self.buf.is_empty() {
                self.last_batch = self.buf.len();
            }
            self.buf.clear();
            self.written = 0;
        } else if self.written >= WRITE_BATCH && self.written * 2 >= self.buf.len() {
            // Keep the buffer from creeping forward while the socket lags;
            // moving at most as much as was written keeps this linear.
            self.buf.drain(..self.written);
            self.written = 0;
        }
        let room = WRITE_BATCH.saturating_sub(self.buf.len() - self.written);
        if room == 0 {
            return Pulled { appended: false, more: true };
        }
        let pulled = core.poll_transmit(&mut self.buf, room);
        if self.buf.is_empty() && (self.last_batch <= SMALL_BATCH || self.buf.capacity() > 2 * WRITE_BATCH) {
            // Everything was written and nothing waits. After small batches
            // nothing is kept: an idle session (one of thousands) holds no
            // write buffer, and one that sends small messages now and then
            // pays an allocation from the free lists per write. A large
            // batch's buffer is kept for the next (freed and allocated again
            // per message, 64 KiB blocks made glibc trim and regrow its heap:
            // measured in nova-bench 64 × 64 KiB ping-pong, ten page faults a
            // message), until a small batch shows the large ones stopped,
            // or beyond two batches' size.
            self.buf = Vec::new();
        }
        // Less than asked for: the core had no more to write.
        Pulled { appended: pulled > 0, more: pulled >= room }
    }

    /// Appends everything the core has to write, whatever the batch size
    /// (before a close: the close frame is among it).
    pub fn pull_all(&mut self, core: &mut Session) {
        let _ = core.poll_transmit(&mut self.buf, usize::MAX);
    }

    /// What waits to be written.
    pub fn unwritten(&self) -> &[u8] {
        &self.buf[self.written..]
    }

    /// `n` more bytes were written.
    pub fn advance(&mut self, n: usize) {
        self.written = (self.written + n).min(self.buf.len());
    }

    /// Forgets what waits (the transport is gone), and the buffer.
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.written = 0;
        self.last_batch = 0;
    }

    /// Takes what waits (for a transport that lingers to write it).
    pub fn take_unwritten(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.written);
        self.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use nova_proto::{Config, Message, Session};

    use super::*;

    /// A raw session with its connection open (keepalive off).
    fn open_session() -> Session {
        let now = Instant::now();
        #[allow(clippy::disallowed_methods)]
        let mut s = Session::raw(Config::builder("ws://h/").keepalive(None).build().unwrap(), [0; 32], now);
        s.connect(now);
        while s.poll_output().is_some() {}
        s.handle_input(now, nova_proto::Input::TransportUp);
        let mut request = Vec::new();
        let _ = s.poll_transmit(&mut request, usize::MAX);
        let response = nova_testkit::raw::upgrade_response(&request).expect("a key in the request");
        s.handle_input(now, nova_proto::Input::Received(&response));
        while s.poll_output().is_some() {}
        s
    }

    #[test]
    fn batches_are_bounded_and_an_emptied_buffer_is_given_back() {
        let mut s = open_session();
        let now = Instant::now();
        let mut out = Outgoing::default();
        // Nothing to write: nothing held.
        assert_eq!(out.pull(&mut s), Pulled { appended: false, more: false });
        assert_eq!(out.buf.capacity(), 0);
        // Five 100 KiB messages: the first pull stops past one batch.
        for _ in 0..5 {
            s.send(now, Message::binary(vec![7u8; 100 << 10])).unwrap();
        }
        let first = out.pull(&mut s);
        assert!(first.appended && first.more);
        assert!(out.unwritten().len() >= WRITE_BATCH && out.unwritten().len() < WRITE_BATCH + (101 << 10));
        // A full batch waits: nothing more is taken until some is written.
        assert_eq!(out.pull(&mut s), Pulled { appended: false, more: true });
        // Write it all, pull the rest, write that: the buffer goes.
        let mut total = 0;
        loop {
            let n = out.unwritten().len();
            total += n;
            out.advance(n);
            if !out.pull(&mut s).appended {
                break;
            }
        }
        assert!(total > 5 * (100 << 10));
        // The last batch was large: its buffer stays for the next one...
        assert!(out.buf.capacity() >= 100 << 10);
        // ...until a small batch shows the large ones stopped.
        s.send(now, Message::text("small")).unwrap();
        assert!(out.pull(&mut s).appended);
        out.advance(out.unwritten().len());
        assert!(!out.pull(&mut s).appended);
        assert_eq!(out.buf.capacity(), 0);
    }

    #[test]
    fn what_waits_is_handed_to_a_lingering_transport_whole() {
        let mut s = open_session();
        let mut out = Outgoing::default();
        s.send(Instant::now(), Message::text("last")).unwrap();
        out.pull(&mut s);
        let all = out.unwritten().to_vec();
        out.advance(2);
        assert_eq!(out.take_unwritten(), all[2..]);
        assert!(out.unwritten().is_empty());
    }
}
