//! Proxies, through every driver: a real HTTP CONNECT and SOCKS5 proxy
//! (pproxy, installed by the harness) for `ws://` and `wss://`, with and
//! without credentials; refused credentials; a proxy that is down or
//! silent; `no_proxy`.

use std::net::TcpListener;
use std::sync::OnceLock;

use nova_interop::ProxyPeer;
use nova_proto::proxy::{Proxy, ProxyError, ProxySettings};
use nova_proto::{Disconnect, Error, Message, Termination, TransportDown};
use nova_testkit::{Behavior, MockServer, TestCa};

use crate::suite::{
    BOUND, Driver, Event, Session, Trust, build, config, echo_server, expect_opened, ms, next_change, next_message,
    until_closed,
};

/// The username and password of the authenticating proxy: characters that
/// need percent-encoding in the URL and survive Basic and RFC 1929 intact.
const USER: &str = "nova user";
const PASS: &str = "p@ss:wörd/%";

/// One open and one authenticating proxy for the whole test process.
fn open_proxy() -> Option<&'static ProxyPeer> {
    static PROXY: OnceLock<Option<ProxyPeer>> = OnceLock::new();
    PROXY.get_or_init(|| ProxyPeer::start_or_skip(None)).as_ref()
}

fn auth_proxy() -> Option<&'static ProxyPeer> {
    static PROXY: OnceLock<Option<ProxyPeer>> = OnceLock::new();
    PROXY.get_or_init(|| ProxyPeer::start_or_skip(Some((USER, PASS)))).as_ref()
}

/// A port on loopback where nothing listens.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn proxy_failure(event: Event) -> (ProxyError, bool) {
    match event {
        Event::Disconnected { cause: Disconnect::Failed(Error::Transport(TransportDown::Proxy(e))), reconnect } => {
            (e, reconnect.is_some())
        }
        other => panic!("expected a proxy failure, got {other:?}"),
    }
}

/// `ws://` and `wss://` (TLS end to end with the server) through HTTP
/// CONNECT, SOCKS5 with local DNS and SOCKS5 with remote DNS, with and
/// without credentials: each opens and echoes.
pub(crate) fn proxy_tunnels<D: Driver>() {
    let (Some(open), Some(auth)) = (open_proxy(), auth_proxy()) else { return };
    let plain = echo_server();
    let ca = TestCa::generate().unwrap();
    let secure = MockServer::builder().otherwise(Behavior::accept().echo()).tls(ca.server_config()).start().unwrap();
    let runtime = D::runtime();
    let proxies = [open.url("http"), open.url("socks5"), open.url("socks5h"), auth.url("http"), auth.url("socks5h")];
    for proxy_url in proxies {
        for tls in [false, true] {
            // A name, so the proxy (or, for socks5://, the driver) resolves it.
            let (url, trust) = match tls {
                false => (format!("ws://localhost:{}/via", plain.addr().port()), Trust::Default),
                true => (format!("wss://localhost:{}/via", secure.addr().port()), Trust::Only(ca.root_der())),
            };
            let proxy = Proxy::parse(&proxy_url).unwrap();
            let mut session = D::start(&runtime, build(config(&url).proxy(Some(proxy))), trust);
            expect_opened(&mut session, 0);
            session.send(Message::text("through the tunnel")).unwrap();
            assert_eq!(next_message(&mut session).as_text(), Some("through the tunnel"), "{proxy_url} {url}");
            session.close(1000, "").unwrap();
            assert!(until_closed(&mut session).clean, "{proxy_url} {url}");
        }
    }
    assert!(!plain.connections().is_empty() && !secure.connections().is_empty());
    // The proxy's own log shows each kind carried traffic, and who resolved
    // the name: the proxy for http and socks5h, the driver for socks5.
    let port = plain.addr().port();
    let expected = [
        "http 127.0.0.1".to_owned(),
        "socks5 127.0.0.1".to_owned(),
        format!("-> localhost:{port}"),
        format!("-> 127.0.0.1:{port}"),
    ];
    let deadline = std::time::Instant::now() + BOUND;
    let log = loop {
        let log = open.stderr();
        if expected.iter().all(|line| log.contains(line.as_str())) || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(ms(20));
    };
    for line in &expected {
        assert!(log.contains(line.as_str()), "the proxy did not log {line:?}:\n{log}");
    }
}

/// Wrong or missing credentials end the session with a typed error at once:
/// retrying cannot fix them.
pub(crate) fn proxy_refused_credentials_are_not_retried<D: Driver>() {
    let Some(auth) = auth_proxy() else { return };
    let server = echo_server();
    let runtime = D::runtime();
    let cases = [
        (auth.url_with("http", USER, "wrong"), ProxyError::AuthFailed),
        (auth.url_with("socks5h", USER, "wrong"), ProxyError::AuthFailed),
        (format!("http://{}", auth.addr()), ProxyError::AuthRequired),
    ];
    for (proxy_url, expected) in cases {
        let proxy = Proxy::parse(&proxy_url).unwrap();
        let mut session = D::start(&runtime, build(config(&server.url("/")).proxy(Some(proxy))), Trust::Default);
        assert_eq!(proxy_failure(next_change(&mut session)), (expected, false), "{proxy_url}");
        assert_eq!(until_closed(&mut session).termination, Termination::NotRetried);
    }
    assert!(server.connections().is_empty(), "nothing reached the server");
}

/// A proxy that refuses connections is retried with backoff like a server
/// that is down, and the error names the proxy.
pub(crate) fn proxy_down_reconnects<D: Driver>() {
    let server = echo_server();
    let runtime = D::runtime();
    let proxy = Proxy::http(&format!("127.0.0.1:{}", closed_port())).unwrap();
    let mut session = D::start(&runtime, build(config(&server.url("/")).proxy(Some(proxy))), Trust::Default);
    for attempt in 1..=2 {
        let (error, retried) = proxy_failure(next_change(&mut session));
        assert_eq!(error, ProxyError::Connect(std::io::ErrorKind::ConnectionRefused));
        assert!(retried);
        assert_eq!(next_change(&mut session), Event::Reconnecting { attempt });
    }
    session.close(1000, "").unwrap();
    let _ = until_closed(&mut session);
    assert!(server.connections().is_empty());
}

/// A proxy that accepts the connection and never answers runs into the
/// proxy's own timeout, which is retried.
pub(crate) fn silent_proxy_times_out<D: Driver>() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let server = echo_server();
    let runtime = D::runtime();
    let proxy = Proxy::socks5(&format!("127.0.0.1:{port}")).unwrap().with_timeout(ms(300));
    let mut session = D::start(&runtime, build(config(&server.url("/")).proxy(Some(proxy))), Trust::Default);
    let (error, retried) = proxy_failure(next_change(&mut session));
    assert_eq!((error, retried), (ProxyError::Timeout(ms(300)), true));
    session.close(1000, "").unwrap();
    let _ = until_closed(&mut session);
    drop(silent);
}

/// Settings from the environment by curl's rules: a host `no_proxy` lists
/// goes direct; any other takes the proxy.
pub(crate) fn no_proxy_goes_direct<D: Driver>() {
    let server = echo_server();
    let runtime = D::runtime();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let env = |name: &str| match name {
        "http_proxy" | "https_proxy" => Some(dead.clone()),
        "no_proxy" => Some("example.invalid, 127.0.0.1".to_owned()),
        _ => None,
    };
    let settings = ProxySettings::from_env_vars(env);
    let url = server.url("/direct");
    assert_eq!(settings.proxy_for_url(&url).unwrap(), None);
    let mut session = D::start(&runtime, build(config(&url).proxy(None)), Trust::Default);
    expect_opened(&mut session, 0);
    session.close(1000, "").unwrap();
    let _ = until_closed(&mut session);
    // Through `localhost`, which no_proxy does not list: the (dead) proxy.
    let other = format!("ws://localhost:{}/", server.addr().port());
    let proxy = settings.proxy_for_url(&other).unwrap();
    assert!(proxy.is_some());
    let mut session = D::start(&runtime, build(config(&other).proxy(proxy).no_reconnect()), Trust::Default);
    assert!(matches!(proxy_failure(next_change(&mut session)).0, ProxyError::Connect(_)));
    let _ = until_closed(&mut session);
}
