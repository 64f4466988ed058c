//! The reconnect policy's circuit breaker in the deterministic simulation:
//! a server that keeps refusing is left alone for a cool-down, probed once,
//! and the breaker closes on success or opens for longer on failure.

mod sim;

use std::time::Duration;

use nova_proto::{Backoff, CircuitBreaker, Config, Event, Reconnect, State};
use sim::{Sim, Upgrade, events, ms, secs};

/// 100 ms doubling to 1 s, no jitter; the breaker opens after 3 failures
/// within 10 s, for 5 s doubling up to 20 s.
fn config() -> nova_proto::ConfigBuilder {
    Config::builder("ws://sim.test/feed")
        .backoff(Backoff::exponential(ms(100), secs(1), 0.0))
        .max_attempts(None)
        .circuit_breaker(Some(CircuitBreaker::new(3, secs(10), secs(5)).max_cool_down(secs(20))))
}

/// Every reconnect plan announced, in order.
fn plans(sim: &mut Sim) -> Vec<Reconnect> {
    events(&sim.take())
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::Disconnected { reconnect: Some(r), .. } => Some(r),
            _ => None,
        })
        .collect()
}

fn summary(plans: &[Reconnect]) -> Vec<(u32, Duration, bool)> {
    plans.iter().map(|r| (r.attempt, r.delay, r.breaker_open)).collect()
}

#[test]
fn the_breaker_opens_after_consecutive_refusals_and_a_successful_probe_closes_it() {
    let mut sim = Sim::new(config().build().unwrap(), 1);
    sim.upgrades.extend(std::iter::repeat_n(Upgrade::RefuseTcp, 3));
    sim.connect();
    sim.run_until_state(State::Open, secs(30));
    let plans = plans(&mut sim);
    assert_eq!(summary(&plans), [(1, ms(100), false), (2, ms(200), false), (3, secs(5), true)]);
    // Nothing was attempted during the cool-down: the probe is the next attempt.
    let opened_at = sim.elapsed();
    let refused_at = plans[2].at - sim.t0 - secs(5);
    assert_eq!(opened_at, refused_at + secs(5) + ms(15), "up at +5 ms, the 101 back at +15 ms");
    // Closed again: a drop later is backoff only.
    sim.server_hang_up();
    sim.reopen(secs(5));
    assert_eq!(summary(&self::plans(&mut sim)), [(4, ms(800), false)]);
}

#[test]
fn a_failed_probe_opens_it_again_for_twice_as_long_up_to_the_cap() {
    let mut sim = Sim::new(config().build().unwrap(), 2);
    sim.upgrades.extend(std::iter::repeat_n(Upgrade::RefuseTcp, 7));
    sim.connect();
    sim.run_until_state(State::Open, secs(120));
    assert_eq!(
        summary(&plans(&mut sim)),
        [
            (1, ms(100), false),
            (2, ms(200), false),
            (3, secs(5), true),
            (4, secs(10), true),
            (5, secs(20), true),
            (6, secs(20), true),
            (7, secs(20), true),
        ]
    );
    assert_eq!(opened(&sim).attempt, 7);
}

/// The `Opened` of the current connection, from the transcript.
fn opened(sim: &Sim) -> nova_proto::Opened {
    sim.transcript
        .iter()
        .rev()
        .find_map(|(_, r)| match r {
            sim::Record::Output(out) => match out.as_event() {
                Some(Event::Opened(o)) => Some(o.clone()),
                _ => None,
            },
            _ => None,
        })
        .expect("a connection opened")
}

#[test]
fn failures_spread_wider_than_the_window_are_left_to_the_backoff() {
    let breaker = CircuitBreaker::new(3, ms(250), secs(5));
    let mut sim = Sim::new(config().circuit_breaker(Some(breaker)).build().unwrap(), 3);
    sim.upgrades.extend(std::iter::repeat_n(Upgrade::RefuseTcp, 6));
    sim.connect();
    sim.run_until_state(State::Open, secs(30));
    let plans = plans(&mut sim);
    assert_eq!(plans.len(), 6);
    assert!(plans.iter().all(|r| !r.breaker_open && r.delay <= secs(1)), "{plans:?}");
}

#[test]
fn a_retry_after_longer_than_the_cool_down_wins() {
    // 30 s apart, the refusals fall within a 2 minute window (not 10 s).
    let breaker = CircuitBreaker::new(3, secs(120), secs(5));
    let mut sim = Sim::new(config().circuit_breaker(Some(breaker)).build().unwrap(), 4);
    let refuse = Upgrade::Reject { status: 503, headers: "Retry-After: 30\r\n".into() };
    sim.upgrades.extend(std::iter::repeat_n(refuse, 3));
    sim.connect();
    sim.run_until_state(State::Open, secs(120));
    let plans = plans(&mut sim);
    assert_eq!(summary(&plans), [(1, secs(30), false), (2, secs(30), false), (3, secs(30), true)]);
}

#[test]
fn max_attempts_still_ends_the_session_while_the_breaker_holds_attempts_back() {
    let mut sim = Sim::new(config().max_attempts(Some(4)).build().unwrap(), 5);
    sim.upgrades.extend(std::iter::repeat_n(Upgrade::RefuseTcp, 10));
    sim.connect();
    sim.run_until_state(State::Closed, secs(120));
    let evs = events(&sim.take());
    let held: Vec<bool> = evs
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Disconnected { reconnect: Some(r), .. } => Some(r.breaker_open),
            _ => None,
        })
        .collect();
    assert_eq!(held, [false, false, true, true]);
    assert!(
        matches!(&evs.last().unwrap().1, Event::Closed(c) if c.termination == nova_proto::Termination::GaveUp { attempts: 4 })
    );
}

#[test]
fn a_breaker_scenario_replays_exactly_with_the_same_seed() {
    fn run(seed: u64) -> String {
        let config = config().backoff(Backoff::exponential(ms(100), secs(1), 0.5)).build().unwrap();
        let mut sim = Sim::new(config, seed);
        sim.upgrades.extend(std::iter::repeat_n(Upgrade::RefuseTcp, 5));
        sim.connect();
        sim.run_until_state(State::Open, secs(120));
        sim.transcript_text()
    }
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8), "jitter spreads the cool-down by seed");
}
