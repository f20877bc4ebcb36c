//! `GET /ws`: one websocket per client, carrying all its subscriptions, which
//! move together (docs/protocol.md, "WebSocket").
//!
//! ```text
//! client                                   server
//! {"type":"hello","token":...}      ──▶
//!                                   ◀──    {"type":"welcome","lsn":...}
//! {"type":"subscribe","id","view","params"} ──▶
//!                                   ◀──    {"type":"batch","lsn":L,"subs":{id:{snapshot|changes}}}
//!                                   ◀──    {"type":"progress","lsn":...}   (idle)
//! {"type":"auth","token":...}       ──▶    (a fresh token, same sub)
//! ```
//! A batch is sent only when the client has taken the previous one; until
//! then changes are merged per subscription ([`Subscription`]), so a slow
//! client costs the contents it subscribed to, never a queue of every
//! transaction, and never slows anyone else. Past [`WsLimits::max_pending_bytes`]
//! it is closed with 4008: its subscriptions go at once, and the close frame,
//! behind what its socket holds, gets [`CLOSE_GRACE`] to reach it before the
//! connection is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::AppState;
use crate::auth::{Auth, Claims};
use crate::config::WsLimits;
use crate::pg::Lsn;
use crate::views::params::Given;
use crate::views::subscription::{batch_json, Subscription};
use crate::views::{Lookup, Registry};

/// Close codes (docs/protocol.md).
pub mod close {
    pub const BAD_MESSAGE: u16 = 4400;
    pub const UNAUTHENTICATED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY: u16 = 4429;
    pub const TOO_SLOW: u16 = 4008;
}

/// How often an idle connection hears progress at least.
const HEARTBEAT: Duration = Duration::from_secs(3);
/// Progress messages go out at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// A client must say hello within this time.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// Longest subscription id.
const MAX_ID_BYTES: usize = 128;
/// A connection's read buffer (a frame may be larger; it grows for it).
const READ_BUFFER_BYTES: usize = 4096;

pub async fn upgrade(
    State(state): State<AppState>,
    query: axum::extract::RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let limits = state.ws.clone();
    // A token may also come as `?access_token=` (as for SSE); `hello`'s
    // own token, when it has one, is the one used.
    let query_token = query.0.as_deref().and_then(super::query_token);
    // Clients send small frames; tungstenite zero-fills its read buffer on
    // every read attempt, so its 128 KiB default cost a memset of that size
    // per wake-up (and 128 KiB per connection).
    ws.max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| connection(state, socket, query_token))
}

/// Why the connection ends.
struct Closing {
    code: u16,
    reason: String,
}

fn closing(code: u16, reason: impl Into<String>) -> Closing {
    Closing {
        code,
        reason: reason.into(),
    }
}

struct Conn {
    reg: Arc<Registry>,
    auth: Option<Arc<Auth>>,
    limits: WsLimits,
    hello: bool,
    claims: Option<Claims>,
    /// The `access_token` of the upgrade request, if any.
    query_token: Option<String>,
    subs: BTreeMap<String, Subscription>,
    /// The subscriptions that are not settled (see
    /// [`Subscription::is_settled`]): all a batch needs to look at, so a
    /// connection's idle subscriptions cost one atomic load per wake-up.
    active: BTreeSet<String>,
    /// Messages for the client, in order.
    out: Vec<String>,
    /// LSN of the last batch or progress sent.
    sent: Lsn,
    last_sent_at: Instant,
}

async fn connection(state: AppState, socket: WebSocket, query_token: Option<String>) {
    let (mut sink, mut stream) = socket.split();
    // One message in flight: while the client has not taken it, changes are
    // merged instead of queued.
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(1);
    let mut writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let reg = state.registry.clone();
    state
        .ws_open
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    struct Open(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _open = Open(state.ws_open.clone());
    let mut conn = Conn {
        reg: reg.clone(),
        auth: state.auth.clone(),
        limits: state.ws.clone(),
        hello: false,
        claims: None,
        query_token,
        subs: BTreeMap::new(),
        active: BTreeSet::new(),
        out: Vec::new(),
        sent: Lsn(0),
        last_sent_at: Instant::now(),
    };
    let mut changed = reg.changes();
    let mut closed = reg.closed();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let started = Instant::now();
    let result: Result<(), Closing> = async {
        loop {
            let expiry = conn
                .claims
                .as_ref()
                .map(|c| c.expires_at())
                .map(|at| {
                    at.duration_since(std::time::SystemTime::now())
                        .unwrap_or(Duration::ZERO)
                });
            tokio::select! {
                frame = stream.next() => match frame {
                    None | Some(Err(_)) => return Ok(()),
                    Some(Ok(Message::Text(t))) => conn.message(t.as_str())?,
                    Some(Ok(Message::Binary(_))) => {
                        return Err(closing(close::BAD_MESSAGE, "binary frames are not part of the protocol; send JSON text"))
                    }
                    Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => {}
                },
                r = changed.changed() => if r.is_err() { return Ok(()) },
                _ = tick.tick() => {}
                _ = closed.wait_for(|c| *c) => return Err(closing(1001, "server shutting down")),
                _ = async {
                    match expiry {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                }, if conn.claims.is_some() => {
                    return Err(closing(close::UNAUTHENTICATED, "token expired; send {\"type\":\"auth\",\"token\":...} before it does"));
                }
            }
            if !conn.hello && started.elapsed() > HELLO_WITHIN {
                return Err(closing(close::BAD_MESSAGE, "say hello first: {\"type\":\"hello\"}"));
            }
            // Only when the client has taken the last message: until then
            // changes merge.
            let permit = match out_tx.try_reserve() {
                Ok(p) => Some(p),
                Err(mpsc::error::TrySendError::Full(_)) => None,
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
            };
            // Progress first: every event up to it is on the channels by
            // then, so the poll below holds all of them.
            let lsn = conn.reg.progress();
            conn.poll();
            if permit.is_none() {
                for id in &conn.active {
                    if let Some(s) = conn.subs.get_mut(id) {
                        s.absorb(lsn);
                    }
                }
                let pending = conn.pending_bytes();
                if pending > conn.limits.max_pending_bytes {
                    tracing::info!(
                        pending,
                        limit = conn.limits.max_pending_bytes,
                        "closing a websocket client that does not keep up"
                    );
                    return Err(closing(close::TOO_SLOW, "the client does not keep up"));
                }
                continue;
            }
            conn.flush(lsn);
            if let Some(permit) = permit {
                // In order: the first takes the reserved slot, the rest wait
                // for the writer (only a hello's welcome and a batch, or
                // errors, ever come together).
                let mut messages = std::mem::take(&mut conn.out).into_iter();
                if let Some(first) = messages.next() {
                    permit.send(Message::Text(Utf8Bytes::from(first)));
                    for rest in messages {
                        if out_tx.send(Message::Text(Utf8Bytes::from(rest))).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    .await;
    // The subscriptions (and what they hold for the client) go now, not when
    // the client has taken the close frame.
    drop(conn);
    if let Err(c) = result {
        // A client that reads nothing never takes the close frame either:
        // it gets a while to, then the connection is dropped.
        let close = out_tx.send(Message::Close(Some(CloseFrame {
            code: c.code,
            reason: Utf8Bytes::from(c.reason),
        })));
        let _ = tokio::time::timeout(CLOSE_GRACE, close).await;
    }
    drop(out_tx);
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// How long a closing connection's last messages (a client that was too slow
/// has the close frame behind what its socket holds) may take to reach the
/// client before the connection is dropped without them.
const CLOSE_GRACE: Duration = Duration::from_secs(60);

impl Conn {
    fn send(&mut self, v: Value) {
        self.out.push(v.to_string());
    }

    /// An error for one subscription that goes on (its view fails; a
    /// snapshot follows when it recovers).
    fn error(&mut self, id: Option<&str>, message: impl Into<String>) {
        let message = message.into();
        match id {
            Some(id) => self.send(json!({"type": "error", "id": id, "message": message})),
            None => self.send(json!({"type": "error", "message": message})),
        }
    }

    /// An error that ends (or refuses) the subscription `id`: `"ended":
    /// true` tells the client not to ask for it again.
    fn refuse(&mut self, id: &str, message: impl Into<String>) {
        let message = message.into();
        self.send(json!({"type": "error", "id": id, "message": message, "ended": true}));
    }

    fn verify(&self, token: Option<&str>) -> Result<Option<Claims>, Closing> {
        match (&self.auth, token) {
            (None, _) => Ok(None),
            (Some(_), None) => Err(closing(
                close::UNAUTHENTICATED,
                "a token is required: {\"type\":\"hello\",\"token\":\"<jwt>\"}",
            )),
            (Some(auth), Some(t)) => auth
                .verify(t)
                .map(Some)
                .map_err(|e| closing(close::UNAUTHENTICATED, e.to_string())),
        }
    }

    /// Handles one client message.
    fn message(&mut self, text: &str) -> Result<(), Closing> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| closing(close::BAD_MESSAGE, format!("not JSON: {e}")))?;
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            return Err(closing(
                close::BAD_MESSAGE,
                "each message is a JSON object with a \"type\"",
            ));
        };
        match kind {
            "hello" => {
                if self.hello {
                    return Err(closing(close::BAD_MESSAGE, "hello was already said"));
                }
                let token = v
                    .get("token")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| self.query_token.take());
                self.claims = self.verify(token.as_deref())?;
                self.hello = true;
                let lsn = self.reg.progress();
                self.send(json!({"type": "welcome", "lsn": lsn.to_string()}));
                self.last_sent_at = Instant::now();
                if let Some(resume) = v.get("resume") {
                    self.resume(resume)?;
                }
                Ok(())
            }
            "ping" => {
                self.send(json!({"type": "pong"}));
                Ok(())
            }
            _ if !self.hello => Err(closing(
                close::BAD_MESSAGE,
                "say hello first: {\"type\":\"hello\"}",
            )),
            "subscribe" => {
                let id = self.id(&v)?;
                let view = v.get("view").and_then(Value::as_str).unwrap_or_default();
                let params = v.get("params").cloned().unwrap_or(Value::Null);
                self.subscribe(id, view, &params, None)
            }
            "unsubscribe" => {
                let id = self.id(&v)?;
                self.active.remove(&id);
                if self.subs.remove(&id).is_none() {
                    self.refuse(&id, "no subscription with this id");
                }
                Ok(())
            }
            "auth" => {
                let token = v.get("token").and_then(Value::as_str);
                let Some(fresh) = self.verify(token)? else {
                    return Ok(());
                };
                let same = self.claims.as_ref().and_then(Claims::sub) == fresh.sub();
                if !same {
                    return Err(closing(
                        close::FORBIDDEN,
                        "a refreshed token must carry the same sub",
                    ));
                }
                self.claims = Some(fresh);
                Ok(())
            }
            other => Err(closing(
                close::BAD_MESSAGE,
                format!("unknown message type \"{other}\""),
            )),
        }
    }

    fn id(&self, v: &Value) -> Result<String, Closing> {
        match v.get("id") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES => Ok(s.clone()),
            _ => Err(closing(
                close::BAD_MESSAGE,
                format!("\"id\" must be a non-empty string of at most {MAX_ID_BYTES} bytes"),
            )),
        }
    }

    fn resume(&mut self, resume: &Value) -> Result<(), Closing> {
        let from = resume
            .get("lsn")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Lsn>().ok());
        let subs = resume.get("subs").and_then(Value::as_array).cloned();
        let Some(subs) = subs else {
            return Err(closing(
                close::BAD_MESSAGE,
                "resume is {\"lsn\":\"X/Y\",\"subs\":[{id, view, params}]}",
            ));
        };
        for s in subs {
            let id = self.id(&s)?;
            let view = s.get("view").and_then(Value::as_str).unwrap_or_default();
            let params = s.get("params").cloned().unwrap_or(Value::Null);
            self.subscribe(id, view, &params, from)?;
        }
        Ok(())
    }

    fn subscribe(
        &mut self,
        id: String,
        view: &str,
        params: &Value,
        resume_from: Option<Lsn>,
    ) -> Result<(), Closing> {
        if self.subs.contains_key(&id) {
            return Err(closing(
                close::DUPLICATE_ID,
                format!("subscription id \"{id}\" is already in use"),
            ));
        }
        if self.subs.len() >= self.limits.max_subscriptions {
            return Err(closing(
                close::TOO_MANY,
                format!(
                    "at most {} subscriptions per connection",
                    self.limits.max_subscriptions
                ),
            ));
        }
        let v = match self.reg.lookup(view) {
            Lookup::Live(v) | Lookup::Loading(v) => v,
            Lookup::Refused(r) => {
                self.refuse(&id, format!("view \"{view}\" was refused: {}", r.error));
                return Ok(());
            }
            Lookup::NotFound => {
                self.refuse(&id, format!("no view named \"{}\"", super::shown(view)));
                return Ok(());
            }
        };
        let Some(def) = v.def() else {
            self.refuse(
                &id,
                format!("view \"{view}\" is still loading; retry shortly"),
            );
            return Ok(());
        };
        let given: BTreeMap<String, Given> = match params {
            Value::Null => BTreeMap::new(),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), Given::Json(v.clone())))
                .collect(),
            _ => {
                self.refuse(&id, "\"params\" must be an object of parameter values");
                return Ok(());
            }
        };
        let claims = self.claims.as_ref().map(Claims::as_map);
        let tuple = match crate::views::params::tuple(&def.params, &given, claims) {
            Ok(t) => t,
            Err(e) => {
                self.refuse(&id, format!("view \"{view}\": {e}"));
                return Ok(());
            }
        };
        let guard = match self.reg.open_limited(&v, tuple) {
            Ok(g) => g,
            Err(e) => {
                self.refuse(&id, e);
                return Ok(());
            }
        };
        let sub = match resume_from {
            Some(from) => Subscription::resume(&self.reg, id.clone(), guard, from),
            None => Subscription::new(id.clone(), guard),
        };
        self.active.insert(id.clone());
        self.subs.insert(id, sub);
        Ok(())
    }

    fn poll(&mut self) {
        for (id, s) in self.subs.iter_mut() {
            s.poll(&self.reg);
            if !s.is_settled() && !self.active.contains(id) {
                self.active.insert(id.clone());
            }
        }
    }

    /// What waits for the client: changes merged per subscription, and
    /// messages not yet handed to the writer (answers to pings, errors).
    fn pending_bytes(&self) -> usize {
        let queued: usize = self.out.iter().map(String::len).sum();
        queued
            + self
                .active
                .iter()
                .filter_map(|id| self.subs.get(id))
                .map(Subscription::pending_bytes)
                .sum::<usize>()
    }

    /// Builds the messages due now: errors, then one batch at `lsn` (the
    /// progress read before the channels were polled) with every subscription that has something to say, or a
    /// progress message when idle.
    fn flush(&mut self, lsn: Lsn) {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        let mut ended = Vec::new();
        let mut settled = Vec::new();
        for id in &self.active {
            let Some(s) = self.subs.get_mut(id) else {
                settled.push(id.clone());
                continue;
            };
            if let Some(e) = s.take(lsn) {
                entries.push((id.clone(), e));
            }
            for m in std::mem::take(&mut s.errors) {
                errors.push((id.clone(), m));
            }
            if let Some(m) = s.ended.take() {
                ended.push((id.clone(), m));
            }
            if s.is_settled() {
                settled.push(id.clone());
            }
        }
        for id in settled {
            self.active.remove(&id);
        }
        for (id, m) in errors {
            self.error(Some(&id), m);
        }
        for (id, m) in ended {
            self.subs.remove(&id);
            self.active.remove(&id);
            self.refuse(&id, m);
        }
        if !entries.is_empty() {
            self.out.push(batch_json(lsn, &entries));
            self.sent = lsn;
            self.last_sent_at = Instant::now();
            return;
        }
        // Progress says every subscription is complete: not while one still
        // waits for its first rows.
        let awaiting = self
            .active
            .iter()
            .filter_map(|id| self.subs.get(id))
            .any(Subscription::awaiting_snapshot);
        if !self.hello || awaiting {
            return;
        }
        let idle = self.last_sent_at.elapsed();
        if (lsn > self.sent && idle >= PROGRESS_EVERY) || idle >= HEARTBEAT {
            self.sent = self.sent.max(lsn);
            self.last_sent_at = Instant::now();
            let at = self.sent;
            self.send(json!({"type": "progress", "lsn": at.to_string()}));
        }
    }
}
