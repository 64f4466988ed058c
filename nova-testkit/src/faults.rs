//! Network faults, and the one-direction pipe that applies them.
//!
//! [`Pipe`] is sans-IO: bytes go in with the time they were sent, and come out
//! when the faults let them. The in-memory simulation drives pipes with its
//! virtual clock; the [`FaultProxy`](crate::FaultProxy) drives the same pipes
//! with the real one. A fault therefore means the same thing in both.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The direction bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the server.
    ToServer,
    /// From the server to the client.
    ToClient,
}

/// What the network does to the bytes of a connection. The default is a
/// perfect network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Added to every chunk, each direction.
    pub latency: Duration,
    /// Extra latency drawn uniformly from `0..=jitter` per chunk (order is kept:
    /// a TCP stream does not reorder).
    pub jitter: Duration,
    /// Bytes per second, each direction; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Nothing is forwarded, either way, until the stall ends (bytes wait; the
    /// connection stays open): a dead peer, a frozen middlebox.
    pub stall: bool,
    /// Bytes in this direction are dropped while the connection stays open: a
    /// half-broken path.
    pub cut: Option<Direction>,
    /// The connection is closed once this many bytes went through one
    /// direction; the chunk that crosses the limit is cut at it, so a frame can
    /// end half-way.
    pub close_after: Option<u64>,
}

impl Faults {
    /// A perfect network.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Fixed latency, each direction.
    pub fn latency(latency: Duration) -> Faults {
        Faults { latency, ..Faults::default() }
    }

    /// Adds jitter.
    pub fn with_jitter(mut self, jitter: Duration) -> Faults {
        self.jitter = jitter;
        self
    }

    /// Limits each direction to `bytes_per_second`.
    pub fn with_bandwidth(mut self, bytes_per_second: u64) -> Faults {
        self.bandwidth = Some(bytes_per_second.max(1));
        self
    }

    /// Stops forwarding (or resumes).
    pub fn with_stall(mut self, stall: bool) -> Faults {
        self.stall = stall;
        self
    }

    /// Drops one direction.
    pub fn with_cut(mut self, direction: Direction) -> Faults {
        self.cut = Some(direction);
        self
    }

    /// Closes the connection after `bytes` in one direction.
    pub fn with_close_after(mut self, bytes: u64) -> Faults {
        self.close_after = Some(bytes);
        self
    }
}

/// What a pipe hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Bytes to deliver now.
    Bytes(Vec<u8>),
    /// The sender's end of stream (a FIN), after every byte it sent before.
    Fin,
    /// `close_after` was reached: close the connection (both sides).
    Close,
}

/// Largest piece a bandwidth-limited pipe delivers at once, so a large write
/// trickles out instead of arriving whole after a long pause (like TCP segments).
const SEGMENT: usize = 1460;

/// Something travelling through a pipe.
#[derive(Debug, Clone)]
enum Chunk {
    Bytes(Vec<u8>),
    Fin,
}

/// One direction of a connection, applying [`Faults`].
///
/// Bytes and the end of stream travel the same path: a FIN never overtakes the
/// bytes sent before it, takes the latency, and is held by a stall (or a cut of
/// this direction) like the bytes are, as a real path would hold it.
#[derive(Debug, Clone)]
pub struct Pipe {
    direction: Direction,
    faults: Faults,
    /// Chunks in flight, with the earliest instant each may be delivered.
    queue: VecDeque<(Instant, Chunk)>,
    /// Bytes in `queue`.
    in_flight: usize,
    /// When the bandwidth limit lets the next byte out.
    next_free: Option<Instant>,
    rng: u64,
    delivered: u64,
    dropped: u64,
    /// The sender finished (a FIN is queued or was delivered).
    finished: bool,
    close_pending: bool,
    closed: bool,
    /// The `now` of the last poll.
    last_poll: Option<Instant>,
}

impl Pipe {
    /// A pipe for `direction`; `seed` drives the jitter.
    pub fn new(direction: Direction, faults: Faults, seed: u64) -> Pipe {
        Pipe {
            direction,
            faults,
            queue: VecDeque::new(),
            in_flight: 0,
            next_free: None,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            delivered: 0,
            dropped: 0,
            finished: false,
            close_pending: false,
            closed: false,
            last_poll: None,
        }
    }

    /// The direction this pipe carries.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Changes the faults from now on (bytes already in flight keep their delay).
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// Bytes handed out so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Bytes dropped by a cut so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes still in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether `close_after` was reached and the close handed out.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes sent into the pipe at `now`; returns how many the faults dropped.
    pub fn push(&mut self, now: Instant, bytes: &[u8]) -> usize {
        if bytes.is_empty() || self.closed || self.close_pending || self.finished {
            return 0;
        }
        if self.faults.cut == Some(self.direction) {
            self.dropped += bytes.len() as u64;
            return bytes.len();
        }
        let ready = self.ready_at(now);
        self.in_flight += bytes.len();
        self.queue.push_back((ready, Chunk::Bytes(bytes.to_vec())));
        0
    }

    /// The sender ended its side at `now` (it sent a FIN).
    pub fn finish(&mut self, now: Instant) {
        if self.finished || self.closed || self.close_pending {
            return;
        }
        self.finished = true;
        let ready = self.ready_at(now);
        self.queue.push_back((ready, Chunk::Fin));
    }

    fn ready_at(&mut self, now: Instant) -> Instant {
        let jitter = self.faults.jitter.as_nanos() as u64;
        let extra = if jitter == 0 { 0 } else { self.random() % (jitter + 1) };
        let ready = now + self.faults.latency + Duration::from_nanos(extra);
        // A stream keeps its order, whatever the jitter drew.
        self.queue.back().map_or(ready, |(last, _)| ready.max(*last))
    }

    /// Whether the path is blocked for what is at the front.
    fn held(&self) -> bool {
        self.faults.stall
            || (self.faults.cut == Some(self.direction) && matches!(self.queue.front(), Some((_, Chunk::Fin))))
    }

    /// The next delivery due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<Delivery> {
        self.last_poll = Some(now);
        if self.closed {
            return None;
        }
        if self.close_pending {
            self.closed = true;
            return Some(Delivery::Close);
        }
        if self.held() {
            return None;
        }
        let due = self.poll_timeout()?;
        if due > now {
            return None;
        }
        let (ready, chunk) = self.queue.pop_front()?;
        let mut chunk = match chunk {
            Chunk::Fin => return Some(Delivery::Fin),
            Chunk::Bytes(bytes) => bytes,
        };
        self.in_flight -= chunk.len();
        if self.faults.bandwidth.is_some() && chunk.len() > SEGMENT {
            let rest = chunk.split_off(SEGMENT);
            self.in_flight += rest.len();
            self.queue.push_front((ready, Chunk::Bytes(rest)));
        }
        if let Some(limit) = self.faults.close_after {
            let room = limit.saturating_sub(self.delivered);
            if chunk.len() as u64 >= room {
                chunk.truncate(room as usize);
                self.queue.clear();
                self.in_flight = 0;
                self.close_pending = true;
            }
        }
        if let Some(rate) = self.faults.bandwidth {
            let took = Duration::from_secs_f64(chunk.len() as f64 / rate.max(1) as f64);
            self.next_free = Some(due.max(now) + took);
        }
        self.delivered += chunk.len() as u64;
        if chunk.is_empty() {
            return self.poll(now);
        }
        Some(Delivery::Bytes(chunk))
    }

    /// When the next delivery can happen; `None` while held or empty.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        if self.close_pending {
            // Due at once: the bytes before it were handed out in the last poll.
            return self.last_poll;
        }
        if self.held() {
            return None;
        }
        let (ready, chunk) = self.queue.front()?;
        Some(match chunk {
            // A FIN has no size: the bandwidth limit does not hold it.
            Chunk::Fin => *ready,
            Chunk::Bytes(_) => self.next_free.map_or(*ready, |free| free.max(*ready)),
        })
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: the network's own randomness, separate from the client's.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Polls at every deadline until nothing is left; returns (time since t0, delivery).
    fn drain(pipe: &mut Pipe, t0: Instant) -> Vec<(Duration, Delivery)> {
        let mut out = Vec::new();
        while let Some(at) = pipe.poll_timeout() {
            while let Some(d) = pipe.poll(at) {
                out.push((at - t0, d));
            }
        }
        out
    }

    #[test]
    fn latency_delays_and_order_is_kept_under_jitter() {
        let t = t0();
        let mut p = Pipe::new(Direction::ToClient, Faults::latency(ms(50)).with_jitter(ms(30)), 7);
        for i in 0..50u8 {
            p.push(t + ms(u64::from(i)), &[i]);
        }
        let got = drain(&mut p, t);
        let bytes: Vec<u8> = got
            .iter()
            .flat_map(|(_, d)| match d {
                Delivery::Bytes(b) => b.clone(),
                Delivery::Fin | Delivery::Close => vec![],
            })
            .collect();
        assert_eq!(bytes, (0..50).collect::<Vec<u8>>());
        for (i, (at, _)) in got.iter().enumerate() {
            assert!(*at >= ms(50 + i as u64), "{i}: {at:?}");
        }
        assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(got.iter().any(|(at, _)| *at > ms(50) + ms(49)), "jitter shows");
    }

    #[test]
    fn bandwidth_spreads_a_large_write_over_time() {
        let t = t0();
        let mut p = Pipe::new(Direction::ToServer, Faults::none().with_bandwidth(10_000), 1);
        p.push(t, &[0; 5_000]);
        let got = drain(&mut p, t);
        let total: usize = got.iter().map(|(_, d)| if let Delivery::Bytes(b) = d { b.len() } else { 0 }).sum();
        assert_eq!(total, 5_000);
        assert!(got.len() >= 4, "split into segments");
        // 5000 bytes at 10 kB/s: the last segment starts after ~3540 bytes' time.
        let last = got.last().unwrap().0;
        assert!(last >= ms(340) && last <= ms(500), "{last:?}");
    }

    #[test]
    fn stall_holds_bytes_until_it_ends() {
        let t = t0();
        let mut p = Pipe::new(Direction::ToClient, Faults::none().with_stall(true), 1);
        p.push(t, b"held");
        assert_eq!(p.poll(t + ms(1000)), None);
        assert_eq!(p.poll_timeout(), None);
        p.set_faults(Faults::none());
        assert_eq!(p.poll(t + ms(1001)), Some(Delivery::Bytes(b"held".to_vec())));
    }

    #[test]
    fn cut_drops_one_direction_only() {
        let t = t0();
        let faults = Faults::none().with_cut(Direction::ToServer);
        let mut up = Pipe::new(Direction::ToServer, faults, 1);
        let mut down = Pipe::new(Direction::ToClient, faults, 1);
        up.push(t, b"lost");
        down.push(t, b"kept");
        assert_eq!(up.poll(t), None);
        assert_eq!(up.dropped(), 4);
        assert_eq!(down.poll(t), Some(Delivery::Bytes(b"kept".to_vec())));
    }

    #[test]
    fn a_fin_follows_the_bytes_and_is_held_by_a_stall_or_a_cut() {
        let t = t0();
        let mut p = Pipe::new(Direction::ToClient, Faults::latency(ms(10)), 1);
        p.push(t, b"last");
        p.finish(t);
        assert_eq!(p.push(t, b"after the end"), 0);
        assert_eq!(
            drain(&mut p, t).into_iter().map(|(_, d)| d).collect::<Vec<_>>(),
            [Delivery::Bytes(b"last".to_vec()), Delivery::Fin,]
        );
        for held in [Faults::none().with_stall(true), Faults::none().with_cut(Direction::ToClient)] {
            let mut p = Pipe::new(Direction::ToClient, held, 1);
            p.finish(t);
            assert_eq!(p.poll(t + ms(500)), None, "{held:?}");
            assert_eq!(p.poll_timeout(), None);
            p.set_faults(Faults::none());
            assert_eq!(p.poll(t + ms(501)), Some(Delivery::Fin));
        }
    }

    #[test]
    fn close_after_cuts_the_chunk_at_the_limit_then_closes() {
        let t = t0();
        let mut p = Pipe::new(Direction::ToClient, Faults::none().with_close_after(6), 1);
        p.push(t, b"abcd");
        p.push(t, b"efgh");
        p.push(t, b"never");
        assert_eq!(
            drain(&mut p, t).into_iter().map(|(_, d)| d).collect::<Vec<_>>(),
            [Delivery::Bytes(b"abcd".to_vec()), Delivery::Bytes(b"ef".to_vec()), Delivery::Close,]
        );
        assert!(p.is_closed());
        p.push(t, b"after");
        assert_eq!(p.poll(t), None);
    }
}
