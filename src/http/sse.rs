//! `GET /views/{name}/sse`: a snapshot, then one `diff` per transaction that
//! changed the view, `progress` when the view moved without changes, `error`
//! when the view fails (the stream stays open: a `snapshot` marked
//! `"reset": true` follows when it recovers), and a last `error` when the
//! view is removed. A subscriber that falls too far behind gets a new snapshot
//! marked `"reset": true` instead of a gap. A subscriber that reconnects with
//! `Last-Event-ID: <lsn>` gets the diffs after that LSN from the view's
//! history, or a snapshot marked as a reset when the history no longer reaches
//! back that far (or the LSN is ahead of the view, as after a restart of
//! viewcast). A `Last-Event-ID` that is not an LSN is answered 400: this
//! server never sent it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::{lookup, open_tuple, query_params, view_name, ApiError};
use crate::auth::Claims;
use crate::pg::Lsn;
use crate::views::{snapshot_json, sse_bytes, Event, EventKind, Registry, Resumed, TupleGuard};

struct Subscription {
    reg: Arc<Registry>,
    /// Keeps the subscribed tuple in the dataflow while the stream is open.
    guard: TupleGuard,
    rx: broadcast::Receiver<Arc<Event>>,
    /// LSN of the last event sent; older progress is skipped.
    last: Lsn,
    /// An event to send before reading the channel again.
    pending: Option<Bytes>,
    done: bool,
    closed: tokio::sync::watch::Receiver<bool>,
    /// When the token the stream was opened with expires: the stream ends
    /// then with an error event (a client reconnects with a fresh token).
    expires: Option<tokio::time::Instant>,
    /// The view's progress events; one is sent once the tuple's channel has
    /// nothing older left (its diffs are sent before the progress after them).
    progress: broadcast::Receiver<Arc<Event>>,
    progress_due: Option<Arc<Event>>,
}

/// What a waiting stream woke up for.
enum Woke {
    Event(Result<Arc<Event>, RecvError>),
    Progress(Result<Arc<Event>, RecvError>),
    Closed,
    Expired,
}

fn start(
    reg: &Registry,
    guard: &TupleGuard,
    reset: bool,
) -> (Bytes, broadcast::Receiver<Arc<Event>>, Lsn) {
    let crate::views::Subscribed {
        snapshot: snap, rx, ..
    } = reg.subscribe(guard);
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

/// How long a new subscription waits for a new parameter tuple's rows
/// before it starts anyway (its snapshot then follows as a reset).
const TUPLE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn stream(
    State(reg): State<Arc<Registry>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    claims: Option<Extension<Claims>>,
) -> Result<Response, ApiError> {
    let name = view_name(path)?;
    let query = query_params(query)?;
    // A reconnecting EventSource sends the id of the last event it received.
    let resume_from = last_event_id(&headers)?;
    let view = lookup(&reg, &name)?;
    // Start from the view's contents, not from the empty view before them.
    reg.wait_ready(&view).await;
    // It may have turned out not to compile.
    let view = lookup(&reg, &name)?;
    let expires = claims.as_ref().map(|c| {
        let left = c
            .expires_at()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tokio::time::Instant::now() + left
    });
    let claims = claims.as_ref().map(|c| c.as_map());
    let guard = open_tuple(&reg, &view, &query, claims, TUPLE_PATIENCE).await?;
    let resumed = resume_from.and_then(|from| reg.resume(&guard, from).map(|r| (from, r)));
    let (first, rx, last) = match resumed {
        Some((from, Resumed { missed, rx, .. })) => {
            let mut bytes = Vec::new();
            let mut last = from;
            for e in missed {
                bytes.extend_from_slice(&e.sse);
                last = last.max(e.lsn);
            }
            (Bytes::from(bytes), rx, last)
        }
        None => start(&reg, &guard, resume_from.is_some()),
    };
    let closed = reg.closed();
    let progress = reg.progress_events(guard.view());
    let sub = Subscription {
        reg,
        guard,
        rx,
        last,
        pending: Some(first),
        done: false,
        closed,
        expires,
        progress,
        progress_due: None,
    };
    let body = futures::stream::unfold(sub, |mut sub| async move {
        loop {
            if let Some(bytes) = sub.pending.take() {
                return Some((Ok::<Bytes, std::io::Error>(bytes), sub));
            }
            if sub.done {
                return None;
            }
            // The tuple's own events first: a progress event goes out only
            // after every diff before it.
            let received = match sub.rx.try_recv() {
                Err(TryRecvError::Empty) => None,
                Ok(ev) => Some(Ok(ev)),
                Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
            };
            let received = match received {
                Some(r) => r,
                None => {
                    if let Some(p) = sub.progress_due.take() {
                        // Older progress is stale; the same LSN is a
                        // heartbeat, which keeps idle connections (and
                        // proxies) alive. A tuple still computing its rows
                        // is not complete at any LSN yet.
                        if p.lsn >= sub.last && sub.guard.is_ready() {
                            sub.last = p.lsn;
                            return Some((Ok(p.sse.clone()), sub));
                        }
                        continue;
                    }
                    let expires = sub.expires;
                    let woke = tokio::select! {
                        r = sub.rx.recv() => Woke::Event(r),
                        p = sub.progress.recv() => Woke::Progress(p),
                        _ = sub.closed.wait_for(|c| *c) => Woke::Closed,
                        _ = async {
                            match expires {
                                Some(at) => tokio::time::sleep_until(at).await,
                                None => std::future::pending().await,
                            }
                        } => Woke::Expired,
                    };
                    match woke {
                        Woke::Event(r) => r,
                        Woke::Progress(Ok(p)) => {
                            sub.progress_due = Some(p);
                            continue;
                        }
                        // Skipped progress is superseded by the next.
                        Woke::Progress(Err(RecvError::Lagged(_))) => continue,
                        Woke::Progress(Err(RecvError::Closed)) | Woke::Closed => return None,
                        Woke::Expired => {
                            sub.done = true;
                            let data =
                                "{\"message\":\"the token expired; reconnect with a fresh one\"}";
                            return Some((Ok(sse_bytes("error", None, data)), sub));
                        }
                    }
                }
            };
            match received {
                Ok(ev) => {
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
                    let (snap, rx, last) = start(&sub.reg, &sub.guard, true);
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

/// The LSN in `Last-Event-ID`, if the header is there; ids are LSNs such as
/// `0/16B3748`, and anything else is a 400.
fn last_event_id(headers: &HeaderMap) -> Result<Option<Lsn>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let refuse = || {
        let shown: String = String::from_utf8_lossy(value.as_bytes())
            .chars()
            .take(40)
            .collect();
        ApiError::BadRequest(format!(
            "Last-Event-ID {shown:?} is not an LSN like 0/16B3748 (the ids this server sends); \
             leave it out to start from a snapshot"
        ))
    };
    let text = value.to_str().map_err(|_| refuse())?.trim();
    if text.is_empty() {
        // EventSource sends an empty id after an event that reset it.
        return Ok(None);
    }
    text.parse::<Lsn>().map(Some).map_err(|_| refuse())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn parse(value: &[u8]) -> Result<Option<Lsn>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_bytes(value).unwrap());
        last_event_id(&headers)
    }

    #[test]
    fn last_event_id_is_an_lsn_or_a_400() {
        assert_eq!(last_event_id(&HeaderMap::new()).unwrap(), None);
        assert_eq!(parse(b"").unwrap(), None);
        assert_eq!(parse(b" 0/16B3748 ").unwrap(), Some(Lsn(0x16B3748)));
        assert_eq!(parse(b"FFFFFFFF/FFFFFFFF").unwrap(), Some(Lsn(u64::MAX)));
        for bad in [
            &b"x"[..],
            b"1/2/3",
            b"100000000/0",
            b"-1/0",
            b"0/\xff",
            &[b'9'; 4000],
        ] {
            let err = parse(bad).expect_err("not an LSN");
            assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
            assert!(err.to_string().len() < 200, "{err}");
        }
    }
}
