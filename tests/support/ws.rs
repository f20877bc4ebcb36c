//! A websocket client for the tests: speaks `GET /ws` (docs/protocol.md,
//! "WebSocket") and keeps, per subscription, the multiset of rows a client
//! would show, checking on the way what every batch must satisfy.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use viewcast::pg::Lsn;

use super::row_key;

/// How long any one message may take to come.
const PATIENCE: Duration = Duration::from_secs(30);

/// What the client holds for one subscription.
#[derive(Debug, Default, Clone)]
pub struct Held {
    pub columns: Vec<String>,
    pub rows: BTreeMap<String, i64>,
    /// The LSN of the batch that last touched it.
    pub lsn: Lsn,
}

/// The connection ended: its close code and reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Subscriptions by id, once their snapshot came.
    pub held: BTreeMap<String, Held>,
    /// The LSN of the last batch or progress message.
    pub lsn: Lsn,
    /// Error messages by subscription id (`None`: for the connection).
    pub errors: Vec<(Option<String>, String)>,
    /// Every batch received, as sent.
    pub batches: Vec<Value>,
    /// Ids the client subscribed to and has not dropped.
    pub subscribed: Vec<String>,
}

impl WsClient {
    pub async fn connect(addr: &str) -> WsClient {
        Self::connect_at(addr, "/ws").await
    }

    /// Connects to `path` (e.g. `/ws?access_token=...`).
    pub async fn connect_at(addr: &str, path: &str) -> WsClient {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .expect("websocket handshake");
        WsClient {
            socket,
            held: BTreeMap::new(),
            lsn: Lsn(0),
            errors: Vec::new(),
            batches: Vec::new(),
            subscribed: Vec::new(),
        }
    }

    /// Connects and says hello (with `token`, if any); returns the welcome's LSN.
    pub async fn hello(addr: &str, token: Option<&str>) -> (WsClient, Lsn) {
        let mut c = WsClient::connect(addr).await;
        let hello = match token {
            Some(t) => json!({"type": "hello", "token": t}),
            None => json!({"type": "hello"}),
        };
        c.send(hello).await;
        let welcome = c.next().await.expect("welcome");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let lsn: Lsn = welcome["lsn"].as_str().expect("lsn").parse().expect("lsn");
        (c, lsn)
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        // The server may already have closed: what it said is read next.
        let _ = self.socket.send(Message::Text(text.into())).await;
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        let _ = self.socket.send(Message::Binary(bytes.into())).await;
    }

    pub async fn subscribe(&mut self, id: &str, view: &str, params: Value) {
        self.subscribed.push(id.to_string());
        self.send(json!({"type": "subscribe", "id": id, "view": view, "params": params}))
            .await;
    }

    pub async fn unsubscribe(&mut self, id: &str) {
        self.subscribed.retain(|s| s != id);
        self.held.remove(id);
        self.send(json!({"type": "unsubscribe", "id": id})).await;
    }

    /// The next message, applied; `Err` when the connection closed.
    pub async fn next(&mut self) -> Result<Value, Closed> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("a message within 30 s");
            let text = match frame {
                Some(Ok(Message::Text(t))) => t.to_string(),
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame
                        .map(|f| Closed {
                            code: u16::from(f.code),
                            reason: f.reason.to_string(),
                        })
                        .unwrap_or(Closed {
                            code: u16::from(CloseCode::Status),
                            reason: String::new(),
                        }))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(Closed {
                        code: 0,
                        reason: e.to_string(),
                    })
                }
                None => {
                    return Err(Closed {
                        code: 0,
                        reason: "ended without a close frame".into(),
                    })
                }
            };
            let v: Value = serde_json::from_str(&text).expect("every message is JSON");
            self.apply(&v);
            return Ok(v);
        }
    }

    /// The close the server ends the connection with, skipping messages.
    pub async fn closed(&mut self) -> Closed {
        loop {
            if let Err(c) = self.next().await {
                return c;
            }
        }
    }

    /// The next error message, skipping batches and progress.
    pub async fn error(&mut self) -> (Option<String>, String) {
        let before = self.errors.len();
        while self.errors.len() == before {
            if let Err(c) = self.next().await {
                panic!("closed ({c:?}) while waiting for an error");
            }
        }
        self.errors[before].clone()
    }

    /// Reads until every subscription holds its rows and the connection is
    /// at `lsn` or later.
    pub async fn wait_for(&mut self, lsn: Lsn) {
        while self.lsn < lsn || self.subscribed.iter().any(|id| !self.held.contains_key(id)) {
            if let Err(c) = self.next().await {
                panic!("closed ({c:?}) while waiting for {lsn}");
            }
        }
    }

    fn apply(&mut self, v: &Value) {
        match v["type"].as_str() {
            Some("batch") => {
                let lsn: Lsn = v["lsn"].as_str().expect("batch lsn").parse().expect("lsn");
                assert!(
                    lsn >= self.lsn,
                    "LSNs never go back: {lsn} after {}",
                    self.lsn
                );
                self.lsn = lsn;
                for (id, entry) in v["subs"].as_object().expect("subs") {
                    let held = self.held.entry(id.clone()).or_default();
                    held.lsn = lsn;
                    if entry["snapshot"] == true {
                        held.columns = entry["columns"]
                            .as_array()
                            .expect("columns")
                            .iter()
                            .map(|c| c["name"].as_str().expect("column name").to_string())
                            .collect();
                        held.rows.clear();
                        for row in entry["rows"].as_array().expect("rows") {
                            *held.rows.entry(row_key(&held.columns, row)).or_insert(0) += 1;
                        }
                    } else {
                        assert!(
                            !held.columns.is_empty(),
                            "changes for {id} before its snapshot: {v}"
                        );
                        for ch in entry["changes"].as_array().expect("changes") {
                            let k = row_key(&held.columns, &ch["row"]);
                            let n = held.rows.entry(k.clone()).or_insert(0);
                            *n += ch["diff"].as_i64().expect("diff");
                            assert!(*n >= 0, "{id}: a row retracted more than held: {k}");
                            if *n == 0 {
                                held.rows.remove(&k);
                            }
                        }
                    }
                }
                self.batches.push(v.clone());
            }
            Some("progress") => {
                let lsn: Lsn = v["lsn"].as_str().expect("progress lsn").parse().unwrap();
                assert!(
                    lsn >= self.lsn,
                    "LSNs never go back: {lsn} after {}",
                    self.lsn
                );
                self.lsn = lsn;
            }
            Some("error") => {
                let id = v["id"].as_str().map(str::to_string);
                if let Some(id) = &id {
                    self.held.remove(id);
                    self.subscribed.retain(|s| s != id);
                }
                self.errors
                    .push((id, v["message"].as_str().unwrap_or("").to_string()));
            }
            Some("welcome") | Some("pong") => {}
            other => panic!("unexpected message type {other:?}: {v}"),
        }
    }

    /// Every row this client ever received for `id` (snapshots and changes),
    /// as column-name objects.
    pub fn rows_received(&self, id: &str) -> Vec<serde_json::Map<String, Value>> {
        let mut columns: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for b in &self.batches {
            let Some(entry) = b["subs"].get(id) else {
                continue;
            };
            let rows: Vec<&Value> = if entry["snapshot"] == true {
                columns = entry["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["name"].as_str().unwrap().to_string())
                    .collect();
                entry["rows"].as_array().unwrap().iter().collect()
            } else {
                entry["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| &c["row"])
                    .collect()
            };
            for r in rows {
                let obj = columns
                    .iter()
                    .cloned()
                    .zip(r.as_array().unwrap().iter().cloned())
                    .collect();
                out.push(obj);
            }
        }
        out
    }
}
