//! Deribit through nova-tokio against the mock server on 127.0.0.1: auth →
//! set_heartbeat → Ready → subscribe → data, a forced drop, then re-auth, resubscribe and
//! data again on the same stream; and server heartbeats answered.
#![allow(missing_docs)]

mod tokio_support;

use nova_platforms::WallClock;
use nova_platforms::deribit::{self, Credentials, Deribit, Interval, testing::MockDeribit};
use nova_proto::Secret;
use nova_proto::session::SubscribeOptions;
use nova_testkit::MockServer;
use nova_tokio::{Connector, Event};
use tokio_support::{Feed, Watch, ms, until};

const CHANNEL: &str = "ticker.BTC-PERPETUAL.100ms";

fn adapter() -> Deribit {
    let creds = Credentials::client_signature("KEY", Secret::new("deribit_test_secret"), WallClock::system());
    Deribit::new().credentials(creds)
}

fn methods(mock: &MockDeribit, conn: u32) -> Vec<String> {
    mock.calls().into_iter().filter(|(c, _)| *c == conn).map(|(_, m)| m).collect()
}

#[tokio::test]
async fn auth_subscribe_drop_then_reauth_resubscribe_on_the_same_stream() {
    let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret")).tick(ms(20));
    // The first connection drops 600 ms in; the next ones stay.
    let server = MockServer::builder()
        .lifetime(std::time::Duration::from_secs(20))
        .connection(mock.behavior().drop_after(ms(600)))
        .otherwise(mock.behavior())
        .start()
        .unwrap();
    let config = deribit::config(&server.url("/ws/api/v2"));
    let (handle, events) = Connector::new(config).adapter(adapter()).connect().await.unwrap();
    let mut events = Watch::new(events);
    let feed = Feed::new(
        handle.subscribe(deribit::ticker("BTC-PERPETUAL", Interval::Ms100), SubscribeOptions::default()).unwrap(),
    );

    // The subscription was held until the auth answer, then sent with the restore.
    assert_eq!(events.ready().await, (1, 0));
    let first = feed.more_than(0).await;
    assert_eq!(first["params"]["channel"], CHANNEL);
    assert_eq!(
        methods(&mock, 1)[..3],
        ["public/auth", "public/set_heartbeat", "public/subscribe"],
        "auth goes first, then the connection's heartbeat setup, then the restore"
    );

    events.expect("the forced drop", |e| matches!(e, Event::Disconnected { reconnect: Some(_), .. })).await;
    assert_eq!(events.ready().await, (1, 0), "the channel is restored after a fresh auth");
    assert_eq!(
        methods(&mock, 2)[..3],
        ["public/auth", "public/set_heartbeat", "public/subscribe"],
        "re-auth before resubscribe"
    );
    let before = feed.count();
    let again = feed.more_than(before + 2).await;
    assert_eq!(again["params"]["channel"], CHANNEL, "data flows again on the same stream");
    handle.close(1000, "done").unwrap();
    server.shutdown();
}

#[tokio::test]
async fn server_test_requests_are_answered_with_public_test() {
    let mock = MockDeribit::new("KEY", &Secret::new("deribit_test_secret")).tick(ms(20));
    let server = MockServer::start(mock.behavior()).unwrap();
    let config = deribit::config(&server.url("/ws/api/v2"));
    let (handle, events) = Connector::new(config).adapter(adapter()).connect().await.unwrap();
    let mut events = Watch::new(events);
    events.ready().await;
    // set_heartbeat goes out right after the auth; the mock then sends a
    // test_request, which must come back as public/test.
    until("set_heartbeat then public/test", || {
        let m = methods(&mock, 1);
        m.iter().any(|m| m == "public/set_heartbeat") && m.iter().any(|m| m == "public/test")
    })
    .await;
    assert_eq!(mock.unanswered_test_requests(), 0);
    assert!(!events.seen().iter().any(|e| e.starts_with("Disconnected")), "{:?}", events.seen());
    handle.close(1000, "done").unwrap();
    server.shutdown();
}
