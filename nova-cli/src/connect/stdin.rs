//! Reading stdin, line by line, on a plain thread.
//!
//! Tokio's stdin reads on a blocking-pool thread that cannot be cancelled,
//! which can hold up the runtime's shutdown until the user presses Enter. A
//! detached thread of our own ends with the process instead.

use std::io::{self, BufRead};

use tokio::sync::mpsc;

/// Lines in flight between the reader thread and the session. Small: the
/// session keeps its own queue, and a full channel pauses the reader (and
/// so whoever writes into our stdin).
const CHANNEL_LINES: usize = 64;

/// What the reader thread hands over. The channel closing means end of input.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line without its `\n` or `\r\n`.
    Line(String),
    /// Something the user should know about a line (too long, not UTF-8).
    Warning(String),
    /// Reading failed; no more lines will come.
    Failed(io::Error),
}

/// Starts the reader thread. Lines longer than `max_line` bytes are skipped
/// with a warning (they could not be sent anyway) without being held in memory.
///
/// # Errors
///
/// When the thread cannot be started.
pub(crate) fn spawn(max_line: usize) -> io::Result<mpsc::Receiver<Input>> {
    let (tx, rx) = mpsc::channel(CHANNEL_LINES);
    std::thread::Builder::new().name("nova stdin".into()).spawn(move || {
        let stdin = io::stdin();
        let mut reader = stdin.lock();
        let mut buf = Vec::new();
        let mut number = 0u64;
        loop {
            let input = match read_line(&mut reader, &mut buf, max_line) {
                Ok(None) => return,
                Ok(Some(Line::TooLong(len))) => {
                    number += 1;
                    Input::Warning(format!(
                        "stdin line {number} is {len} bytes, over the maximum message size ({max_line} bytes); not sent"
                    ))
                }
                Ok(Some(Line::Complete)) => {
                    number += 1;
                    match String::from_utf8(std::mem::take(&mut buf)) {
                        Ok(line) => Input::Line(line),
                        Err(e) => {
                            let line = String::from_utf8_lossy(e.as_bytes()).into_owned();
                            let warning = format!(
                                "stdin line {number} is not valid UTF-8; invalid bytes were replaced with U+FFFD"
                            );
                            if tx.blocking_send(Input::Warning(warning)).is_err() {
                                return;
                            }
                            Input::Line(line)
                        }
                    }
                }
                Err(e) => Input::Failed(e),
            };
            let failed = matches!(input, Input::Failed(_));
            if tx.blocking_send(input).is_err() || failed {
                return;
            }
        }
    })?;
    Ok(rx)
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line is in the buffer, without its line ending.
    Complete,
    /// A line of this many bytes (line ending excluded) was skipped.
    TooLong(usize),
}

/// Reads one line into `buf` (cleared first), keeping at most `max` bytes of
/// it; the line ending (`\n` or `\r\n`) is removed. `None` at end of input.
/// A last line without a line ending still counts.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<Line>> {
    buf.clear();
    // Room for a `\r` that turns out to end the line.
    let keep_at_most = max.saturating_add(1);
    let mut len = 0usize;
    let mut last = None;
    let mut started = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            if !started {
                return Ok(None);
            }
            break;
        }
        started = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (chunk.len(), false),
        };
        let content = if done { take - 1 } else { take };
        if content > 0 {
            last = Some(chunk[content - 1]);
        }
        let room = keep_at_most.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..content.min(room)]);
        len += content;
        reader.consume(take);
        if done {
            break;
        }
    }
    if last == Some(b'\r') {
        len -= 1;
        buf.truncate(len);
    }
    if len > max {
        buf.clear();
        return Ok(Some(Line::TooLong(len)));
    }
    Ok(Some(Line::Complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Result<String, usize>> {
        // A tiny buffer, so lines span many `fill_buf` calls.
        let mut reader = io::BufReader::with_capacity(3, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut reader, &mut buf, max).unwrap() {
            out.push(match line {
                Line::Complete => Ok(String::from_utf8(buf.clone()).unwrap()),
                Line::TooLong(len) => Err(len),
            });
        }
        out
    }

    #[test]
    fn line_endings_are_stripped() {
        assert_eq!(
            lines(b"one\ntwo\r\n\nlast", 100),
            [Ok("one".into()), Ok("two".into()), Ok(String::new()), Ok("last".into())]
        );
        assert_eq!(lines(b"", 100), []);
        assert_eq!(lines(b"a\r", 100), [Ok("a".into())]);
    }

    #[test]
    fn long_lines_are_skipped_not_buffered() {
        assert_eq!(
            lines(b"12345\n123456\n1234\r\nok", 5),
            [Ok("12345".into()), Err(6), Ok("1234".into()), Ok("ok".into())]
        );
        assert_eq!(lines(b"12345\r\n", 5), [Ok("12345".into())]);
        assert_eq!(lines(b"1234567\r\n", 5), [Err(7)]);
    }
}
