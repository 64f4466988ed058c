//! Proxies: where a connection goes through, and the sans-IO handshakes that
//! open a tunnel through it.
//!
//! Two kinds, the ones WebSocket clients need: **HTTP CONNECT** (RFC 9110
//! §9.3.6, with optional Basic credentials) and **SOCKS5** (RFC 1928, with
//! optional username/password, RFC 1929). Either way the tunnel is a plain
//! byte stream to the server; TLS (for `wss`) and the WebSocket upgrade run
//! through it end to end, so the proxy sees neither.
//!
//! - [`Proxy`] says which proxy and how: parsed from a URL the way curl reads
//!   one (`http://user:pass@host:port`, `socks5://`, `socks5h://`), and set
//!   with [`ConfigBuilder::proxy`](crate::ConfigBuilder::proxy). The core hands
//!   it to the driver in [`Target::proxy`](crate::Target::proxy).
//! - [`ProxySettings`] picks a proxy from the environment variables curl
//!   reads (`wss_proxy`, `https_proxy`, `ws_proxy`, `http_proxy`,
//!   `all_proxy`, `no_proxy`, ...) without reading the environment itself:
//!   the driver passes a lookup function.
//! - [`ProxyHandshake`] is what a driver runs over the fresh TCP stream to the
//!   proxy, before TLS: bytes out with [`ProxyHandshake::poll_transmit`], bytes
//!   in with [`ProxyHandshake::handle_input`], never more than
//!   [`ProxyHandshake::max_read`] at a time so that no byte of the tunnel is
//!   read by mistake.
//!
//! Failures are [`ProxyError`]s, which reach the application inside
//! [`TransportDown::Proxy`](crate::TransportDown::Proxy). The default reconnect
//! policy retries them with backoff, except refused credentials
//! ([`DisconnectKind::ProxyAuth`](crate::DisconnectKind::ProxyAuth)): like a
//! rejected certificate, retrying cannot fix those.

mod env;
mod handshake;
mod http;
mod socks5;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::session::Secret;

pub use env::{ProxySettings, no_proxy_matches};
pub use handshake::{Progress, ProxyHandshake};

/// How long the proxy may take to answer, by default: from the TCP
/// connection to the proxy to the end of its last reply.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(5);

/// The port a proxy URL without one gets: 1080, as curl does for every proxy
/// kind (it is SOCKS's registered port; HTTP proxies have none).
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// Which protocol the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyKind {
    /// HTTP CONNECT. Used for `ws://` as well as `wss://`: a WebSocket upgrade
    /// sent to a forwarding proxy as a plain request is not reliably passed
    /// on, a tunnel always is.
    Http,
    /// SOCKS5.
    Socks5 {
        /// The proxy resolves the server's name (`socks5h://`): the name goes
        /// in the CONNECT request (address type 3), and no DNS query leaves
        /// this machine. Otherwise (`socks5://`) the driver resolves it
        /// and sends the address. An IP literal is always sent as an address.
        remote_dns: bool,
    },
}

/// Username and password for the proxy. The password is a [`Secret`]:
/// `Debug` never shows it (nor, in [`Proxy`]'s `Debug`, the username).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    /// The username, percent-decoded.
    pub username: String,
    /// The password, percent-decoded.
    pub password: Secret,
}

impl fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyAuth(***)")
    }
}

/// Hashing reads the password, which is fine: a hash is not shown anywhere.
impl Hash for ProxyAuth {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.username.hash(state);
        self.password.expose().hash(state);
    }
}

/// A proxy to connect through.
///
/// ```
/// use nova_proto::proxy::{Proxy, ProxyKind};
///
/// let p = Proxy::parse("http://alice:p%40ss@proxy.example:3128")?;
/// assert_eq!((p.kind(), p.host(), p.port()), (ProxyKind::Http, "proxy.example", 3128));
/// assert_eq!(p.auth().map(|a| a.password.expose()), Some("p@ss"));
/// assert!(!format!("{p:?}").contains("alice")); // credentials never reach a log
///
/// let s = Proxy::parse("socks5h://127.0.0.1")?;
/// assert_eq!((s.kind(), s.port()), (ProxyKind::Socks5 { remote_dns: true }, 1080));
/// assert!(Proxy::parse("socks4://h").is_err()); // only HTTP CONNECT and SOCKS5
/// # Ok::<(), nova_proto::proxy::ProxyUrlError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Proxy {
    kind: ProxyKind,
    host: Arc<str>,
    port: u16,
    auth: Option<ProxyAuth>,
    timeout: Duration,
}

/// Shows where the proxy is, never who logs in to it.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth", &self.auth.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A proxy URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyUrlError {
    /// The URL does not parse.
    #[error("invalid proxy URL")]
    Invalid(#[from] url::ParseError),
    /// A scheme Nova does not speak (`https://` proxies, `socks4://`, ...),
    /// or one that does not fit the constructor ([`Proxy::http`] given a
    /// `socks5://` URL).
    #[error("unsupported proxy scheme {0:?}, expected http, socks5 or socks5h")]
    UnsupportedScheme(String),
    /// The URL has no host.
    #[error("proxy URL has no host")]
    MissingHost,
    /// A path, query or fragment: a proxy URL names a host and port only.
    #[error("proxy URL has a path, query or fragment")]
    Trailing,
    /// SOCKS5 credentials are 1 to 255 bytes each (RFC 1929).
    #[error("SOCKS5 username and password must be 1 to 255 bytes")]
    CredentialLength,
    /// A username or password with a control character (CR, LF, NUL, ...),
    /// which would break the HTTP request it goes into.
    #[error("proxy credentials contain a control character")]
    CredentialControl,
}

impl Proxy {
    /// Parses a proxy URL the way curl does: `http://`, `socks5://` (the
    /// driver resolves the server's name), `socks5h://` (the proxy does); no
    /// scheme means `http://`; no port means 1080 ([`DEFAULT_PROXY_PORT`]).
    /// `user:password@` (percent-encoded) gives the credentials.
    ///
    /// # Errors
    ///
    /// [`ProxyUrlError`]: unparseable, another scheme (`https://` proxies and
    /// SOCKS4 are not supported), no host, a path or query, or credentials
    /// SOCKS5 cannot carry.
    pub fn parse(url: &str) -> Result<Proxy, ProxyUrlError> {
        let with_scheme = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
        let parsed = url::Url::parse(&with_scheme)?;
        let kind = match parsed.scheme() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5 { remote_dns: false },
            "socks5h" => ProxyKind::Socks5 { remote_dns: true },
            other => return Err(ProxyUrlError::UnsupportedScheme(other.to_owned())),
        };
        let host: Arc<str> = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.into(),
            Some(url::Host::Ipv4(ip)) => ip.to_string().into(),
            Some(url::Host::Ipv6(ip)) => ip.to_string().into(),
            _ => return Err(ProxyUrlError::MissingHost),
        };
        // `url` gives special schemes (http) a "/" path; others may have "".
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(ProxyUrlError::Trailing);
        }
        // Not `port_or_known_default`: curl's default for every kind is 1080.
        let port = parsed.port().unwrap_or(DEFAULT_PROXY_PORT);
        let auth = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            Some(ProxyAuth {
                username: decode(parsed.username()),
                password: Secret::new(decode(parsed.password().unwrap_or(""))),
            })
        };
        Proxy { kind, host, port, auth: None, timeout: DEFAULT_PROXY_TIMEOUT }.with_auth_checked(auth)
    }

    /// An HTTP CONNECT proxy: `host:port` or an `http://` URL (see [`parse`](Self::parse)).
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse), and [`ProxyUrlError::UnsupportedScheme`]
    /// for any scheme but `http`.
    pub fn http(url: &str) -> Result<Proxy, ProxyUrlError> {
        let proxy = Proxy::parse(url)?;
        match proxy.kind {
            ProxyKind::Http => Ok(proxy),
            ProxyKind::Socks5 { .. } => Err(ProxyUrlError::UnsupportedScheme(scheme_of(url))),
        }
    }

    /// A SOCKS5 proxy: `socks5://` (local DNS, as curl), `socks5h://`
    /// (remote DNS), or a bare `host:port`, which gets remote DNS: then no
    /// DNS query for the server leaves this machine, and names only the
    /// proxy's network knows work.
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse), and [`ProxyUrlError::UnsupportedScheme`]
    /// for any scheme but `socks5` and `socks5h`.
    pub fn socks5(url: &str) -> Result<Proxy, ProxyUrlError> {
        if !url.contains("://") {
            return Proxy::parse(&format!("socks5h://{url}"));
        }
        let proxy = Proxy::parse(url)?;
        match proxy.kind {
            ProxyKind::Socks5 { .. } => Ok(proxy),
            ProxyKind::Http => Err(ProxyUrlError::UnsupportedScheme(scheme_of(url))),
        }
    }

    /// The same proxy with these credentials (replacing any from the URL).
    ///
    /// # Errors
    ///
    /// [`ProxyUrlError::CredentialLength`] for SOCKS5 credentials outside
    /// 1..=255 bytes, [`ProxyUrlError::CredentialControl`] for control characters.
    pub fn with_auth(self, username: impl Into<String>, password: impl Into<String>) -> Result<Proxy, ProxyUrlError> {
        let auth = ProxyAuth { username: username.into(), password: Secret::new(password) };
        self.with_auth_checked(Some(auth))
    }

    /// The same proxy with another handshake timeout (default
    /// [`DEFAULT_PROXY_TIMEOUT`]): from the TCP connection to the proxy to
    /// its last reply. The connect timeout still bounds the whole attempt
    /// (DNS, TCP, proxy, TLS), so keep this one shorter to see
    /// [`ProxyError::Timeout`] rather than a connect timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Proxy {
        self.timeout = timeout;
        self
    }

    /// For SOCKS5: whether the proxy resolves the server's name (see
    /// [`ProxyKind::Socks5`]). No effect on an HTTP proxy, which always does.
    pub fn with_remote_dns(mut self, remote: bool) -> Proxy {
        if let ProxyKind::Socks5 { remote_dns } = &mut self.kind {
            *remote_dns = remote;
        }
        self
    }

    fn with_auth_checked(mut self, auth: Option<ProxyAuth>) -> Result<Proxy, ProxyUrlError> {
        if let Some(a) = &auth {
            let (user, pass) = (a.username.as_str(), a.password.expose());
            if user.chars().chain(pass.chars()).any(char::is_control) {
                return Err(ProxyUrlError::CredentialControl);
            }
            let fits = |s: &str| (1..=255).contains(&s.len());
            if matches!(self.kind, ProxyKind::Socks5 { .. }) && !(fits(user) && fits(pass)) {
                return Err(ProxyUrlError::CredentialLength);
            }
        }
        self.auth = auth;
        Ok(self)
    }

    /// The protocol.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host name or IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The credentials, if any.
    pub fn auth(&self) -> Option<&ProxyAuth> {
        self.auth.as_ref()
    }

    /// The handshake timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the driver resolves the server's name itself before the
    /// handshake (`socks5://`) and hands [`ProxyHandshake::new`] an address.
    pub fn resolves_locally(&self) -> bool {
        matches!(self.kind, ProxyKind::Socks5 { remote_dns: false })
    }
}

fn scheme_of(url: &str) -> String {
    url.split_once("://").map_or("http", |(s, _)| s).to_ascii_lowercase()
}

/// Why a tunnel through the proxy could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy's host name did not resolve.
    #[error("could not resolve the proxy {0}")]
    Resolve(String),
    /// The TCP connection to the proxy failed (refused, unreachable).
    #[error("could not connect to the proxy: {0}")]
    Connect(io::ErrorKind),
    /// The proxy wants credentials and none were given (HTTP 407, or a SOCKS5
    /// proxy that accepts no method offered).
    #[error("the proxy requires authentication")]
    AuthRequired,
    /// The proxy refused the credentials given (HTTP 407 after sending them,
    /// a SOCKS5 username/password failure, or a SOCKS5 proxy that hung up
    /// instead of answering them).
    #[error("the proxy refused the credentials")]
    AuthFailed,
    /// The HTTP proxy answered CONNECT with another status than 2xx or 407.
    #[error("the proxy refused the tunnel with status {status} {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The SOCKS5 proxy answered CONNECT with a failure (RFC 1928 §6).
    #[error("the SOCKS5 proxy refused the tunnel: {0}")]
    Socks(SocksReply),
    /// The SOCKS5 proxy chose an authentication method Nova does not speak.
    #[error("the SOCKS5 proxy wants authentication method {0:#04x}, which is not supported")]
    UnsupportedMethod(u8),
    /// The reply was malformed, or larger than a reply can be.
    #[error("bad reply from the proxy: {0}")]
    BadReply(String),
    /// The proxy closed the connection before its reply was complete.
    #[error("the proxy closed the connection during the handshake")]
    Closed,
    /// The proxy did not answer within [`Proxy::timeout`].
    #[error("the proxy did not answer within {0:?}")]
    Timeout(Duration),
    /// The server's name cannot be put in a SOCKS5 request (over 255 bytes).
    #[error("host name of {0} bytes is too long for SOCKS5")]
    HostTooLong(usize),
}

impl ProxyError {
    /// Whether the proxy wants other credentials: retrying as before cannot help.
    pub fn is_auth(&self) -> bool {
        matches!(self, ProxyError::AuthRequired | ProxyError::AuthFailed)
    }
}

/// A SOCKS5 failure reply code (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocksReply {
    /// 0x01.
    GeneralFailure,
    /// 0x02: the proxy's rules forbid this connection.
    NotAllowed,
    /// 0x03.
    NetworkUnreachable,
    /// 0x04.
    HostUnreachable,
    /// 0x05: the server refused the proxy's connection.
    ConnectionRefused,
    /// 0x06.
    TtlExpired,
    /// 0x07.
    CommandNotSupported,
    /// 0x08.
    AddressTypeNotSupported,
    /// Any other code.
    Other(u8),
}

impl SocksReply {
    /// The reply for a non-zero `REP` code.
    pub fn from_code(code: u8) -> SocksReply {
        match code {
            1 => SocksReply::GeneralFailure,
            2 => SocksReply::NotAllowed,
            3 => SocksReply::NetworkUnreachable,
            4 => SocksReply::HostUnreachable,
            5 => SocksReply::ConnectionRefused,
            6 => SocksReply::TtlExpired,
            7 => SocksReply::CommandNotSupported,
            8 => SocksReply::AddressTypeNotSupported,
            other => SocksReply::Other(other),
        }
    }
}

impl fmt::Display for SocksReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocksReply::GeneralFailure => "general failure",
            SocksReply::NotAllowed => "connection not allowed by ruleset",
            SocksReply::NetworkUnreachable => "network unreachable",
            SocksReply::HostUnreachable => "host unreachable",
            SocksReply::ConnectionRefused => "connection refused",
            SocksReply::TtlExpired => "TTL expired",
            SocksReply::CommandNotSupported => "command not supported",
            SocksReply::AddressTypeNotSupported => "address type not supported",
            SocksReply::Other(code) => return write!(f, "unknown reply code {code:#04x}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_like_curl() {
        let p = Proxy::parse("proxy.example").unwrap();
        assert_eq!((p.kind(), p.host(), p.port(), p.auth()), (ProxyKind::Http, "proxy.example", 1080, None));
        let p = Proxy::parse("HTTP://[::1]:8080/").unwrap();
        assert_eq!((p.host(), p.port()), ("::1", 8080));
        let p = Proxy::parse("socks5://u:p@10.0.0.1:9050").unwrap();
        assert_eq!(p.kind(), ProxyKind::Socks5 { remote_dns: false });
        assert!(p.resolves_locally());
        assert_eq!(p.auth().map(|a| (a.username.as_str(), a.password.expose())), Some(("u", "p")));
        let p = Proxy::parse("socks5h://h").unwrap();
        assert!(!p.resolves_locally());
        // A user without a password gets an empty one (as curl).
        let p = Proxy::parse("http://only@h:1").unwrap();
        assert_eq!(p.auth().map(|a| a.password.expose()), Some(""));
    }

    #[test]
    fn unusable_urls_get_typed_errors() {
        for (url, scheme) in [("https://h:443", "https"), ("socks4://h", "socks4"), ("socks4a://h", "socks4a")] {
            assert_eq!(Proxy::parse(url), Err(ProxyUrlError::UnsupportedScheme(scheme.into())), "{url}");
        }
        assert_eq!(Proxy::parse("http://h:1/path"), Err(ProxyUrlError::Trailing));
        assert!(matches!(Proxy::parse("http://h:99999"), Err(ProxyUrlError::Invalid(_))));
        assert_eq!(Proxy::http("socks5://h"), Err(ProxyUrlError::UnsupportedScheme("socks5".into())));
        assert_eq!(Proxy::socks5("http://h"), Err(ProxyUrlError::UnsupportedScheme("http".into())));
        let long = "x".repeat(256);
        assert_eq!(Proxy::socks5("h").unwrap().with_auth(&long, "p"), Err(ProxyUrlError::CredentialLength));
        assert_eq!(Proxy::socks5("h").unwrap().with_auth("", "p"), Err(ProxyUrlError::CredentialLength));
        // HTTP carries long ones, but never a line break into the request.
        assert!(Proxy::http("h").unwrap().with_auth(&long, "p").is_ok());
        assert_eq!(Proxy::http("h").unwrap().with_auth("u", "a\r\nb"), Err(ProxyUrlError::CredentialControl));
    }

    #[test]
    fn constructors_pick_dns_and_kind() {
        assert_eq!(Proxy::socks5("h:1").unwrap().kind(), ProxyKind::Socks5 { remote_dns: true });
        assert_eq!(Proxy::socks5("socks5://h").unwrap().kind(), ProxyKind::Socks5 { remote_dns: false });
        assert_eq!(Proxy::http("h:3128").unwrap().port(), 3128);
        let local = Proxy::socks5("h").unwrap().with_remote_dns(false);
        assert!(local.resolves_locally());
        assert_eq!(Proxy::http("h").unwrap().with_remote_dns(false).kind(), ProxyKind::Http);
    }

    #[test]
    fn debug_never_shows_credentials() {
        let p = Proxy::parse("http://alice:hunter2@h:1").unwrap();
        let shown = format!("{p:?} {:?}", p.auth());
        assert!(!shown.contains("alice") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("auth: true"), "{shown}");
    }

    #[test]
    fn socks_reply_codes_map_to_rfc_names() {
        assert_eq!(SocksReply::from_code(5), SocksReply::ConnectionRefused);
        assert_eq!(SocksReply::from_code(0x42), SocksReply::Other(0x42));
        let e = ProxyError::Socks(SocksReply::from_code(2));
        assert_eq!(e.to_string(), "the SOCKS5 proxy refused the tunnel: connection not allowed by ruleset");
        assert!(ProxyError::AuthFailed.is_auth() && !ProxyError::Closed.is_auth());
    }

    #[test]
    fn the_core_hands_the_proxy_to_the_driver_in_every_target() {
        use crate::{Client, Config, Output};
        let proxy = Proxy::socks5("127.0.0.1:1080").unwrap().with_timeout(Duration::from_secs(2));
        let config = Config::builder("wss://example.com/").proxy(Some(proxy.clone())).build().unwrap();
        assert_eq!(config.proxy(), Some(&proxy));
        let now = std::time::Instant::now();
        let mut client = Client::new(config, [1; 32], now);
        client.connect(now);
        let Some(Output::Connect(target)) = client.poll_output() else { panic!("no connect") };
        assert_eq!(target.proxy.as_deref(), Some(&proxy));
        assert_eq!((&*target.host, target.port, target.tls), ("example.com", 443, true));
        let zero = Proxy::http("h").unwrap().with_timeout(Duration::ZERO);
        assert!(Config::builder("ws://h/").proxy(Some(zero)).build().is_err());
    }

    #[test]
    fn refused_credentials_stop_the_default_policy_other_proxy_failures_retry() {
        use crate::{Decision, Disconnect, DisconnectKind, Error, ReconnectPolicy, TransportDown};
        let failed = |e: ProxyError| Disconnect::Failed(Error::Transport(TransportDown::Proxy(e)));
        let policy = ReconnectPolicy::always();
        for e in [ProxyError::AuthRequired, ProxyError::AuthFailed] {
            assert_eq!(failed(e.clone()).kind(), DisconnectKind::ProxyAuth);
            assert_eq!(policy.decide(&failed(e)), Decision::Stop);
        }
        let transient = [
            ProxyError::Connect(io::ErrorKind::ConnectionRefused),
            ProxyError::Closed,
            ProxyError::Timeout(DEFAULT_PROXY_TIMEOUT),
            ProxyError::Socks(SocksReply::HostUnreachable),
            ProxyError::Refused { status: 502, reason: "Bad Gateway".into() },
        ];
        for e in transient {
            assert_eq!(failed(e.clone()).kind(), DisconnectKind::Proxy);
            assert_eq!(policy.decide(&failed(e)), Decision::Reconnect);
        }
        let shown = failed(ProxyError::AuthFailed).to_string();
        assert_eq!(shown, "transport failed: proxy failed: the proxy refused the credentials");
    }
}
