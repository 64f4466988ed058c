//! `nova`: a WebSocket client for the terminal whose session stays up.
//!
//! Four subcommands (the contract is `shared/CLI.md`):
//!
//! - `nova connect URL`: like websocat, but the session survives drops,
//!   refused upgrades and dead peers: it reconnects by itself with backoff,
//!   re-sends the `--send` messages on every connect, and keeps stdin lines
//!   typed while disconnected for the next connection. With `--platform
//!   NAME` (deribit, bybit, discord, slack, ethereum) it uses that platform's
//!   endpoint, preset, adapter and credentials from the environment, and
//!   `--subscribe TOPIC` subscribes through it (`connect/platform.rs`).
//! - `nova demo`: an offline demonstration against an embedded market-data
//!   feed that drops connections, refuses one upgrade and goes silent once.
//! - `nova echo-server`: a local echo server (tokio-tungstenite, not Nova) to
//!   try clients against.
//! - `nova new-adapter NAME`: writes a platform adapter module (adapter, mock
//!   server, tests) from templates, for a new platform in nova-platforms' shape.
//!
//! This file holds the command line definition, the dispatch and the exit
//! codes; each subcommand lives in its own module.

mod connect;
mod demo;
mod echo;
mod failure;
mod new_adapter;
mod output;
mod pretty;
mod signal;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nova_proto::Profile;

use crate::failure::Failure;

/// Exit codes, as `nova --help` lists them.
const EXIT_CODES: &str = "\
Exit codes:
  0    success: stdin ended and the session closed with 1000 (connect), the demo
       saw every tick exactly once (demo), stopped by Ctrl-C (echo-server), the
       files were written (new-adapter)
  1    the session ended for good: reconnect attempts exhausted (--max-reconnects),
       certificate rejected, stdout unwritable; a platform ended the session for
       good (authentication refused, Discord 4004, Slack link_disabled); the
       demo found gaps or duplicates; or new-adapter could not write a file
  2    usage error: unknown option, bad URL, header, profile, number or CA file;
       a platform credential missing from the environment, a bad --subscribe;
       a bad adapter NAME, or a file in the way (new-adapter without --force)
  130  interrupted by Ctrl-C (SIGINT) after closing the session gracefully (1000)
  143  terminated by SIGTERM, likewise";

/// A WebSocket client for connections that must stay up: it reconnects by
/// itself, resends your subscriptions and detects dead peers.
#[derive(Debug, Parser)]
#[command(name = "nova", version, after_help = EXIT_CODES, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to a server and keep the session up: print what it sends,
    /// send what you type.
    #[command(
        after_help = CONNECT_EXAMPLES,
        after_long_help = format!(
            "{CONNECT_DETAILS}\n\n{}\n\n{CONNECT_EXAMPLES}\n\n{EXIT_CODES}",
            connect::platform::PLATFORM_DETAILS
        ),
    )]
    Connect(ConnectArgs),
    /// Run an offline demo: a session surviving drops, a refused upgrade and
    /// a dead peer without missing a tick.
    #[command(after_help = DEMO_DETAILS)]
    Demo(DemoArgs),
    /// Run a local echo server on 127.0.0.1 until Ctrl-C.
    #[command(after_help = ECHO_DETAILS)]
    EchoServer(EchoArgs),
    /// Write a new platform adapter module: the adapter, a mock server and
    /// tests that pass, to make into a platform's.
    #[command(after_help = new_adapter::DETAILS)]
    NewAdapter(new_adapter::NewAdapterArgs),
}

/// `nova connect --help`: examples.
const CONNECT_EXAMPLES: &str = "\
Examples:
  nova connect wss://stream.example.com/ws --send '{\"op\":\"subscribe\",\"channel\":\"trades\"}' --json
  echo 'hello' | nova connect ws://127.0.0.1:9001/
  nova connect ws://127.0.0.1:9001/ --profile financial --ping-interval 2.5 --max-reconnects 5
  nova connect --platform deribit --subscribe ticker.BTC-PERPETUAL.100ms --json";

/// `nova connect --help`: the streams, delivery and reconnects.
const CONNECT_DETAILS: &str = "\
Streams:
  stdout  every text message received, one per line, unchanged (pretty-printed
          with --json when it is a JSON object or array); binary messages as
          --binary-mode says. Flushed per message, also into a pipe.
  stderr  status lines: connecting, connected (attempt N), disconnected with the
          reason and the reconnect delay, closed. --quiet keeps only errors.
  stdin   each line (without its \\n or \\r\\n) is sent as a text message. End of
          stdin sends what is still queued, closes the session with 1000, waits
          for the close handshake (bounded by the profile's close timeout) and
          exits 0. Use --no-stdin when stdin is not yours (a service, nohup).

Delivery:
  The --send messages go out first on every connection, in order. Lines typed
  while disconnected wait in a local queue of 10000 lines or 64 MiB and follow
  the --send messages once a connection opens; while that queue is full, nova
  stops reading stdin (a pipe into nova waits) instead of dropping lines. A line handed to a connection that dropped before writing
  it is sent again on the next one, so a line may arrive twice (at least once
  delivery); a line already written to the socket when the connection died
  is lost with it, as with any TCP client.

Reconnecting:
  After any disconnect (connection lost, server close, protocol error, refused
  upgrade, dead peer) nova waits for the profile's backoff (honouring
  Retry-After) and reconnects, forever unless --max-reconnects is given. A
  rejected server certificate is not retried (see --ca).";

/// `nova demo --help`: what the demo shows.
const DEMO_DETAILS: &str = "\
The demo starts a WebSocket feed on 127.0.0.1 with two instruments (BTC-USD,
ETH-USD) ticking every 20 ms, and a Nova client that subscribes to both. The
server drops the connection every few seconds, closes one with 1012, refuses
one upgrade with 503 and Retry-After: 1, and goes silent once (a dead peer
that only keepalive pings detect). On every reconnect the client resumes each
instrument from the last sequence number it saw, so no tick is missed or seen
twice. Near the end it unsubscribes from ETH-USD and checks that no ETH-USD
tick follows the acknowledgement.

Events and the summary go to stdout; a live status line goes to stderr (one
line rewritten in place on a terminal, a plain line every 5 s otherwise).
Exits 0 when there was no gap and no duplicate, 1 otherwise, 130 on Ctrl-C.";

/// `nova echo-server --help`: output and limits.
const ECHO_DETAILS: &str = "\
Prints `listening on ws://127.0.0.1:PORT` on stdout first, then one line per
connection on stderr. Messages up to 64 MiB, no compression, at most 1024
connections at once (more wait to be accepted). Ctrl-C closes every
connection with 1001 (going away) and exits 0.";

/// `nova connect`.
#[derive(Debug, Args)]
struct ConnectArgs {
    /// The server: ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (port and path
    /// optional). With --platform, optional: it overrides the platform's endpoint.
    #[arg(value_name = "URL", value_parser = parse_url, required_unless_present = "platform")]
    url: Option<String>,
    /// Send TEXT on every connect and reconnect, before stdin lines
    /// (repeatable).
    ///
    /// Each is sent as a text message, in the given order, as soon as a
    /// connection opens: a subscribe or login request, say.
    #[arg(long = "send", value_name = "TEXT")]
    send: Vec<String>,
    /// Add a header to the upgrade request, e.g. 'Authorization: Bearer abc'
    /// (repeatable).
    ///
    /// Host and Origin may be set this way too; the headers the
    /// WebSocket handshake needs (Upgrade, Connection, Sec-WebSocket-*) may not.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Offer a subprotocol in the upgrade request (repeatable, most preferred
    /// first).
    #[arg(long = "subprotocol", value_name = "NAME")]
    subprotocols: Vec<String>,
    /// Reconnect, timeout and keepalive preset (not with --platform: its own).
    #[arg(long, value_enum, value_name = "NAME", default_value_t = ProfileArg::Standard, ignore_case = true)]
    profile: ProfileArg,
    /// Ping every SECS seconds; no answer within SECS: reconnect.
    ///
    /// Fractions are allowed (0.5). When neither the pong nor any other frame
    /// arrives within SECS after a ping, the connection is declared dead and
    /// nova reconnects. Default: the profile's keepalive (standard: a ping
    /// every 30 s, dead after 10 s without an answer).
    #[arg(long, value_name = "SECS", value_parser = parse_ping_interval)]
    ping_interval: Option<Duration>,
    /// Give up (exit 1) after N consecutive failed reconnect attempts.
    ///
    /// An attempt that opens a connection resets the count; 0 never
    /// reconnects. Default: retry forever, with the profile's backoff
    /// (capped).
    #[arg(long, value_name = "N")]
    max_reconnects: Option<u32>,
    /// Pretty-print text messages that are JSON.
    ///
    /// Objects and arrays are indented (key order and number spelling kept);
    /// anything else is printed unchanged.
    #[arg(long)]
    json: bool,
    /// How binary messages are printed on stdout.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = BinaryMode::Hex)]
    binary_mode: BinaryMode,
    /// Also trust the CA certificate(s) in this PEM file.
    ///
    /// For wss:// to a server with a private CA; Mozilla's roots stay trusted.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Do not read stdin; run until interrupted.
    ///
    /// Only the --send messages are sent. For services and background jobs,
    /// whose stdin is /dev/null (its end would close the session).
    #[arg(long)]
    no_stdin: bool,
    /// No status lines on stderr; errors and data-loss warnings still appear.
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten, next_help_heading = "Platforms")]
    platform: connect::platform::PlatformArgs,
}

/// `nova demo`.
#[derive(Debug, Args)]
struct DemoArgs {
    /// How long the demo runs, in seconds (fractions allowed, 1 to 3600).
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = parse_demo_duration)]
    duration: Duration,
}

/// `nova echo-server`.
#[derive(Debug, Args)]
struct EchoArgs {
    /// The port to listen on (127.0.0.1 only); 0 picks a free one.
    #[arg(long, short = 'p', value_name = "P", default_value_t = 0)]
    port: u16,
    /// No line per connection on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// `--profile`: the presets of `nova_proto::Profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProfileArg {
    /// Reconnect at once and forever (100 ms doubling to 30 s), ping every 15 s.
    Financial,
    /// General purpose: linear backoff 1 s to 60 s, ping every 30 s.
    Standard,
    /// Non-critical: a constant 2 s between attempts, ping every 60 s.
    Lightweight,
    /// Interactive messaging: exponential backoff 1 s to 30 s, ping every 45 s.
    Messaging,
}

impl ProfileArg {
    /// The preset this name stands for.
    fn profile(self) -> Profile {
        match self {
            ProfileArg::Financial => Profile::Financial,
            ProfileArg::Standard => Profile::Standard,
            ProfileArg::Lightweight => Profile::Lightweight,
            ProfileArg::Messaging => Profile::Messaging,
        }
    }
}

/// `--binary-mode`: how a binary message is written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BinaryMode {
    /// One line of lowercase hex digits per message.
    Hex,
    /// One line of standard base64 (with padding) per message.
    Base64,
    /// The bytes as they are, with nothing added (no newline).
    Raw,
}

/// A `ws://` or `wss://` URL that Nova can connect to.
fn parse_url(url: &str) -> Result<String, String> {
    match nova_proto::Config::new(url) {
        Ok(_) => Ok(url.to_owned()),
        Err(e) => Err(failure::chain(&e)),
    }
}

/// `Name: value`, split at the first colon, both sides trimmed.
fn parse_header(header: &str) -> Result<(String, String), String> {
    let Some((name, value)) = header.split_once(':') else {
        return Err("expected 'Name: value' (no colon found)".to_owned());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("expected 'Name: value' (the name is empty)".to_owned());
    }
    if name.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(format!("header name {name:?} contains whitespace"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// A number of seconds, fractions allowed, within `min..=max`.
fn parse_seconds(text: &str, min: f64, max: f64) -> Result<Duration, String> {
    let secs: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(min..=max).contains(&secs) {
        return Err(format!("must be from {min} to {max} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--ping-interval`: above zero, at most a day. Below a millisecond would
/// flood the server.
fn parse_ping_interval(text: &str) -> Result<Duration, String> {
    parse_seconds(text, 0.001, 86_400.0)
}

/// `--duration` of the demo.
fn parse_demo_duration(text: &str) -> Result<Duration, String> {
    parse_seconds(text, 1.0, 3600.0)
}

/// Parses the command line, runs the subcommand, exits with its code.
fn main() -> ExitCode {
    // Usage errors exit 2 here (clap's convention), `--help` exits 0.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            output::error_line(format_args!("cannot start the async runtime: {e}"));
            return ExitCode::from(failure::ENDED);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Connect(args) => connect::run(args).await,
            Command::Demo(args) => demo::run(args.duration).await,
            Command::EchoServer(args) => echo::run(args.port, args.quiet).await,
            Command::NewAdapter(args) => new_adapter::run(&args),
        }
    });
    // Background tasks (a transport lingering to finish its close) get a
    // moment; the stdin reader is a plain thread that ends with the process.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, message }) => {
            output::error_line(format_args!("{message}"));
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn headers_split_at_the_first_colon() {
        assert_eq!(parse_header("Authorization: Bearer a:b"), Ok(("Authorization".into(), "Bearer a:b".into())));
        assert_eq!(parse_header("X-Empty:"), Ok(("X-Empty".into(), String::new())));
        assert!(parse_header("NoColon").is_err());
        assert!(parse_header(": value").is_err());
        assert!(parse_header("Bad Name: v").is_err());
    }

    #[test]
    fn seconds_take_fractions_and_refuse_nonsense() {
        assert_eq!(parse_ping_interval("0.2"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_ping_interval("3"), Ok(Duration::from_secs(3)));
        for bad in ["0", "-1", "nan", "inf", "abc", "", "1e9"] {
            assert!(parse_ping_interval(bad).is_err(), "{bad}");
        }
        assert!(parse_demo_duration("0.5").is_err());
        assert_eq!(parse_demo_duration("6"), Ok(Duration::from_secs(6)));
    }

    #[test]
    fn urls_must_be_websocket_urls() {
        assert!(parse_url("ws://127.0.0.1:9001/feed").is_ok());
        assert!(parse_url("wss://example.com").is_ok());
        assert!(parse_url("http://example.com").unwrap_err().contains("scheme"));
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("ws://example.com/#x").is_err());
    }

    #[test]
    fn every_profile_maps_to_its_preset() {
        for arg in ProfileArg::value_variants() {
            let name = arg.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(name.as_deref(), Some(arg.profile().name()));
        }
    }
}
