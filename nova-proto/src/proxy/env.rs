//! Choosing a proxy from environment variables, by curl's rules, without
//! reading the environment: the caller passes the lookup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Proxy, ProxyUrlError};

/// The proxy environment variables as curl reads them for WebSocket URLs,
/// captured once.
///
/// For `wss://`: `wss_proxy`, `WSS_PROXY`, `https_proxy`, `HTTPS_PROXY`,
/// then `all_proxy`, `ALL_PROXY`. For `ws://`: `ws_proxy`, `WS_PROXY`,
/// `http_proxy`, then `all_proxy`, `ALL_PROXY`. The first one set and not
/// empty wins. Upper-case `HTTP_PROXY` is never read, as in curl: in a CGI
/// program it would come from a request's `Proxy:` header ("httpoxy").
/// `no_proxy` (or, if that is unset, `NO_PROXY`) lists the hosts that go
/// direct; see [`no_proxy_matches`].
///
/// nova-proto never reads the environment: drivers offer a one-line
/// `from_env()` that passes `std::env::var`, and tests pass a table.
///
/// ```
/// use nova_proto::proxy::{ProxyKind, ProxySettings};
///
/// let env = |name: &str| match name {
///     "HTTPS_PROXY" => Some("socks5h://127.0.0.1:1080".to_owned()),
///     "HTTP_PROXY" => Some("http://ignored:3128".to_owned()), // never read
///     "NO_PROXY" => Some("localhost,.internal".to_owned()),
///     _ => None,
/// };
/// let settings = ProxySettings::from_env_vars(env);
/// let p = settings.proxy_for_url("wss://stream.example.com/v1")?.unwrap();
/// assert_eq!(p.kind(), ProxyKind::Socks5 { remote_dns: true });
/// assert_eq!(settings.proxy_for_url("ws://stream.example.com/")?, None);
/// assert_eq!(settings.proxy_for_url("wss://db.internal/")?, None);
/// # Ok::<(), nova_proto::proxy::ProxyUrlError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// (variable, value) for `ws://`.
    ws: Option<(&'static str, String)>,
    /// (variable, value) for `wss://`.
    wss: Option<(&'static str, String)>,
    no_proxy: Option<String>,
}

/// Names the variables, never their values (they may hold credentials).
impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("ws", &self.ws.as_ref().map(|(name, _)| name))
            .field("wss", &self.wss.as_ref().map(|(name, _)| name))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

const WS_VARS: [&str; 5] = ["ws_proxy", "WS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"];
const WSS_VARS: [&str; 6] = ["wss_proxy", "WSS_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];

impl ProxySettings {
    /// No proxy for anything.
    pub fn none() -> ProxySettings {
        ProxySettings { ws: None, wss: None, no_proxy: None }
    }

    /// Reads the variables through `var` (e.g. `|name| std::env::var(name).ok()`);
    /// an empty value counts as unset, as in curl.
    pub fn from_env_vars(var: impl Fn(&str) -> Option<String>) -> ProxySettings {
        let first = |names: &[&'static str]| {
            names.iter().find_map(|&name| var(name).filter(|v| !v.is_empty()).map(|v| (name, v)))
        };
        ProxySettings {
            ws: first(&WS_VARS),
            wss: first(&WSS_VARS),
            no_proxy: first(&["no_proxy", "NO_PROXY"]).map(|(_, v)| v),
        }
    }

    /// The variable that gives the proxy for `ws://` (`tls == false`) or
    /// `wss://` URLs, if one is set.
    pub fn variable(&self, tls: bool) -> Option<&'static str> {
        let chosen = if tls { &self.wss } else { &self.ws };
        chosen.as_ref().map(|(name, _)| *name)
    }

    /// The proxy for a connection to `host` (name or IP literal, IPv6
    /// without brackets) over `wss` (`tls`) or `ws`; `None` when no
    /// variable names one or `no_proxy` lists the host.
    ///
    /// # Errors
    ///
    /// The variable's value is not a usable proxy URL (curl fails the
    /// transfer too, rather than going direct).
    pub fn proxy_for(&self, tls: bool, host: &str) -> Result<Option<Proxy>, ProxyUrlError> {
        let Some((_, value)) = (if tls { &self.wss } else { &self.ws }) else {
            return Ok(None);
        };
        if self.no_proxy.as_deref().is_some_and(|list| no_proxy_matches(list, host)) {
            return Ok(None);
        }
        Proxy::parse(value).map(Some)
    }

    /// [`proxy_for`](Self::proxy_for) the scheme and host of a `ws://` or
    /// `wss://` URL; `None` for anything else (the configuration refuses it).
    ///
    /// # Errors
    ///
    /// As [`proxy_for`](Self::proxy_for).
    pub fn proxy_for_url(&self, url: &str) -> Result<Option<Proxy>, ProxyUrlError> {
        let Ok(parsed) = url::Url::parse(url) else {
            return Ok(None);
        };
        let tls = match parsed.scheme() {
            "ws" => false,
            "wss" => true,
            _ => return Ok(None),
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Ok(None),
        };
        self.proxy_for(tls, &host)
    }
}

/// Whether `no_proxy` lists `host`, by curl's rules (`lib/noproxy.c`):
///
/// - `*` alone matches every host;
/// - entries are separated by commas, with blanks around them ignored;
/// - a name matches itself and its subdomains, case-insensitively:
///   `example.com` and `.example.com` both match `example.com` and
///   `www.example.com`, never `notexample.com`; trailing dots are ignored;
/// - an IP host matches IP entries only, exactly or by CIDR prefix
///   (`10.0.0.0/8`, `fd00::/8`); names are not resolved;
/// - ports are not part of the match (an entry with a port never matches).
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    if host.is_empty() || no_proxy.is_empty() {
        return false;
    }
    if no_proxy == "*" {
        return true;
    }
    let host_ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
    let name = host.strip_suffix('.').unwrap_or(host);
    let mut rest = no_proxy;
    loop {
        rest = rest.trim_start_matches(is_blank);
        let end = rest.find(|c: char| is_blank(c) || c == ',').unwrap_or(rest.len());
        let (token, after) = rest.split_at(end);
        let matched = match host_ip {
            Some(ip) => ip_matches(ip, token),
            None => name_matches(name, token),
        };
        if matched {
            return true;
        }
        // curl: after an entry and its blanks, only a comma continues the list.
        let after = after.trim_start_matches(is_blank);
        match after.strip_prefix(',') {
            Some(next) => rest = next.trim_start_matches(','),
            None => return false,
        }
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn name_matches(name: &str, token: &str) -> bool {
    let token = token.strip_suffix('.').unwrap_or(token);
    let token = token.strip_prefix('.').unwrap_or(token);
    if token.is_empty() || token.len() > name.len() {
        return false;
    }
    let (head, tail) = name.split_at(name.len() - token.len());
    tail.eq_ignore_ascii_case(token) && (head.is_empty() || head.ends_with('.'))
}

fn ip_matches(ip: IpAddr, token: &str) -> bool {
    let (addr, bits) = match token.split_once('/') {
        // curl reads the bits with atoi: junk is 0, which means "all bits".
        Some((addr, bits)) => (addr, bits.parse::<u32>().unwrap_or(0)),
        None => (token, 0),
    };
    match ip {
        IpAddr::V4(ip) => {
            let Ok(net) = addr.parse::<Ipv4Addr>() else { return false };
            let bits = if bits == 0 { 32 } else { bits };
            bits <= 32 && prefix_eq(&ip.octets(), &net.octets(), bits)
        }
        IpAddr::V6(ip) => {
            let Ok(net) = addr.parse::<Ipv6Addr>() else { return false };
            let bits = if bits == 0 { 128 } else { bits };
            bits <= 128 && prefix_eq(&ip.octets(), &net.octets(), bits)
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn prefix_eq(a: &[u8], b: &[u8], bits: u32) -> bool {
    let whole = (bits / 8) as usize;
    let rest = bits % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) & (0xFFu8 << (8 - rest)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> ProxySettings {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        ProxySettings::from_env_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn variables_are_read_in_curls_order() {
        // (variables, which one wss uses, which one ws uses)
        type Row = (&'static [(&'static str, &'static str)], Option<&'static str>, Option<&'static str>);
        let table: &[Row] = &[
            (&[], None, None),
            (&[("HTTPS_PROXY", "h")], Some("HTTPS_PROXY"), None),
            (&[("https_proxy", "h"), ("HTTPS_PROXY", "h")], Some("https_proxy"), None),
            (&[("wss_proxy", "h"), ("https_proxy", "h")], Some("wss_proxy"), None),
            (&[("WSS_PROXY", "h"), ("https_proxy", "h")], Some("WSS_PROXY"), None),
            // Upper-case HTTP_PROXY is never read; lower-case is.
            (&[("HTTP_PROXY", "h")], None, None),
            (&[("http_proxy", "h")], None, Some("http_proxy")),
            (&[("WS_PROXY", "h"), ("http_proxy", "h")], None, Some("WS_PROXY")),
            (&[("ALL_PROXY", "h")], Some("ALL_PROXY"), Some("ALL_PROXY")),
            (&[("all_proxy", "h"), ("ALL_PROXY", "h")], Some("all_proxy"), Some("all_proxy")),
            (&[("http_proxy", "h"), ("all_proxy", "h")], Some("all_proxy"), Some("http_proxy")),
            // Empty is unset.
            (&[("https_proxy", ""), ("ALL_PROXY", "h")], Some("ALL_PROXY"), Some("ALL_PROXY")),
        ];
        for (vars, wss, ws) in table {
            let s = settings(vars);
            assert_eq!((s.variable(true), s.variable(false)), (*wss, *ws), "{vars:?}");
        }
    }

    #[test]
    fn no_proxy_follows_curl() {
        let table: &[(&str, &str, bool)] = &[
            ("*", "anything.example", true),
            ("*, other", "anything.example", false), // `*` only alone
            ("example.com", "example.com", true),
            ("example.com", "www.EXAMPLE.com", true),
            (".example.com", "example.com", true),
            (".example.com", "a.b.example.com", true),
            ("example.com", "notexample.com", false),
            ("www.example.com", "example.com", false),
            ("example.com.", "example.com", true),
            ("example.com", "example.com.", true),
            ("example.com:443", "example.com", false), // ports never match
            ("a.example, b.example ,  c.example", "c.example", true),
            ("a.example,,,b.example", "b.example", true),
            ("a.example b.example", "b.example", false), // blank ends the list
            ("localhost", "127.0.0.1", false),           // no resolution
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.0/8", "127.9.9.9", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.0.0/16", "192.168.44.1", true),
            ("192.168.0.0/33", "192.168.0.0", false),
            ("::1", "::1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("2001:db8::/127", "2001:db8::1", true),
            ("127.0.0.1", "::1", false),
            ("", "example.com", false),
            ("example.com", "", false),
        ];
        for (list, host, expected) in table {
            assert_eq!(no_proxy_matches(list, host), *expected, "no_proxy={list:?} host={host:?}");
        }
    }

    #[test]
    fn proxy_for_applies_no_proxy_and_reports_bad_values() {
        let s = settings(&[("https_proxy", "http://p:3128"), ("no_proxy", "localhost,127.0.0.1")]);
        assert_eq!(s.proxy_for_url("wss://api.example/").unwrap().map(|p| p.port()), Some(3128));
        assert_eq!(s.proxy_for_url("wss://localhost:9/").unwrap(), None);
        assert_eq!(s.proxy_for_url("wss://127.0.0.1:9/").unwrap(), None);
        assert_eq!(s.proxy_for_url("ws://api.example/").unwrap(), None);
        assert_eq!(s.proxy_for_url("https://api.example/").unwrap(), None);
        // lower-case no_proxy wins over upper-case, as in curl
        let s = settings(&[("ALL_PROXY", "h"), ("no_proxy", "a.example"), ("NO_PROXY", "*")]);
        assert!(s.proxy_for(false, "b.example").unwrap().is_some());
        let s = settings(&[("ALL_PROXY", "socks4://h")]);
        assert_eq!(s.proxy_for(true, "x"), Err(ProxyUrlError::UnsupportedScheme("socks4".into())));
        let shown = format!("{:?}", settings(&[("all_proxy", "http://u:secret@h")]));
        assert!(!shown.contains("secret") && shown.contains("all_proxy"), "{shown}");
        assert_eq!(ProxySettings::none().proxy_for(true, "x"), Ok(None));
    }
}
