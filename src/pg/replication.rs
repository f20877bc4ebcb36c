//! A logical replication client that speaks the wire protocol itself.
//!
//! `tokio-postgres` 0.7 cannot open replication connections, so this module
//! builds one from `postgres-protocol`'s message codecs: startup with
//! `replication=database`, authentication (trust, cleartext, MD5,
//! SCRAM-SHA-256, with channel binding over TLS), simple-query replication
//! commands, then CopyBoth streaming. The socket and its TLS come from
//! [`super::tls::open_stream`], the same rules as the SQL connections.
//!
//! Inside CopyBoth the server sends `XLogData` (`w`) messages carrying pgoutput
//! payloads and primary keepalives (`k`); we send standby status updates (`r`)
//! reporting how far we have applied. The server holds WAL back for the slot
//! until we report it flushed, so we only ever report what the dataflow has
//! already applied (see "Streaming Replication Protocol" in the PostgreSQL docs).

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conninfo::PgConfig;
use super::lsn::Lsn;
use super::tls::{open_stream, ConnectError, PgStream, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("replication connection: {0}")]
    Io(#[from] io::Error),
    #[error("postgres error {code}: {message}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Server {
        code: String,
        message: String,
        detail: Option<String>,
    },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("replication protocol violation: {0}")]
    Protocol(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the replication connection was closed by the server")]
    Closed,
    /// The server ended streaming itself (it does so when shutting down).
    #[error("the server ended the replication stream ({0})")]
    Ended(String),
    /// Nothing arrived for too long, not even a reply to a keepalive request:
    /// the connection is half-open or the server is stuck.
    #[error("no data from the server for {0:?}; the connection is presumed dead")]
    Silent(std::time::Duration),
}

impl ReplicationError {
    /// Whether retrying soon can help (the server went away) or someone must
    /// act first (bad credentials, a missing publication, `wal_level`).
    pub fn class(&self) -> super::errors::Class {
        use super::errors::{classify_sqlstate, Class};
        match self {
            ReplicationError::Io(_)
            | ReplicationError::Closed
            | ReplicationError::Ended(_)
            | ReplicationError::Silent(_)
            | ReplicationError::Protocol(_) => Class::Transient,
            ReplicationError::Server { code, .. } => classify_sqlstate(code),
            ReplicationError::Connect(e) if e.is_transient() => Class::Transient,
            ReplicationError::Connect(_) | ReplicationError::Auth(_) => Class::Definite,
        }
    }
}

/// A replication slot created with an exported snapshot.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub consistent_point: Lsn,
    pub snapshot_name: String,
}

/// One message from the CopyBoth stream.
#[derive(Debug)]
pub enum StreamMessage {
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        data: Bytes,
    },
    Keepalive {
        wal_end: Lsn,
        reply_requested: bool,
    },
}

pub struct ReplicationConnection {
    stream: Box<dyn PgStream>,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

/// Microseconds since 2000-01-01, the epoch of protocol timestamps.
fn pg_now() -> i64 {
    const PG_EPOCH_OFFSET_SECS: u64 = 946_684_800;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_micros() as i64) - (PG_EPOCH_OFFSET_SECS as i64) * 1_000_000
}

fn server_error(body: &backend::ErrorResponseBody) -> ReplicationError {
    let mut code = String::new();
    let mut message = String::new();
    let mut detail = None;
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        match f.type_() {
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'D' => detail = Some(String::from_utf8_lossy(f.value_bytes()).into_owned()),
            _ => {}
        }
    }
    ReplicationError::Server {
        code,
        message,
        detail,
    }
}

impl ReplicationConnection {
    /// Opens a `replication=database` connection to the first of the
    /// config's targets that answers, with TLS as its sslmode says, and
    /// authenticates.
    pub async fn connect(config: &PgConfig) -> Result<Self, ReplicationError> {
        let tls = TlsConnector::new(&config.tls).map_err(ConnectError::from)?;
        let mut last_err = None;
        for target in config.targets() {
            let opened = match open_stream(config, target, tls.as_ref()).await {
                Ok(opened) => opened,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let mut conn = ReplicationConnection {
                stream: opened.stream,
                read_buf: BytesMut::with_capacity(64 * 1024),
                write_buf: BytesMut::new(),
            };
            conn.startup(&config.pg, opened.channel_binding).await?;
            return Ok(conn);
        }
        Err(ReplicationError::Connect(last_err.unwrap_or_else(|| {
            ConnectError::Io {
                target: "(none)".into(),
                source: io::Error::other("no host to connect to"),
            }
        })))
    }

    async fn flush(&mut self) -> Result<(), ReplicationError> {
        self.stream.write_all(&self.write_buf).await?;
        self.write_buf.clear();
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads one backend message. Cancel-safe: partial input stays in `read_buf`.
    async fn read_message(&mut self) -> Result<backend::Message, ReplicationError> {
        loop {
            if let Some(msg) = backend::Message::parse(&mut self.read_buf)? {
                return Ok(msg);
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(ReplicationError::Closed);
            }
        }
    }

    /// Startup and authentication. `tls_server_end_point` is the channel
    /// binding data of the TLS session, if there is one.
    async fn startup(
        &mut self,
        config: &tokio_postgres::Config,
        mut tls_server_end_point: Option<Vec<u8>>,
    ) -> Result<(), ReplicationError> {
        let user = config
            .get_user()
            .map(str::to_string)
            .or_else(|| std::env::var("PGUSER").ok())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "postgres".into());
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        // Session settings fix the text formats of values so they decode the same
        // way from pgoutput and from the snapshot's COPY.
        let params = [
            ("user", user.as_str()),
            ("database", dbname.as_str()),
            ("replication", "database"),
            (
                "application_name",
                config.get_application_name().unwrap_or("viewcast"),
            ),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("extra_float_digits", "1"),
            ("bytea_output", "hex"),
            ("IntervalStyle", "postgres"),
        ];
        frontend::startup_message(params.iter().copied(), &mut self.write_buf)?;
        self.flush().await?;
        let password = config.get_password();
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.read_message().await? {
                backend::Message::AuthenticationOk => {}
                backend::Message::AuthenticationCleartextPassword => {
                    let pw = password.ok_or_else(|| {
                        ReplicationError::Auth(
                            "the server asks for a password and none was given".into(),
                        )
                    })?;
                    frontend::password_message(pw, &mut self.write_buf)?;
                    self.flush().await?;
                }
                backend::Message::AuthenticationMd5Password(body) => {
                    let pw = password.ok_or_else(|| {
                        ReplicationError::Auth(
                            "the server asks for a password and none was given".into(),
                        )
                    })?;
                    let hash = postgres_protocol::authentication::md5_hash(
                        user.as_bytes(),
                        pw,
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.write_buf)?;
                    self.flush().await?;
                }
                backend::Message::AuthenticationSasl(body) => {
                    let pw = password.ok_or_else(|| {
                        ReplicationError::Auth(
                            "the server asks for a password and none was given".into(),
                        )
                    })?;
                    let mut mechanisms = body.mechanisms();
                    let mut has_scram = false;
                    let mut has_scram_plus = false;
                    while let Some(m) = mechanisms.next()? {
                        has_scram |= m == SCRAM_SHA_256;
                        has_scram_plus |= m == SCRAM_SHA_256_PLUS;
                    }
                    let (binding, mechanism) = choose_channel_binding(
                        config,
                        tls_server_end_point.take(),
                        has_scram_plus,
                    )?;
                    if mechanism == SCRAM_SHA_256 && !has_scram {
                        return Err(ReplicationError::Auth(
                            "the server offers no SASL mechanism viewcast supports (SCRAM-SHA-256)"
                                .into(),
                        ));
                    }
                    let s = ScramSha256::new(pw, binding);
                    frontend::sasl_initial_response(mechanism, s.message(), &mut self.write_buf)?;
                    self.flush().await?;
                    scram = Some(s);
                }
                backend::Message::AuthenticationSaslContinue(body) => {
                    let s = scram.as_mut().ok_or_else(|| {
                        ReplicationError::Protocol("SASL continue without SASL start".into())
                    })?;
                    s.update(body.data())
                        .map_err(|e| ReplicationError::Auth(e.to_string()))?;
                    frontend::sasl_response(s.message(), &mut self.write_buf)?;
                    self.flush().await?;
                }
                backend::Message::AuthenticationSaslFinal(body) => {
                    let s = scram.as_mut().ok_or_else(|| {
                        ReplicationError::Protocol("SASL final without SASL start".into())
                    })?;
                    s.finish(body.data())
                        .map_err(|e| ReplicationError::Auth(e.to_string()))?;
                }
                backend::Message::ErrorResponse(body) => {
                    return Err(match server_error(&body) {
                        ReplicationError::Server { code, message, .. }
                            if code == "28P01" || code == "28000" =>
                        {
                            ReplicationError::Auth(message)
                        }
                        e => e,
                    });
                }
                backend::Message::ReadyForQuery(_) => return Ok(()),
                backend::Message::ParameterStatus(_)
                | backend::Message::BackendKeyData(_)
                | backend::Message::NoticeResponse(_) => {}
                _ => {
                    return Err(ReplicationError::Protocol(
                        "unexpected message during startup".into(),
                    ))
                }
            }
        }
    }

    /// Runs a replication command with the simple query protocol and returns its
    /// rows as text.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        frontend::query(sql, &mut self.write_buf)?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.read_message().await? {
                backend::Message::DataRow(body) => {
                    let mut row = Vec::new();
                    let buf = body.buffer();
                    let mut ranges = body.ranges();
                    while let Some(r) = ranges.next()? {
                        row.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
                    }
                    rows.push(row);
                }
                backend::Message::ErrorResponse(body) => error = Some(server_error(&body)),
                backend::Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Creates a temporary logical slot with an exported snapshot. The snapshot
    /// stays valid until the next command on this connection.
    pub async fn create_slot(&mut self, name: &str) -> Result<Slot, ReplicationError> {
        let rows = self
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')",
                quote_ident(name)
            ))
            .await?;
        let row = rows.first().ok_or_else(|| {
            ReplicationError::Protocol("CREATE_REPLICATION_SLOT returned no row".into())
        })?;
        let get = |i: usize| {
            row.get(i).cloned().flatten().ok_or_else(|| {
                ReplicationError::Protocol(format!("CREATE_REPLICATION_SLOT row lacks column {i}"))
            })
        };
        Ok(Slot {
            name: get(0)?,
            consistent_point: get(1)?.parse().map_err(ReplicationError::Protocol)?,
            snapshot_name: get(2)?,
        })
    }

    /// Starts streaming pgoutput changes for `publication` from `start`.
    pub async fn start_replication(
        mut self,
        slot: &str,
        publication: &str,
        start: Lsn,
        proto_version: u32,
    ) -> Result<ReplicationStream, ReplicationError> {
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '{}', publication_names '{}')",
            quote_ident(slot),
            start,
            proto_version,
            quote_ident(publication).replace('\'', "''")
        );
        frontend::query(&sql, &mut self.write_buf)?;
        self.flush().await?;
        loop {
            // postgres-protocol has no CopyBothResponse ('W') type: recognise it here.
            if self.read_buf.len() < 5 {
                if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                    return Err(ReplicationError::Closed);
                }
                continue;
            }
            if self.read_buf[0] == b'W' {
                let len = u32::from_be_bytes([
                    self.read_buf[1],
                    self.read_buf[2],
                    self.read_buf[3],
                    self.read_buf[4],
                ]) as usize;
                if self.read_buf.len() < len + 1 {
                    if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                        return Err(ReplicationError::Closed);
                    }
                    continue;
                }
                let _ = self.read_buf.split_to(len + 1);
                break;
            }
            match self.read_message().await? {
                backend::Message::ErrorResponse(body) => return Err(server_error(&body)),
                backend::Message::NoticeResponse(_) | backend::Message::ParameterStatus(_) => {}
                _ => {
                    return Err(ReplicationError::Protocol(
                        "expected CopyBothResponse after START_REPLICATION".into(),
                    ))
                }
            }
        }
        Ok(ReplicationStream { conn: self })
    }
}

/// The CopyBoth phase of a replication connection.
pub struct ReplicationStream {
    conn: ReplicationConnection,
}

impl ReplicationStream {
    /// The next XLogData or keepalive. Cancel-safe.
    pub async fn next(&mut self) -> Result<StreamMessage, ReplicationError> {
        loop {
            match self.conn.read_message().await? {
                backend::Message::CopyData(body) => {
                    let mut data = body.into_bytes();
                    if data.is_empty() {
                        return Err(ReplicationError::Protocol("empty CopyData message".into()));
                    }
                    let tag = data.get_u8();
                    match tag {
                        b'w' if data.len() >= 24 => {
                            let wal_start = Lsn(data.get_u64());
                            let wal_end = Lsn(data.get_u64());
                            let _send_time = data.get_i64();
                            return Ok(StreamMessage::XLogData {
                                wal_start,
                                wal_end,
                                data,
                            });
                        }
                        b'k' if data.len() >= 17 => {
                            let wal_end = Lsn(data.get_u64());
                            let _send_time = data.get_i64();
                            let reply_requested = data.get_u8() == 1;
                            return Ok(StreamMessage::Keepalive {
                                wal_end,
                                reply_requested,
                            });
                        }
                        _ => {
                            return Err(ReplicationError::Protocol(format!(
                                "malformed CopyData message (tag {:?}, {} bytes)",
                                tag as char,
                                data.len()
                            )))
                        }
                    }
                }
                backend::Message::ErrorResponse(body) => return Err(server_error(&body)),
                // A walsender that shuts down (fast or smart) sends everything,
                // waits for our flush position, then ends the COPY with
                // CommandComplete ("COPY 0") and exits.
                backend::Message::CopyDone => {
                    return Err(ReplicationError::Ended("CopyDone".into()))
                }
                backend::Message::CommandComplete(body) => {
                    let tag = body.tag().unwrap_or("?").to_string();
                    return Err(ReplicationError::Ended(tag));
                }
                backend::Message::ReadyForQuery(_) => {
                    return Err(ReplicationError::Ended("ReadyForQuery".into()))
                }
                backend::Message::NoticeResponse(_) | backend::Message::ParameterStatus(_) => {}
                _ => {
                    return Err(ReplicationError::Protocol(
                        "unexpected message in CopyBoth".into(),
                    ))
                }
            }
        }
    }

    /// Sends a standby status update: everything up to `applied` is written,
    /// flushed and applied, so the server may recycle WAL before it.
    pub async fn send_status(
        &mut self,
        applied: Lsn,
        reply_requested: bool,
    ) -> Result<(), ReplicationError> {
        let mut payload = BytesMut::with_capacity(34);
        payload.put_u8(b'r');
        payload.put_u64(applied.0);
        payload.put_u64(applied.0);
        payload.put_u64(applied.0);
        payload.put_i64(pg_now());
        payload.put_u8(u8::from(reply_requested));
        frontend::CopyData::new(payload.freeze())?.write(&mut self.conn.write_buf);
        self.conn.flush().await
    }
}

/// Picks SCRAM's channel binding as libpq does: SCRAM-SHA-256-PLUS bound to
/// the server's certificate when the server offers it and TLS gave us the
/// data; otherwise plain SCRAM, telling the server whether we could have
/// bound (so a man in the middle who strips the PLUS offer is caught).
/// `channel_binding=require` refuses to go without; `disable` never binds.
fn choose_channel_binding(
    config: &tokio_postgres::Config,
    tls_server_end_point: Option<Vec<u8>>,
    server_offers_plus: bool,
) -> Result<(ChannelBinding, &'static str), ReplicationError> {
    use tokio_postgres::config::ChannelBinding as Setting;
    let data = tls_server_end_point.filter(|_| config.get_channel_binding() != Setting::Disable);
    let chosen = match (data, server_offers_plus) {
        (Some(d), true) => (ChannelBinding::tls_server_end_point(d), SCRAM_SHA_256_PLUS),
        (Some(_), false) => (ChannelBinding::unrequested(), SCRAM_SHA_256),
        (None, _) => (ChannelBinding::unsupported(), SCRAM_SHA_256),
    };
    if config.get_channel_binding() == Setting::Require && chosen.1 != SCRAM_SHA_256_PLUS {
        return Err(ReplicationError::Auth(
            "channel_binding=require, but the connection offers no channel binding \
             (it needs TLS and a server that offers SCRAM-SHA-256-PLUS)"
                .into(),
        ));
    }
    Ok(chosen)
}

/// Quotes an identifier for a replication command.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
