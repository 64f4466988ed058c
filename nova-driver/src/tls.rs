//! Which certificates a `wss://` connection trusts.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// TLS settings for `wss://` URLs.
///
/// The default verifies the server against Mozilla's root certificates
/// (compiled in through `webpki-roots`, so no system store is read) with
/// rustls' `ring` provider, named explicitly: nothing depends on a
/// process-wide default provider, so TLS setup cannot panic at run time.
/// Certificate verification is always on unless you pass a
/// [`ClientConfig`] that turns it off yourself.
///
/// ```
/// use nova_driver::Tls;
///
/// // Mozilla's roots plus a private CA (DER bytes, e.g. from a PEM file):
/// # let private_ca_der = nova_testkit::TestCa::generate().unwrap().root_der();
/// let tls = Tls::webpki_roots().with_root(private_ca_der);
/// # let _ = tls;
/// ```
#[derive(Clone)]
pub struct Tls {
    source: Source,
}

#[derive(Clone)]
enum Source {
    /// Built from roots: webpki's and/or added ones.
    Roots { webpki: bool, extra: Vec<CertificateDer<'static>> },
    /// A store the caller built, plus added roots.
    Store { store: Arc<RootCertStore>, extra: Vec<CertificateDer<'static>> },
    /// A complete configuration from the caller, used as it is. Roots added
    /// to it are an error at connect time: they belong in its verifier.
    Config { config: Arc<ClientConfig>, extra: usize },
}

impl Default for Tls {
    fn default() -> Tls {
        Tls::webpki_roots()
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Roots { webpki, extra } => {
                f.debug_struct("Tls").field("webpki_roots", webpki).field("extra_roots", &extra.len()).finish()
            }
            Source::Store { store, extra } => {
                f.debug_struct("Tls").field("root_store", &store.len()).field("extra_roots", &extra.len()).finish()
            }
            Source::Config { .. } => f.debug_struct("Tls").field("client_config", &"custom").finish(),
        }
    }
}

impl Tls {
    /// Mozilla's root certificates (the default).
    pub fn webpki_roots() -> Tls {
        Tls { source: Source::Roots { webpki: true, extra: Vec::new() } }
    }

    /// No root at all: add the ones to trust with [`with_root`](Self::with_root)
    /// (a private CA, a test root).
    pub fn no_roots() -> Tls {
        Tls { source: Source::Roots { webpki: false, extra: Vec::new() } }
    }

    /// Also trusts `root` (a DER-encoded CA certificate), on top of the roots
    /// already trusted. A [`client_config`](Self::client_config) cannot take
    /// more roots (they belong in its verifier): connecting with one fails.
    pub fn with_root(self, root: CertificateDer<'static>) -> Tls {
        let source = match self.source {
            Source::Roots { webpki, mut extra } => {
                extra.push(root);
                Source::Roots { webpki, extra }
            }
            Source::Store { store, mut extra } => {
                extra.push(root);
                Source::Store { store, extra }
            }
            Source::Config { config, extra } => Source::Config { config, extra: extra + 1 },
        };
        Tls { source }
    }

    /// Trusts exactly the roots in `store`.
    pub fn root_store(store: impl Into<Arc<RootCertStore>>) -> Tls {
        Tls { source: Source::Store { store: store.into(), extra: Vec::new() } }
    }

    /// Uses `config` as it is: client certificates, a custom verifier, another
    /// provider. Keep ALPN empty or `http/1.1`: a server that picks `h2` cannot
    /// speak the HTTP/1.1 upgrade.
    pub fn client_config(config: Arc<ClientConfig>) -> Tls {
        Tls { source: Source::Config { config, extra: 0 } }
    }

    /// The configuration to connect with.
    ///
    /// # Errors
    ///
    /// When an added root is not a usable CA certificate, or the provider
    /// rejects the protocol versions (it supports them; this is a safeguard).
    pub(crate) fn build(&self) -> Result<Arc<ClientConfig>, rustls::Error> {
        // The default (Mozilla's roots, nothing added) is the same for every
        // session: built once per process and shared, rather than a root
        // store and a configuration (about 20 KiB) for each session, used or
        // not (nova-bench measured it in the resident memory of idle ws://
        // connections). Sharing it also shares rustls' resumption cache.
        static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        let default = matches!(&self.source, Source::Roots { webpki: true, extra } if extra.is_empty());
        if default && let Some(config) = DEFAULT.get() {
            return Ok(Arc::clone(config));
        }
        let config = self.build_new()?;
        if default {
            return Ok(Arc::clone(DEFAULT.get_or_init(|| config)));
        }
        Ok(config)
    }

    fn build_new(&self) -> Result<Arc<ClientConfig>, rustls::Error> {
        let (mut roots, extra) = match &self.source {
            Source::Config { config, extra: 0 } => return Ok(Arc::clone(config)),
            Source::Config { .. } => {
                return Err(rustls::Error::General(
                    "roots cannot be added to a full ClientConfig: put them in its verifier".to_owned(),
                ));
            }
            Source::Store { store, extra } => (RootCertStore::clone(store), extra),
            Source::Roots { webpki, extra } => {
                let mut roots = RootCertStore::empty();
                if *webpki {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
                (roots, extra)
            }
        };
        for root in extra {
            roots.add(root.clone())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_trusts_mozillas_roots() {
        let config = Tls::default().build().unwrap();
        // ALPN stays empty: the upgrade is HTTP/1.1.
        assert!(config.alpn_protocols.is_empty());
        assert!(format!("{:?}", Tls::default()).contains("webpki_roots: true"));
    }

    #[test]
    fn a_garbage_root_is_an_error_not_a_panic() {
        let tls = Tls::no_roots().with_root(CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]));
        assert!(tls.build().is_err());
    }

    #[test]
    fn a_full_config_is_used_as_it_is_and_takes_no_more_roots() {
        let ca = nova_testkit::TestCa::generate().unwrap();
        let config = ca.client_config();
        assert!(Arc::ptr_eq(&Tls::client_config(Arc::clone(&config)).build().unwrap(), &config));
        // Adding a root to it would mean quietly replacing its verifier.
        assert!(Tls::client_config(config).with_root(ca.root_der()).build().is_err());
        assert!(Tls::no_roots().with_root(ca.root_der()).build().is_ok());
    }

    #[test]
    fn a_root_added_to_a_store_joins_it_and_trusts_nothing_else() {
        let (a, b) = (nova_testkit::TestCa::generate().unwrap(), nova_testkit::TestCa::generate().unwrap());
        let tls = Tls::root_store(a.root_store()).with_root(b.root_der());
        assert!(format!("{tls:?}").contains("root_store: 1, extra_roots: 1"), "{tls:?}");
        assert!(tls.build().is_ok());
    }
}
