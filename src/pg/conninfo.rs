//! The `--pg` connection string, read the way libpq reads it.
//!
//! `tokio_postgres::Config`'s parser knows `sslmode` only as disable, prefer
//! and require, and nothing of certificate files, while people copy their
//! conninfo from `psql`, where `sslmode=verify-full sslrootcert=ca.pem` is the
//! usual way to talk to a managed database. So we parse both libpq forms
//! ourselves:
//!
//! ```text
//! host=db.example.com port=5432 user=app dbname=shop sslmode=verify-full
//! postgresql://app:p%40ss@db.example.com:5432/shop?sslmode=verify-full&sslrootcert=ca.pem
//! ```
//!
//! The TLS keys (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) become
//! [`TlsSettings`], resolved here as libpq resolves them (the `PGSSL*`
//! environment variables, the files under `~/.postgresql/`), so a missing root
//! certificate is a startup error rather than a failure at the first
//! connection. Host, hostaddr and port become the list of [`Target`]s to try
//! in order. Every other key goes to `tokio_postgres`, which validates it as
//! before. See "Connection Strings" and "SSL Support" in the libpq docs.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;

/// `sslmode` when neither the conninfo nor `PGSSLMODE` sets one: libpq's
/// default, so a conninfo means what it means to `psql`. TLS is used when the
/// server offers it, without checking the certificate.
pub const DEFAULT_SSLMODE: SslMode = SslMode::Prefer;
/// Port when none is given: PostgreSQL's registered port.
pub const DEFAULT_PORT: u16 = 5432;
/// Socket directory when no host is given. libpq's compiled-in default is
/// `/tmp` upstream, but Debian, Ubuntu and Red Hat packages all use this one.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// Directory under `$HOME` where libpq looks for `root.crt`,
/// `postgresql.crt` and `postgresql.key` when the conninfo names none.
pub const LIBPQ_DIR: &str = ".postgresql";

#[derive(Debug, thiserror::Error)]
pub enum ConninfoError {
    #[error("missing \"=\" after \"{0}\" in the connection string")]
    MissingEquals(String),
    #[error("unterminated quoted value for \"{0}\" in the connection string")]
    Unterminated(String),
    #[error("invalid URL: {0}")]
    Url(String),
    #[error("invalid percent-encoding in URL: \"{0}\"")]
    PercentEncoding(String),
    #[error(
        "invalid sslmode value \"{0}\": use disable, prefer, require, verify-ca or verify-full"
    )]
    SslMode(String),
    #[error(
        "sslmode=allow is not supported: use prefer (TLS when the server offers it) or disable"
    )]
    SslModeAllow,
    #[error("invalid {key} value \"{value}\": {reason}")]
    Value {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("could not match {hosts} host names to {addrs} hostaddr values")]
    HostCount { hosts: usize, addrs: usize },
    #[error("could not match {ports} port numbers to {hosts} hosts")]
    PortCount { ports: usize, hosts: usize },
    #[error(
        "root certificate file \"{0}\" does not exist; either provide the file, use the \
         system's trusted roots with sslrootcert=system, or change sslmode to disable server \
         certificate verification"
    )]
    RootCertMissing(PathBuf),
    #[error("weak sslmode \"{0}\" may not be used with sslrootcert=system (use \"verify-full\")")]
    WeakWithSystemRoots(SslMode),
    #[error("certificate file \"{0}\" (sslcert) does not exist")]
    CertMissing(PathBuf),
    #[error("certificate present, but not private key file \"{0}\"; set sslkey to the key's path")]
    KeyMissing(PathBuf),
    #[error("{key} is not supported by viewcast; remove it from the connection string")]
    Unsupported { key: String },
    #[error("{0}")]
    Postgres(String),
}

/// libpq's `sslmode`, less `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS if the server answers yes to SSLRequest, plaintext if it says no;
    /// the certificate is not checked.
    Prefer,
    /// TLS or fail; the certificate is not checked (but see
    /// [`TlsSettings::effective_mode`]).
    Require,
    /// TLS, and the server's chain must lead to a trusted root; any name.
    VerifyCa,
    /// As verify-ca, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Result<SslMode, ConninfoError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => return Err(ConninfoError::SslModeAllow),
            other => return Err(ConninfoError::SslMode(other.to_string())),
        })
    }

    /// Whether the server's certificate chain is checked.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of CA certificates (`sslrootcert=FILE`, or `~/.postgresql/root.crt`).
    File(PathBuf),
    /// The operating system's store (`sslrootcert=system`, as in libpq 16).
    System,
}

/// The TLS half of a conninfo, resolved: every path named here exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
    /// Client certificate chain (PEM), sent when the server asks for one.
    pub cert: Option<PathBuf>,
    /// Private key of `cert` (PEM: PKCS#1, PKCS#8 or SEC1).
    pub key: Option<PathBuf>,
}

impl TlsSettings {
    /// The mode in force. As in libpq, `require` with a root certificate file
    /// present verifies the chain like `verify-ca`: whoever put the file there
    /// meant it to be used.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (SslMode::Require, Some(RootCert::File(_))) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: DEFAULT_SSLMODE,
            root_cert: None,
            cert: None,
            key: None,
        }
    }
}

/// One server to try: libpq tries them in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as named: a Unix socket directory, or the name (or address)
    /// the server's certificate must carry under verify-full. With only a
    /// `hostaddr`, that address.
    pub host: Host,
    /// Connect here instead of resolving `host`.
    pub hostaddr: Option<IpAddr>,
    pub port: u16,
}

impl Target {
    /// Unix sockets never use TLS: the server refuses it there, and libpq
    /// does not ask.
    pub fn is_tcp(&self) -> bool {
        matches!(self.host, Host::Tcp(_))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => write!(f, "[{h}]:{}", self.port)?,
            Host::Tcp(h) => write!(f, "{h}:{}", self.port)?,
            #[cfg(unix)]
            Host::Unix(dir) => write!(f, "{}/.s.PGSQL.{}", dir.display(), self.port)?,
        }
        match self.hostaddr {
            Some(addr) if !matches!(&self.host, Host::Tcp(h) if *h == addr.to_string()) => {
                write!(f, " ({addr})")
            }
            _ => Ok(()),
        }
    }
}

/// A parsed `--pg`: what `tokio_postgres` needs, the TLS settings, and the
/// servers to try.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Every non-TLS setting, with all hosts, for code that reads them
    /// (user, dbname, application_name, ...). Its `ssl_mode` is the nearest
    /// `tokio_postgres` has; connections go through [`super::tls`] instead.
    pub pg: tokio_postgres::Config,
    pub tls: TlsSettings,
    /// `pg` without hosts, hostaddrs and ports: one target is added per attempt.
    base: tokio_postgres::Config,
    targets: Vec<Target>,
}

impl std::str::FromStr for PgConfig {
    type Err = ConninfoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PgConfig::parse(s)
    }
}

impl PgConfig {
    /// Parses a conninfo or URL, with the `PGSSL*` variables and `$HOME` of
    /// this process.
    pub fn parse(conninfo: &str) -> Result<PgConfig, ConninfoError> {
        Self::parse_with_env(conninfo, |k| std::env::var(k).ok())
    }

    /// [`PgConfig::parse`] with `env` standing for the environment (tests).
    pub fn parse_with_env(
        conninfo: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<PgConfig, ConninfoError> {
        let trimmed = conninfo.trim();
        let pairs = if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            parse_url(trimmed)?
        } else {
            parse_keywords(trimmed)?
        };
        // The last occurrence of a key wins, as in libpq; an empty value means unset.
        let mut settings: Vec<(String, String)> = Vec::new();
        for (k, v) in pairs {
            settings.retain(|(k2, _)| *k2 != k);
            if !v.is_empty() {
                settings.push((k, v));
            }
        }
        let take = |settings: &mut Vec<(String, String)>, key: &str| {
            let i = settings.iter().position(|(k, _)| k == key)?;
            Some(settings.remove(i).1)
        };
        let hosts = take(&mut settings, "host");
        let hostaddrs = take(&mut settings, "hostaddr");
        let ports = take(&mut settings, "port");
        let sslmode = take(&mut settings, "sslmode");
        let rootcert = take(&mut settings, "sslrootcert");
        let cert = take(&mut settings, "sslcert");
        let key = take(&mut settings, "sslkey");
        for unsupported in [
            "sslnegotiation",
            "sslcrl",
            "sslcrldir",
            "sslpassword",
            "gssencmode",
        ] {
            if let Some(v) = take(&mut settings, unsupported) {
                // The values that ask for nothing more than what viewcast does are fine.
                let harmless = matches!(
                    (unsupported, v.as_str()),
                    ("sslnegotiation", "postgres") | ("gssencmode", "disable")
                );
                if !harmless {
                    return Err(ConninfoError::Unsupported {
                        key: format!("{unsupported}={v}"),
                    });
                }
            }
        }

        let tls = resolve_tls(sslmode, rootcert, cert, key, &env)?;
        let base = if settings.is_empty() {
            tokio_postgres::Config::new()
        } else {
            let text: Vec<String> = settings
                .iter()
                .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
                .collect();
            text.join(" ")
                .parse::<tokio_postgres::Config>()
                .map_err(|e| ConninfoError::Postgres(super::error_text(&e)))?
        };
        let targets = targets(hosts.as_deref(), hostaddrs.as_deref(), ports.as_deref())?;
        let mut pg = base.clone();
        for h in hosts.iter().flat_map(|h| h.split(',')) {
            pg.host(h);
        }
        for t in &targets {
            if let Some(a) = t.hostaddr {
                pg.hostaddr(a);
            }
        }
        if ports.is_some() {
            for t in &targets {
                pg.port(t.port);
            }
        }
        pg.ssl_mode(match tls.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        Ok(PgConfig {
            pg,
            tls,
            base,
            targets,
        })
    }

    /// The servers to try, in order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// A `tokio_postgres` configuration for `target` alone. Its `ssl_mode`
    /// is left for the caller.
    pub fn config_for(&self, target: &Target) -> tokio_postgres::Config {
        let mut c = self.base.clone();
        match &target.host {
            Host::Tcp(h) => {
                c.host(h);
            }
            #[cfg(unix)]
            Host::Unix(dir) => {
                c.host_path(dir);
            }
        }
        if let Some(a) = target.hostaddr {
            c.hostaddr(a);
        }
        c.port(target.port);
        c
    }
}

/// Splits `host`, `hostaddr` and `port` lists into targets, with libpq's
/// rules: as many hostaddrs as hosts (or one list empty), one port for all
/// or one per host.
fn targets(
    hosts: Option<&str>,
    hostaddrs: Option<&str>,
    ports: Option<&str>,
) -> Result<Vec<Target>, ConninfoError> {
    let hosts: Vec<&str> = hosts.map(|h| h.split(',').collect()).unwrap_or_default();
    let addrs: Vec<IpAddr> = match hostaddrs {
        None => vec![],
        Some(list) => list
            .split(',')
            .map(|a| {
                a.trim().parse().map_err(|_| ConninfoError::Value {
                    key: "hostaddr",
                    value: a.to_string(),
                    reason: "not a numeric IP address".into(),
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(ConninfoError::HostCount {
            hosts: hosts.len(),
            addrs: addrs.len(),
        });
    }
    let n = hosts.len().max(addrs.len()).max(1);
    let ports: Vec<u16> = match ports {
        None => vec![DEFAULT_PORT],
        Some(list) => {
            list.split(',')
                .map(|p| match p.trim() {
                    "" => Ok(DEFAULT_PORT),
                    p => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                        ConninfoError::Value {
                            key: "port",
                            value: p.to_string(),
                            reason: "not a port number (1-65535)".into(),
                        }
                    }),
                })
                .collect::<Result<_, _>>()?
        }
    };
    if ports.len() != 1 && ports.len() != n {
        return Err(ConninfoError::PortCount {
            ports: ports.len(),
            hosts: n,
        });
    }
    Ok((0..n)
        .map(|i| {
            let hostaddr = addrs.get(i).copied();
            let host = match hosts.get(i).map(|h| h.trim()).filter(|h| !h.is_empty()) {
                #[cfg(unix)]
                Some(h) if h.starts_with('/') => Host::Unix(PathBuf::from(h)),
                Some(h) => Host::Tcp(h.to_string()),
                None => match hostaddr {
                    Some(a) => Host::Tcp(a.to_string()),
                    #[cfg(unix)]
                    None => Host::Unix(PathBuf::from(DEFAULT_SOCKET_DIR)),
                    #[cfg(not(unix))]
                    None => Host::Tcp("localhost".into()),
                },
            };
            Target {
                host,
                hostaddr,
                port: ports[if ports.len() == 1 { 0 } else { i }],
            }
        })
        .collect())
}

/// Resolves the TLS keys as libpq does: conninfo first, then `PGSSLMODE`,
/// `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, then the files under
/// `~/.postgresql/` where they exist.
fn resolve_tls(
    sslmode: Option<String>,
    rootcert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<TlsSettings, ConninfoError> {
    let from_env = |var: &str| env(var).filter(|v| !v.is_empty());
    let explicit_mode = match sslmode.or_else(|| from_env("PGSSLMODE")) {
        Some(m) => Some(SslMode::parse(&m)?),
        None => None,
    };
    let home = from_env("HOME").map(PathBuf::from);
    let default_file = |name: &str| match &home {
        Some(h) => h.join(LIBPQ_DIR).join(name),
        None => Path::new("~").join(LIBPQ_DIR).join(name),
    };
    let rootcert = rootcert.or_else(|| from_env("PGSSLROOTCERT"));
    let root_cert = match rootcert.as_deref() {
        Some("system") => Some(RootCert::System),
        Some(path) => Some(RootCert::File(PathBuf::from(path))),
        None => Some(RootCert::File(default_file("root.crt"))),
    };
    // A system store is only worth anything with the name checked; libpq 16
    // makes verify-full the default with it and refuses weaker modes.
    let mode = match (explicit_mode, &root_cert) {
        (None, Some(RootCert::System)) => SslMode::VerifyFull,
        (Some(m), Some(RootCert::System)) if m != SslMode::VerifyFull => {
            return Err(ConninfoError::WeakWithSystemRoots(m))
        }
        (m, _) => m.unwrap_or(DEFAULT_SSLMODE),
    };
    let root_cert = match root_cert {
        Some(RootCert::File(path)) if !path.exists() => {
            if mode.verifies() {
                return Err(ConninfoError::RootCertMissing(path));
            }
            None
        }
        other => other,
    };
    let cert = match cert.or_else(|| from_env("PGSSLCERT")) {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.exists() {
                return Err(ConninfoError::CertMissing(path));
            }
            Some(path)
        }
        None => Some(default_file("postgresql.crt")).filter(|p| p.exists()),
    };
    let key = match (&cert, key.or_else(|| from_env("PGSSLKEY"))) {
        (None, _) => None,
        (Some(_), explicit) => {
            let path = explicit
                .map(PathBuf::from)
                .unwrap_or_else(|| default_file("postgresql.key"));
            if !path.exists() {
                return Err(ConninfoError::KeyMissing(path));
            }
            Some(path)
        }
    };
    let root_cert = if mode == SslMode::Disable {
        None
    } else {
        root_cert
    };
    Ok(TlsSettings {
        mode,
        root_cert,
        cert: cert.filter(|_| mode != SslMode::Disable),
        key: key.filter(|_| mode != SslMode::Disable),
    })
}

/// `key = value` pairs: values may be single-quoted, and a backslash escapes
/// the next character (in or out of quotes).
fn parse_keywords(s: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(ConninfoError::MissingEquals(key));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    None => return Err(ConninfoError::Unterminated(key)),
                    Some('\'') => break,
                    Some('\\') => match it.next() {
                        Some(c) => value.push(c),
                        None => return Err(ConninfoError::Unterminated(key)),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = it.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// `postgres[ql]://[user[:password]@][host][:port][,host[:port]...][/dbname][?key=value&...]`,
/// every part percent-decoded. A host may be `[v6 address]` or a
/// percent-encoded socket directory (`%2Fvar%2Frun%2Fpostgresql`).
fn parse_url(s: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let rest = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
        .ok_or_else(|| ConninfoError::Url("expected postgres:// or postgresql://".into()))?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let mut out = Vec::new();
    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hostspec)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.push(("user".to_string(), percent_decode(user)?));
            }
            if let Some(p) = password {
                out.push(("password".to_string(), percent_decode(p)?));
            }
            hostspec
        }
        None => authority,
    };
    if !hostspec.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for spec in hostspec.split(',') {
            let (host, port) = if let Some(v6) = spec.strip_prefix('[') {
                let (addr, after) = v6.split_once(']').ok_or_else(|| {
                    ConninfoError::Url(format!("unterminated IPv6 address in \"{spec}\""))
                })?;
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').ok_or_else(|| {
                        ConninfoError::Url(format!("unexpected \"{p}\" after \"[{addr}]\""))
                    })?),
                };
                (addr.to_string(), port)
            } else {
                match spec.split_once(':') {
                    Some((h, p)) => (percent_decode(h)?, Some(p)),
                    None => (percent_decode(spec)?, None),
                }
            };
            hosts.push(host);
            ports.push(port.unwrap_or("").to_string());
        }
        out.push(("host".to_string(), hosts.join(",")));
        if ports.iter().any(|p| !p.is_empty()) {
            out.push(("port".to_string(), ports.join(",")));
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.push(("dbname".to_string(), percent_decode(db)?));
    }
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        if param.is_empty() {
            continue;
        }
        let (k, v) = param.split_once('=').ok_or_else(|| {
            ConninfoError::Url(format!("query parameter \"{param}\" lacks \"=\""))
        })?;
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        // JDBC's spelling, which libpq accepts too.
        if k == "ssl" && v == "true" {
            out.push(("sslmode".to_string(), "require".to_string()));
        } else {
            out.push((k, v));
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, ConninfoError> {
    let bad = || ConninfoError::PercentEncoding(s.to_string());
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_env(s: &str, vars: &[(&str, &str)]) -> Result<PgConfig, ConninfoError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PgConfig::parse_with_env(s, |k| vars.get(k).cloned())
    }

    /// No environment at all: no `~/.postgresql` files are found.
    fn parse(s: &str) -> PgConfig {
        parse_env(s, &[]).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn tcp(host: &str, port: u16) -> Target {
        Target {
            host: Host::Tcp(host.into()),
            hostaddr: None,
            port,
        }
    }

    /// A scratch directory with the named files in it.
    fn scratch(name: &str, files: &[&str]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("viewcast-conninfo-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in files {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        dir
    }

    #[test]
    fn keywords_as_the_tests_write_them() {
        let c = parse("host=127.0.0.1 port=5433 user=postgres dbname=x");
        assert_eq!(c.targets(), &[tcp("127.0.0.1", 5433)]);
        assert_eq!(c.pg.get_user(), Some("postgres"));
        assert_eq!(c.pg.get_dbname(), Some("x"));
        assert_eq!(c.pg.get_ports(), &[5433]);
        assert_eq!(c.tls, TlsSettings::default());
        assert_eq!(c.tls.mode, SslMode::Prefer);
    }

    #[test]
    fn quoting_and_escapes() {
        let c = parse(r"user = 'o\'brien' password='a b\\c' dbname=we\ ird application_name=''");
        assert_eq!(c.pg.get_user(), Some("o'brien"));
        assert_eq!(c.pg.get_password(), Some(&b"a b\\c"[..]));
        assert_eq!(c.pg.get_dbname(), Some("we ird"));
        assert_eq!(c.pg.get_application_name(), None, "empty means unset");
        // The last occurrence wins.
        assert_eq!(parse("user=a user=b").pg.get_user(), Some("b"));
    }

    #[test]
    fn keyword_errors() {
        assert!(matches!(
            parse_env("host", &[]),
            Err(ConninfoError::MissingEquals(k)) if k == "host"
        ));
        assert!(matches!(
            parse_env("password='abc", &[]),
            Err(ConninfoError::Unterminated(k)) if k == "password"
        ));
        let e = parse_env("host=x bogus=1", &[]).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = parse_env("port=99999", &[]).unwrap_err().to_string();
        assert!(e.contains("invalid port value \"99999\""), "{e}");
        let e = parse_env("sslmode=verify", &[]).unwrap_err().to_string();
        assert!(e.contains("verify-full"), "{e}");
        assert!(matches!(
            parse_env("sslmode=allow", &[]),
            Err(ConninfoError::SslModeAllow)
        ));
        assert!(matches!(
            parse_env("sslcrl=/x.crl", &[]),
            Err(ConninfoError::Unsupported { .. })
        ));
        parse("sslnegotiation=postgres gssencmode=disable");
    }

    #[test]
    fn urls_and_percent_encoding() {
        let c = parse("postgres://user:p%40ss@127.0.0.1:5433/db");
        assert_eq!(c.targets(), &[tcp("127.0.0.1", 5433)]);
        assert_eq!(c.pg.get_user(), Some("user"));
        assert_eq!(c.pg.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(c.pg.get_dbname(), Some("db"));

        let c = parse(
            "postgresql://a%20b:p:w@h1,h2:6000/my%2Fdb?sslmode=require&application_name=v%26c",
        );
        assert_eq!(c.pg.get_user(), Some("a b"));
        assert_eq!(c.pg.get_password(), Some(&b"p:w"[..]));
        assert_eq!(c.pg.get_dbname(), Some("my/db"));
        assert_eq!(c.targets(), &[tcp("h1", 5432), tcp("h2", 6000)]);
        assert_eq!(c.tls.mode, SslMode::Require);
        assert_eq!(c.pg.get_application_name(), Some("v&c"));

        let c = parse("postgres://[::1]:5433,[fe80::2]/db?ssl=true");
        assert_eq!(c.targets(), &[tcp("::1", 5433), tcp("fe80::2", 5432)]);
        assert_eq!(c.targets()[0].to_string(), "[::1]:5433");
        assert_eq!(c.tls.mode, SslMode::Require);

        let c = parse("postgres://%2Fvar%2Flib%2Fpg/db");
        assert_eq!(
            c.targets()[0].host,
            Host::Unix(PathBuf::from("/var/lib/pg"))
        );
        assert!(!c.targets()[0].is_tcp());

        // No host: the default socket directory.
        let c = parse("postgres:///db");
        assert_eq!(
            c.targets(),
            &[Target {
                host: Host::Unix(DEFAULT_SOCKET_DIR.into()),
                hostaddr: None,
                port: 5432
            }]
        );
        assert!(matches!(
            parse_env("postgres://u@h/db%zz", &[]),
            Err(ConninfoError::PercentEncoding(_))
        ));
        assert!(matches!(
            parse_env("postgres://[::1/db", &[]),
            Err(ConninfoError::Url(_))
        ));
        assert!(matches!(
            parse_env("postgres://h/db?sslmode", &[]),
            Err(ConninfoError::Url(_))
        ));
    }

    #[test]
    fn hosts_hostaddrs_and_ports() {
        let c = parse("host=a,b hostaddr=10.0.0.1,10.0.0.2 port=1,2");
        assert_eq!(
            c.targets(),
            &[
                Target {
                    host: Host::Tcp("a".into()),
                    hostaddr: Some("10.0.0.1".parse().unwrap()),
                    port: 1
                },
                Target {
                    host: Host::Tcp("b".into()),
                    hostaddr: Some("10.0.0.2".parse().unwrap()),
                    port: 2
                },
            ]
        );
        assert_eq!(c.targets()[0].to_string(), "a:1 (10.0.0.1)");
        let t = parse("hostaddr=127.0.0.1 port=7").targets()[0].clone();
        assert_eq!(
            t.host,
            Host::Tcp("127.0.0.1".into()),
            "the address names the host"
        );
        assert_eq!(t.to_string(), "127.0.0.1:7");
        let for_one = parse("host=a,b port=9 user=u").config_for(&tcp("b", 9));
        assert_eq!(for_one.get_hosts(), &[Host::Tcp("b".into())]);
        assert_eq!(for_one.get_ports(), &[9]);
        assert_eq!(for_one.get_user(), Some("u"));
        assert!(matches!(
            parse_env("host=a,b hostaddr=10.0.0.1", &[]),
            Err(ConninfoError::HostCount { hosts: 2, addrs: 1 })
        ));
        assert!(matches!(
            parse_env("host=a,b,c port=1,2", &[]),
            Err(ConninfoError::PortCount { ports: 2, hosts: 3 })
        ));
        assert!(matches!(
            parse_env("hostaddr=localhost", &[]),
            Err(ConninfoError::Value {
                key: "hostaddr",
                ..
            })
        ));
    }

    #[test]
    fn environment_fills_what_the_conninfo_leaves_out() {
        let dir = scratch("env", &["ca.pem", "c.crt", "c.key"]);
        let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let env = [
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", &*p("ca.pem")),
            ("PGSSLCERT", &*p("c.crt")),
            ("PGSSLKEY", &*p("c.key")),
        ];
        let c = parse_env("host=h", &env).unwrap();
        assert_eq!(
            c.tls,
            TlsSettings {
                mode: SslMode::VerifyCa,
                root_cert: Some(RootCert::File(dir.join("ca.pem"))),
                cert: Some(dir.join("c.crt")),
                key: Some(dir.join("c.key")),
            }
        );
        // The conninfo wins over the environment.
        let c = parse_env("host=h sslmode=require", &env).unwrap();
        assert_eq!(c.tls.mode, SslMode::Require);
        assert_eq!(
            c.tls.effective_mode(),
            SslMode::VerifyCa,
            "a root file verifies"
        );
        let c = parse_env("host=h sslmode=disable", &env).unwrap();
        assert_eq!(c.tls.root_cert, None);
        assert_eq!(c.tls.cert, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn default_files_under_home() {
        let home = scratch(
            "home",
            &[
                ".postgresql/root.crt",
                ".postgresql/postgresql.crt",
                ".postgresql/postgresql.key",
            ],
        );
        let h = home.to_string_lossy().into_owned();
        let c = parse_env("host=h sslmode=require", &[("HOME", &h)]).unwrap();
        assert_eq!(
            c.tls.root_cert,
            Some(RootCert::File(home.join(".postgresql/root.crt")))
        );
        assert_eq!(c.tls.effective_mode(), SslMode::VerifyCa);
        assert_eq!(c.tls.cert, Some(home.join(".postgresql/postgresql.crt")));
        assert_eq!(c.tls.key, Some(home.join(".postgresql/postgresql.key")));

        // An empty home: nothing is verified under require, verify-ca is refused.
        let empty = scratch("empty-home", &[]);
        let e = empty.to_string_lossy().into_owned();
        let c = parse_env("host=h sslmode=require", &[("HOME", &e)]).unwrap();
        assert_eq!(c.tls.root_cert, None);
        assert_eq!(c.tls.effective_mode(), SslMode::Require);
        assert_eq!(c.tls.cert, None);
        let err = parse_env("host=h sslmode=verify-ca", &[("HOME", &e)])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "root certificate file \"{}\" does not exist",
                empty.join(".postgresql/root.crt").display()
            )),
            "{err}"
        );
        assert!(err.contains("change sslmode"), "{err}");
        let _ = std::fs::remove_dir_all(&home);
        let _ = std::fs::remove_dir_all(&empty);
    }

    #[test]
    fn certificate_files_must_exist() {
        let dir = scratch("certs", &["c.crt"]);
        let cert = dir.join("c.crt").to_string_lossy().into_owned();
        assert!(matches!(
            parse_env(
                &format!("host=h sslrootcert={cert}x sslmode=verify-full"),
                &[]
            ),
            Err(ConninfoError::RootCertMissing(_))
        ));
        assert!(matches!(
            parse_env(&format!("host=h sslcert={cert}x"), &[]),
            Err(ConninfoError::CertMissing(_))
        ));
        let e = parse_env(&format!("host=h sslcert={cert}"), &[]).unwrap_err();
        assert!(matches!(e, ConninfoError::KeyMissing(_)), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn system_roots_mean_verify_full() {
        let c = parse("host=h sslrootcert=system");
        assert_eq!(c.tls.mode, SslMode::VerifyFull);
        assert_eq!(c.tls.root_cert, Some(RootCert::System));
        let e = parse_env("host=h sslrootcert=system sslmode=require", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "weak sslmode \"require\" may not be used with sslrootcert=system (use \"verify-full\")"
        );
    }

    #[test]
    fn tokio_postgres_keys_pass_through() {
        let c = parse(
            "host=h options='-c search_path=s' connect_timeout=5 keepalives=0 \
             target_session_attrs=read-write channel_binding=require application_name=app",
        );
        assert_eq!(c.pg.get_options(), Some("-c search_path=s"));
        assert_eq!(
            c.pg.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );
        assert!(!c.pg.get_keepalives());
        assert_eq!(
            c.pg.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            c.pg.get_channel_binding(),
            tokio_postgres::config::ChannelBinding::Require
        );
        assert_eq!(c.pg.get_application_name(), Some("app"));
    }
}
