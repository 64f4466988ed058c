//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames, and a frame across reads, at any
//! byte, including inside a multi-byte character. [`Utf8Validator`] checks each
//! piece as it arrives, so an invalid message fails on the first bad byte
//! (RFC 6455 §8.1 "fail fast") instead of after the whole message was buffered.

/// Streaming UTF-8 checker. Holds at most 3 bytes of an incomplete character.
#[derive(Debug, Clone, Default)]
pub(crate) struct Utf8Validator {
    /// Leading bytes of a character cut off at the end of the previous piece.
    pending: [u8; 4],
    pending_len: u8,
}

/// The input can never become valid UTF-8, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

impl Utf8Validator {
    /// Checks the next piece. Bytes of a character that the piece cuts short are
    /// kept for the next call.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            // Complete the pending character with as many bytes as it still needs.
            let have = usize::from(self.pending_len);
            let need = char_width(self.pending[0]).ok_or(InvalidUtf8)?;
            let take = (need - have).min(bytes.len());
            self.pending[have..have + take].copy_from_slice(&bytes[..take]);
            let filled = have + take;
            bytes = &bytes[take..];
            match std::str::from_utf8(&self.pending[..filled]) {
                Ok(_) => self.pending_len = 0,
                // Still a valid prefix of a character: wait for more bytes.
                Err(e) if e.error_len().is_none() => {
                    self.pending_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(InvalidUtf8),
                None => {
                    // A truncated character at the end: at most 3 bytes by construction.
                    let tail = &bytes[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// Whether the text seen so far ends on a character boundary.
    pub(crate) fn is_complete(&self) -> bool {
        self.pending_len == 0
    }

    /// Forgets everything: the next piece starts a new text.
    pub(crate) fn reset(&mut self) {
        self.pending_len = 0;
    }
}

/// The length of the UTF-8 sequence a lead byte starts, or `None` for a byte
/// that cannot lead one.
fn char_width(lead: u8) -> Option<usize> {
    match lead {
        0x00..=0x7F => Some(1),
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split_everywhere(input: &[u8]) {
        let expected_valid = std::str::from_utf8(input).is_ok();
        // Every way of cutting into two and three pieces agrees with `from_utf8`.
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let mut v = Utf8Validator::default();
                let ok = v.feed(&input[..i]).is_ok()
                    && v.feed(&input[i..j]).is_ok()
                    && v.feed(&input[j..]).is_ok()
                    && v.is_complete();
                assert_eq!(ok, expected_valid, "{input:x?} cut at {i},{j}");
            }
        }
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        let cases: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "a€𝄞b".as_bytes(),
            b"\xf0\x90\x80\x80",
            b"\xf4\x8f\xbf\xbf",
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"\xed\xa0\x80",     // surrogate
            b"\xc0\xaf",         // overlong
            b"\xe0\x80\xaf",     // overlong
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\x80",
            b"\xff",
            b"ab\xe2\x82", // truncated at the end
            b"",
        ];
        for case in cases {
            check_split_everywhere(case);
        }
    }

    #[test]
    fn fails_on_first_bad_byte_without_waiting_for_the_end() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        // 0xED 0xA0 starts a surrogate: invalid as soon as the second byte is seen.
        assert_eq!(v.feed(b"\xed"), Ok(()));
        assert_eq!(v.feed(b"\xa0"), Err(InvalidUtf8));
    }

    #[test]
    fn incomplete_character_at_end_is_not_complete() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"\xe2\x82"), Ok(()));
        assert!(!v.is_complete());
        assert_eq!(v.feed(b"\xac"), Ok(()));
        assert!(v.is_complete());
        v.feed(b"\xe2").unwrap();
        v.reset();
        assert!(v.is_complete());
    }
}
