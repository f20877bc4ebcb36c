//! TLS to PostgreSQL with rustls, for both kinds of connection viewcast opens:
//! the SQL ones (`tokio_postgres`, through [`connect_sql`]) and the
//! replication one ([`open_stream`], used by [`super::replication`]).
//!
//! PostgreSQL does not start TLS on connect. The client first sends an
//! SSLRequest (Int32 8, Int32 80877103) on the plain socket; the server
//! answers one byte, `S` (go ahead with the TLS handshake) or `N` (plaintext
//! only), and the startup message follows inside TLS or not. See "SSL Session
//! Encryption" in the protocol docs.
//!
//! ```text
//! TCP connect ─ SSLRequest ─▶ 'S' ─ rustls handshake ─ verify (by sslmode) ─▶ startup, auth
//!                          └▶ 'N' ─ prefer: plaintext startup; require and up: error
//! ```
//!
//! What is checked follows libpq's `sslmode` (see [`super::conninfo`]):
//! prefer and require encrypt but accept any certificate (handshake
//! signatures are still verified, so the server holds the key it shows);
//! verify-ca checks the chain against the roots; verify-full also checks that
//! the certificate names the host connected to, or its IP address. A failed
//! check is a definite error naming the mode, never a quiet fall back to
//! plaintext. Unix sockets never use TLS, as in libpq.
//!
//! When TLS is up, SCRAM can bind the authentication to the TLS session with
//! `tls-server-end-point` (RFC 5929): the hash of the server's certificate,
//! which a man in the middle with another certificate cannot reproduce.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tracing::{debug, Instrument};

use super::conninfo::{PgConfig, RootCert, SslMode, Target, TlsSettings};

/// ALPN protocol name libpq 17 offers. Servers from 17 on accept it (and
/// require it for direct TLS); older ones ignore it.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Failures to set TLS up or to complete it. Everything here is definite
/// except a connection lost mid-handshake.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} \"{path}\": {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} \"{path}\" is not usable: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "private key file \"{0}\" has group or world access; file must have permissions u=rw \
         (0600) or less if owned by the current user, or u=rw,g=r (0640) or less if owned by root"
    )]
    KeyPermissions(PathBuf),
    #[error("sslmode={0} needs trusted roots: set sslrootcert to a CA file, or to system")]
    NoRoots(SslMode),
    #[error("sslrootcert=system: no usable root certificates in the system store ({0})")]
    SystemRoots(String),
    #[error("client certificate \"{cert}\" and key \"{key}\": {reason}")]
    ClientAuth {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

impl TlsError {
    pub fn is_transient(&self) -> bool {
        matches!(self, TlsError::Handshake(h) if h.transient)
    }
}

/// TLS with one server did not come up. Cloneable, because `tokio_postgres`
/// keeps it as the source of its own error and we take it back out.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS to {target} failed (sslmode={mode}): {reason}")]
pub struct HandshakeError {
    pub target: String,
    pub mode: SslMode,
    pub reason: String,
    /// The connection broke, as opposed to a verdict on the certificate.
    pub transient: bool,
}

/// Opening a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot connect to {target}: {source}")]
    Io { target: String, source: io::Error },
    #[error("{}", super::error_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

impl From<HandshakeError> for ConnectError {
    fn from(e: HandshakeError) -> Self {
        ConnectError::Tls(TlsError::Handshake(e))
    }
}

impl ConnectError {
    /// Whether trying again later can help: the server is not up (yet), or
    /// the connection broke. Bad certificates, settings and credentials are
    /// definite.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectError::Tls(e) => e.is_transient(),
            ConnectError::Io { .. } => true,
            ConnectError::Postgres(e) => {
                super::errors::classify_pg(e) == super::errors::Class::Transient
            }
        }
    }
}

/// A rustls client set up from [`TlsSettings`]: roots, verifier, client
/// certificate. Built per connection attempt, so replaced certificate files
/// are read again when viewcast reconnects.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    /// The mode in force ([`TlsSettings::effective_mode`]).
    mode: SslMode,
    /// Where the roots came from, for messages.
    roots: String,
}

impl TlsConnector {
    /// `None` for sslmode=disable.
    pub fn new(settings: &TlsSettings) -> Result<Option<TlsConnector>, TlsError> {
        let mode = settings.effective_mode();
        if mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (roots, roots_text) = if mode.verifies() {
            match &settings.root_cert {
                Some(RootCert::File(path)) => (
                    Some(load_roots(path)?),
                    format!("sslrootcert={}", path.display()),
                ),
                Some(RootCert::System) => (Some(system_roots()?), "sslrootcert=system".into()),
                // PgConfig::parse refuses this; settings made by hand may not.
                None => return Err(TlsError::NoRoots(mode)),
            }
        } else {
            (None, String::new())
        };
        let verifier = Arc::new(PgVerifier {
            roots,
            check_name: mode == SslMode::VerifyFull,
            algorithms: provider.signature_verification_algorithms,
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => {
                let chain = load_certs(cert, "certificate file (sslcert)")?;
                let private = load_key(key)?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| TlsError::ClientAuth {
                        cert: cert.clone(),
                        key: key.clone(),
                        reason: e.to_string(),
                    })?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(Some(TlsConnector {
            config: Arc::new(config),
            mode,
            roots: roots_text,
        }))
    }

    /// The mode in force.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The TLS handshake over a socket whose SSLRequest the server accepted.
    pub async fn handshake<S>(
        &self,
        stream: S,
        target: &Target,
    ) -> Result<tokio_rustls::client::TlsStream<S>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.server_name(target)?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| {
                let (reason, transient) = self.describe(&e);
                self.error(target, reason, transient)
            })
    }

    fn error(&self, target: &Target, reason: String, transient: bool) -> HandshakeError {
        HandshakeError {
            target: target.to_string(),
            mode: self.mode,
            reason,
            transient,
        }
    }

    /// The name to check the certificate against, and to send as SNI (rustls
    /// sends none for an IP address, as libpq): the host as written. A
    /// `hostaddr` without a `host` stands for itself.
    fn server_name(&self, target: &Target) -> Result<ServerName<'static>, HandshakeError> {
        let host = match &target.host {
            Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            Host::Unix(_) => String::new(),
        };
        match ServerName::try_from(host.clone()) {
            Ok(name) => Ok(name),
            // Only verify-full looks at the name; the others need some name.
            Err(_) if self.mode != SslMode::VerifyFull => Ok(ServerName::IpAddress(
                target.hostaddr.unwrap_or(IpAddr::from([0, 0, 0, 0])).into(),
            )),
            Err(_) => Err(self.error(
                target,
                format!("host \"{host}\" is not a DNS name or IP address a certificate can carry"),
                false,
            )),
        }
    }

    /// What a failed handshake means, and whether to try again.
    fn describe(&self, e: &io::Error) -> (String, bool) {
        let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
            return (format!("connection lost during the handshake: {e}"), true);
        };
        let reason = match tls {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                "server certificate is not signed by a trusted root ({})",
                self.roots
            ),
            rustls::Error::InvalidCertificate(c) => c.to_string(),
            rustls::Error::AlertReceived(alert) => {
                format!("the server ended the handshake with TLS alert {alert:?}")
            }
            other => other.to_string(),
        };
        (reason, false)
    }

    /// A `tokio_postgres` connector that verifies against `target`.
    pub fn for_sql(&self, target: &Target) -> MakeRustls {
        MakeRustls {
            connector: self.clone(),
            target: target.clone(),
        }
    }
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_path_buf(),
            reason: "no PEM certificate (BEGIN CERTIFICATE) in it".into(),
        });
    }
    Ok(certs)
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    const WHAT: &str = "root certificate file (sslrootcert)";
    let mut store = RootCertStore::empty();
    for cert in load_certs(path, WHAT)? {
        store.add(cert).map_err(|e| TlsError::Pem {
            what: WHAT,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(store))
}

fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(TlsError::SystemRoots(if errors.is_empty() {
            "the store is empty; install ca-certificates or name a file with sslrootcert".into()
        } else {
            errors.join("; ")
        }));
    }
    Ok(Arc::new(store))
}

/// Reads a PKCS#1, PKCS#8 or SEC1 PEM key, refusing one others can read,
/// as libpq does.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "private key file (sslkey)";
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
            what: WHAT,
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.mode() & 0o777;
        let too_open = if meta.uid() == 0 {
            mode & 0o037 != 0
        } else {
            mode & 0o077 != 0
        };
        if meta.is_file() && too_open {
            return Err(TlsError::KeyPermissions(path.to_path_buf()));
        }
    }
    let pem = read_file(path, WHAT)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what: WHAT,
        path: path.to_path_buf(),
        reason: format!("{e} (a PEM private key in PKCS#1, PKCS#8 or SEC1 form is needed)"),
    })
}

/// Checks the server certificate as the sslmode asks. rustls's own
/// `WebPkiServerVerifier` always checks the name; verify-ca must not, and
/// prefer/require check nothing but the handshake signatures.
#[derive(Debug)]
struct PgVerifier {
    /// `None`: any certificate (prefer, require).
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        // rustls exports the parsed form under `server`, though clients use it too.
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.check_name {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The `tls-server-end-point` channel binding data of a server certificate:
/// its hash with the hash function of its signature algorithm, SHA-256 for
/// MD5 and SHA-1 (RFC 5929 section 4.1), as the server computes it. `None` for
/// algorithms without one hash (Ed25519, RSA-PSS): SCRAM then goes without
/// channel binding.
pub fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    // DER OIDs (content bytes) of the signature algorithms with a hash.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    enum Hash {
        Sha224,
        Sha256,
        Sha384,
        Sha512,
    }
    let oid = signature_algorithm_oid(cert)?;
    let hash = if let Some(rest) = oid.strip_prefix(RSA) {
        match rest {
            // md5WithRSAEncryption, sha1WithRSAEncryption, sha256WithRSAEncryption
            [0x04] | [0x05] | [0x0b] => Hash::Sha256,
            [0x0c] => Hash::Sha384,
            [0x0d] => Hash::Sha512,
            [0x0e] => Hash::Sha224,
            _ => return None,
        }
    } else if oid == ECDSA_SHA1 {
        Hash::Sha256
    } else if let Some(rest) = oid.strip_prefix(ECDSA_SHA2) {
        match rest {
            [0x01] => Hash::Sha224,
            [0x02] => Hash::Sha256,
            [0x03] => Hash::Sha384,
            [0x04] => Hash::Sha512,
            _ => return None,
        }
    } else {
        return None;
    };
    Some(match hash {
        Hash::Sha224 => sha2::Sha224::digest(cert).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(cert).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(cert).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(cert).to_vec(),
    })
}

/// The OID of `Certificate.signatureAlgorithm`:
/// `SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, ... }, BIT STRING }`.
fn signature_algorithm_oid(cert: &[u8]) -> Option<&[u8]> {
    /// One DER element: (tag, contents, what follows it).
    fn element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = buf.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |l, b| (l << 8) | *b as usize);
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (SEQUENCE, certificate, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, _tbs, rest) = element(certificate)? else {
        return None;
    };
    let (SEQUENCE, algorithm, _) = element(rest)? else {
        return None;
    };
    match element(algorithm)? {
        (OID, oid, _) => Some(oid),
        _ => None,
    }
}

/// Something the replication client can speak the protocol over.
pub trait PgStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PgStream for T {}

/// A socket to one server, ready for the startup message.
pub struct OpenedStream {
    pub stream: Box<dyn PgStream>,
    /// `tls-server-end-point` data when TLS is up and the certificate has one.
    pub channel_binding: Option<Vec<u8>>,
}

/// Sends SSLRequest and reads the answer: true for `S`. Reads exactly one
/// byte, so nothing the server sent before the handshake is taken for TLS
/// data (CVE-2021-23222).
async fn ssl_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: &Target,
    mode: SslMode,
) -> Result<bool, ConnectError> {
    let io_err = |source| ConnectError::Io {
        target: target.to_string(),
        source,
    };
    let mut buf = BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut buf);
    stream.write_all(&buf).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;
    let answer = stream.read_u8().await.map_err(io_err)?;
    match answer {
        b'S' => Ok(true),
        b'N' => Ok(false),
        other => Err(HandshakeError {
            target: target.to_string(),
            mode,
            reason: format!(
                "unexpected answer {:?} to SSLRequest (expected 'S' or 'N'); is this a PostgreSQL server?",
                other as char
            ),
            transient: false,
        }
        .into()),
    }
}

fn not_offered(target: &Target, mode: SslMode) -> HandshakeError {
    HandshakeError {
        target: target.to_string(),
        mode,
        reason: "the server does not accept TLS connections (it answered 'N' to SSLRequest); \
                 set ssl = on in its postgresql.conf, or connect with sslmode=prefer or disable"
            .into(),
        transient: false,
    }
}

/// Opens a socket to `target` and, as `tls` says, negotiates TLS on it: the
/// replication connection's way in. `tls` is `None` for sslmode=disable.
pub async fn open_stream(
    cfg: &PgConfig,
    target: &Target,
    tls: Option<&TlsConnector>,
) -> Result<OpenedStream, ConnectError> {
    let io_err = |source| ConnectError::Io {
        target: target.to_string(),
        source,
    };
    let timeout = cfg.pg.get_connect_timeout().copied();
    let with_timeout = |fut| async move {
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect_timeout expired",
                ))
            }),
            None => fut.await,
        }
    };
    let mut tcp = match &target.host {
        #[cfg(unix)]
        Host::Unix(dir) => {
            let path = dir.join(format!(".s.PGSQL.{}", target.port));
            let unix = tokio::net::UnixStream::connect(path)
                .await
                .map_err(io_err)?;
            return Ok(OpenedStream {
                stream: Box::new(unix),
                channel_binding: None,
            });
        }
        Host::Tcp(host) => {
            let connect: Pin<Box<dyn Future<Output = io::Result<tokio::net::TcpStream>> + Send>> =
                match target.hostaddr {
                    Some(addr) => Box::pin(tokio::net::TcpStream::connect((addr, target.port))),
                    None => Box::pin(tokio::net::TcpStream::connect((host.clone(), target.port))),
                };
            with_timeout(connect).await.map_err(io_err)?
        }
    };
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(OpenedStream {
            stream: Box::new(tcp),
            channel_binding: None,
        });
    };
    if !ssl_request(&mut tcp, target, tls.mode).await? {
        if tls.mode == SslMode::Prefer {
            debug!(%target, "server declined TLS; continuing in plaintext (sslmode=prefer)");
            return Ok(OpenedStream {
                stream: Box::new(tcp),
                channel_binding: None,
            });
        }
        return Err(not_offered(target, tls.mode).into());
    }
    let stream = tls.handshake(tcp, target).await?;
    let channel_binding = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| tls_server_end_point(c));
    debug!(%target, mode = %tls.mode, "tls established");
    Ok(OpenedStream {
        stream: Box::new(stream),
        channel_binding,
    })
}

/// Opens an SQL connection to the first of `cfg`'s targets that answers,
/// with TLS as its sslmode says, and runs the connection in a task of its
/// own (it ends when the client is dropped).
pub async fn connect_sql(cfg: &PgConfig) -> Result<tokio_postgres::Client, ConnectError> {
    let tls = TlsConnector::new(&cfg.tls)?;
    let mut last = None;
    for target in cfg.targets() {
        match connect_sql_to(cfg, target, tls.as_ref()).await {
            Ok(client) => return Ok(client),
            Err(e) => {
                debug!(%target, error = %e, "connection attempt failed");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::Io {
        target: "(none)".into(),
        source: io::Error::other("no host to connect to"),
    }))
}

async fn connect_sql_to(
    cfg: &PgConfig,
    target: &Target,
    tls: Option<&TlsConnector>,
) -> Result<tokio_postgres::Client, ConnectError> {
    let mut pg = cfg.config_for(target);
    match tls.filter(|_| target.is_tcp()) {
        None => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, conn) = pg.connect(tokio_postgres::NoTls).await?;
            spawn_connection(conn, target);
            Ok(client)
        }
        Some(tls) => {
            // tokio_postgres's prefer falls back to plaintext exactly when the
            // server answers 'N', as libpq's does; a failed handshake is an error.
            pg.ssl_mode(if tls.mode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let (client, conn) = pg
                .connect(tls.for_sql(target))
                .await
                .map_err(|e| sql_error(e, target, tls.mode))?;
            spawn_connection(conn, target);
            Ok(client)
        }
    }
}

fn spawn_connection<F>(conn: F, target: &Target)
where
    F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    let span = tracing::info_span!("pg_connection", target = %target);
    tokio::spawn(
        async move {
            if let Err(e) = conn.await {
                debug!(error = %super::error_text(&e), "sql connection closed");
            }
        }
        .instrument(span),
    );
}

/// Takes our own handshake error back out of `tokio_postgres`'s, and names
/// its refusal of a server that answered 'N' under require.
fn sql_error(e: tokio_postgres::Error, target: &Target, mode: SslMode) -> ConnectError {
    let source = std::error::Error::source(&e);
    if let Some(h) = source.and_then(|s| s.downcast_ref::<HandshakeError>()) {
        return h.clone().into();
    }
    // tokio_postgres's words for an 'N' under its sslmode=require (connect_tls.rs).
    if source.is_some_and(|s| s.to_string() == "server does not support TLS") {
        return not_offered(target, mode).into();
    }
    ConnectError::Postgres(e)
}

/// `tokio_postgres`'s hook for TLS: hands out [`RustlsConnect`]s for one target.
#[derive(Clone)]
pub struct MakeRustls {
    connector: TlsConnector,
    target: Target,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = HandshakeError;

    /// `domain` is ignored: the target already says which name to check,
    /// including for a `hostaddr` without a `host`, which `tokio_postgres`
    /// would pass as no name at all.
    fn make_tls_connect(&mut self, _domain: &str) -> Result<RustlsConnect, HandshakeError> {
        Ok(RustlsConnect {
            connector: self.connector.clone(),
            target: self.target.clone(),
        })
    }
}

/// One TLS handshake for `tokio_postgres`.
pub struct RustlsConnect {
    connector: TlsConnector,
    target: Target,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, HandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.handshake(stream, &self.target).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A TLS stream that also tells `tokio_postgres` its channel binding data.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| tls_server_end_point(c))
            .map(ChannelBinding::tls_server_end_point)
            .unwrap_or_else(ChannelBinding::none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal DER certificate shape: SEQUENCE { SEQUENCE {}, SEQUENCE { OID }, BIT STRING }.
    fn fake_cert(oid: &[u8]) -> Vec<u8> {
        let mut alg = vec![0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        let mut body = vec![0x30, 0x00, 0x30, alg.len() as u8];
        body.extend_from_slice(&alg);
        body.extend_from_slice(&[0x03, 0x01, 0x00]);
        let mut cert = vec![0x30, body.len() as u8];
        cert.extend_from_slice(&body);
        cert
    }

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        let sha256_rsa = fake_cert(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]);
        assert_eq!(
            tls_server_end_point(&sha256_rsa),
            Some(sha2::Sha256::digest(&sha256_rsa).to_vec())
        );
        // SHA-1 is upgraded to SHA-256.
        let sha1_ecdsa = fake_cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]);
        assert_eq!(tls_server_end_point(&sha1_ecdsa).map(|h| h.len()), Some(32));
        let sha384_ecdsa = fake_cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]);
        assert_eq!(
            tls_server_end_point(&sha384_ecdsa),
            Some(sha2::Sha384::digest(&sha384_ecdsa).to_vec())
        );
        // Ed25519 has no separate hash.
        assert_eq!(tls_server_end_point(&fake_cert(&[0x2b, 0x65, 0x70])), None);
        assert_eq!(tls_server_end_point(&[0x30, 0x05, 0x30]), None, "truncated");
        assert_eq!(tls_server_end_point(&[]), None);
    }

    #[test]
    fn long_form_lengths() {
        // A 200-byte tbsCertificate takes a two-byte length.
        let oid = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let mut body = vec![0x30, 0x81, 200];
        body.extend(std::iter::repeat_n(0u8, 200));
        body.extend_from_slice(&[0x30, 0x0a, 0x06, 0x08]);
        body.extend_from_slice(&oid);
        let mut cert = vec![0x30, 0x82, 0x00, body.len() as u8];
        cert.extend_from_slice(&body);
        assert_eq!(signature_algorithm_oid(&cert), Some(&oid[..]));
    }

    #[test]
    fn disable_builds_no_connector_and_require_checks_nothing() {
        let off = TlsSettings {
            mode: SslMode::Disable,
            ..TlsSettings::default()
        };
        assert!(TlsConnector::new(&off).unwrap().is_none());
        let require = TlsSettings {
            mode: SslMode::Require,
            ..TlsSettings::default()
        };
        let c = TlsConnector::new(&require).unwrap().expect("a connector");
        assert_eq!(c.mode(), SslMode::Require);
    }

    #[test]
    fn unreadable_files_are_named() {
        let settings = TlsSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some(RootCert::File("/nonexistent/ca.pem".into())),
            ..TlsSettings::default()
        };
        let e = TlsConnector::new(&settings)
            .err()
            .expect("error")
            .to_string();
        assert!(e.contains("\"/nonexistent/ca.pem\""), "{e}");

        let dir = std::env::temp_dir().join(format!("viewcast-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let settings = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(RootCert::File(not_pem.clone())),
            ..TlsSettings::default()
        };
        let e = TlsConnector::new(&settings)
            .err()
            .expect("error")
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.join("open.key");
            std::fs::write(&key, "x").unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_key(&key).expect_err("refused").to_string();
            assert!(e.contains("group or world access"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A server that reads the SSLRequest and answers `answer`.
    async fn answering(answer: u8) -> (PgConfig, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            s.read_exact(&mut request).await.unwrap();
            assert_eq!(request, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], "SSLRequest");
            s.write_all(&[answer]).await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        let cfg =
            PgConfig::parse_with_env(&format!("host=127.0.0.1 port={port}"), |_| None).unwrap();
        (cfg, server)
    }

    async fn open_with(mode: SslMode, answer: u8) -> Result<OpenedStream, ConnectError> {
        let (cfg, server) = answering(answer).await;
        let tls = TlsConnector::new(&TlsSettings {
            mode,
            ..TlsSettings::default()
        })
        .unwrap();
        let opened = open_stream(&cfg, &cfg.targets()[0], tls.as_ref()).await;
        server.abort();
        opened
    }

    #[tokio::test]
    async fn ssl_request_answers() {
        // prefer takes 'N' for plaintext.
        let opened = open_with(SslMode::Prefer, b'N').await.expect("plaintext");
        assert!(opened.channel_binding.is_none());
        // require does not.
        let e = open_with(SslMode::Require, b'N')
            .await
            .err()
            .expect("refused");
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("(sslmode=require)") && text.contains("answered 'N'"),
            "{text}"
        );
        // Anything but 'S' or 'N' is an error, under prefer too.
        let e = open_with(SslMode::Prefer, b'E')
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("unexpected answer 'E'"), "{e}");
    }

    #[test]
    fn transient_or_definite() {
        let h = HandshakeError {
            target: "h:5432".into(),
            mode: SslMode::VerifyFull,
            reason: "certificate not valid for name \"h\"".into(),
            transient: false,
        };
        assert_eq!(
            h.to_string(),
            "TLS to h:5432 failed (sslmode=verify-full): certificate not valid for name \"h\""
        );
        assert!(!ConnectError::from(h.clone()).is_transient());
        let lost = HandshakeError {
            transient: true,
            ..h
        };
        assert!(ConnectError::from(lost).is_transient());
        assert!(ConnectError::Io {
            target: "h:1".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused)
        }
        .is_transient());
    }
}
