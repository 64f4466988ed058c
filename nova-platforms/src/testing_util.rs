//! Helpers shared by the mock servers (the `testing` feature).

use nova_proto::Message;
use serde_json::Value;

/// Parses a client message as JSON (`None` for anything else).
pub(crate) fn json_of(message: &Message) -> Option<Value> {
    serde_json::from_slice(message.as_bytes()).ok()
}

/// A JSON value as a text message.
pub(crate) fn text(value: &Value) -> Message {
    Message::text(value.to_string())
}

/// Locks a mock's shared state; a poisoned lock (a panicking test thread)
/// still yields the state, since mocks only record and answer.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[allow(dead_code)] // each platform's mock tests use a different subset
pub(crate) mod client {
    //! A bounded blocking tungstenite client for the mocks' own tests.
    use std::net::TcpStream;
    use std::time::Duration;

    use serde_json::Value;
    use tungstenite::stream::MaybeTlsStream;
    use tungstenite::{Message, WebSocket};

    pub(crate) type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

    pub(crate) fn connect(url: &str) -> Ws {
        let (mut ws, _) = tungstenite::connect(url).expect("the mock accepts");
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout set");
        }
        ws
    }

    pub(crate) fn send(ws: &mut Ws, value: Value) {
        ws.send(Message::text(value.to_string())).expect("sent");
    }

    /// The next text message as JSON (fails the test after the read timeout).
    pub(crate) fn next(ws: &mut Ws) -> Value {
        loop {
            match ws.read().expect("a message before the timeout") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("the mock sends JSON"),
                Message::Close(_) => panic!("closed"),
                _ => {}
            }
        }
    }

    /// The next message matching `pred`, skipping others (at most 50).
    pub(crate) fn next_where(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..50 {
            let v = next(ws);
            if pred(&v) {
                return v;
            }
        }
        panic!("no matching message in 50")
    }
}
