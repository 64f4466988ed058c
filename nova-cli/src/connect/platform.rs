//! `nova connect --platform NAME`: a platform's endpoint, connection preset,
//! adapter (authentication, heartbeats, subscriptions restored after every
//! reconnect) and credentials from the environment, with `--subscribe TOPIC`
//! mapped to the platform's subscriptions.
//!
//! The adapters and presets are `nova-platforms`'; this module only picks
//! them from the command line and reports their events on stderr (the
//! Slack adapter acknowledges every envelope itself). Credentials come from the platforms'
//! `from_env` constructors, whose errors name the variable and never its
//! value; nothing here prints a credential.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::Instant;

use clap::{Args, ValueEnum};
use nova_platforms::{bybit, deribit, discord, ethereum, slack};
use nova_proto::session::{Adapter, SecretError, Strategy, SubscriptionId, Topic};
use nova_proto::{Closed, Config, ConfigBuilder, Disconnect, Message, Termination};
use nova_tokio::{Connector, Event};
use serde_json::Value;

use super::Session;
use super::gaps::Gaps;
use crate::ConnectArgs;
use crate::failure::Failure;
use crate::output::{human, shown_endpoint};

/// `nova connect --help`: what `--platform` does, and the environment.
pub(crate) const PLATFORM_DETAILS: &str = "\
Platforms (--platform NAME):
  The platform's endpoint (URL optional; an explicit URL overrides it), its
  connection preset (profile, keepalive, reconnect and close-code rules), its
  adapter (authentication, heartbeats, subscriptions) and credentials from
  the environment. --subscribe TOPIC subscribes through the platform; the
  session restores every subscription after each reconnect by itself.
  Subscription data and other messages go to stdout, one per line; ready,
  authentication, subscriptions, restores and gaps to stderr. The --send
  messages and stdin lines go out as raw text once the session is ready
  (authenticated) on each connection. --profile is refused (the platform's
  preset replaces it); --ping-interval, --max-reconnects, --header,
  --subprotocol, --ca, --json, --binary-mode, --send and stdin apply on top.

  deribit   default wss://www.deribit.com/ws/api/v2 (--testnet:
            wss://test.deribit.com/ws/api/v2). DERIBIT_CLIENT_ID and
            DERIBIT_CLIENT_SECRET (optional: without both, public channels
            only; signed with client_signature, the secret never travels).
            TOPIC: a channel name, e.g. ticker.BTC-PERPETUAL.100ms,
            trades.ETH-PERPETUAL.100ms, book.BTC-PERPETUAL.100ms.
  bybit     --bybit-stream spot|linear|inverse|option|spread|private (default
            linear), wss://stream.bybit.com/v5/public/linear and so on
            (--testnet: stream-testnet.bybit.com). private needs BYBIT_API_KEY
            and BYBIT_API_SECRET. TOPIC: tickers.BTCUSDT, orderbook.50.BTCUSDT,
            publicTrade.BTCUSDT, kline.1.BTCUSDT; private: order, execution,
            position, wallet.
  discord   default wss://gateway.discord.gg/?v=10&encoding=json. DISCORD_TOKEN
            (required, the bot token without 'Bot '); --intents BITS. No
            --subscribe: dispatches are printed as they come. Close codes 4004
            and 4010-4014 end the session (exit 1).
  slack     no default: give the wss:// URL that the Web API method
            apps.connections.open returns (POST it with your app-level xapp-
            token, e.g. curl -s -X POST -H \"Authorization: Bearer $SLACK_APP_TOKEN\"
            https://slack.com/api/apps.connections.open, and take \"url\"). Each
            URL is good for one connection: a reconnect reuses it and may be
            refused. Envelopes are acknowledged by the adapter at once and printed.
            No --subscribe. disconnect link_disabled ends the session (exit 1).
  ethereum  default ws://127.0.0.1:8546 (a local node's --ws). TOPIC: newHeads,
            newPendingTransactions, syncing, logs, or logs:FILTER with a JSON
            filter, e.g. 'logs:{\"address\":\"0x...\"}'. After a reconnect each
            subscription is restored under a new id, and the gap (the last
            block seen, how long it was down) is reported on stderr.";

/// The platform options of `nova connect`.
#[derive(Debug, Args)]
pub(crate) struct PlatformArgs {
    /// Connect to a platform: its endpoint, preset, adapter and credentials
    /// from the environment (see --help).
    ///
    /// URL is optional with it (the platform's endpoint; slack has none).
    #[arg(long, value_enum, value_name = "NAME", conflicts_with = "profile")]
    pub(crate) platform: Option<PlatformName>,
    /// Subscribe through the platform (repeatable): a Deribit channel, a Bybit
    /// topic, an Ethereum subscription. Restored after every reconnect.
    #[arg(long = "subscribe", value_name = "TOPIC", requires = "platform")]
    pub(crate) subscribe: Vec<String>,
    /// Deribit and Bybit: the testnet endpoint instead of mainnet (when no URL is given).
    #[arg(long, requires = "platform")]
    pub(crate) testnet: bool,
    /// Bybit: which socket, default linear (private needs BYBIT_API_KEY and
    /// BYBIT_API_SECRET).
    #[arg(long, value_enum, value_name = "STREAM", requires = "platform")]
    pub(crate) bybit_stream: Option<BybitStream>,
    /// Discord: the gateway intents, decimal or 0x hex (default 513: GUILDS
    /// and GUILD_MESSAGES).
    #[arg(long, value_name = "BITS", value_parser = parse_intents, requires = "platform")]
    pub(crate) intents: Option<u64>,
}

/// `--intents` by default: GUILDS (1 << 0) and GUILD_MESSAGES (1 << 9).
const DEFAULT_INTENTS: u64 = 1 | 1 << 9;

/// `--platform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PlatformName {
    /// Deribit JSON-RPC: channels, optional auth.
    Deribit,
    /// Bybit v5 streams: topics; private stream with auth.
    Bybit,
    /// The Discord Gateway: a bot's dispatches.
    Discord,
    /// Slack Socket Mode: envelopes, acknowledged.
    Slack,
    /// Ethereum JSON-RPC eth_subscribe.
    Ethereum,
}

impl PlatformName {
    /// Its name on the command line.
    fn name(self) -> &'static str {
        match self {
            PlatformName::Deribit => "deribit",
            PlatformName::Bybit => "bybit",
            PlatformName::Discord => "discord",
            PlatformName::Slack => "slack",
            PlatformName::Ethereum => "ethereum",
        }
    }
}

/// `--bybit-stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BybitStream {
    /// Public spot market data.
    Spot,
    /// Public USDT/USDC perpetuals and futures.
    Linear,
    /// Public inverse contracts.
    Inverse,
    /// Public options.
    Option,
    /// Public spread trading.
    Spread,
    /// Private account streams (auth).
    Private,
}

impl BybitStream {
    fn stream(self) -> bybit::Stream {
        match self {
            BybitStream::Spot => bybit::Stream::Spot,
            BybitStream::Linear => bybit::Stream::Linear,
            BybitStream::Inverse => bybit::Stream::Inverse,
            BybitStream::Option => bybit::Stream::Option,
            BybitStream::Spread => bybit::Stream::Spread,
            BybitStream::Private => bybit::Stream::Private,
        }
    }
}

/// `--intents`: decimal or `0x` hex.
fn parse_intents(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not a number (decimal or 0x hex)"))
}

/// Puts a platform's adapter on the connector.
type Attach = Box<dyn FnOnce(Connector) -> Connector + Send>;

/// The [`Attach`] for `adapter`.
fn attach<A: Adapter + Send + 'static>(adapter: A) -> Attach {
    Box::new(move |connector: Connector| connector.adapter(adapter))
}

/// What `--platform` chose, before the session starts.
pub(crate) struct Prepared {
    name: PlatformName,
    /// Taken by [`Prepared::attach`].
    adapter: Option<Attach>,
    /// (as given on the command line, the platform's topic), in order.
    topics: Vec<(String, Topic)>,
    /// Whether the adapter authenticates (credentials were found).
    authenticates: bool,
    /// The variables to check when authentication fails.
    credential_vars: &'static str,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the adapter: it holds the credentials (their Debug hides
        // them, but nothing here needs to rely on it).
        f.debug_struct("Prepared").field("name", &self.name).field("topics", &self.topics.len()).finish()
    }
}

/// The platform's configuration preset on the URL given, or on its default
/// endpoint, plus its adapter and subscriptions.
///
/// # Errors
///
/// A usage failure for a missing URL (slack), a credential missing from the
/// environment (named, never shown), a `--subscribe` the platform cannot take.
pub(crate) fn prepare(args: &ConnectArgs, name: PlatformName) -> Result<(ConfigBuilder, Prepared), Failure> {
    let p = &args.platform;
    let misplaced = [
        (p.testnet && !matches!(name, PlatformName::Deribit | PlatformName::Bybit), "--testnet"),
        (p.bybit_stream.is_some() && name != PlatformName::Bybit, "--bybit-stream"),
        (p.intents.is_some() && name != PlatformName::Discord, "--intents"),
    ]
    .into_iter()
    .find_map(|(misplaced, option)| misplaced.then_some(option));
    if let Some(option) = misplaced {
        return Err(Failure::usage(format!("{option} does not apply to --platform {}", name.name())));
    }
    let url = |default: String| args.url.clone().unwrap_or(default);
    let no_subscribe = || -> Result<(), Failure> {
        match p.subscribe.first() {
            Some(topic) => Err(Failure::usage(format!(
                "--subscribe {topic:?}: {} has no subscriptions ({}); leave --subscribe out",
                name.name(),
                match name {
                    PlatformName::Discord => "the Gateway sends the dispatches the --intents select",
                    _ => "Socket Mode delivers every envelope of the app",
                }
            ))),
            None => Ok(()),
        }
    };
    let raw_topics = |what: &str| -> Result<Vec<(String, Topic)>, Failure> {
        p.subscribe.iter().map(|t| Ok((t.clone(), Topic::new(plain_topic(t, what)?)))).collect()
    };
    let (builder, adapter, topics, authenticates, credential_vars) = match name {
        PlatformName::Deribit => {
            let default = if p.testnet { deribit::TESTNET_URL } else { deribit::PRODUCTION_URL };
            let builder = deribit::config(&url(default.to_owned()));
            let vars = [deribit::CLIENT_ID_VAR, deribit::CLIENT_SECRET_VAR];
            let mut adapter = deribit::Deribit::new();
            let authenticates = vars.iter().any(|v| std::env::var_os(v).is_some_and(|v| v != OsString::new()));
            if authenticates {
                adapter = adapter.credentials(deribit::Credentials::from_env().map_err(|e| {
                    secret_failure(&e, "set both for authentication, neither for public channels only")
                })?);
            }
            let topics = raw_topics("a Deribit channel, e.g. ticker.BTC-PERPETUAL.100ms")?;
            (builder, attach(adapter), topics, authenticates, "DERIBIT_CLIENT_ID and DERIBIT_CLIENT_SECRET")
        }
        PlatformName::Bybit => {
            let stream = p.bybit_stream.unwrap_or(BybitStream::Linear).stream();
            let builder = bybit::config(&url(stream.url(p.testnet)));
            let mut adapter = bybit::Bybit::new(stream);
            let authenticates = stream.is_authenticated();
            if authenticates {
                let credentials = bybit::Credentials::from_env().map_err(|e| {
                    secret_failure(&e, "--bybit-stream private needs BYBIT_API_KEY and BYBIT_API_SECRET")
                })?;
                adapter = adapter.credentials(credentials);
            }
            let topics = raw_topics("a Bybit topic, e.g. tickers.BTCUSDT")?;
            (builder, attach(adapter), topics, authenticates, "BYBIT_API_KEY and BYBIT_API_SECRET")
        }
        PlatformName::Discord => {
            no_subscribe()?;
            let adapter = discord::Discord::from_env(p.intents.unwrap_or(DEFAULT_INTENTS))
                .map_err(|e| secret_failure(&e, "--platform discord needs the bot token"))?;
            let builder = discord::config(&url(discord::GATEWAY_URL.to_owned()));
            (builder, attach(adapter), Vec::new(), true, "DISCORD_TOKEN")
        }
        PlatformName::Slack => {
            no_subscribe()?;
            let Some(url) = &args.url else {
                return Err(Failure::usage(
                    "--platform slack needs the wss:// URL from apps.connections.open as the URL argument \
                     (see nova connect --help)",
                ));
            };
            (slack::config(url), attach(slack::Slack::new()), Vec::new(), false, "")
        }
        PlatformName::Ethereum => {
            let builder = ethereum::config(&url(ethereum::LOCAL_URL.to_owned()));
            let topics = p.subscribe.iter().map(|t| Ok((t.clone(), ethereum_topic(t)?))).collect::<Result<_, _>>()?;
            (builder, attach(ethereum::Ethereum::new()), topics, false, "")
        }
    };
    for (i, (given, _)) in topics.iter().enumerate() {
        if topics[..i].iter().any(|(earlier, _)| earlier == given) {
            return Err(Failure::usage(format!("--subscribe {given:?} is given twice")));
        }
    }
    Ok((builder, Prepared { name, adapter: Some(adapter), topics, authenticates, credential_vars }))
}

/// A credential missing from the environment: the variable, never a value.
fn secret_failure(error: &SecretError, hint: &str) -> Failure {
    Failure::usage(format!("{error} ({hint})"))
}

/// A topic passed as it is: not empty, no whitespace.
fn plain_topic(topic: &str, what: &str) -> Result<String, Failure> {
    if topic.is_empty() || topic.chars().any(char::is_whitespace) {
        return Err(Failure::usage(format!("--subscribe {topic:?}: expected {what}")));
    }
    Ok(topic.to_owned())
}

/// `newHeads`, `newPendingTransactions`, `syncing`, `logs`, `logs:FILTER`.
fn ethereum_topic(topic: &str) -> Result<Topic, Failure> {
    let usage = |why: &str| {
        Failure::usage(format!(
            "--subscribe {topic:?}: {why} (expected newHeads, newPendingTransactions, syncing, logs or logs:FILTER \
             with a JSON object)"
        ))
    };
    match topic.trim() {
        "newHeads" => return Ok(ethereum::new_heads()),
        "newPendingTransactions" => return Ok(ethereum::new_pending_transactions()),
        "syncing" => return Ok(ethereum::syncing()),
        _ => {}
    }
    let Some(rest) = topic.trim().strip_prefix("logs") else { return Err(usage("unknown subscription")) };
    let filter = rest.trim_start().strip_prefix([':', '=']).unwrap_or(rest).trim();
    if filter.is_empty() {
        return Ok(ethereum::logs(&Value::Object(Default::default())));
    }
    match serde_json::from_str::<Value>(filter) {
        Ok(filter @ Value::Object(_)) => Ok(ethereum::logs(&filter)),
        Ok(_) => Err(usage("the logs filter is not a JSON object")),
        Err(e) => Err(usage(&format!("the logs filter is not valid JSON: {e}"))),
    }
}

impl Prepared {
    /// The connector with the platform's adapter.
    pub(crate) fn attach(&mut self, connector: Connector) -> Connector {
        match self.adapter.take() {
            Some(attach) => attach(connector),
            None => connector,
        }
    }

    /// The endpoint for status lines. Ethereum providers put the API key in
    /// the path (Infura's project id, Alchemy's key): it is left out.
    pub(crate) fn shown(&self, config: &Config) -> String {
        let shown = shown_endpoint(config);
        if self.name != PlatformName::Ethereum {
            return shown;
        }
        let path = shown.find("://").and_then(|scheme| shown[scheme + 3..].find('/').map(|at| scheme + 3 + at));
        match path {
            Some(at) if shown.len() > at + 1 => format!("{}/...", &shown[..at]),
            _ => shown,
        }
    }

    /// The topics to subscribe, in order.
    pub(crate) fn topics(&self) -> &[(String, Topic)] {
        &self.topics
    }

    /// The running state, once the subscriptions are made.
    pub(crate) fn live(self, names: BTreeMap<SubscriptionId, String>) -> Live {
        Live {
            name: self.name,
            names,
            authenticates: self.authenticates,
            credential_vars: self.credential_vars,
            gaps: (self.name == PlatformName::Ethereum).then(Gaps::default),
            readies: 0,
            ready: false,
            auth_failure: None,
            service_error: None,
        }
    }
}

/// A platform session's state in the connect loop.
#[derive(Debug)]
pub(crate) struct Live {
    name: PlatformName,
    /// Subscription id → the topic as given.
    names: BTreeMap<SubscriptionId, String>,
    authenticates: bool,
    credential_vars: &'static str,
    /// Ethereum: what a restore may have missed.
    gaps: Option<Gaps>,
    /// `Ready` events so far.
    readies: u64,
    /// The current connection is ready (authenticated, restored).
    pub(crate) ready: bool,
    /// The last authentication refusal's reason.
    auth_failure: Option<String>,
    /// The last service error (a Slack disconnect reason, say).
    service_error: Option<String>,
}

impl Live {
    /// The topic as given on the command line.
    fn topic(&self, id: SubscriptionId) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| format!("{id:?}"))
    }

    /// Subscription data arrived: Ethereum's gap tracking reads it; the
    /// status line when it shows a restore.
    pub(crate) fn data(&mut self, subscription: SubscriptionId, message: &Message) -> Option<String> {
        let gap = self.gaps.as_mut()?.data(Instant::now(), subscription, message)?;
        Some(format!("gap: {} {}", self.topic(subscription), gap.describe()))
    }

    /// The connection dropped.
    pub(crate) fn disconnected(&mut self) {
        self.ready = false;
    }

    /// The message on stderr, and the exit failure, when the session ended
    /// for a platform reason: `None` to leave it to the generic message.
    pub(crate) fn ended(&self, closed: &Closed, cause: Option<&Disconnect>) -> Option<Failure> {
        match closed.termination {
            Termination::AuthFailed => {
                let reason = self.auth_failure.as_deref().unwrap_or("refused");
                let check = match self.credential_vars {
                    "" => String::new(),
                    vars => format!(" (check {vars})"),
                };
                Some(Failure::ended(format!("{}: authentication refused for good: {reason}{check}", self.name.name())))
            }
            Termination::Stopped => {
                let why = self.service_error.as_deref().unwrap_or("a service error");
                Some(Failure::ended(format!("{} stopped the session: {why}", self.name.name())))
            }
            Termination::NotRetried => match (self.name, cause) {
                (PlatformName::Discord, Some(Disconnect::ServerClosed { code, reason })) => {
                    let hint = match code.0 {
                        4004 => "authentication failed: check DISCORD_TOKEN",
                        4010 => "invalid shard",
                        4011 => "sharding required",
                        4012 => "invalid API version",
                        4013 => "invalid intents: check --intents",
                        4014 => "disallowed intents: enable the privileged intents for the bot, or change --intents",
                        _ => "not retried",
                    };
                    let reason = if reason.is_empty() { String::new() } else { format!(" ({reason})") };
                    Some(Failure::ended(format!("discord closed the session with {code}{reason}: {hint}")))
                }
                _ => None,
            },
            _ => None,
        }
    }
}

impl Session {
    /// Whether lines may go out now: on an open connection, and with a
    /// platform once the session is ready (authenticated) on it.
    pub(super) fn can_send(&self) -> bool {
        self.connected && self.platform.as_ref().is_none_or(|p| p.ready)
    }

    /// A subscription's message: printed, and for Ethereum looked at for gaps.
    pub(super) fn on_data(&mut self, id: SubscriptionId, message: &Message) {
        if let Some(gap) = self.platform.as_mut().and_then(|p| p.data(id, message)) {
            self.status.line(format_args!("{gap}"));
        }
        self.print(message);
    }

    /// The behaviour layer's events: status lines, and the `--send`
    /// messages once ready.
    pub(super) fn on_platform_event(&mut self, event: Event) {
        let Some(platform) = self.platform.as_mut() else { return };
        match event {
            Event::Ready { restored, failed } => {
                platform.ready = true;
                platform.readies += 1;
                let auth = if platform.authenticates { " (authenticated)" } else { "" };
                let subs = match (platform.readies, restored) {
                    (_, 0) => String::new(),
                    (1, n) => format!(", subscribed to {n} topic{}", plural(n)),
                    (_, n) => format!(", restored {n} subscription{}", plural(n)),
                };
                let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
                self.status.line(format_args!("ready{auth}{subs}{failed}"));
                self.send_preamble();
            }
            Event::AuthFailed { reason, retry } => {
                let then = if retry { "; reconnecting" } else { "" };
                self.status.warn(format_args!("authentication failed: {reason}{then}"));
                platform.auth_failure = Some(reason);
            }
            Event::Subscribed { id, latency } => {
                let topic = platform.topic(id);
                self.status.line(format_args!("subscribed {topic} ({})", human(latency)));
            }
            Event::SubscriptionFailed { id, error } => {
                let topic = platform.topic(id);
                if let Some(gaps) = &mut platform.gaps {
                    gaps.ended(id);
                }
                self.status.warn(format_args!("subscription {topic} failed: {error}"));
            }
            Event::Unsubscribed { id } => {
                self.status.line(format_args!("unsubscribed {}", platform.topic(id)));
            }
            Event::ServiceError { error, strategy } => {
                let text = match error.code {
                    Some(code) => format!("{} (code {code})", error.message),
                    None => error.message.clone(),
                };
                let then = match strategy {
                    Strategy::Continue => "carrying on".to_owned(),
                    Strategy::Reconnect => "reconnecting".to_owned(),
                    Strategy::RetryAfter(wait) => format!("reconnecting after {}", human(wait)),
                    Strategy::Stop => "ending the session".to_owned(),
                    _ => format!("{strategy:?}"),
                };
                self.status.line(format_args!("service error: {text}; {then}"));
                platform.service_error = Some(text);
            }
            Event::HeartbeatMissed { missed, limit } => {
                self.status.line(format_args!("heartbeat missed ({missed} of {limit})"));
            }
            Event::Malformed { error, message } => {
                let name = platform.name.name();
                self.status.line(format_args!("a message the {name} adapter did not understand ({error}):"));
                self.print(&message);
            }
            _ => {}
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_take_decimal_and_hex() {
        assert_eq!(parse_intents("513"), Ok(513));
        assert_eq!(parse_intents("0x201"), Ok(513));
        assert!(parse_intents("lots").is_err());
    }

    #[test]
    fn ethereum_topics_map_to_eth_subscribe_params() {
        assert_eq!(ethereum_topic("newHeads").unwrap().as_str(), r#"["newHeads"]"#);
        assert_eq!(ethereum_topic("logs").unwrap().as_str(), r#"["logs",{}]"#);
        assert_eq!(ethereum_topic(r#"logs:{"address":"0xa"}"#).unwrap().as_str(), r#"["logs",{"address":"0xa"}]"#);
        assert!(ethereum_topic("logs:[1]").unwrap_err().message.contains("not a JSON object"));
        assert!(ethereum_topic("blocks").unwrap_err().message.contains("unknown subscription"));
    }
}
