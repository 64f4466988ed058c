//! SOCKS5 (RFC 1928) with username/password authentication (RFC 1929):
//! greeting, optional authentication, CONNECT. Every reply's length is known
//! from its first bytes, so exactly that much is read.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::handshake::Progress;
use super::{ProxyAuth, ProxyError, SocksReply};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;
const NO_ACCEPTABLE: u8 = 0xFF;
const CONNECT: u8 = 0x01;
const ATYP_IPV4: u8 = 0x01;
const ATYP_NAME: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

#[derive(Debug)]
pub(super) struct Socks5 {
    /// What waits for `poll_transmit`.
    out: Vec<u8>,
    /// The CONNECT request, sent once a method is settled.
    request: Vec<u8>,
    /// RFC 1929 sub-negotiation, if credentials were given.
    auth: Option<Vec<u8>>,
    /// The reply being read (at most 4 + 1 + 255 + 2 bytes).
    reply: Vec<u8>,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the method selection (2 bytes).
    Method,
    /// Waiting for the authentication status (2 bytes).
    Auth,
    /// Waiting for the CONNECT reply.
    Connect,
    Done,
    Failed,
}

impl Socks5 {
    pub(super) fn new(host: &str, port: u16, auth: Option<&ProxyAuth>) -> Result<Socks5, ProxyError> {
        let mut request = vec![VERSION, CONNECT, 0x00];
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            request.push(ATYP_IPV4);
            request.extend_from_slice(&ip.octets());
        } else if let Ok(ip) = host.parse::<Ipv6Addr>() {
            request.push(ATYP_IPV6);
            request.extend_from_slice(&ip.octets());
        } else {
            let len = u8::try_from(host.len()).map_err(|_| ProxyError::HostTooLong(host.len()))?;
            request.extend_from_slice(&[ATYP_NAME, len]);
            request.extend_from_slice(host.as_bytes());
        }
        request.extend_from_slice(&port.to_be_bytes());
        // Offer no authentication too, as curl does: a proxy that needs none
        // picks it, and credentials only go out when asked for.
        let (out, auth) = match auth {
            None => (vec![VERSION, 1, NO_AUTH], None),
            Some(a) => {
                let (user, pass) = (a.username.as_bytes(), a.password.expose().as_bytes());
                // `Proxy` checks that both are 1..=255 bytes; clamp anyway so a
                // length byte can never disagree with what follows it.
                let (user, pass) = (&user[..user.len().min(255)], &pass[..pass.len().min(255)]);
                let mut sub = vec![0x01, user.len() as u8];
                sub.extend_from_slice(user);
                sub.push(pass.len() as u8);
                sub.extend_from_slice(pass);
                (vec![VERSION, 2, NO_AUTH, USER_PASS], Some(sub))
            }
        };
        Ok(Socks5 { out, request, auth, reply: Vec::with_capacity(22), stage: Stage::Method })
    }

    pub(super) fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        out.append(&mut self.out);
        n
    }

    pub(super) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// The length of the reply being read, as far as the bytes so far tell.
    fn reply_len(&self) -> usize {
        match self.stage {
            Stage::Method | Stage::Auth => 2,
            Stage::Connect => match self.reply.get(3) {
                None => 4,
                Some(&ATYP_IPV4) => 4 + 4 + 2,
                Some(&ATYP_IPV6) => 4 + 16 + 2,
                Some(&ATYP_NAME) => self.reply.get(4).map_or(5, |&len| 5 + usize::from(len) + 2),
                // Unknown: fails as soon as it is seen (below).
                Some(_) => 4,
            },
            Stage::Done | Stage::Failed => 0,
        }
    }

    pub(super) fn max_read(&self) -> usize {
        self.reply_len().saturating_sub(self.reply.len())
    }

    pub(super) fn handle_input(&mut self, bytes: &[u8]) -> Progress {
        let mut used = 0;
        loop {
            match self.stage {
                Stage::Done => return Progress::Done { used },
                Stage::Failed => return Progress::Failed(ProxyError::BadReply("the handshake already failed".into())),
                Stage::Method | Stage::Auth | Stage::Connect => {}
            }
            let take = self.max_read().min(bytes.len() - used);
            self.reply.extend_from_slice(&bytes[used..used + take]);
            used += take;
            if let Err(e) = self.step() {
                self.stage = Stage::Failed;
                self.reply = Vec::new();
                return Progress::Failed(e);
            }
            if self.stage != Stage::Done && used == bytes.len() {
                return Progress::NeedMore;
            }
        }
    }

    /// Acts on the reply once enough of it is in (errors as early as the
    /// bytes show them).
    fn step(&mut self) -> Result<(), ProxyError> {
        if let Some(&version) = self.reply.first() {
            let expected: &[u8] = if self.stage == Stage::Auth { &[0x01, VERSION] } else { &[VERSION] };
            if !expected.contains(&version) {
                return Err(ProxyError::BadReply(format!("version {version:#04x} in a SOCKS5 reply")));
            }
        }
        if self.stage == Stage::Connect {
            if let Some(&code) = self.reply.get(1) {
                if code != 0 {
                    return Err(ProxyError::Socks(SocksReply::from_code(code)));
                }
            }
            if let Some(&atyp) = self.reply.get(3) {
                if ![ATYP_IPV4, ATYP_IPV6, ATYP_NAME].contains(&atyp) {
                    return Err(ProxyError::BadReply(format!("address type {atyp:#04x} in the CONNECT reply")));
                }
            }
        }
        if self.reply.len() < self.reply_len() {
            return Ok(());
        }
        let second = self.reply[1];
        self.reply.clear();
        match self.stage {
            Stage::Method => match second {
                NO_AUTH => self.send_request(),
                USER_PASS => match self.auth.take() {
                    Some(sub) => {
                        self.out = sub;
                        self.stage = Stage::Auth;
                    }
                    None => return Err(ProxyError::BadReply("the proxy chose a method that was not offered".into())),
                },
                // Nothing offered is acceptable: it wants credentials Nova
                // has not got, or a method Nova does not speak.
                NO_ACCEPTABLE => return Err(ProxyError::AuthRequired),
                other => return Err(ProxyError::UnsupportedMethod(other)),
            },
            Stage::Auth if second == 0 => self.send_request(),
            Stage::Auth => return Err(ProxyError::AuthFailed),
            Stage::Connect => self.stage = Stage::Done,
            Stage::Done | Stage::Failed => {}
        }
        Ok(())
    }

    fn send_request(&mut self) {
        self.out = std::mem::take(&mut self.request);
        self.stage = Stage::Connect;
    }

    /// Some proxies (pproxy among them) hang up on refused credentials
    /// instead of sending the RFC 1929 failure status.
    pub(super) fn handle_eof(&mut self) -> ProxyError {
        match self.stage {
            Stage::Auth => ProxyError::AuthFailed,
            _ => ProxyError::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Proxy, ProxyHandshake};
    use super::*;

    fn start(proxy: &str, host: &str) -> (ProxyHandshake, Vec<u8>) {
        let mut hs = ProxyHandshake::new(&Proxy::socks5(proxy).unwrap(), host, 443).unwrap();
        let mut out = Vec::new();
        let _ = hs.poll_transmit(&mut out);
        (hs, out)
    }

    /// Plays a proxy's replies in turn, feeding at most `max_read` (and
    /// `chunk`) at a time; returns the outcome and every byte written.
    fn run(hs: &mut ProxyHandshake, replies: &[&[u8]], chunk: usize) -> (Progress, Vec<u8>) {
        let mut written = Vec::new();
        for reply in replies {
            let mut fed = 0;
            while fed < reply.len() {
                let n = hs.max_read().min(chunk).min(reply.len() - fed);
                assert!(n > 0, "the handshake stopped reading mid-reply");
                match hs.handle_input(&reply[fed..fed + n]) {
                    Progress::NeedMore => fed += n,
                    Progress::Done { used } => {
                        assert_eq!(fed + used, reply.len(), "read past the reply");
                        return (Progress::Done { used }, written);
                    }
                    failed => return (failed, written),
                }
                let _ = hs.poll_transmit(&mut written);
            }
        }
        (Progress::NeedMore, written)
    }

    const OK_V4: &[u8] = &[5, 0, 0, 1, 127, 0, 0, 1, 0x1F, 0x90];

    #[test]
    fn requests_are_byte_exact_for_names_and_addresses() {
        let (mut hs, greeting) = start("h:1", "example.com");
        assert_eq!(greeting, [5, 1, 0]);
        let (progress, written) = run(&mut hs, &[&[5, 0], OK_V4], 1);
        assert_eq!(progress, Progress::Done { used: 1 });
        assert_eq!(written, [&[5, 1, 0, 3, 11][..], b"example.com", &[1, 0xBB]].concat());
        let (mut hs, _) = start("h:1", "10.1.2.3");
        let (_, written) = run(&mut hs, &[&[5, 0], OK_V4], 64);
        assert_eq!(written, [5, 1, 0, 1, 10, 1, 2, 3, 1, 0xBB]);
        let (mut hs, _) = start("h:1", "2001:db8::1");
        let (_, written) = run(&mut hs, &[&[5, 0], OK_V4], 64);
        let mut expected = vec![5, 1, 0, 4];
        expected.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        expected.extend_from_slice(&[1, 0xBB]);
        assert_eq!(written, expected);
    }

    #[test]
    fn credentials_go_out_only_when_asked_for_with_special_characters_intact() {
        let (mut hs, greeting) = start("socks5h://%C3%BC%3A:p%40ss%3Aw@h:1", "e");
        assert_eq!(greeting, [5, 2, 0, 2]);
        let (progress, written) = run(&mut hs, &[&[5, 2], &[1, 0], OK_V4], 1);
        assert!(matches!(progress, Progress::Done { .. }));
        let auth = [&[1u8, 3][..], "ü:".as_bytes(), &[6], b"p@ss:w"].concat();
        assert_eq!(written[..auth.len()], auth[..]);
        assert_eq!(written[auth.len()..], [5, 1, 0, 3, 1, b'e', 1, 0xBB]);
        // A proxy that needs none skips the sub-negotiation.
        let (mut hs, _) = start("socks5h://u:p@h:1", "e");
        let (_, written) = run(&mut hs, &[&[5, 0], OK_V4], 1);
        assert_eq!(written, [5, 1, 0, 3, 1, b'e', 1, 0xBB]);
    }

    #[test]
    fn every_reply_code_is_typed() {
        for code in 1..=9u8 {
            let (mut hs, _) = start("h:1", "e");
            let reply = [5, code, 0, 1, 0, 0, 0, 0, 0, 0];
            let (progress, _) = run(&mut hs, &[&[5, 0], &reply], 1);
            assert_eq!(progress, Progress::Failed(ProxyError::Socks(SocksReply::from_code(code))));
        }
        let names = [(4, SocksReply::HostUnreachable), (5, SocksReply::ConnectionRefused), (9, SocksReply::Other(9))];
        for (code, reply) in names {
            assert_eq!(SocksReply::from_code(code), reply);
        }
    }

    #[test]
    fn authentication_outcomes_are_typed() {
        let (mut hs, _) = start("h:1", "e");
        assert_eq!(run(&mut hs, &[&[5, 0xFF]], 1).0, Progress::Failed(ProxyError::AuthRequired));
        let (mut hs, _) = start("socks5h://u:p@h:1", "e");
        assert_eq!(run(&mut hs, &[&[5, 2], &[1, 1]], 1).0, Progress::Failed(ProxyError::AuthFailed));
        let (mut hs, _) = start("socks5h://u:p@h:1", "e");
        assert_eq!(run(&mut hs, &[&[5, 1]], 1).0, Progress::Failed(ProxyError::UnsupportedMethod(1)));
        // Asked for user/pass without having offered it.
        let (mut hs, _) = start("h:1", "e");
        assert!(matches!(run(&mut hs, &[&[5, 2]], 1).0, Progress::Failed(ProxyError::BadReply(_))));
        // Hanging up on the credentials is refusing them.
        let (mut hs, _) = start("socks5h://u:p@h:1", "e");
        assert_eq!(run(&mut hs, &[&[5, 2]], 1).0, Progress::NeedMore);
        assert_eq!(hs.handle_eof(), ProxyError::AuthFailed);
        let (mut hs, _) = start("h:1", "e");
        assert_eq!(hs.handle_eof(), ProxyError::Closed);
    }

    #[test]
    fn replies_with_every_address_type_are_read_exactly() {
        let mut v6 = vec![5, 0, 0, 4];
        v6.extend_from_slice(&[0; 18]);
        let name = [&[5u8, 0, 0, 3, 9][..], b"localhost", &[0, 80]].concat();
        for reply in [OK_V4.to_vec(), v6, name] {
            for chunk in [1, 3, 100] {
                let (mut hs, _) = start("h:1", "e");
                let mut with_tunnel_bytes = reply.clone();
                with_tunnel_bytes.extend_from_slice(b"tunnel");
                let (progress, _) = run(&mut hs, &[&[5, 0], &reply], chunk);
                assert!(matches!(progress, Progress::Done { .. }), "{progress:?}");
                // Given too much at once, it says where its reply ended.
                let (mut hs, _) = start("h:1", "e");
                let _ = hs.handle_input(&[5, 0]);
                assert_eq!(hs.handle_input(&with_tunnel_bytes), Progress::Done { used: reply.len() });
            }
        }
    }

    #[test]
    fn malformed_replies_fail_early_and_names_too_long_are_refused() {
        let (mut hs, _) = start("h:1", "e");
        assert!(matches!(run(&mut hs, &[b"HTTP/1.1 400"], 1).0, Progress::Failed(ProxyError::BadReply(_))));
        let (mut hs, _) = start("h:1", "e");
        let (progress, _) = run(&mut hs, &[&[5, 0], &[5, 0, 0, 9]], 1);
        assert!(matches!(progress, Progress::Failed(ProxyError::BadReply(ref m)) if m.contains("address type")));
        // Everything fed after a failure is refused; nothing more is wanted.
        assert_eq!(hs.max_read(), 0);
        assert!(matches!(hs.handle_input(&[0; 4]), Progress::Failed(_)));
        let long = "a".repeat(256);
        let proxy = Proxy::socks5("h:1").unwrap();
        assert_eq!(ProxyHandshake::new(&proxy, &long, 1).unwrap_err(), ProxyError::HostTooLong(256));
        assert!(ProxyHandshake::new(&proxy, &long[..255], 1).is_ok());
    }
}
