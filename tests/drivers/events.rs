//! Every driver's events as the suite observes them. One conversion serves
//! all adapters: nova-tokio, nova-async-std and nova-mio hand out the same
//! `Event` type (nova-driver's), which this module's signature checks.

use crate::suite::Observed;

/// The suite's view of a driver's event.
pub(crate) fn observed(event: nova_tokio::Event) -> Observed {
    use nova_tokio::Event;
    match event {
        Event::Message(message) => Observed::Message(message),
        Event::Opened(opened) => Observed::Opened(opened),
        Event::Disconnected { cause, reconnect } => Observed::Disconnected { cause, reconnect },
        Event::Reconnecting { attempt } => Observed::Reconnecting { attempt },
        Event::Pong { payload, rtt } => Observed::Pong { payload, rtt },
        Event::Unsent { message, reason } => Observed::Unsent { message, reason },
        Event::Closed(closed) => Observed::Closed(closed),
        other => panic!("an event the suite does not know yet: {other:?}"),
    }
}
