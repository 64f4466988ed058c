//! `nova connect --platform NAME` end to end: the real binary against the
//! platforms' mock servers (nova-platforms, feature `testing`) on
//! 127.0.0.1, credentials in the child's environment only.
//!
//! Every wait is bounded and every child is killed when its handle drops.

use std::time::Duration;

use nova_platforms::WallClock;
use nova_platforms::bybit::{Stream, testing::MockBybit};
use nova_platforms::deribit::testing::MockDeribit;
use nova_platforms::discord::testing::MockDiscord;
use nova_platforms::ethereum::testing::MockEthereum;
use nova_platforms::slack::{self, testing::MockSlack};
use nova_proto::Secret;
use nova_testkit::MockServer;
use serde_json::Value;

mod support;

use support::Nova;

/// `nova` with `env` set (and no other platform credentials).
fn start(args: &[&str], env: &[(&str, &str)]) -> Nova {
    Nova::start_env(args, std::process::Stdio::piped(), env)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// stdout's lines that are JSON.
fn json_lines(out: &str) -> Vec<Value> {
    out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

const DERIBIT_SECRET: &str = "deribit-secret-never-shown";
const CHANNEL: &str = "ticker.BTC-PERPETUAL.100ms";
/// A raw JSON-RPC request for --send, with an id of the user's own.
const GET_TIME: &str = r#"{"jsonrpc":"2.0","id":"cli-time","method":"public/get_time","params":{}}"#;

#[test]
fn deribit_authenticates_from_the_environment_and_the_ticker_flows_again_after_a_drop() {
    let mock = MockDeribit::new("CLI-KEY", &Secret::new(DERIBIT_SECRET)).tick(ms(20));
    // Dropped once the server sent a dozen messages (the auth, subscribe and
    // --send answers, ticks): after the first ready, however slow the machine.
    let server = MockServer::builder()
        .lifetime(secs(30))
        .connection(mock.behavior().drop_after_messages(12))
        .otherwise(mock.behavior())
        .start()
        .unwrap();
    let mut nova = start(
        &["connect", &server.url("/ws/api/v2"), "--platform", "deribit", "--subscribe", CHANNEL, "--send", GET_TIME],
        &[("DERIBIT_CLIENT_ID", "CLI-KEY"), ("DERIBIT_CLIENT_SECRET", DERIBIT_SECRET)],
    );
    nova.wait_stderr("ready (authenticated)", secs(10));
    nova.wait_stdout(CHANNEL, secs(10));
    nova.wait_stderr("disconnected", secs(10));
    nova.wait_stderr("ready (authenticated), restored 1 subscription", secs(10));
    let before = nova.stdout_text().lines().count();
    nova.wait_for("ticker data after the restore", secs(10), |out, _| out.lines().count() >= before + 3);

    let calls =
        |conn: u32| -> Vec<String> { mock.calls().into_iter().filter(|(c, _)| *c == conn).map(|(_, m)| m).collect() };
    // The --send message goes out once ready (after the auth, the
    // heartbeat setup and the subscription), on every connection.
    for conn in [1, 2] {
        assert_eq!(
            calls(conn)[..4],
            ["public/auth", "public/set_heartbeat", "public/subscribe", "public/get_time"],
            "connection {conn}"
        );
    }
    let lines = json_lines(&nova.stdout_text());
    let data: Vec<&Value> = lines.iter().filter(|v| v["method"] == "subscription").collect();
    assert!(data.iter().all(|v| v["params"]["channel"] == CHANNEL), "only ticker data: {data:?}");
    let answers = lines.iter().filter(|v| v["id"] == "cli-time").count();
    assert_eq!(answers, 2, "the answer to the --send request is printed, once per connection");
    nova.finish();
    let err = nova.stderr_text();
    assert!(err.contains("subscribed ticker.BTC-PERPETUAL.100ms"), "{err}");
    assert!(!err.contains(DERIBIT_SECRET) && !nova.stdout_text().contains(DERIBIT_SECRET), "the secret leaked");
    server.shutdown();
}

#[test]
fn deribit_without_credentials_is_public_only() {
    let mock = MockDeribit::new("CLI-KEY", &Secret::new(DERIBIT_SECRET)).tick(ms(20));
    let server = MockServer::builder().lifetime(secs(30)).otherwise(mock.behavior()).start().unwrap();
    let mut nova =
        start(&["connect", &server.url("/ws/api/v2"), "--platform", "deribit", "--subscribe", CHANNEL, "--json"], &[]);
    nova.wait_stdout("\"channel\": \"ticker.BTC-PERPETUAL.100ms\"", secs(10));
    nova.finish();
    assert!(!mock.calls().iter().any(|(_, m)| m == "public/auth"), "{:?}", mock.calls());
    // Without authentication the session may be ready before the subscribe
    // goes out: "ready" then "subscribed", or "ready, subscribed to 1 topic".
    let err = nova.stderr_text();
    assert!(err.contains("nova: ready") && !err.contains("authenticated"), "{err}");
    assert!(err.contains("subscribed ticker.BTC-PERPETUAL.100ms"), "{err}");
    server.shutdown();
}

#[test]
fn deribit_credentials_refused_for_good_end_with_exit_1_naming_the_variables() {
    let mock = MockDeribit::new("CLI-KEY", &Secret::new(DERIBIT_SECRET)).tick(ms(20));
    let server = MockServer::builder().lifetime(secs(30)).otherwise(mock.behavior()).start().unwrap();
    let mut nova = start(
        &["connect", &server.url("/ws/api/v2"), "--platform", "deribit", "--subscribe", CHANNEL],
        &[("DERIBIT_CLIENT_ID", "CLI-KEY"), ("DERIBIT_CLIENT_SECRET", "a-wrong-secret-never-shown")],
    );
    let status = nova.wait_exit(secs(15));
    let err = nova.stderr_text();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("authentication refused for good"), "{err}");
    assert!(err.contains("check DERIBIT_CLIENT_ID and DERIBIT_CLIENT_SECRET"), "{err}");
    assert!(!err.contains("a-wrong-secret-never-shown") && !nova.stdout_text().contains("a-wrong-secret"), "{err}");
    assert_eq!(server.connections().len(), 1, "not retried");
    server.shutdown();
}

#[test]
fn bybit_public_and_private_topics_are_subscribed_and_printed() {
    let spot = MockBybit::new(Stream::Spot, "K", Secret::new("bybit-secret"), WallClock::system()).tick(ms(20));
    let spot_server = MockServer::builder().lifetime(secs(30)).otherwise(spot.behavior()).start().unwrap();
    let private = MockBybit::new(Stream::Private, "K", Secret::new("bybit-secret"), WallClock::system()).tick(ms(20));
    let private_server = MockServer::builder().lifetime(secs(30)).otherwise(private.behavior()).start().unwrap();

    let spot_url = spot_server.url("/v5/public/spot");
    let mut public = start(
        &[
            "connect",
            &spot_url,
            "--platform",
            "bybit",
            "--bybit-stream",
            "spot",
            "--subscribe",
            "tickers.BTCUSDT",
            "--subscribe",
            "publicTrade.ETHUSDT",
        ],
        &[],
    );
    let private_url = private_server.url("/v5/private");
    let mut account = start(
        &["connect", &private_url, "--platform", "bybit", "--bybit-stream", "private", "--subscribe", "order"],
        &[("BYBIT_API_KEY", "K"), ("BYBIT_API_SECRET", "bybit-secret")],
    );
    public.wait_for("data of both topics", secs(10), |out, _| {
        out.contains("\"topic\":\"tickers.BTCUSDT\"") && out.contains("\"topic\":\"publicTrade.ETHUSDT\"")
    });
    account.wait_stdout("\"topic\":\"order\"", secs(10));
    public.finish();
    account.finish();

    let subscribed: Vec<String> = spot
        .received()
        .into_iter()
        .filter(|(_, v)| v["op"] == "subscribe")
        .flat_map(|(_, v)| v["args"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    assert_eq!(subscribed, ["tickers.BTCUSDT", "publicTrade.ETHUSDT"]);
    let ops: Vec<String> = private
        .received()
        .into_iter()
        .filter_map(|(_, v)| v["op"].as_str().map(str::to_owned))
        .filter(|op| op != "ping")
        .collect();
    assert_eq!(ops[..2], ["auth", "subscribe"], "auth before the private subscription");
    assert!(account.stderr_text().contains("ready (authenticated)"), "{}", account.stderr_text());
    assert!(!account.stderr_text().contains("bybit-secret"));
    spot_server.shutdown();
    private_server.shutdown();
}

#[test]
fn ethereum_new_heads_flow_again_after_a_reconnect_under_a_new_id_and_the_gap_is_reported() {
    let mock = MockEthereum::new().tick(ms(20));
    // Dropped after the subscribe answer and a few heads.
    let server = MockServer::builder()
        .lifetime(secs(30))
        .connection(mock.behavior().drop_after_messages(8))
        .otherwise(mock.behavior())
        .start()
        .unwrap();
    // A hosted provider's URL carries its key in the path: never shown.
    let url = server.url("/v3/eth-key-never-shown");
    let mut nova = start(&["connect", &url, "--platform", "ethereum", "--subscribe", "newHeads"], &[]);
    nova.wait_stderr("subscribed newHeads", secs(10));
    // A raw JSON-RPC call typed on stdin goes out as it is, once ready.
    nova.send_line(r#"{"jsonrpc":"2.0","id":"cli-1","method":"eth_chainId","params":[]}"#);
    nova.wait_stderr("disconnected", secs(10));
    nova.wait_stderr("gap: newHeads restored under a new subscription id, no data for", secs(10));
    let ids = |out: &str| -> Vec<String> {
        let mut ids: Vec<String> =
            json_lines(out).iter().filter_map(|v| v["params"]["subscription"].as_str().map(str::to_owned)).collect();
        ids.dedup();
        ids
    };
    nova.wait_for("heads under a second subscription id", secs(10), |out, _| ids(out).len() >= 2);
    nova.finish();
    let err = nova.stderr_text();
    assert!(err.contains("last block before the drop") && err.contains("first after"), "{err}");
    assert!(err.contains("/...") && !err.contains("eth-key-never-shown"), "{err}");
    assert!(
        mock.received().iter().any(|(_, v)| v["method"] == "eth_chainId" && v["id"] == "cli-1"),
        "the stdin line reached the node: {:?}",
        mock.received()
    );
    let subscribes = mock.received().iter().filter(|(_, v)| v["method"] == "eth_subscribe").count();
    assert_eq!(subscribes, 2, "subscribed once per connection, by the session");
    server.shutdown();
}

const DISCORD_TOKEN: &str = "discord-token-never-shown";

#[test]
fn discord_dispatches_are_printed_and_4004_ends_with_exit_1() {
    let mock = MockDiscord::new(DISCORD_TOKEN).tick(ms(20));
    let server = MockServer::builder().lifetime(secs(30)).otherwise(mock.behavior()).start().unwrap();
    let mut bot = start(&["connect", &server.url("/"), "--platform", "discord"], &[("DISCORD_TOKEN", DISCORD_TOKEN)]);
    bot.wait_stdout("\"t\":\"MESSAGE_CREATE\"", secs(10));
    bot.finish();
    assert!(bot.stderr_text().contains("ready (authenticated)"), "{}", bot.stderr_text());
    let identify = mock.received().into_iter().find(|(_, v)| v["op"] == 2).expect("an Identify");
    assert_eq!(identify.1["d"]["intents"], 513);

    let refused = MockDiscord::new(DISCORD_TOKEN).tick(ms(20));
    let refusing = MockServer::builder()
        .lifetime(secs(30))
        .otherwise(refused.behavior().close_after(ms(300), 4004, "Authentication failed"))
        .start()
        .unwrap();
    let mut nova =
        start(&["connect", &refusing.url("/"), "--platform", "discord"], &[("DISCORD_TOKEN", DISCORD_TOKEN)]);
    let status = nova.wait_exit(secs(15));
    let err = nova.stderr_text();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("4004") && err.contains("check DISCORD_TOKEN"), "{err}");
    assert_eq!(refusing.connections().len(), 1, "no reconnect after 4004");
    for output in [err, nova.stdout_text(), bot.stderr_text(), bot.stdout_text()] {
        assert!(!output.contains(DISCORD_TOKEN), "the token leaked: {output}");
    }
    server.shutdown();
    refusing.shutdown();
}

#[test]
fn slack_envelopes_are_acknowledged_and_printed_and_link_disabled_ends_with_exit_1() {
    let mock = MockSlack::new(2).tick(ms(20)).disconnect_with(slack::LINK_DISABLED);
    let server = MockServer::builder().lifetime(secs(30)).otherwise(mock.behavior()).start().unwrap();
    let mut nova = start(&["connect", &server.url("/link/?ticket=T"), "--platform", "slack"], &[]);
    let status = nova.wait_exit(secs(15));
    let err = nova.stderr_text();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("link_disabled"), "{err}");
    let printed: Vec<String> =
        json_lines(&nova.stdout_text()).iter().filter_map(|v| v["envelope_id"].as_str().map(str::to_owned)).collect();
    assert_eq!(printed.len(), 3, "two events and a slash command: {printed:?}");
    let acked: Vec<String> = mock.acks().iter().filter_map(|a| a["envelope_id"].as_str().map(str::to_owned)).collect();
    assert_eq!(acked, printed, "each envelope acknowledged by nova");
    assert!(!err.contains("ticket=T"), "the URL's ticket is not shown: {err}");
}

/// Arguments, environment, what stderr must say.
type UsageCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn platform_usage_errors_exit_2_and_never_show_a_secret() {
    let cases: &[UsageCase<'_>] = &[
        (&["connect", "--platform", "discord", "--subscribe", "x"], &[("DISCORD_TOKEN", "t")], "has no subscriptions"),
        (&["connect", "--platform", "slack", "ws://h/", "--subscribe", "x"], &[], "has no subscriptions"),
        (&["connect", "--platform", "nope"], &[], "invalid value 'nope' for '--platform <NAME>'"),
        (&["connect", "--platform", "discord"], &[], "environment variable DISCORD_TOKEN is not set"),
        (&["connect", "--platform", "discord"], &[("DISCORD_TOKEN", "")], "DISCORD_TOKEN is empty"),
        (
            &["connect", "--platform", "deribit"],
            &[("DERIBIT_CLIENT_ID", "id-value-never-shown")],
            "DERIBIT_CLIENT_SECRET is not set",
        ),
        (
            &["connect", "--platform", "bybit", "--bybit-stream", "private"],
            &[("BYBIT_API_SECRET", "bybit-secret-never-shown")],
            "BYBIT_API_KEY is not set",
        ),
        (&["connect", "--platform", "slack"], &[], "apps.connections.open"),
        (&["connect", "--platform", "ethereum", "--subscribe", "blocks"], &[], "unknown subscription"),
        (&["connect", "--platform", "ethereum", "--subscribe", "logs:{nope"], &[], "not valid JSON"),
        (&["connect", "--platform", "deribit", "--subscribe", "a", "--subscribe", "a"], &[], "given twice"),
        (&["connect", "ws://h/", "--subscribe", "x"], &[], "--platform"),
        (&["connect", "--platform", "deribit", "--profile", "financial"], &[], "cannot be used with"),
        (&["connect", "--platform", "discord", "--intents", "lots"], &[], "not a number"),
        (
            &["connect", "--platform", "deribit", "--intents", "1"],
            &[],
            "--intents does not apply to --platform deribit",
        ),
        (&["connect", "--platform", "ethereum", "--testnet"], &[], "--testnet does not apply"),
        (&["connect", "--platform", "deribit", "--bybit-stream", "spot"], &[], "--bybit-stream does not apply"),
        (&["connect", "--platform", "bybit", "--intents", "1"], &[], "--intents does not apply to --platform bybit"),
        (&["connect"], &[], "<URL>"),
    ];
    for (args, env, expected) in cases {
        let mut nova = start(args, env);
        let status = nova.wait_exit(secs(10));
        let err = nova.stderr_text();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in:\n{err}");
        assert_eq!(nova.stdout_text(), "", "{args:?}");
        for (_, value) in *env {
            assert!(value.len() < 2 || !err.contains(value), "{args:?}: a credential leaked:\n{err}");
        }
    }
}

#[test]
fn help_describes_the_platforms_without_showing_the_environment() {
    let mut nova = start(&["connect", "--help"], &[("DISCORD_TOKEN", DISCORD_TOKEN)]);
    assert_eq!(nova.wait_exit(secs(10)).code(), Some(0));
    let help = nova.stdout_text();
    for needle in [
        "--platform",
        "--subscribe",
        "--bybit-stream",
        "--intents",
        "--testnet",
        "DERIBIT_CLIENT_ID",
        "BYBIT_API_KEY",
        "DISCORD_TOKEN",
        "apps.connections.open",
        "newHeads",
        "--profile is refused",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    assert!(!help.contains(DISCORD_TOKEN));
}
