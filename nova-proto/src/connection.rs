//! One RFC 6455 connection after the upgrade, client side: decodes server frames,
//! reassembles messages, answers pings, and writes masked frames.
//!
//! It knows nothing of reconnects or timers; the [`Client`](crate::Client) owns it
//! for as long as the transport lives and asks it for frames in and bytes out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use bytes::{Buf as _, Bytes, BytesMut};

use crate::assemble::Utf8Validator;
use crate::deflate::Codec;
use crate::error::ProtocolError;
use crate::frame::{Header, Opcode, extend_masked};
use crate::history::Stats;
use crate::io::UnsentReason;
use crate::message::{CloseCode, CloseFrame, Message, Text};
use crate::outbound::{Pending, Queue};
use crate::rng::Rng;

/// Pongs owed at once. RFC 6455 §5.5.3 allows answering only the most recent
/// ping, so when more pile up (the driver is not writing) the oldest is dropped.
const MAX_PENDING_PONGS: usize = 16;
/// Pings of our own waiting to be written.
const MAX_PENDING_PINGS: usize = 8;
/// Smallest growth step of the receive buffer, so a stream of small reads
/// that completes a frame bit by bit does not reallocate on every call.
///
/// Once every byte in it is decoded the buffer is let go (its block lives on
/// in the messages sliced out of it, and is freed with them), so an idle
/// connection keeps no receive buffer: measured in nova-bench, 12.9 → 9.0 KiB
/// of resident memory per nova-tokio connection after one echo. The price is
/// one allocation for the next read that follows an emptied buffer, about
/// 400 instructions (callgrind, 1 × 16 B ping-pong, where that is every read).
const RX_MIN_RESERVE: usize = 4096;
/// Data frames at least this long that are still arriving when decoded get a
/// payload buffer of their own ([`Arriving`]) instead of growing `rx`. Below
/// it, frames stay in `rx` and are handed out as slices of it: many small
/// messages share one block, which a buffer per message would cost an
/// allocation each.
const OWN_BUFFER_MIN: usize = 4096;
/// Most payload memory reserved for a frame on the strength of its header
/// alone. Ten header bytes can announce up to `max_frame_size` (16 MiB by
/// default) and then send nothing, so the announced length is never reserved
/// in full: up to this much is reserved at once (every frame up to 256 KiB
/// gets exactly one allocation of its size, no regrowth), and beyond it the
/// buffer grows with what actually arrives, doubling, never past the
/// announced length. 256 KiB is also the most a driver reads at once on the
/// word of [`Connection::read_hint`].
const PAYLOAD_RESERVE_MAX: usize = 256 * 1024;

/// What one complete frame meant to the client.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A complete message.
    Message(Message),
    /// A pong.
    Pong(Bytes),
    /// A close frame (`None`: it carried no status code). Nothing after it is read.
    Close(Option<CloseFrame>),
}

/// RSV1: set on the first frame of a compressed message (RFC 7692 §6).
const RSV1: u8 = 0b100;

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Fragmented {
    text: bool,
    /// Its frames are compressed: `buf` holds what was inflated so far.
    compressed: bool,
    buf: Vec<u8>,
}

/// A message being written frame by frame.
#[derive(Debug)]
struct Sending {
    pending: Pending,
    offset: usize,
    /// The message compressed, when it goes out compressed: the frames carry
    /// these bytes instead of the message's.
    compressed: Option<Bytes>,
}

/// How the close frame is to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseOut {
    /// Not asked for.
    None,
    /// After every message queued before it (an application `close`).
    AfterData,
    /// Before anything else (an echo, or failing the connection).
    Now,
    /// Written; nothing more may be sent.
    Sent,
}

/// A large data frame whose header was decoded and whose payload is still
/// arriving. Its bytes go straight from [`Connection::receive`] into `payload`,
/// which becomes the message's `Bytes` as it is: one allocation of the
/// frame's size, no copy afterwards, and `rx` is not grown for it, so `rx`
/// stays small and, not being shared with a large message, is reused as is.
///
/// Why not slice large frames out of `rx` as small ones are: the message
/// keeps the whole block alive (the driver decodes ahead into its event
/// queue), so every large frame made `rx` allocate a new block, growing by
/// doubling (copying) to twice the frame size, and the freed blocks made
/// glibc trim and regrow its heap: measured in nova-bench at 64 KiB (RESULTS.md).
#[derive(Debug)]
struct Arriving {
    header: Header,
    /// The announced payload length, checked against the limits.
    len: usize,
    /// The frame's bytes from the front, `filled` of them arrived. May be
    /// longer than `filled`: bytes past it are initialized but meaningless
    /// (zeroes, or a recycled buffer's old bytes), which is what lets a
    /// driver read into it ([`Connection::read_in_place`]). Never read past
    /// `filled`; cut to `len` when the frame is complete.
    payload: Vec<u8>,
    /// What has arrived of it; never more than `len`.
    filled: usize,
}

impl Arriving {
    /// Starts a frame with the payload bytes already received.
    fn new(header: Header, len: usize, received: &[u8], recycler: &Arc<Recycler>) -> Arriving {
        let want = len.min(PAYLOAD_RESERVE_MAX).max(received.len());
        let payload = recycler.take(want).unwrap_or_else(|| Vec::with_capacity(want));
        let mut arriving = Arriving { header, len, payload, filled: 0 };
        arriving.put(received);
        arriving
    }

    /// Takes what belongs to this frame from the front of `bytes`; returns the rest.
    fn fill<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let (mine, rest) = bytes.split_at(bytes.len().min(self.len - self.filled));
        self.make_room(self.filled + mine.len());
        self.put(mine);
        rest
    }

    /// Copies `bytes` (which fit the reservation) after what arrived.
    fn put(&mut self, bytes: &[u8]) {
        let end = self.filled + bytes.len();
        if end <= self.payload.len() {
            self.payload[self.filled..end].copy_from_slice(bytes);
        } else {
            self.payload.truncate(self.filled);
            self.payload.extend_from_slice(bytes);
        }
        self.filled = end;
    }

    /// Reserves room for `want` bytes in all. Beyond the first reservation:
    /// double, but never past the frame's end, so growth follows the bytes
    /// that arrived.
    fn make_room(&mut self, want: usize) {
        if want > self.payload.capacity() {
            let target = want.max(self.payload.capacity() * 2).min(self.len);
            self.payload.truncate(self.filled);
            self.payload.reserve_exact(target - self.filled);
        }
    }

    /// The reserved room after what arrived, at most `max` bytes of it,
    /// initialized (zeroed the first time) so it can be read into. When the
    /// reservation is full, grows as [`fill`](Self::fill) would for one more
    /// byte: never past twice what arrived, nor past the frame.
    fn unfilled(&mut self, max: usize) -> &mut [u8] {
        self.make_room(self.filled + 1);
        let end = self.payload.capacity().min(self.len).min(self.filled.saturating_add(max));
        if self.payload.len() < end {
            self.payload.resize(end, 0);
        }
        &mut self.payload[self.filled..end]
    }

    fn arrived(&self) -> &[u8] {
        &self.payload[..self.filled]
    }

    fn is_complete(&self) -> bool {
        self.filled == self.len
    }
}

/// Most bytes of emptied payload buffers a connection keeps for reuse
/// ([`Recycler`]): the drivers' default event queue bound
/// (`DEFAULT_EVENT_BYTES`, 4 MiB), so a session decoding a full queue ahead
/// of its application finds every buffer it needs already mapped. Measured
/// in nova-bench, nova-tokio, against 1 MiB: 1 × 64 KiB pipelined 17–31 k →
/// 1.5 k page faults in 0.4 s and 52–62 → 42–45 µs of CPU a message;
/// 64 × 64 KiB pipelined 42 → 46 µs (64 pools hold more than one would).
/// Kept memory was live a moment before (the queue's bound allows it), and
/// goes at the next small frame.
const RECYCLE_MAX: usize = 4 << 20;

/// The payload buffers of large frames ([`Arriving`]) whose messages the
/// application has dropped, kept for the large frames that follow, up to
/// [`RECYCLE_MAX`] bytes.
///
/// Why: a driver decodes ahead of the application (into its event queue),
/// so many large messages are alive at once and are then dropped together.
/// Freed to the allocator, their blocks made glibc trim its heap and grow it
/// again for the next ones: measured in nova-bench 64 × 64 KiB pipelined,
/// up to 800 `brk` calls and 100,000 page faults a second, about a fifth of
/// the client's CPU in page faults and zeroing. Reused, the next frame goes
/// into memory that is already mapped (and warm).
///
/// Kept only while large frames keep coming: when every received byte is
/// decoded and no large frame started since the last such moment (small
/// frames only, a pong, ...), the buffers are freed
/// ([`Connection::next`]), so an idle connection keeps none after the
/// next small frame (with the default keepalive, a pong within 15 s); all
/// of them go with the connection.
#[derive(Debug, Default)]
struct Recycler {
    /// The buffers (cleared) and the sum of their capacities.
    free: Mutex<(Vec<Vec<u8>>, usize)>,
}

impl Recycler {
    fn lock(&self) -> MutexGuard<'_, (Vec<Vec<u8>>, usize)> {
        // Nothing panics while holding it; the list is valid whatever happened.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A buffer of at least `want` bytes of capacity and at most twice that,
    /// still holding its last frame's bytes.
    fn take(&self, want: usize) -> Option<Vec<u8>> {
        let mut free = self.lock();
        let i = free.0.iter().rposition(|b| b.capacity() >= want && b.capacity() / 2 <= want)?;
        let buf = free.0.swap_remove(i);
        free.1 -= buf.capacity();
        Some(buf)
    }

    /// Keeps `buf` for reuse if it fits under [`RECYCLE_MAX`]; frees it
    /// otherwise. Its bytes are kept (not cleared): initialized memory that
    /// the next frame can be read into without zeroing it first.
    fn put(&self, buf: Vec<u8>) {
        let mut free = self.lock();
        if free.1 + buf.capacity() <= RECYCLE_MAX {
            free.1 += buf.capacity();
            free.0.push(buf);
        }
    }

    /// Frees every buffer kept.
    fn clear(&self) {
        let kept = std::mem::take(&mut *self.lock());
        drop(kept);
    }
}

/// A large frame's payload as the message's bytes: when the last `Bytes`
/// of it is dropped, the buffer goes back to its connection's [`Recycler`],
/// if the connection still exists.
struct Recycled {
    buf: Vec<u8>,
    home: Weak<Recycler>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.put(std::mem::take(&mut self.buf));
        }
    }
}

#[derive(Debug)]
pub(crate) struct Connection {
    rx: BytesMut,
    /// The large frame at the head of the stream, while it arrives. While it
    /// is incomplete, `rx` is empty: every byte received belongs to it first.
    arriving: Option<Arriving>,
    fragmented: Option<Fragmented>,
    utf8: Utf8Validator,
    /// Payload bytes of the incomplete frame at the head of `rx` already fed to
    /// `utf8` (fail-fast validation of text that is still arriving).
    checked: usize,
    /// A close frame was received; nothing after it is processed.
    close_received: bool,
    max_frame_size: usize,
    max_message_size: usize,

    pongs: VecDeque<Bytes>,
    pings: VecDeque<Bytes>,
    close_payload: Bytes,
    close_out: CloseOut,
    sending: Option<Sending>,
    max_outgoing_frame_size: usize,
    /// permessage-deflate, when negotiated. Owned by this connection and
    /// dropped with it: no window outlives a transport. Boxed: a connection
    /// without it (most) should not carry its 300 bytes.
    deflate: Option<Box<Codec>>,
    /// Payload buffers of large frames whose messages were dropped, for the
    /// next large frames ([`Recycler`]); made with the first large frame.
    recycler: Option<Arc<Recycler>>,
    /// A large frame started since every received byte was last decoded:
    /// the recycled buffers are still in use.
    large_since_idle: bool,
    /// A large frame was handed out since the recycled buffers were last
    /// freed: some may be kept, or come back when their messages go.
    recycling: bool,
}

impl Connection {
    pub(crate) fn new(
        max_frame_size: usize,
        max_message_size: usize,
        max_outgoing_frame_size: Option<usize>,
    ) -> Connection {
        Connection {
            rx: BytesMut::new(),
            arriving: None,
            fragmented: None,
            utf8: Utf8Validator::default(),
            checked: 0,
            close_received: false,
            max_frame_size,
            max_message_size,
            pongs: VecDeque::new(),
            pings: VecDeque::new(),
            close_payload: Bytes::new(),
            close_out: CloseOut::None,
            sending: None,
            max_outgoing_frame_size: max_outgoing_frame_size.unwrap_or(usize::MAX),
            deflate: None,
            recycler: None,
            large_since_idle: false,
            recycling: false,
        }
    }

    /// Turns on permessage-deflate with the codec of the agreed parameters.
    pub(crate) fn with_deflate(mut self, codec: Option<Codec>) -> Connection {
        self.deflate = codec.map(Box::new);
        self
    }

    /// Appends received bytes. The buffer holds at most one incomplete frame
    /// (bounded by `max_frame_size`) plus the chunk being read.
    pub(crate) fn receive(&mut self, mut bytes: &[u8]) {
        if self.close_received {
            return;
        }
        if let Some(arriving) = &mut self.arriving
            && !arriving.is_complete()
        {
            bytes = arriving.fill(bytes);
        }
        if bytes.is_empty() {
            return;
        }
        if self.rx.is_empty() && self.arriving.is_none() {
            bytes = self.start_arriving(bytes);
            if bytes.is_empty() {
                return;
            }
        }
        if self.rx.capacity() - self.rx.len() < bytes.len() {
            self.rx.reserve(bytes.len().max(RX_MIN_RESERVE));
        }
        self.rx.extend_from_slice(bytes);
    }

    /// Where the next read may go to skip a copy: the room left in the
    /// payload buffer of the large frame arriving (at most `max` bytes, never
    /// past the frame's end, so a read into it takes nothing of what
    /// follows). `None` when no such frame is arriving: read elsewhere and
    /// hand the bytes to [`receive`](Self::receive).
    ///
    /// Why: read into a buffer of the driver's, a large frame's bytes were
    /// copied once more, into this buffer, which was about a tenth of the
    /// client's CPU in nova-bench at 64 KiB (the kernel's copy is the other
    /// one every client pays).
    pub(crate) fn read_in_place(&mut self, max: usize) -> Option<&mut [u8]> {
        match &mut self.arriving {
            Some(arriving) if !self.close_received && !arriving.is_complete() && max > 0 => {
                Some(arriving.unfilled(max))
            }
            _ => None,
        }
    }

    /// `n` bytes were read into what [`read_in_place`](Self::read_in_place)
    /// returned. Returns how many of them were taken: all, unless `n` is
    /// more than that room (a driver's mistake; the rest were never written
    /// there and are ignored).
    pub(crate) fn received_in_place(&mut self, n: usize) -> usize {
        match &mut self.arriving {
            Some(arriving) if !self.close_received => {
                let n = n.min(arriving.len.min(arriving.payload.len()) - arriving.filled);
                arriving.filled += n;
                n
            }
            _ => 0,
        }
    }

    /// With nothing buffered, `bytes` start a frame: a large data frame goes
    /// straight into a buffer of its own ([`Arriving`]), whole or not, and
    /// only what follows it reaches `rx`. Returns the bytes not taken.
    ///
    /// Without this, a read that holds a whole large frame (a driver reading
    /// as much as the frame needs, `read_hint`, when the server wrote it in
    /// one piece) put it in `rx` and handed it out as a slice, so every such
    /// frame made `rx` allocate a new block: measured in nova-bench
    /// 1 × 64 KiB pipelined with hinted reads, `brk` 51 → 2,326 a second.
    /// A header that breaks a rule is left to [`next`](Self::next) to report.
    fn start_arriving<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let Ok(Some((header, header_len))) = Header::decode(bytes) else {
            return bytes;
        };
        if header.payload_len < OWN_BUFFER_MIN as u64 || header.opcode.is_control() || self.check(&header).is_err() {
            return bytes;
        }
        // `check` bounded the length by `max_frame_size` (a `usize`).
        let len = header.payload_len as usize;
        let end = bytes.len().min(header_len.saturating_add(len));
        let recycler = self.recycler.get_or_insert_with(Arc::default);
        self.arriving = Some(Arriving::new(header, len, &bytes[header_len..end], recycler));
        self.large_since_idle = true;
        &bytes[end..]
    }

    /// Bytes received and not decoded yet.
    pub(crate) fn buffered(&self) -> usize {
        self.rx.len() + self.arriving.as_ref().map_or(0, |a| a.filled)
    }

    /// Bytes the frame at the head of the stream still needs to be complete:
    /// how much a driver may usefully read next. 0 when no frame is started,
    /// its header is incomplete, or it breaks a rule (the length of a frame
    /// that fails [`check`](Self::check) is never trusted). A frame that
    /// passes is bounded by `max_frame_size` (and, uncompressed, by what is
    /// left of `max_message_size`), so a hostile header announcing 2^63 bytes
    /// gives no hint at all. A hint, not a reservation: the driver still
    /// bounds its read, and nothing here allocates.
    pub(crate) fn read_hint(&self) -> usize {
        if self.close_received {
            return 0;
        }
        if let Some(arriving) = &self.arriving {
            return arriving.len - arriving.filled;
        }
        if self.rx.is_empty() {
            return 0;
        }
        match Header::decode(&self.rx) {
            Ok(Some((header, header_len))) if self.check(&header).is_ok() => {
                // `check` bounded the length by `max_frame_size` (a `usize`) or 125.
                header_len.saturating_add(header.payload_len as usize).saturating_sub(self.rx.len())
            }
            _ => 0,
        }
    }

    /// Decodes the next frame that means something to the client. Pings are
    /// answered here and not reported.
    ///
    /// # Errors
    ///
    /// The first RFC 6455 violation. The caller must fail the connection; the
    /// decoder is not to be used afterwards.
    pub(crate) fn next(&mut self) -> Result<Option<Inbound>, ProtocolError> {
        loop {
            if self.close_received {
                return Ok(None);
            }
            let (header, payload) = if self.arriving.is_some() {
                match self.take_arrived()? {
                    Some(frame) => frame,
                    None => return Ok(None),
                }
            } else {
                // The hot path, kept as short as it was before large frames
                // got their own buffer: measured with `decode_bench` at 16 B.
                let Some((header, header_len)) = Header::decode(&self.rx).map_err(|_| ProtocolError::InvalidLength)?
                else {
                    return Ok(None);
                };
                self.check(&header)?;
                // `check` bounded the length by `max_frame_size` (a `usize`) or 125.
                let len = header.payload_len as usize;
                if self.rx.len() - header_len < len {
                    self.incomplete(header, header_len, len)?;
                    return Ok(None);
                }
                self.rx.advance(header_len);
                (header, self.rx.split_to(len).freeze())
            };
            if self.rx.is_empty() {
                // Every byte received was decoded: let the block go with the
                // messages sliced out of it, so an idle connection keeps no
                // receive buffer (see `RX_MIN_RESERVE`), and the recycled
                // payload buffers too once large frames stopped coming.
                self.rx = BytesMut::new();
                if !std::mem::take(&mut self.large_since_idle)
                    && self.recycling
                    && let Some(recycler) = &self.recycler
                {
                    recycler.clear();
                    // Messages still alive bring their buffers back later:
                    // those go at the next such moment.
                    self.recycling = Arc::weak_count(recycler) > 0;
                }
            }
            let checked = std::mem::take(&mut self.checked);
            match header.opcode {
                Opcode::Ping => self.queue_pong(payload),
                Opcode::Pong => return Ok(Some(Inbound::Pong(payload))),
                Opcode::Close => {
                    // A malformed close frame is a protocol error like any other,
                    // answered with our own close (1002/1007); only a valid one
                    // completes the close handshake.
                    let frame = parse_close(payload)?;
                    self.close_received = true;
                    self.rx = BytesMut::new();
                    return Ok(Some(Inbound::Close(frame)));
                }
                _ => {
                    if let Some(message) = self.data(header, payload, checked)? {
                        return Ok(Some(Inbound::Message(message)));
                    }
                }
            }
        }
    }

    /// The frame at the head of `rx` is incomplete: validates what arrived of
    /// its text, and moves a large data frame into a buffer of its own.
    #[cold]
    #[inline(never)]
    fn incomplete(&mut self, header: Header, header_len: usize, len: usize) -> Result<(), ProtocolError> {
        check_partial_text(
            self.is_compressed(&header),
            self.fragmented.as_ref().is_some_and(|f| f.text),
            &mut self.utf8,
            &mut self.checked,
            &header,
            &self.rx[header_len..],
        )?;
        if len >= OWN_BUFFER_MIN && !header.opcode.is_control() {
            // Every byte after the header belongs to this frame: move them to
            // its own buffer, and `rx`, empty, is reused for what follows.
            let recycler = self.recycler.get_or_insert_with(Arc::default);
            self.arriving = Some(Arriving::new(header, len, &self.rx[header_len..], recycler));
            self.large_since_idle = true;
            self.rx.clear();
        }
        Ok(())
    }

    /// The frame in its own buffer, once complete: its header (checked when
    /// it was decoded) and payload. While incomplete, validates what arrived
    /// of its text and returns `None`.
    #[cold]
    #[inline(never)]
    fn take_arrived(&mut self) -> Result<Option<(Header, Bytes)>, ProtocolError> {
        let Some(mut arriving) = self.arriving.take() else {
            return Ok(None);
        };
        if !arriving.is_complete() {
            let result = self.check_partial_text(&arriving.header, arriving.arrived());
            self.arriving = Some(arriving);
            return result.map(|()| None);
        }
        // The buffer becomes the message's bytes as it is (no copy), and
        // comes back to the recycler when the message is dropped.
        self.recycling = true;
        let home = Arc::downgrade(self.recycler.get_or_insert_with(Arc::default));
        arriving.payload.truncate(arriving.len);
        let payload = Bytes::from_owner(Recycled { buf: arriving.payload, home });
        Ok(Some((arriving.header, payload)))
    }

    /// The rules a server frame must follow, judged from its header alone so a
    /// violation fails before its payload arrives.
    fn check(&self, header: &Header) -> Result<(), ProtocolError> {
        // RSV1 means "compressed" once permessage-deflate is agreed; RSV2 and
        // RSV3 have no extension that could define them.
        let rsv1 = header.rsv & RSV1 != 0;
        if header.rsv & !RSV1 != 0 || (rsv1 && self.deflate.is_none()) {
            return Err(ProtocolError::ReservedBits(header.rsv));
        }
        if header.mask.is_some() {
            return Err(ProtocolError::MaskedFrame);
        }
        match header.opcode {
            Opcode::Reserved(bits) => return Err(ProtocolError::ReservedOpcode(bits)),
            Opcode::Close | Opcode::Ping | Opcode::Pong if rsv1 => {
                return Err(ProtocolError::MisplacedRsv1(header.opcode.bits()));
            }
            Opcode::Continuation if rsv1 => return Err(ProtocolError::MisplacedRsv1(0)),
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                if !header.fin {
                    return Err(ProtocolError::FragmentedControl);
                }
                if header.payload_len > 125 {
                    return Err(ProtocolError::ControlTooLong(header.payload_len));
                }
                return Ok(());
            }
            Opcode::Continuation if self.fragmented.is_none() => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            Opcode::Text | Opcode::Binary if self.fragmented.is_some() => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            _ => {}
        }
        if header.payload_len > self.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge { len: header.payload_len, max: self.max_frame_size });
        }
        if self.is_compressed(header) {
            // What a compressed frame inflates to is unknown until it is
            // inflated; the limit is enforced then, while inflating.
            return Ok(());
        }
        let so_far = self.fragmented.as_ref().map_or(0, |f| f.buf.len() as u64);
        if so_far + header.payload_len > self.max_message_size as u64 {
            return Err(ProtocolError::MessageTooLarge {
                len: so_far + header.payload_len,
                max: self.max_message_size,
            });
        }
        Ok(())
    }

    /// Whether the data frame `header` belongs to a compressed message.
    fn is_compressed(&self, header: &Header) -> bool {
        match header.opcode {
            Opcode::Text | Opcode::Binary => header.rsv & RSV1 != 0,
            Opcode::Continuation => self.fragmented.as_ref().is_some_and(|f| f.compressed),
            _ => false,
        }
    }

    /// Validates what has arrived of an incomplete text frame, so invalid UTF-8
    /// fails at once rather than after the rest of a large frame. Compressed
    /// frames are validated as they are inflated.
    ///
    /// `payload` is what arrived of the frame's payload so far; the first
    /// `checked` bytes of it were validated by earlier calls.
    fn check_partial_text(&mut self, header: &Header, payload: &[u8]) -> Result<(), ProtocolError> {
        check_partial_text(
            self.is_compressed(header),
            self.fragmented.as_ref().is_some_and(|f| f.text),
            &mut self.utf8,
            &mut self.checked,
            header,
            payload,
        )
    }

    /// A complete data frame; returns a message when it completes one.
    fn data(&mut self, header: Header, payload: Bytes, checked: usize) -> Result<Option<Message>, ProtocolError> {
        if self.is_compressed(&header) {
            return self.compressed_data(header, &payload);
        }
        let invalid = |_| ProtocolError::InvalidUtf8;
        match header.opcode {
            Opcode::Text if header.fin && checked == 0 => {
                // The common case: a whole text message in one frame. Most text
                // (JSON) is ASCII, and the word-at-a-time ASCII scan skips
                // `from_utf8`'s fixed setup cost, measured at 14% of the decode
                // time of 16-byte messages.
                if !payload.is_ascii() {
                    std::str::from_utf8(&payload).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                Ok(Some(Message::Text(Text::from_checked(payload))))
            }
            Opcode::Text => {
                if checked == 0 {
                    self.utf8.reset();
                }
                self.utf8.feed(&payload[checked..]).map_err(invalid)?;
                if header.fin {
                    if !self.utf8.is_complete() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    return Ok(Some(Message::Text(Text::from_checked(payload))));
                }
                self.fragmented = Some(Fragmented { text: true, compressed: false, buf: payload.to_vec() });
                Ok(None)
            }
            Opcode::Binary if header.fin => Ok(Some(Message::Binary(payload))),
            Opcode::Binary => {
                self.fragmented = Some(Fragmented { text: false, compressed: false, buf: payload.to_vec() });
                Ok(None)
            }
            _ => {
                // Continuation; `check` made sure a message is being reassembled.
                let Some(fragmented) = self.fragmented.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                if fragmented.text {
                    self.utf8.feed(&payload[checked..]).map_err(invalid)?;
                }
                fragmented.buf.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                let Fragmented { text, buf, .. } =
                    self.fragmented.take().unwrap_or(Fragmented { text: false, compressed: false, buf: Vec::new() });
                if !text {
                    return Ok(Some(Message::Binary(Bytes::from(buf))));
                }
                if !self.utf8.is_complete() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                Ok(Some(Message::Text(Text::from_checked(Bytes::from(buf)))))
            }
        }
    }

    /// A complete frame of a compressed message: inflated into the message
    /// buffer at once, within `max_message_size`, and text validated as it
    /// comes out of the inflater.
    fn compressed_data(&mut self, header: Header, payload: &[u8]) -> Result<Option<Message>, ProtocolError> {
        let (text, mut buf) = match (header.opcode, self.fragmented.take()) {
            (Opcode::Continuation, Some(f)) => (f.text, f.buf),
            (opcode, _) => (opcode == Opcode::Text, Vec::new()),
        };
        let first = header.opcode != Opcode::Continuation;
        // `check` let RSV1 through only with a codec.
        let Some(codec) = self.deflate.as_mut() else {
            return Err(ProtocolError::ReservedBits(header.rsv));
        };
        let start = buf.len();
        codec.inflate(payload, header.fin, &mut buf, self.max_message_size)?;
        if text && !(first && header.fin) {
            if first {
                self.utf8.reset();
            }
            self.utf8.feed(&buf[start..]).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !header.fin {
            self.fragmented = Some(Fragmented { text, compressed: true, buf });
            return Ok(None);
        }
        let bytes = Bytes::from(buf);
        if !text {
            return Ok(Some(Message::Binary(bytes)));
        }
        if first {
            // One frame: validate the whole text at once (ASCII fast path).
            if !bytes.is_ascii() {
                std::str::from_utf8(&bytes).map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        } else if !self.utf8.is_complete() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(Some(Message::Text(Text::from_checked(bytes))))
    }

    fn queue_pong(&mut self, payload: Bytes) {
        if self.close_out == CloseOut::Sent {
            return;
        }
        if self.pongs.len() == MAX_PENDING_PONGS {
            self.pongs.pop_front();
        }
        self.pongs.push_back(payload);
    }

    /// Queues a ping (payload ≤ 125 bytes, checked by the caller).
    pub(crate) fn queue_ping(&mut self, payload: Bytes) {
        if self.close_out == CloseOut::Sent {
            return;
        }
        if self.pings.len() == MAX_PENDING_PINGS {
            self.pings.pop_front();
        }
        self.pings.push_back(payload);
    }

    /// Queues the close frame. `after_data`: only once every queued message is
    /// written (graceful close); otherwise next.
    pub(crate) fn queue_close(&mut self, frame: Option<&CloseFrame>, after_data: bool) {
        if self.close_out != CloseOut::None {
            return;
        }
        self.close_payload = match frame {
            None => Bytes::new(),
            Some(f) => {
                let mut p = Vec::with_capacity(2 + f.reason.len());
                p.extend_from_slice(&f.code.0.to_be_bytes());
                p.extend_from_slice(f.reason.as_bytes());
                p.into()
            }
        };
        self.close_out = if after_data { CloseOut::AfterData } else { CloseOut::Now };
    }

    /// Whether a whole frame is waiting to be decoded: the application has
    /// not taken what the server sent (decoding follows its reads), so the
    /// server's answers may be among it. A part of a frame does not count:
    /// a server that died mid-frame must still be found dead.
    pub(crate) fn holds_whole_frame(&self) -> bool {
        if let Some(arriving) = &self.arriving {
            return arriving.is_complete();
        }
        match Header::decode(&self.rx) {
            Ok(Some((header, header_len))) => {
                u64::try_from(self.rx.len() - header_len).is_ok_and(|have| have >= header.payload_len)
            }
            _ => false,
        }
    }

    /// Whether a close frame was received.
    pub(crate) fn close_received(&self) -> bool {
        self.close_received
    }

    /// Whether our close frame was written.
    pub(crate) fn close_sent(&self) -> bool {
        self.close_out == CloseOut::Sent
    }

    /// Fails the connection: `frame` replaces any close still waiting (a graceful
    /// one behind queued messages, say) and goes next, before any more data; a
    /// half-written message is left unfinished (a close may come between
    /// fragments).
    pub(crate) fn force_close(&mut self, frame: &CloseFrame) {
        if self.close_out == CloseOut::Sent {
            return;
        }
        self.close_out = CloseOut::None;
        self.queue_close(Some(frame), false);
    }

    /// A close waiting behind queued messages goes next instead.
    pub(crate) fn expedite_close(&mut self) {
        if self.close_out == CloseOut::AfterData {
            self.close_out = CloseOut::Now;
        }
    }

    /// The message cut off mid-way, if the connection ends while writing
    /// one and it is the application's (the behaviour layer redoes its own).
    pub(crate) fn take_partial(&mut self) -> Option<Message> {
        self.sending.take().filter(|s| !s.pending.internal).map(|s| s.pending.message)
    }

    /// Appends frames to `out` until `max` bytes were appended or nothing is
    /// left: pongs first, then pings, then the close frame when due, then data.
    /// Frames are never split across calls; a frame may overshoot `max`.
    pub(crate) fn poll_transmit(&mut self, t: &mut Transmit<'_>) {
        let start = t.out.len();
        while t.out.len() - start < t.max && self.close_out != CloseOut::Sent {
            if let Some(payload) = self.pongs.pop_front() {
                write_frame(t.out, Opcode::Pong, true, 0, &payload, t.rng);
            } else if let Some(payload) = self.pings.pop_front() {
                write_frame(t.out, Opcode::Ping, true, 0, &payload, t.rng);
            } else if self.close_out == CloseOut::Now
                || (self.close_out == CloseOut::AfterData && self.sending.is_none() && t.queue.len() == 0)
            {
                write_frame(t.out, Opcode::Close, true, 0, &self.close_payload, t.rng);
                self.close_out = CloseOut::Sent;
            } else if !self.write_data(t) {
                break;
            }
        }
    }

    /// Writes the next data frame; `false` when there is none.
    fn write_data(&mut self, t: &mut Transmit<'_>) -> bool {
        let mut sending = match self.sending.take() {
            Some(s) => s,
            None => match t.queue.pop(t.now, t.unsent) {
                Some(pending) => {
                    // Compressed here, when the message is about to go out, so
                    // the shared window follows the order on the wire.
                    let compressed = self.deflate.as_mut().and_then(|c| c.compress(pending.message.as_bytes()));
                    Sending { pending, offset: 0, compressed }
                }
                None => return false,
            },
        };
        let payload = sending.compressed.as_deref().unwrap_or(sending.pending.message.as_bytes());
        let total = payload.len();
        let chunk = (total - sending.offset).min(self.max_outgoing_frame_size);
        let opcode = match (sending.offset, &sending.pending.message) {
            (0, Message::Text(_)) => Opcode::Text,
            (0, Message::Binary(_)) => Opcode::Binary,
            _ => Opcode::Continuation,
        };
        let fin = sending.offset + chunk == total;
        let rsv = if sending.offset == 0 && sending.compressed.is_some() { RSV1 } else { 0 };
        write_frame(t.out, opcode, fin, rsv, &payload[sending.offset..sending.offset + chunk], t.rng);
        sending.offset += chunk;
        if fin {
            t.stats.messages_out += 1;
        } else {
            self.sending = Some(sending);
        }
        true
    }
}

/// What `poll_transmit` needs from the client, borrowed for one call.
pub(crate) struct Transmit<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) max: usize,
    pub(crate) now: Instant,
    pub(crate) queue: &'a mut Queue,
    pub(crate) rng: &'a mut Rng,
    pub(crate) stats: &'a mut Stats,
    pub(crate) unsent: &'a mut dyn FnMut(Message, UnsentReason),
}

/// Appends one masked frame: the header, then the payload masked while it is
/// copied (the one copy the protocol forces on a client).
pub(crate) fn write_frame(out: &mut Vec<u8>, opcode: Opcode, fin: bool, rsv: u8, payload: &[u8], rng: &mut Rng) {
    let mask = rng.mask();
    Header { fin, rsv, opcode, mask: Some(mask), payload_len: payload.len() as u64 }.encode(out);
    extend_masked(out, payload, mask);
}

/// [`Connection::check_partial_text`] on the fields it needs, so that the
/// payload may be borrowed from `rx` meanwhile.
fn check_partial_text(
    compressed: bool,
    fragmented_text: bool,
    utf8: &mut Utf8Validator,
    checked: &mut usize,
    header: &Header,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    let is_text = match header.opcode {
        Opcode::Text => true,
        Opcode::Continuation => fragmented_text,
        _ => false,
    };
    if compressed || !is_text || payload.len() <= *checked {
        return Ok(());
    }
    if header.opcode == Opcode::Text && *checked == 0 {
        utf8.reset();
    }
    utf8.feed(&payload[*checked..]).map_err(|_| ProtocolError::InvalidUtf8)?;
    *checked = payload.len();
    Ok(())
}

/// A close frame's payload: empty, or a valid code and a UTF-8 reason.
fn parse_close(payload: Bytes) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::CloseTooShort),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !CloseCode(code).is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = Text::from_utf8(payload.slice(2..)).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some(CloseFrame { code: CloseCode(code), reason }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Outbound, Overflow};
    use crate::deflate::{DeflateConfig, DeflateParams};
    use crate::frame::apply_mask;

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header { fin, rsv: 0, opcode: Opcode::from_bits(opcode), mask: None, payload_len: payload.len() as u64 }
            .encode(&mut out);
        out.extend_from_slice(payload);
        out
    }

    fn conn() -> Connection {
        Connection::new(1 << 20, 1 << 20, None)
    }

    /// Feeds `bytes` in `chunk`-sized pieces and collects everything decoded.
    fn decode(c: &mut Connection, bytes: &[u8], chunk: usize) -> Result<Vec<Inbound>, ProtocolError> {
        let mut got = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            c.receive(piece);
            while let Some(i) = c.next()? {
                got.push(i);
            }
        }
        Ok(got)
    }

    fn messages(got: &[Inbound]) -> Vec<Message> {
        got.iter()
            .filter_map(|i| match i {
                Inbound::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn error_for(bytes: &[u8]) -> ProtocolError {
        for chunk in [1, 3, bytes.len()] {
            let e = decode(&mut conn(), bytes, chunk).unwrap_err();
            assert_eq!(e, decode(&mut conn(), bytes, bytes.len()).unwrap_err(), "chunking changes the error");
            if chunk == bytes.len() {
                return e;
            }
        }
        unreachable!()
    }

    #[test]
    fn fragmented_text_with_ping_in_between_is_reassembled_at_every_chunking() {
        let mut stream = server_frame(false, 0x1, "κό".as_bytes());
        stream.extend(server_frame(true, 0x9, b"p1"));
        stream.extend(server_frame(false, 0x0, &"σμ".as_bytes()[..3]));
        stream.extend(server_frame(true, 0x0, &"σμε".as_bytes()[3..]));
        for chunk in 1..=stream.len() {
            let mut c = conn();
            let got = decode(&mut c, &stream, chunk).unwrap();
            assert_eq!(messages(&got), [Message::text("κόσμε")], "chunk {chunk}");
            assert_eq!(c.pongs.iter().collect::<Vec<_>>(), [&Bytes::from_static(b"p1")]);
        }
    }

    #[test]
    fn unfragmented_payloads_are_slices_of_the_receive_buffer() {
        let mut c = conn();
        c.receive(&[server_frame(true, 0x2, &[7; 300]), server_frame(true, 0x1, b"hi")].concat());
        let base = c.rx.as_ptr() as usize;
        let Some(Inbound::Message(Message::Binary(b))) = c.next().unwrap() else { panic!() };
        let Some(Inbound::Message(Message::Text(t))) = c.next().unwrap() else { panic!() };
        assert_eq!(b.as_ptr() as usize, base + 4);
        assert_eq!(t.as_bytes().as_ptr() as usize, base + 4 + 300 + 2);
        assert!(c.rx.is_empty());
    }

    #[test]
    fn no_receive_buffer_is_kept_once_everything_is_decoded() {
        let mut c = conn();
        c.receive(&server_frame(true, 0x2, &vec![1; 900 * 1024]));
        let Some(Inbound::Message(m)) = c.next().unwrap() else { panic!() };
        assert_eq!(m.len(), 900 * 1024);
        assert_eq!(c.rx.capacity(), 0);
        // Once everything received is decoded, no receive buffer is kept
        // (the messages keep their block alive as long as they live); a
        // frame still arriving keeps the buffer it is in.
        for _ in 0..10 {
            c.receive(&server_frame(true, 0x2, &[1; 1000]));
            while c.next().unwrap().is_some() {}
            assert_eq!(c.rx.capacity(), 0);
        }
        c.receive(&server_frame(true, 0x2, &[1; 1000])[..500]);
        assert!(c.next().unwrap().is_none());
        assert!(c.rx.capacity() >= 500);
    }

    #[test]
    fn a_large_frame_arriving_in_pieces_gets_one_buffer_of_its_size() {
        let payload: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let stream = [server_frame(true, 0x2, &payload), server_frame(true, 0x1, b"after")].concat();
        for chunk in [1000, 16 * 1024, stream.len() - 3] {
            let mut c = conn();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                c.receive(piece);
                while let Some(i) = c.next().unwrap() {
                    got.push(i);
                }
                // Once its header was decoded, `rx` no longer holds the large
                // frame: at most the start of what follows it.
                assert!(c.rx.len() <= 16, "chunk {chunk}: {}", c.rx.len());
                if let Some(a) = &c.arriving {
                    assert_eq!(a.payload.capacity(), payload.len(), "one exact reservation");
                    assert_eq!(c.buffered(), a.filled);
                }
            }
            assert_eq!(messages(&got), [Message::binary(payload.clone()), Message::text("after")], "chunk {chunk}");
            assert!(c.arriving.is_none());
        }
    }

    #[test]
    fn a_large_frame_read_whole_gets_its_own_buffer_and_rx_stays_small() {
        let payload = vec![9u8; 64 * 1024];
        let frame = server_frame(true, 0x2, &payload);
        let mut c = conn();
        for round in 0..3 {
            // A whole frame in one read, then a whole frame plus a small one.
            let read = if round == 1 { [frame.clone(), server_frame(true, 0x1, b"x")].concat() } else { frame.clone() };
            c.receive(&read);
            assert!(c.rx.len() <= 3, "{}", c.rx.len());
            assert_eq!(c.buffered(), read.len() - 10);
            assert_eq!(c.arriving.as_ref().map(|a| a.payload.capacity()), Some(payload.len()));
            let Some(Inbound::Message(Message::Binary(m))) = c.next().unwrap() else { panic!() };
            assert_eq!(m, payload);
            if round == 1 {
                assert_eq!(messages(&[c.next().unwrap().unwrap()]), [Message::text("x")]);
            }
            assert!(c.next().unwrap().is_none());
            assert!(c.rx.capacity() <= RX_MIN_RESERVE, "{}", c.rx.capacity());
        }
        // A header that breaks a rule is still reported by `next`.
        let mut c = conn();
        c.receive(&[0x82 | 0x40, 126, 0x10, 0]);
        assert!(c.arriving.is_none());
        assert_eq!(c.next().unwrap_err(), ProtocolError::ReservedBits(0x4));
    }

    #[test]
    fn a_dropped_large_message_lends_its_buffer_to_the_next_until_small_frames_come() {
        let payload = vec![7u8; 64 * 1024];
        let frame = server_frame(true, 0x2, &payload);
        let large = |c: &mut Connection| {
            c.receive(&frame);
            let Some(Inbound::Message(Message::Binary(m))) = c.next().unwrap() else { panic!() };
            assert_eq!(m, payload);
            m
        };
        let kept = |c: &Connection| c.recycler.as_ref().map_or(0, |r| r.lock().1);
        let mut c = conn();
        let first = large(&mut c);
        let block = first.as_ptr();
        // While a message is alive its buffer is its own.
        let second = large(&mut c);
        assert_ne!(second.as_ptr(), block);
        drop(first);
        assert_eq!(kept(&c), payload.len());
        // Dropped, it takes the next large frame.
        let third = large(&mut c);
        assert_eq!(third.as_ptr(), block);
        drop((second, third));
        assert_eq!(kept(&c), 2 * payload.len());
        // Every byte decoded, and a small frame only since the last time:
        // the kept buffers are freed.
        c.receive(&server_frame(true, 0x1, b"small"));
        assert_eq!(messages(&[c.next().unwrap().unwrap()]), [Message::text("small")]);
        assert_eq!(kept(&c), 0);

        // At most `RECYCLE_MAX` bytes are kept, however many messages go.
        let many: Vec<Bytes> = (0..2 * RECYCLE_MAX / payload.len()).map(|_| large(&mut c)).collect();
        drop(many);
        assert_eq!(kept(&c), RECYCLE_MAX);
        // A message that outlives its connection is simply freed.
        let last = large(&mut c);
        drop(c);
        assert_eq!(last, payload);
        drop(last);
    }

    #[test]
    fn an_announced_length_is_reserved_only_up_to_the_cap() {
        // 10 header bytes announce 16 MiB (within the limits) and send nothing:
        // at most `PAYLOAD_RESERVE_MAX` is reserved for it.
        let mut c = Connection::new(16 << 20, 16 << 20, None);
        c.receive(&[0x82, 127, 0, 0, 0, 0, 0x01, 0, 0, 0]);
        assert!(c.next().unwrap().is_none());
        let a = c.arriving.as_ref().unwrap();
        assert_eq!((a.len, a.payload.capacity()), (16 << 20, PAYLOAD_RESERVE_MAX));
        // Past the cap the buffer grows with what arrives: doubling, never
        // beyond twice what was received, nor beyond the frame.
        let mut received = 0;
        for piece in std::iter::repeat_n(&[5u8; 100 * 1024][..], 160) {
            c.receive(piece);
            received += piece.len();
            assert!(c.next().unwrap().is_none() || received >= 16 << 20);
            let cap = c.arriving.as_ref().map_or(0, |a| a.payload.capacity());
            assert!(cap <= (2 * received).max(PAYLOAD_RESERVE_MAX) && cap <= 16 << 20, "{received}: {cap}");
        }
        c.receive(&[5u8; 16 * 1024 * 1024 - 160 * 100 * 1024]);
        let Some(Inbound::Message(m)) = c.next().unwrap() else { panic!() };
        assert_eq!(m.len(), 16 << 20);
    }

    #[test]
    fn the_read_hint_is_what_the_frame_at_the_head_still_needs() {
        let small = server_frame(true, 0x2, &[3; 1000]);
        let large = server_frame(true, 0x2, &[4; 64 * 1024]);
        let stream = [small.clone(), large.clone(), server_frame(true, 0x9, b"ping")].concat();
        for chunk in [1, 7, 1000, 4096, 16 * 1024, stream.len()] {
            let mut c = conn();
            let mut fed = 0;
            for piece in stream.chunks(chunk) {
                c.receive(piece);
                fed += piece.len();
                while c.next().unwrap().is_some() {}
                // Where the frame at the head ends, from the stream's layout.
                let ends = [small.len(), small.len() + large.len(), stream.len()];
                let start = ends.iter().copied().filter(|&e| e <= fed).max().unwrap_or(0);
                let end = ends.iter().copied().find(|&e| e > fed);
                let header_known = match end {
                    Some(e) if e == small.len() => fed >= 4,
                    Some(e) if e == small.len() + large.len() => fed - start >= 10,
                    Some(_) => fed - start >= 2,
                    None => false,
                };
                let expected = if header_known { end.unwrap() - fed } else { 0 };
                assert_eq!(c.read_hint(), expected, "chunk {chunk}, fed {fed}");
            }
            assert_eq!(c.read_hint(), 0);
        }
    }

    #[test]
    fn the_read_hint_of_arbitrary_bytes_stays_within_the_frame_limit() {
        // Random headers (a few bytes of 0x00..=0xff, then any length field):
        // never more than one frame of `max_frame_size` plus its header.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut c = Connection::new(64 << 10, 1 << 20, None);
            let len = (next() % 16) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            c.receive(&bytes);
            assert!(c.read_hint() <= (64 << 10) + 14, "{bytes:?}: {}", c.read_hint());
            while let Ok(Some(_)) = c.next() {}
            assert!(c.read_hint() <= (64 << 10) + 14, "{bytes:?}: {}", c.read_hint());
        }
    }

    #[test]
    fn a_hostile_length_gives_no_read_hint() {
        // 2^63 - 1 announced: past any limit, never trusted (and `next` fails it).
        let mut c = conn();
        c.receive(&[0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2]);
        assert_eq!(c.read_hint(), 0);
        assert!(c.next().is_err());
        // Just past `max_frame_size` (1 MiB here), and past what is left of
        // `max_message_size` in a fragmented message.
        let mut c = conn();
        c.receive(&[0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 1]);
        assert_eq!(c.read_hint(), 0);
        let mut c = Connection::new(1 << 20, 1000, None);
        c.receive(&server_frame(false, 0x2, &[1; 600]));
        assert!(c.next().unwrap().is_none());
        c.receive(&[0x80, 126, 0x01, 0x91]);
        assert_eq!(c.read_hint(), 0, "600 + 401 > 1000");
        // Within the limits, the whole announced length is the hint (the
        // driver bounds its read), and nothing is allocated for it here.
        let mut c = Connection::new(16 << 20, 16 << 20, None);
        c.receive(&[0x82, 127, 0, 0, 0, 0, 0x01, 0, 0, 0]);
        assert_eq!(c.read_hint(), 16 << 20);
        // Rules broken in the header: no hint either.
        let mut c = conn();
        c.receive(&[0x82 | 0x40, 126, 0x10, 0]);
        assert_eq!(c.read_hint(), 0);
        // After a close frame, nothing more is wanted.
        let mut c = conn();
        c.receive(&[server_frame(true, 0x8, &[3, 232]), vec![0x82, 126, 0x10, 0]].concat());
        assert!(matches!(c.next().unwrap(), Some(Inbound::Close(_))));
        assert_eq!(c.read_hint(), 0);
    }

    #[test]
    fn invalid_utf8_fails_fast_in_a_large_text_frame_with_its_own_buffer() {
        let mut frame = server_frame(true, 0x1, &[b'a'; 10_000]);
        // A character cut by a read, then an invalid byte much later.
        frame[4 + 5000] = 0xce;
        frame[4 + 5001] = 0xba;
        frame[4 + 9000] = 0xff;
        let mut c = conn();
        c.receive(&frame[..4 + 5001]);
        assert!(c.next().unwrap().is_none());
        assert!(c.arriving.is_some());
        c.receive(&frame[4 + 5001..4 + 8000]);
        assert!(c.next().unwrap().is_none());
        c.receive(&frame[4 + 8000..4 + 9001]);
        assert_eq!(c.next().unwrap_err(), ProtocolError::InvalidUtf8);
        // Valid text across the same cuts decodes whole.
        frame[4 + 9000] = b'a';
        let got = decode(&mut conn(), &frame, 3000).unwrap();
        assert_eq!(messages(&got).len(), 1);
    }

    #[test]
    fn each_rule_fails_with_its_close_code() {
        use ProtocolError as P;
        let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
            (vec![0x91, 0x00], P::ReservedBits(0b001), 1002),
            (vec![0xC1, 0x00], P::ReservedBits(0b100), 1002),
            (vec![0x83, 0x00], P::ReservedOpcode(3), 1002),
            (vec![0x8B, 0x00], P::ReservedOpcode(0xB), 1002),
            (vec![0x09, 0x00], P::FragmentedControl, 1002),
            (server_frame(true, 0x9, &[0; 126]), P::ControlTooLong(126), 1002),
            (vec![0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1], P::MaskedFrame, 1002),
            (server_frame(true, 0x0, b"x"), P::UnexpectedContinuation, 1002),
            ([server_frame(false, 0x1, b"a"), server_frame(true, 0x1, b"b")].concat(), P::ExpectedContinuation, 1002),
            (vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], P::InvalidLength, 1002),
            (server_frame(true, 0x1, b"\xce\xba\xff"), P::InvalidUtf8, 1007),
            (server_frame(true, 0x8, &[0x03]), P::CloseTooShort, 1002),
            (server_frame(true, 0x8, &[0x03, 0xED]), P::InvalidCloseCode(1005), 1002),
            (server_frame(true, 0x8, &[0x03, 0xE8, 0xff]), P::InvalidCloseReason, 1007),
        ];
        for (bytes, expected, code) in cases {
            let e = error_for(&bytes);
            assert_eq!(e, expected, "{bytes:x?}");
            assert_eq!(e.close_code().0, code, "{e}");
        }
    }

    #[test]
    fn size_limits_fail_on_the_header_with_1009() {
        // A header announcing 1 GiB fails before any payload, without reserving it.
        let mut c = Connection::new(1024, 2048, None);
        c.receive(&[0x82, 127, 0, 0, 0, 0, 0x40, 0, 0, 0]);
        assert_eq!(c.next().unwrap_err(), ProtocolError::FrameTooLarge { len: 1 << 30, max: 1024 });
        assert!(c.rx.capacity() < 64 * 1024);

        let mut c = Connection::new(1024, 2048, None);
        let stream = [
            server_frame(false, 0x2, &[0; 1000]),
            server_frame(false, 0x0, &[0; 1000]),
            server_frame(true, 0x0, &[0; 100]),
        ]
        .concat();
        let e = decode(&mut c, &stream, 7).unwrap_err();
        assert_eq!(e, ProtocolError::MessageTooLarge { len: 2100, max: 2048 });
        assert_eq!(e.close_code(), CloseCode::TOO_BIG);
    }

    /// Feeds `stream` as a driver that reads in place does: `chunk`-sized
    /// reads, into the frame's own buffer whenever one is offered.
    fn decode_in_place(c: &mut Connection, stream: &[u8], chunk: usize) -> Result<Vec<Inbound>, ProtocolError> {
        let mut got = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let n = match c.read_in_place(chunk) {
                Some(place) => {
                    let n = place.len().min(rest.len());
                    place[..n].copy_from_slice(&rest[..n]);
                    assert_eq!(c.received_in_place(n), n);
                    n
                }
                None => {
                    let n = chunk.min(rest.len());
                    c.receive(&rest[..n]);
                    n
                }
            };
            rest = &rest[n..];
            while let Some(i) = c.next()? {
                got.push(i);
            }
        }
        Ok(got)
    }

    #[test]
    fn large_frames_read_in_place_arrive_whole_and_nothing_past_them_is_offered() {
        let big: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
        let text = "é".repeat(3000);
        let stream = [
            server_frame(true, 0x2, &big),
            server_frame(true, 0x1, b"small"),
            server_frame(true, 0x1, text.as_bytes()),
            server_frame(false, 0x2, &big[..5000]),
            server_frame(true, 0x0, &big[5000..]),
        ]
        .concat();
        let want = [Message::binary(big.clone()), Message::text("small"), Message::text(text), Message::binary(big)];
        for chunk in [1, 7, 4096, 16 * 1024, 300_000] {
            let mut c = conn();
            assert_eq!(messages(&decode_in_place(&mut c, &stream, chunk).unwrap()), want, "chunk {chunk}");
            // Between frames nothing is offered: the next header is read elsewhere.
            assert!(c.read_in_place(chunk).is_none());
            assert_eq!(c.buffered(), 0);
        }
        // What is offered never passes the frame's end, and counts as buffered.
        let mut c = conn();
        let frame = server_frame(true, 0x2, &[3; 10_000]);
        c.receive(&frame[..100]);
        assert!(c.next().unwrap().is_none());
        assert_eq!(c.read_in_place(usize::MAX).map(|p| p.len()), Some(10_000 - 96));
        assert_eq!(c.read_in_place(50).map(|p| p.len()), Some(50));
        // A driver claiming more than it was offered gets only the offer counted.
        assert_eq!(c.received_in_place(1 << 20), 10_000 - 96);
        assert_eq!(c.read_hint(), 0);
        assert_eq!(c.buffered(), 10_000);
        assert!(c.read_in_place(100).is_none());
    }

    #[test]
    fn a_recycled_buffer_read_in_place_holds_only_the_new_frame() {
        // The second frame is shorter and goes into the first one's buffer,
        // whose old bytes are still there: none of them may show.
        let mut c = conn();
        let first = decode_in_place(&mut c, &server_frame(true, 0x2, &[1; 20_000]), 4096).unwrap();
        drop(first);
        assert!(c.recycler.as_ref().is_some_and(|r| r.lock().1 > 0));
        let got = decode_in_place(&mut c, &server_frame(true, 0x2, &[2; 15_000]), 4096).unwrap();
        assert_eq!(messages(&got), [Message::binary(vec![2; 15_000])]);
    }

    #[test]
    fn invalid_utf8_read_in_place_fails_before_the_frame_ends() {
        let mut text = vec![b'a'; 50_000];
        text[20_000] = 0xff;
        let frame = server_frame(true, 0x1, &text);
        let mut c = conn();
        c.receive(&frame[..4096]);
        assert!(c.next().unwrap().is_none());
        let place = c.read_in_place(20_000).unwrap();
        place.copy_from_slice(&frame[4096..24_096]);
        c.received_in_place(20_000);
        assert_eq!(c.next().unwrap_err(), ProtocolError::InvalidUtf8);
    }

    #[test]
    fn invalid_utf8_fails_fast_inside_a_frame_still_arriving() {
        let mut c = conn();
        let mut frame = server_frame(true, 0x1, &[b'a'; 1000]);
        frame[2 + 10] = 0xff;
        // Only the first 20 payload bytes arrived: the error is already known.
        c.receive(&frame[..22]);
        assert_eq!(c.next().unwrap_err(), ProtocolError::InvalidUtf8);

        // The same for a continuation of a text message.
        let mut c = conn();
        c.receive(&server_frame(false, 0x1, b"ok"));
        assert!(c.next().unwrap().is_none());
        let mut cont = server_frame(true, 0x0, &[b'a'; 500]);
        cont[2 + 2 + 3] = 0xc0;
        c.receive(&cont[..10]);
        assert_eq!(c.next().unwrap_err(), ProtocolError::InvalidUtf8);
    }

    #[test]
    fn text_split_inside_a_character_across_fragments_and_reads_is_valid() {
        let text = "a€𝄞";
        let bytes = text.as_bytes();
        for cut in 1..bytes.len() {
            let stream = [server_frame(false, 0x1, &bytes[..cut]), server_frame(true, 0x0, &bytes[cut..])].concat();
            for chunk in [1, 2, 5] {
                assert_eq!(messages(&decode(&mut conn(), &stream, chunk).unwrap()), [Message::text(text)]);
            }
        }
        // A message that ends mid-character is invalid, at any chunking.
        let stream = [server_frame(false, 0x1, b"a"), server_frame(true, 0x0, &bytes[1..3])].concat();
        assert_eq!(decode(&mut conn(), &stream, 1).unwrap_err(), ProtocolError::InvalidUtf8);
    }

    #[test]
    fn nothing_is_processed_after_a_close_frame() {
        let stream =
            [server_frame(true, 0x8, &[0x03, 0xE8, b'b', b'y', b'e']), server_frame(true, 0x1, b"late"), vec![0xFF]]
                .concat();
        let mut c = conn();
        let got = decode(&mut c, &stream, 4).unwrap();
        assert_eq!(got.len(), 1);
        let Inbound::Close(Some(frame)) = &got[0] else { panic!("{got:?}") };
        assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::NORMAL, "bye"));
        c.receive(b"more garbage");
        assert!(c.next().unwrap().is_none());
    }

    #[test]
    fn pongs_are_bounded_and_stop_after_close() {
        let mut c = conn();
        let pings: Vec<u8> = (0..40u8).flat_map(|i| server_frame(true, 0x9, &[i])).collect();
        decode(&mut c, &pings, 64).unwrap();
        assert_eq!(c.pongs.len(), MAX_PENDING_PONGS);
        assert_eq!(c.pongs.back().map(|b| b[0]), Some(39));
        c.queue_close(None, false);
        let frames = client_frames(&transmit(&mut c, &mut queue(), usize::MAX));
        assert_eq!(frames.len(), MAX_PENDING_PONGS + 1);
        assert_eq!(frames.last().map(|f| f.0), Some(Opcode::Close));
        decode(&mut c, &server_frame(true, 0x9, b"x"), 64).unwrap();
        assert!(c.pongs.is_empty());
    }

    fn transmit(c: &mut Connection, queue: &mut Queue, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rng = Rng::new([3; 32]);
        let mut stats = Stats::default();
        let mut unsent = |_: Message, _: UnsentReason| {};
        c.poll_transmit(&mut Transmit {
            out: &mut out,
            max,
            now: Instant::now(),
            queue,
            rng: &mut rng,
            stats: &mut stats,
            unsent: &mut unsent,
        });
        out
    }

    /// Decodes client frames (masked) into (opcode, fin, unmasked payload).
    fn client_frames(mut bytes: &[u8]) -> Vec<(Opcode, bool, Vec<u8>)> {
        let mut frames = Vec::new();
        while let Some((h, n)) = Header::decode(bytes).unwrap() {
            let mask = h.mask.expect("client frames are masked");
            let mut payload = bytes[n..n + h.payload_len as usize].to_vec();
            apply_mask(&mut payload, mask, 0);
            frames.push((h.opcode, h.fin, payload));
            bytes = &bytes[n + h.payload_len as usize..];
        }
        assert!(bytes.is_empty());
        frames
    }

    fn queue() -> Queue {
        Queue::new(Outbound {
            max_messages: 100,
            max_bytes: 1 << 20,
            overflow: Overflow::Reject,
            offline: false,
            ttl: None,
        })
    }

    fn pending(m: Message) -> Pending {
        Pending { message: m, offline: false, expires: None, internal: false }
    }

    #[test]
    fn control_frames_go_between_fragments_and_graceful_close_waits_for_data() {
        let mut c = Connection::new(1 << 20, 1 << 20, Some(4));
        let mut q = queue();
        q.push(pending(Message::text("abcdefghij")), &mut |_, _| {}).unwrap();
        c.queue_close(Some(&CloseFrame { code: CloseCode::NORMAL, reason: "done".into() }), true);
        // One frame at a time (max 1 byte): a ping from the server arriving
        // mid-message is answered before the next fragment.
        let first = transmit(&mut c, &mut q, 1);
        decode(&mut c, &server_frame(true, 0x9, b"P"), 64).unwrap();
        let rest = transmit(&mut c, &mut q, usize::MAX);
        let frames = client_frames(&[first, rest].concat());
        let shape: Vec<_> = frames.iter().map(|(op, fin, p)| (*op, *fin, p.as_slice())).collect();
        assert_eq!(
            shape,
            [
                (Opcode::Text, false, &b"abcd"[..]),
                (Opcode::Pong, true, b"P"),
                (Opcode::Continuation, false, b"efgh"),
                (Opcode::Continuation, true, b"ij"),
                (Opcode::Close, true, b"\x03\xe8done"),
            ]
        );
        // Nothing after the close frame.
        q.push(pending(Message::text("late")), &mut |_, _| {}).unwrap();
        c.pings.push_back(Bytes::new());
        assert!(transmit(&mut c, &mut q, usize::MAX).is_empty());
    }

    // ---- permessage-deflate ----

    fn deflate_params(takeover: bool) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: !takeover,
            client_no_context_takeover: !takeover,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }

    fn deflate_conn(max_message: usize, takeover: bool) -> Connection {
        let config = DeflateConfig { threshold: 16, ..DeflateConfig::default() };
        Connection::new(1 << 20, max_message, Some(1000))
            .with_deflate(Some(Codec::new(deflate_params(takeover), &config)))
    }

    /// A server-side compressor: raw deflate, sync flush, tail removed.
    fn server_deflate(c: &mut flate2::Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, flate2::FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    fn server_frame_rsv(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header { fin, rsv, opcode: Opcode::from_bits(opcode), mask: None, payload_len: payload.len() as u64 }
            .encode(&mut out);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn compressed_messages_whole_and_fragmented_with_control_frames_between() {
        let mut z = flate2::Compress::new(flate2::Compression::default(), false);
        let text = "κόσμε ".repeat(40);
        let one = server_deflate(&mut z, text.as_bytes());
        let two = server_deflate(&mut z, text.as_bytes());
        assert!(two.len() < one.len(), "the second refers back to the first");
        let cut = two.len() / 2;
        let stream = [
            server_frame_rsv(true, 0b100, 0x1, &one),
            server_frame_rsv(false, 0b100, 0x1, &two[..cut]),
            server_frame_rsv(true, 0, 0x9, b"p"),
            server_frame_rsv(true, 0, 0x0, &two[cut..]),
            server_frame_rsv(true, 0, 0x2, b"plain binary between"),
        ]
        .concat();
        for chunk in [1, 7, stream.len()] {
            let got = decode(&mut deflate_conn(1 << 20, true), &stream, chunk).unwrap();
            assert_eq!(
                messages(&got),
                [
                    Message::text(text.clone()),
                    Message::text(text.clone()),
                    Message::binary(&b"plain binary between"[..])
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn rsv1_is_only_allowed_on_the_first_frame_of_a_data_message() {
        use ProtocolError as P;
        let mut z = flate2::Compress::new(flate2::Compression::default(), false);
        let data = server_deflate(&mut z, b"hello hello hello");
        let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
            (server_frame_rsv(true, 0b100, 0x9, b""), P::MisplacedRsv1(0x9)),
            (server_frame_rsv(true, 0b100, 0xA, b""), P::MisplacedRsv1(0xA)),
            (server_frame_rsv(true, 0b100, 0x8, &[0x03, 0xE8]), P::MisplacedRsv1(0x8)),
            (
                [server_frame_rsv(false, 0b100, 0x1, &data[..3]), server_frame_rsv(true, 0b100, 0x0, &data[3..])]
                    .concat(),
                P::MisplacedRsv1(0),
            ),
            (server_frame_rsv(true, 0b010, 0x1, b"x"), P::ReservedBits(0b010)),
            (server_frame_rsv(true, 0b110, 0x1, b"x"), P::ReservedBits(0b110)),
            (server_frame_rsv(true, 0b100, 0x1, &[0xff, 0xff, 0xff]), P::InvalidCompressedData),
            (server_frame_rsv(true, 0b100, 0x1, &server_deflate(&mut z, b"\xce\xba\xff")), P::InvalidUtf8),
        ];
        for (bytes, expected) in cases {
            let e = decode(&mut deflate_conn(1 << 20, true), &bytes, 3).unwrap_err();
            assert_eq!(e, expected, "{bytes:x?}");
            let code = if matches!(e, P::InvalidCompressedData | P::InvalidUtf8) { 1007 } else { 1002 };
            assert_eq!(e.close_code().0, code, "{e}");
        }
        // Without deflate negotiated, RSV1 stays a 1002 protocol error.
        assert_eq!(error_for(&server_frame_rsv(true, 0b100, 0x1, &data)), P::ReservedBits(0b100));
    }

    #[test]
    fn a_decompression_bomb_fails_with_1009_before_the_buffer_passes_the_limit() {
        // 16 MiB of zeros is about 16 KiB compressed: one small frame.
        let mut z = flate2::Compress::new(flate2::Compression::best(), false);
        let bomb = server_deflate(&mut z, &vec![0; 16 << 20]);
        assert!(bomb.len() < 32 << 10, "{}", bomb.len());
        let max = 256 << 10;
        let mut c = deflate_conn(max, true);
        c.receive(&server_frame_rsv(true, 0b100, 0x2, &bomb));
        let e = c.next().unwrap_err();
        assert!(matches!(e, ProtocolError::MessageTooLarge { len, max: m } if m == max && len <= max as u64 + 1));
        assert_eq!(e.close_code(), CloseCode::TOO_BIG);
        // Fragmented: the inflated total across frames is bounded the same way.
        let mut c = deflate_conn(max, true);
        let halves = [
            server_frame_rsv(false, 0b100, 0x2, &bomb[..bomb.len() / 2]),
            server_frame_rsv(true, 0, 0x0, &bomb[bomb.len() / 2..]),
        ];
        c.receive(&halves.concat());
        let e = std::iter::from_fn(|| Some(c.next())).find_map(Result::err).unwrap();
        assert!(matches!(e, ProtocolError::MessageTooLarge { .. }), "{e:?}");
        assert!(c.fragmented.as_ref().is_none_or(|f| f.buf.capacity() <= max + 1));
    }

    #[test]
    fn outgoing_messages_are_compressed_with_rsv1_on_the_first_frame_only() {
        let mut c = deflate_conn(1 << 20, true);
        let mut q = queue();
        let big = "{\"op\":\"subscribe\",\"args\":[\"book.BTC\"]} ".repeat(200);
        q.push(pending(Message::text(big.clone())), &mut |_, _| {}).unwrap();
        q.push(pending(Message::text("tiny")), &mut |_, _| {}).unwrap();
        c.queue_ping(Bytes::from_static(b"p"));
        let wire = transmit(&mut c, &mut q, usize::MAX);
        // Re-read the raw headers for the RSV bits.
        let mut rest = &wire[..];
        let mut rsv = Vec::new();
        while let Some((h, n)) = Header::decode(rest).unwrap() {
            rsv.push((h.opcode, h.rsv));
            rest = &rest[n + h.payload_len as usize..];
        }
        let frames = client_frames(&wire);
        assert_eq!(rsv[0], (Opcode::Ping, 0));
        assert_eq!(rsv[1], (Opcode::Text, 0b100), "first frame of the compressed message");
        assert!(rsv[2..rsv.len() - 1].iter().all(|&(op, r)| op == Opcode::Continuation && r == 0));
        assert_eq!(*rsv.last().unwrap(), (Opcode::Text, 0), "below the threshold: plain");
        // The server inflates the concatenated fragments with the tail appended.
        let mut compressed: Vec<u8> = frames[1..frames.len() - 1].iter().flat_map(|f| f.2.clone()).collect();
        assert!(compressed.len() < big.len() / 10, "{}", compressed.len());
        compressed.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut inflated = Vec::with_capacity(big.len() + 1);
        flate2::Decompress::new(false)
            .decompress_vec(&compressed, &mut inflated, flate2::FlushDecompress::Sync)
            .unwrap();
        assert_eq!(inflated, big.as_bytes());
        assert_eq!(frames.last().unwrap().2, b"tiny");
    }

    #[test]
    fn immediate_close_goes_before_queued_data() {
        let mut c = conn();
        let mut q = queue();
        q.push(pending(Message::text("data")), &mut |_, _| {}).unwrap();
        c.queue_close(Some(&CloseFrame { code: CloseCode::PROTOCOL_ERROR, reason: Text::default() }), false);
        let frames = client_frames(&transmit(&mut c, &mut q, usize::MAX));
        assert_eq!(frames, [(Opcode::Close, true, vec![0x03, 0xEA])]);
        assert_eq!(q.len(), 1);
    }
}
