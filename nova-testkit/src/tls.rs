//! Certificates and rustls configurations for TLS tests.
//!
//! [`TestCa`] generates, at run time, a self-signed root and a server
//! certificate signed by it, and builds the matching rustls configurations.
//! Both configurations name the `ring` provider explicitly: they never depend
//! on (or panic for lack of) a process-wide default provider.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The names [`TestCa::generate`] puts in the server certificate.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why [`TestCa`] could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rcgen could not make a key or certificate, e.g. for a name that is
    /// neither a valid DNS name nor an IP address.
    #[error("certificate generation failed")]
    Certificate(#[from] rcgen::Error),
    /// rustls rejected the generated certificates or key.
    #[error("rustls rejected the generated configuration")]
    Config(#[from] rustls::Error),
}

/// A test certificate authority: a self-signed root, a server certificate it
/// signed, and rustls configurations for both ends.
///
/// Everything is generated in memory by [`generate`](TestCa::generate) (ECDSA
/// P-256 keys); nothing touches the disk or the system trust store. The
/// client configuration trusts this root and nothing else, so a client built
/// from another `TestCa` fails with an unknown issuer.
///
/// # Examples
///
/// A handshake between the two configurations, through in-memory buffers:
///
/// ```
/// use nova_testkit::tls::TestCa;
/// use rustls::pki_types::ServerName;
/// use rustls::{ClientConnection, ServerConnection};
///
/// let ca = TestCa::generate()?;
/// let name = ServerName::try_from("localhost")?;
/// let mut client = ClientConnection::new(ca.client_config(), name)?;
/// let mut server = ServerConnection::new(ca.server_config())?;
///
/// // Shuttle the TLS records back and forth until the handshake is done.
/// let mut wire = Vec::new();
/// while client.is_handshaking() || server.is_handshaking() {
///     wire.clear();
///     client.write_tls(&mut wire)?;
///     server.read_tls(&mut wire.as_slice())?;
///     server.process_new_packets()?;
///     wire.clear();
///     server.write_tls(&mut wire)?;
///     client.read_tls(&mut wire.as_slice())?;
///     client.process_new_packets()?;
/// }
/// assert!(client.peer_certificates().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TestCa {
    root: CertificateDer<'static>,
    root_pem: String,
    server_cert: CertificateDer<'static>,
    server_cert_pem: String,
    server_key: PrivatePkcs8KeyDer<'static>,
    server_key_pem: String,
    names: Vec<String>,
    roots: RootCertStore,
    server_config: Arc<ServerConfig>,
    client_config: Arc<ClientConfig>,
}

impl TestCa {
    /// A new root, and a server certificate for `localhost`, `127.0.0.1` and
    /// `::1` (see [`LOOPBACK_NAMES`]).
    ///
    /// Takes a few milliseconds: two key pairs are generated.
    ///
    /// # Errors
    ///
    /// [`TlsError`] if key or certificate generation fails, which the fixed
    /// names here should never cause.
    pub fn generate() -> Result<TestCa, TlsError> {
        TestCa::generate_for(&LOOPBACK_NAMES)
    }

    /// A new root, and a server certificate for `names` only: DNS names or IP
    /// addresses (an address is written as an IP subject alternative name).
    /// Use it to test a name mismatch, e.g. `generate_for(&["wrong.example"])`
    /// seen from a client connecting to `localhost`.
    ///
    /// # Errors
    ///
    /// [`TlsError::Certificate`] if a name is neither a valid DNS name nor an
    /// IP address; [`TlsError`] if generation fails otherwise.
    pub fn generate_for(names: &[&str]) -> Result<TestCa, TlsError> {
        let root_key = KeyPair::generate()?;
        let mut root_params = CertificateParams::new(Vec::<String>::new())?;
        // Verifiers find the issuer by name. Two roots with one name would
        // make a foreign server certificate fail as a bad signature (its
        // issuer seems known) instead of as an unknown issuer, so each root
        // is named after its own key.
        let fingerprint: String =
            root_key.public_key_raw().iter().rev().take(8).map(|byte| format!("{byte:02x}")).collect();
        root_params.distinguished_name.push(DnType::CommonName, format!("nova-testkit test root {fingerprint}"));
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root = root_params.self_signed(&root_key)?;
        let issuer = Issuer::new(root_params, root_key);

        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let server_key = KeyPair::generate()?;
        let mut server_params = CertificateParams::new(names.clone())?;
        server_params.distinguished_name = rcgen::DistinguishedName::new();
        server_params
            .distinguished_name
            .push(DnType::CommonName, names.first().map_or("nova-testkit server", String::as_str));
        server_params.is_ca = IsCa::ExplicitNoCa;
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.use_authority_key_identifier_extension = true;
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let root_pem = root.pem();
        let root = CertificateDer::from(root);
        let server_cert_pem = server_cert.pem();
        let server_cert = CertificateDer::from(server_cert);
        let server_key_pem = server_key.serialize_pem();
        let server_key = PrivatePkcs8KeyDer::from(server_key.serialize_der());

        let mut roots = RootCertStore::empty();
        roots.add(root.clone())?;
        let server_config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            // The leaf alone: the client has the root already.
            .with_single_cert(vec![server_cert.clone()], PrivateKeyDer::Pkcs8(server_key.clone_key()))?;
        let client_config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();

        Ok(TestCa {
            root,
            root_pem,
            server_cert,
            server_cert_pem,
            server_key,
            server_key_pem,
            names,
            roots,
            server_config: Arc::new(server_config),
            client_config: Arc::new(client_config),
        })
    }

    /// The root certificate, DER-encoded: what a client must trust.
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    /// The root certificate, PEM-encoded, for clients configured from a file
    /// or a string.
    pub fn root_pem(&self) -> String {
        self.root_pem.clone()
    }

    /// A store holding the root and nothing else.
    pub fn root_store(&self) -> RootCertStore {
        self.roots.clone()
    }

    /// The server certificate, DER-encoded.
    pub fn server_cert_der(&self) -> CertificateDer<'static> {
        self.server_cert.clone()
    }

    /// The server certificate, PEM-encoded, for a third-party server that
    /// reads it from a file.
    pub fn server_cert_pem(&self) -> String {
        self.server_cert_pem.clone()
    }

    /// The server's private key (PKCS#8, DER-encoded).
    pub fn server_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.server_key.clone_key())
    }

    /// The server's private key (PKCS#8, PEM-encoded).
    pub fn server_key_pem(&self) -> String {
        self.server_key_pem.clone()
    }

    /// The names the server certificate is valid for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A server configuration presenting the server certificate, with the
    /// `ring` provider, the safe default protocol versions and no client
    /// authentication. Built once; this clones an `Arc`.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server_config)
    }

    /// A client configuration that trusts this root only, with the `ring`
    /// provider, the safe default protocol versions and no client
    /// certificate. Built once; this clones an `Arc`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.client_config)
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs, even a test key.
        f.debug_struct("TestCa").field("names", &self.names).finish_non_exhaustive()
    }
}

/// The provider both configurations use, named here rather than taken from
/// the process default, which may be unset (rustls would panic) or different.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
