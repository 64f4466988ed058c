//! From `nova connect`'s options to a session configuration and TLS roots.

use std::path::Path;
use std::sync::Arc;

use nova_proto::{Config, ConfigError, Outbound};
use nova_tokio::{ConnectError, Tls};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};

use crate::ConnectArgs;
use crate::failure::{self, Failure};
use crate::output::shown_endpoint;

use super::platform::{self, Prepared};

/// What a session is started from.
#[derive(Debug)]
pub(crate) struct Setup {
    /// The session's configuration.
    pub(crate) config: Arc<Config>,
    /// The roots `wss://` trusts.
    pub(crate) tls: Tls,
    /// The endpoint as status lines show it (no credentials, no query).
    pub(crate) shown: String,
    /// `--platform`: its adapter and subscriptions.
    pub(crate) platform: Option<Prepared>,
}

/// Builds the configuration: the profile (or the platform's preset) first,
/// then every option that overrides it.
///
/// # Errors
///
/// A usage failure for a setting the configuration refuses (a reserved or
/// malformed header, a bad subprotocol), an unreadable `--ca` file, or a
/// platform setting (see [`platform::prepare`]).
pub(crate) fn prepare(args: &ConnectArgs) -> Result<Setup, Failure> {
    let (mut builder, platform) = match (args.platform.platform, &args.url) {
        (Some(name), _) => {
            let (builder, platform) = platform::prepare(args, name)?;
            (builder, Some(platform))
        }
        (None, Some(url)) => (Config::builder(url).profile(args.profile.profile()), None),
        (None, None) => return Err(Failure::usage("a URL is needed (or --platform NAME)")),
    };
    for (name, value) in &args.headers {
        // The handshake writes Origin itself, from its own setting: a plain
        // header of that name would be refused as reserved.
        builder = match name.eq_ignore_ascii_case("origin") {
            true => builder.origin(value),
            false => builder.header(name, value),
        };
    }
    for name in &args.subprotocols {
        builder = builder.subprotocol(name);
    }
    if let Some(interval) = args.ping_interval {
        // A ping every `interval`; no answer (or any other frame) within the
        // same time declares the connection dead.
        builder = builder.ping(interval, interval);
    }
    // Profiles may cap the attempts (standard: 10); without the option the
    // CLI retries forever.
    builder = builder.max_attempts(args.max_reconnects);
    // Lines typed while disconnected wait in the CLI's own queue, so that the
    // --send messages always go first on a new connection: the session must
    // never queue them itself (the messaging profile would).
    let probe = builder.clone().build().map_err(config_failure)?;
    let outbound = Outbound { offline: false, ttl: None, ..*probe.outbound() };
    let config = builder.outbound(outbound).build().map_err(config_failure)?;
    let tls = match &args.ca {
        Some(path) => load_ca(path)?,
        None => Tls::webpki_roots(),
    };
    let shown = match &platform {
        Some(platform) => platform.shown(&config),
        None => shown_endpoint(&config),
    };
    Ok(Setup { config: Arc::new(config), tls, shown, platform })
}

/// A configuration error, named after the option that caused it.
fn config_failure(error: ConfigError) -> Failure {
    let option = match &error {
        ConfigError::InvalidHeaderName(_) | ConfigError::InvalidHeaderValue(_) | ConfigError::ReservedHeader(_) => {
            "invalid --header: "
        }
        ConfigError::InvalidSubprotocol(_) => "invalid --subprotocol: ",
        _ => "",
    };
    if let ConfigError::ReservedHeader(name) = &error {
        // The core's message names its builder methods; say it in options.
        let hint = match name.to_ascii_lowercase().as_str() {
            "sec-websocket-protocol" => " (offer subprotocols with --subprotocol)",
            "content-length" | "transfer-encoding" => " (the upgrade request has no body)",
            _ => "",
        };
        return Failure::usage(format!(
            "{option}header {name:?} is set by the handshake and cannot be overridden{hint}"
        ));
    }
    Failure::usage(format!("{option}{}", failure::chain(&error)))
}

/// Mozilla's roots plus every certificate in the PEM file at `path`.
///
/// # Errors
///
/// A usage failure when the file cannot be read, is not PEM, or holds no
/// certificate.
pub(crate) fn load_ca(path: &Path) -> Result<Tls, Failure> {
    let shown = path.display();
    let fail = |e: pem::Error| match e {
        pem::Error::Io(e) => Failure::usage(format!("--ca {shown}: cannot read it: {e}")),
        e => Failure::usage(format!("--ca {shown}: not a valid PEM file: {e}")),
    };
    let mut tls = Tls::webpki_roots();
    let mut found = 0usize;
    for cert in CertificateDer::pem_file_iter(path).map_err(fail)? {
        tls = tls.with_root(cert.map_err(fail)?);
        found += 1;
    }
    if found == 0 {
        return Err(Failure::usage(format!(
            "--ca {shown}: no certificate in it (expected -----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(tls)
}

/// Why a session could not start.
pub(crate) fn start_failure(error: ConnectError) -> Failure {
    match error {
        ConnectError::Config(e) => config_failure(e),
        ConnectError::Tls(e) => Failure::usage(format!("--ca: not a usable CA certificate: {e}")),
        e => Failure::ended(failure::chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("nova-cli-setup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, nova_testkit::TestCa::generate().unwrap().root_pem()).unwrap();
        assert!(load_ca(&good).is_ok());
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        assert!(load_ca(&empty).unwrap_err().message.contains("no certificate"));
        let missing = load_ca(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.message.contains("cannot read"), "{missing:?}");
        assert_eq!(missing.code, failure::USAGE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
