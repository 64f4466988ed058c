//! A Discord Gateway bot through nova-tokio: Identify, READY, print every
//! `MESSAGE_CREATE`, ride through a dropped connection with a Resume (the
//! same session id, continuing from the last sequence number, no second
//! Identify) and exit 0 by itself.
//!
//! ```text
//! cargo run -p nova-platforms --all-features --example discord_bot
//! # the real Gateway, the bot token from DISCORD_TOKEN:
//! cargo run -p nova-platforms --all-features --example discord_bot -- --live
//! ```
//!
//! Offline (the default) it runs against the mock Gateway on 127.0.0.1,
//! which dispatches a `MESSAGE_CREATE` every 250 ms and drops the first
//! connection 1 s in; it exits 0 once dispatches flow again on the resumed
//! session, 1 if anything else happened (re-identified, no resume, timeout).
//! Live, a drop cannot be forced: it identifies, prints the dispatches of
//! 10 s (a session resumes by itself if the Gateway drops it meanwhile) and
//! exits 0 if READY came. The token is never printed.

use std::time::Duration;

use nova_platforms::discord::{self, Discord, testing::MockDiscord};
use nova_proto::{Backoff, Secret};
use nova_testkit::MockServer;
use nova_tokio::{Connector, Event};

/// GUILD_MESSAGES | MESSAGE_CONTENT (the latter is privileged: enable it in
/// the developer portal, or message content arrives empty).
const INTENTS: u64 = 1 << 9 | 1 << 15;
const LIMIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = std::env::args().any(|a| a == "--live");
    // tokio's clock: std's `Instant::now` is kept out of this crate (adapters take time from the Session).
    let t0 = tokio::time::Instant::now();
    let at = move || format!("{:>6.2}s", t0.elapsed().as_secs_f64());

    // Kept alive for the whole run when offline.
    let mut mock = None;
    let (config, bot) = if live {
        let bot = Discord::from_env(INTENTS).unwrap_or_else(|e| {
            eprintln!("{e}: set {} to the bot token (developer portal: Bot, Reset Token)", discord::TOKEN_VAR);
            std::process::exit(1);
        });
        (discord::config(discord::GATEWAY_URL), bot)
    } else {
        let token = "mock-bot-token";
        let gateway = MockDiscord::new(token).tick(Duration::from_millis(250));
        let server = MockServer::builder()
            .lifetime(Duration::from_secs(30))
            .connection(gateway.behavior().drop_after(Duration::from_millis(1000)))
            .otherwise(gateway.behavior())
            .start()?;
        // The preset's backoff, shortened so the demo reconnects at once.
        let config = discord::config(&server.url("/?v=10&encoding=json"))
            .backoff(Backoff::constant(Duration::from_millis(200), 0.0));
        mock = Some((gateway, server));
        (config, Discord::new(Secret::new(token), INTENTS))
    };
    println!("{} connecting to the {} Gateway", at(), if live { "real" } else { "mock" });

    // The session facts (id, seq, READY) the adapter shares while it runs.
    let info = bot.info();
    // One hard limit for the whole run, connecting included (the preset
    // retries a connection that fails forever).
    let deadline = t0 + LIMIT;
    let connecting = Connector::new(config).adapter(bot).connect();
    let Ok(connected) = tokio::time::timeout_at(deadline, connecting).await else {
        eprintln!("{} no connection within {LIMIT:?}", at());
        std::process::exit(1);
    };
    let (handle, mut events) = connected?;

    let mut readies = 0u32;
    // The session id and last sequence number when the connection dropped.
    let mut dropped_at: Option<(Option<String>, Option<u64>)> = None;
    let mut resumed = false;
    let mut after_resume = 0u32;
    let mut resumes_seen = 0;
    while !(resumed && after_resume >= 3) {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                if live && readies > 0 {
                    break;
                }
                eprintln!("{} gave up after {LIMIT:?}", at());
                std::process::exit(1);
            }
            event = events.recv() => match event {
                Some(Event::Opened(opened)) => println!("{} connected (attempt {})", at(), opened.attempt),
                Some(Event::Ready { .. }) => {
                    readies += 1;
                    let session = info.session_id();
                    // `GatewayInfo` counts READY (new session) and RESUMED answers.
                    let by_resume = info.resumes() > resumes_seen;
                    resumes_seen = info.resumes();
                    match &dropped_at {
                        None => {
                            let ready = info.ready().unwrap_or_default();
                            println!(
                                "{} READY: identified as user {}, session {}, {} guilds",
                                at(),
                                ready["user"]["id"],
                                session.as_deref().unwrap_or("?"),
                                ready["guilds"].as_array().map_or(0, Vec::len),
                            );
                        }
                        Some((before, seq)) if by_resume && session.is_some() && session == *before => {
                            resumed = true;
                            println!(
                                "{} RESUMED session {} from seq {} (no new Identify)",
                                at(),
                                session.as_deref().unwrap_or("?"),
                                seq.map_or("-".into(), |s| s.to_string()),
                            );
                        }
                        Some((before, _)) => {
                            eprintln!(
                                "{} re-identified: session {before:?} was replaced by {session:?} instead of resumed",
                                at()
                            );
                            std::process::exit(1);
                        }
                    }
                }
                Some(Event::Message(message)) => {
                    let Some((name, seq, d)) = discord::dispatch(&message) else { continue };
                    let seq = seq.map_or("-".into(), |s| s.to_string());
                    if name == "MESSAGE_CREATE" {
                        if resumed {
                            after_resume += 1;
                        }
                        println!("{} #{seq} MESSAGE_CREATE in channel {}: {}", at(), d["channel_id"], d["content"]);
                    } else {
                        println!("{} #{seq} {name}", at());
                    }
                }
                Some(Event::AuthFailed { reason, retry }) => println!("{} auth failed: {reason} (retry: {retry})", at()),
                Some(Event::ServiceError { error, strategy }) => println!("{} gateway: {error} → {strategy:?}", at()),
                Some(Event::HeartbeatMissed { missed, limit }) => println!("{} heartbeat missed ({missed}/{limit})", at()),
                Some(Event::Disconnected { cause, reconnect }) => {
                    let (session, seq) = (info.session_id(), info.seq());
                    println!(
                        "{} disconnected: {cause}; reconnect in {:?}, will resume {} at seq {}",
                        at(),
                        reconnect.map(|r| r.delay),
                        session.as_deref().unwrap_or("(no session)"),
                        seq.map_or("-".into(), |s| s.to_string()),
                    );
                    // The first drop is the one the resume is checked against.
                    dropped_at.get_or_insert((session, seq));
                }
                Some(Event::Closed(closed)) => {
                    eprintln!("{} closed: {closed:?}", at());
                    std::process::exit(1);
                }
                None => break,
                Some(_) => {}
            },
        }
    }

    if let Some((gateway, _)) = &mock {
        // What the mock Gateway received, per connection: op 2 Identify, op 6 Resume.
        let ops = |conn: u32| -> Vec<u64> {
            let received = gateway.received().into_iter().filter(|(c, v)| *c == conn && v["op"] != 1);
            received.filter_map(|(_, v)| v["op"].as_u64()).collect()
        };
        let (first, second) = (ops(1), ops(2));
        println!("{} the mock received ops {first:?} on connection 1, {second:?} on connection 2", at());
        if first != [discord::OP_IDENTIFY] || second != [discord::OP_RESUME] {
            eprintln!("{} expected one Identify, then one Resume", at());
            std::process::exit(1);
        }
    }
    println!("{} done: {readies} ready, {} resumed", at(), if resumed { "1" } else { "none" });
    handle.close(1000, "done")?;
    handle.closed().await;
    if let Some((_, server)) = mock {
        server.shutdown();
    }
    Ok(())
}
