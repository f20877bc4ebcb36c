//! `GET /views/{name}/sse`: a snapshot, then one `diff` per transaction that
//! changed the view, `progress` when the view moved without changes, `error`
//! when the view fails (the stream stays open: a `snapshot` marked
//! `"reset": true` follows when it recovers), and a last `error` when the
//! view is removed. A subscriber that falls too far behind gets a new snapshot
//! marked `"reset": true` instead of a gap. A subscriber that reconnects with
//! `Last-Event-ID: <lsn>` gets the diffs after that LSN from the view's
//! history, or a snapshot marked as a reset when the history no longer reaches
//! back that far.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{lookup, ApiError, AppState};
use crate::pg::Lsn;
use crate::views::{snapshot_json, sse_bytes, Event, EventKind, Registry, Resumed, View};

struct Subscription {
    reg: AppState,
    view: Arc<View>,
    rx: broadcast::Receiver<Arc<Event>>,
    /// LSN of the last event sent; older progress is skipped.
    last: Lsn,
    /// An event to send before reading the channel again.
    pending: Option<Bytes>,
    done: bool,
    closed: tokio::sync::watch::Receiver<bool>,
}

fn start(
    reg: &Registry,
    view: &View,
    reset: bool,
) -> (Bytes, broadcast::Receiver<Arc<Event>>, Lsn) {
    let (snap, rx) = reg.subscribe(view);
    let snapshot = sse_bytes("snapshot", Some(snap.lsn), &snapshot_json(&snap, reset));
    match &snap.error {
        Some(message) => {
            let mut data = String::from("{\"message\":");
            crate::repr::write_json_string(message, &mut data);
            data.push('}');
            let mut both = snapshot.to_vec();
            both.extend_from_slice(&sse_bytes("error", None, &data));
            (Bytes::from(both), rx, snap.lsn)
        }
        None => (snapshot, rx, snap.lsn),
    }
}

pub async fn stream(
    State(reg): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let view = lookup(&reg, &name)?;
    // Start from the view's contents, not from the empty view before them.
    reg.wait_ready(&view).await;
    // It may have turned out not to compile.
    let view = lookup(&reg, &name)?;
    // A reconnecting EventSource sends the id of the last event it received.
    let resume_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<Lsn>().ok());
    let resumed = resume_from.and_then(|from| reg.resume(&view, from).map(|r| (from, r)));
    let (first, rx, last) = match resumed {
        Some((from, Resumed { missed, rx })) => {
            let mut bytes = Vec::new();
            let mut last = from;
            for e in missed {
                bytes.extend_from_slice(&e.sse);
                last = last.max(e.lsn);
            }
            (Bytes::from(bytes), rx, last)
        }
        None => start(&reg, &view, resume_from.is_some()),
    };
    let closed = reg.closed();
    let sub = Subscription {
        reg,
        view,
        rx,
        last,
        pending: Some(first),
        done: false,
        closed,
    };
    let body = futures::stream::unfold(sub, |mut sub| async move {
        loop {
            if let Some(bytes) = sub.pending.take() {
                return Some((Ok::<Bytes, std::io::Error>(bytes), sub));
            }
            if sub.done {
                return None;
            }
            let received = tokio::select! {
                r = sub.rx.recv() => r,
                _ = sub.closed.wait_for(|c| *c) => return None,
            };
            match received {
                Ok(ev) => {
                    // Older progress is stale; progress at the same LSN is a
                    // heartbeat, which keeps idle connections (and proxies) alive.
                    if ev.kind == EventKind::Progress && ev.lsn < sub.last {
                        continue;
                    }
                    sub.last = sub.last.max(ev.lsn);
                    if ev.kind == EventKind::End {
                        sub.done = true;
                    }
                    return Some((Ok(ev.sse.clone()), sub));
                }
                Err(RecvError::Lagged(_)) => {
                    let (snap, rx, last) = start(&sub.reg, &sub.view, true);
                    sub.rx = rx;
                    sub.last = last;
                    sub.pending = Some(snap);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
