//! Scenarios run in memory against nova-proto's client: the testkit's own
//! behaviour, and one scenario per network fault.

use std::time::{Duration, Instant};

use nova_proto::{Backoff, Client, CloseCode, Config, Event, Keepalive, Output};
use nova_testkit::{Direction, Faults, Handshake, Scenario, SimOptions};

const SUBSCRIBE: &str = r#"{"op":"subscribe","channel":"trades"}"#;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config() -> nova_proto::ConfigBuilder {
    Config::builder("ws://feed.test/v1")
        .backoff(Backoff::exponential(ms(100), Duration::from_secs(5), 0.0))
        .max_attempts(None)
        .ping(Duration::from_secs(10), Duration::from_secs(3))
}

/// The application under test: subscribes on every open.
fn subscriber(client: &mut Client, now: Instant, output: &Output) {
    if let Some(Event::Opened(_)) = output.as_event() {
        client.send(now, SUBSCRIBE).expect("open connection");
    }
}

fn resubscribe_scenario() -> Scenario {
    Scenario::new()
        .accept()
        .expect_text(SUBSCRIBE)
        .send_text(r#"{"trade":1}"#)
        .drop_connection()
        .expect_reconnect_within(Duration::from_secs(1))
        .expect_text(SUBSCRIBE)
        .send_text(r#"{"trade":2}"#)
        .close(1000, "done")
}

#[test]
fn a_client_that_resubscribes_passes_and_the_report_shows_it() {
    let report = resubscribe_scenario().run_sim(config().build().unwrap(), subscriber).unwrap();
    assert_eq!(report.connections.len(), 2);
    assert!(report.connections.iter().all(|c| c.messages.iter().any(|m| m.as_text() == Some(SUBSCRIBE))));
    assert!(report.connections.iter().all(|c| c.all_masked()));
    let got: Vec<_> = report
        .outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Message(m) => m.as_text().map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(got, [r#"{"trade":1}"#, r#"{"trade":2}"#]);
    assert_eq!(report.stats.reconnects, 1);
    assert!(report.elapsed < Duration::from_secs(1), "{:?}", report.elapsed);
}

#[test]
fn a_client_that_forgets_to_resubscribe_fails_with_the_step_and_the_transcript() {
    // Subscribes on the first connection only.
    let mut first = true;
    let forgetful = move |client: &mut Client, now: Instant, output: &Output| {
        if let Some(Event::Opened(_)) = output.as_event() {
            if std::mem::take(&mut first) {
                client.send(now, SUBSCRIBE).unwrap();
            }
        }
    };
    let err = resubscribe_scenario().run_sim(config().build().unwrap(), forgetful).unwrap_err();
    assert_eq!(err.step, 6, "{err}");
    assert!(err.step_description.contains("expect text"), "{err}");
    assert!(err.problem.contains("no message within 5s"), "{err}");
    let shown = err.to_string();
    assert!(shown.contains("conn 2   -> answered 101"), "{shown}");
    assert!(shown.contains("FAILED"), "{shown}");
}

#[test]
fn a_wrong_message_names_what_was_expected_and_what_came() {
    let err = Scenario::new()
        .accept()
        .expect_text("hello")
        .run_sim(config().build().unwrap(), |c: &mut Client, now, o: &Output| {
            if let Some(Event::Opened(_)) = o.as_event() {
                c.send(now, "goodbye").unwrap();
            }
        })
        .unwrap_err();
    assert_eq!(err.problem, r#"expected text "hello", received text "goodbye""#);
}

#[test]
fn runs_are_deterministic_for_a_seed() {
    let options = SimOptions { seed: 42, faults: Faults::latency(ms(3)).with_jitter(ms(5)), ..SimOptions::default() };
    let run = || resubscribe_scenario().run_sim_with(options, config().build().unwrap(), subscriber).unwrap();
    assert_eq!(run().transcript, run().transcript);
}

#[test]
fn refused_and_slow_handshakes_and_required_subprotocols() {
    let scenario = Scenario::new()
        .accept_with(Handshake::refuse(503).retry_after(1))
        .expect_reconnect_within_with(Duration::from_millis(1100), Handshake::accept().delay(ms(300)))
        .expect_text(SUBSCRIBE)
        .drop_connection()
        .expect_reconnect_within_with(Duration::from_secs(1), Handshake::accept().require_subprotocol("v2"))
        .expect_text(SUBSCRIBE);
    let report = scenario.run_sim(config().subprotocol("v2").build().unwrap(), subscriber).unwrap();
    assert_eq!(report.connections.iter().map(|c| c.status).collect::<Vec<_>>(), [Some(503), Some(101), Some(101)]);
    // The refusal's Retry-After held the client back a full second.
    let events: Vec<_> = report.outputs.iter().filter_map(|(t, o)| o.as_event().map(|e| (*t, e.clone()))).collect();
    let Some((_, Event::Disconnected { reconnect: Some(r), .. })) = events.first() else { panic!("{events:?}") };
    assert_eq!(r.delay, Duration::from_secs(1));
}

#[test]
fn a_wrong_accept_key_is_rejected_by_the_client() {
    let report = Scenario::new()
        .accept_with(Handshake::wrong_accept_key())
        .expect_reconnect_within(Duration::from_secs(1))
        .expect_text(SUBSCRIBE)
        .run_sim(config().build().unwrap(), subscriber)
        .unwrap();
    assert!(report.outputs.iter().any(|(_, o)| matches!(
        o.as_event(),
        Some(Event::Disconnected { cause: nova_proto::Disconnect::Failed(nova_proto::Error::Handshake(_)), .. })
    )));
}

#[test]
fn server_pings_get_pongs_and_a_client_close_is_seen() {
    let scenario = Scenario::new()
        .accept()
        .expect_text(SUBSCRIBE)
        .ping("are you there")
        .expect_pong()
        .send_text("bye now")
        .expect_close(1000);
    scenario
        .run_sim(config().build().unwrap(), |c: &mut Client, now, o: &Output| {
            subscriber(c, now, o);
            if let Output::Message(m) = o {
                if m.as_text() == Some("bye now") {
                    c.close(now, CloseCode::NORMAL, "leaving").unwrap();
                }
            }
        })
        .unwrap();
}

#[test]
fn malformed_bytes_make_the_client_fail_the_connection() {
    let report = Scenario::new()
        .accept()
        .expect_text(SUBSCRIBE)
        .send_raw(vec![0x83, 0x00]) // reserved opcode
        .expect_close(1002)
        .expect_reconnect_within(Duration::from_secs(1))
        .expect_text(SUBSCRIBE)
        .run_sim(config().build().unwrap(), subscriber)
        .unwrap();
    assert_eq!(report.connections[0].close, Some(Some((1002, "reserved opcode 0x3".into()))));
}

// ---- one scenario per network fault ----

#[test]
fn fault_latency_and_jitter_delay_but_keep_everything_in_order() {
    let scenario = Scenario::new()
        .faults(Faults::latency(ms(80)).with_jitter(ms(40)))
        .accept()
        .expect_text(SUBSCRIBE)
        .push(20, ms(5), |n| nova_proto::Message::text(format!("tick {n}")))
        .wait(Duration::from_secs(1));
    let report = scenario.run_sim(config().build().unwrap(), subscriber).unwrap();
    let ticks: Vec<_> = report
        .outputs
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Message(m) => Some((*t, m.as_text().unwrap_or_default().to_owned())),
            _ => None,
        })
        .collect();
    assert_eq!(
        ticks.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        (0..20).map(|n| format!("tick {n}")).collect::<Vec<_>>()
    );
    // Connect (80) + upgrade round trip (160) + subscribe (80) + tick back (80): nothing arrives before.
    assert!(ticks[0].0 >= ms(400), "{:?}", ticks[0].0);
}

#[test]
fn fault_bandwidth_slows_a_large_message() {
    let big = nova_proto::Message::binary(vec![7u8; 200_000]);
    let scenario = Scenario::new()
        .accept()
        .expect_text(SUBSCRIBE)
        .faults(Faults::none().with_bandwidth(100_000))
        .send(big)
        .wait(Duration::from_secs(3));
    let report = scenario.run_sim(config().build().unwrap(), subscriber).unwrap();
    let (at, _) = report.outputs.iter().find(|(_, o)| matches!(o, Output::Message(_))).unwrap();
    // 200 kB at 100 kB/s: the last segment leaves after about 1.99 s.
    assert!(*at >= Duration::from_millis(1_950), "arrived at {at:?}");
}

#[test]
fn fault_stall_is_detected_by_the_pong_timeout_and_the_client_reconnects() {
    let config = config().keepalive(Some(Keepalive {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        allowed_misses: 0,
    }));
    let scenario = Scenario::new()
        .accept()
        .expect_text(SUBSCRIBE)
        .faults(Faults::none().with_stall(true))
        // The client declares the server dead after 1 s + 1 s and reconnects;
        // the stalled network holds its goodbye (and its new request) until the
        // stall ends, as a frozen middlebox would.
        .wait(Duration::from_secs(3))
        .faults(Faults::none())
        .expect_disconnect()
        .within(Duration::from_millis(100))
        .expect_reconnect_within(Duration::from_secs(1))
        .expect_text(SUBSCRIBE);
    let report = scenario.run_sim(config.build().unwrap(), subscriber).unwrap();
    assert!(report.outputs.iter().any(|(_, o)| matches!(
        o.as_event(),
        Some(Event::Disconnected {
            cause: nova_proto::Disconnect::Failed(nova_proto::Error::Timeout(nova_proto::Timeout::Pong)),
            ..
        })
    )));
}

#[test]
fn fault_cut_toward_the_client_looks_dead_and_is_replaced() {
    let config = config().ping(Duration::from_millis(500), Duration::from_millis(500));
    let scenario = Scenario::new()
        .accept()
        .expect_text(SUBSCRIBE)
        .faults(Faults::none().with_cut(Direction::ToClient))
        .push(5, ms(100), |n| nova_proto::Message::text(format!("lost {n}")))
        .expect_disconnect()
        .faults(Faults::none())
        .expect_reconnect_within(Duration::from_secs(1))
        .expect_text(SUBSCRIBE);
    let report = scenario.run_sim(config.build().unwrap(), subscriber).unwrap();
    assert!(!report.outputs.iter().any(|(_, o)| matches!(o, Output::Message(_))), "nothing crossed the cut");
}

#[test]
fn fault_reset_makes_the_client_reconnect() {
    let report = Scenario::new()
        .accept()
        .expect_text(SUBSCRIBE)
        .reset_connection()
        .expect_reconnect_within(Duration::from_secs(1))
        .expect_text(SUBSCRIBE)
        .run_sim(config().build().unwrap(), subscriber)
        .unwrap();
    assert!(report.outputs.iter().any(|(_, o)| matches!(
        o.as_event(),
        Some(Event::Disconnected {
            cause: nova_proto::Disconnect::Failed(nova_proto::Error::Transport(nova_proto::TransportDown::Reset(_))),
            ..
        })
    )));
}

#[test]
fn fault_close_after_cuts_a_frame_in_half_and_the_client_recovers() {
    // The upgrade answer is 129 bytes; cut the stream 10 bytes into the next frame.
    let scenario = Scenario::new()
        .accept()
        .expect_text(SUBSCRIBE)
        .faults(Faults::none().with_close_after(139))
        .send_text("this frame will be cut half-way through")
        .wait(ms(20))
        .faults(Faults::none())
        .expect_reconnect_within(Duration::from_secs(1))
        .expect_text(SUBSCRIBE);
    let report = scenario.run_sim(config().build().unwrap(), subscriber).unwrap();
    assert!(!report.outputs.iter().any(|(_, o)| matches!(o, Output::Message(_))), "no partial message delivered");
}
