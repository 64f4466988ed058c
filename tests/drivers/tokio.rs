//! nova-tokio in the driver suite: a multi-thread runtime per scenario,
//! each session started on it, waits done with `block_on`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nova_proto::{CloseError, Config, Message, SendError};
use nova_tokio::{Connector, Events, Handle, Tls};
use tokio::runtime::Runtime;

use crate::suite::{Driver, Event, Quiet, Session, Trust};

/// The nova-tokio driver.
pub(crate) struct Tokio;

/// A nova-tokio session and the runtime it runs on.
pub(crate) struct TokioSession {
    runtime: Arc<Runtime>,
    handle: Handle,
    events: Events,
}

impl Driver for Tokio {
    type Runtime = Arc<Runtime>;
    type Session = TokioSession;

    fn runtime() -> Arc<Runtime> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        Arc::new(runtime.expect("a tokio runtime"))
    }

    fn start(runtime: &Arc<Runtime>, config: Config, trust: Trust) -> TokioSession {
        let tls = match trust {
            Trust::Default => Tls::webpki_roots(),
            Trust::Only(root) => Tls::no_roots().with_root(root),
        };
        let _entered = runtime.enter();
        let (handle, events) = Connector::new(config).tls(tls).start().expect("the session starts");
        TokioSession { runtime: Arc::clone(runtime), handle, events }
    }
}

impl Session for TokioSession {
    fn send(&self, message: Message) -> Result<(), SendError> {
        self.runtime.block_on(self.handle.send(message))
    }

    fn ping(&self, payload: Bytes) -> Result<(), SendError> {
        self.handle.ping(payload)
    }

    fn close(&self, code: u16, reason: &str) -> Result<(), CloseError> {
        self.handle.close(code, reason)
    }

    fn next(&mut self, within: Duration) -> Result<Event, Quiet> {
        // The timer must be made inside the runtime.
        let events = &mut self.events;
        match self.runtime.block_on(async { tokio::time::timeout(within, events.recv()).await }) {
            Err(_) => Err(Quiet::TimedOut),
            Ok(None) => Err(Quiet::Ended),
            Ok(Some(event)) => Ok(event),
        }
    }
}
