//! HTTP delivery: health, the view list, a view's contents, its SSE stream,
//! and the live page. Errors are JSON bodies with a status (see [`ApiError`]).
//!
//! Nothing here trusts the client: [`serve`] bounds connections, request
//! heads and how long they take; no route takes a body (a request that
//! declares one is answered 413 before routing); a path that is not UTF-8, a
//! `Last-Event-ID` that is not an LSN and an unknown route are 4xx answers
//! with a JSON body; the page renders every value as text (see `page.rs`).
//!
//! With authentication configured (`crate::auth`), the view routes need a
//! bearer token, in `Authorization: Bearer <jwt>` or, for clients that cannot
//! set headers (EventSource, a browser's WebSocket), in `?access_token=<jwt>`;
//! see [`require_token`]. Health, metrics and the page stay open. A handler
//! reads the verified claims as `Option<Extension<Claims>>`; `None` means
//! authentication is off.

mod page;
mod serve;
mod sse;
pub mod ws;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;

pub use serve::{serve, SHUTDOWN_GRACE};

use crate::auth::{Auth, AuthError, Claims};
use crate::views::params::Given;
use crate::views::{snapshot_json, Health, Lookup, Registry, TupleGuard, View};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no view named \"{0}\"")]
    NotFound(String),
    #[error("view \"{name}\" was refused: {error}")]
    Refused { name: String, error: String },
    #[error("view \"{name}\" failed: {error}")]
    Failed { name: String, error: String },
    #[error("view \"{0}\" is still loading its contents; retry shortly")]
    NotReady(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("no route {0}; the API is GET /views, /views/NAME, /views/NAME/sse, /views/NAME/plan, /healthz, /metrics")]
    NoRoute(String),
    #[error("requests take no body; send GET without one")]
    BodyNotAccepted,
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("{0}")]
    Limit(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::BodyNotAccepted => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if let ApiError::Unauthorized(e) = &self {
            // RFC 6750 section 3: a bare challenge when no token came, the
            // error code when one was refused (the reason is in the body).
            let challenge = if e.is_missing() {
                "Bearer"
            } else {
                "Bearer error=\"invalid_token\""
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// The key tokens are checked against; `None` when authentication is off.
    pub auth: Option<Arc<Auth>>,
    pub ws: crate::config::WsLimits,
    /// Open websocket connections (for `/metrics`).
    pub ws_open: Arc<std::sync::atomic::AtomicUsize>,
}

impl axum::extract::FromRef<AppState> for Arc<Registry> {
    fn from_ref(state: &AppState) -> Arc<Registry> {
        state.registry.clone()
    }
}

/// The routes. With `state.auth` set, the view routes need a token (see
/// [`require_token`]); the websocket checks the one its `hello` carries.
/// `extra` holds routes of whoever embeds the server (the demo's token
/// issuer, see `crate::demo`): merged beside these, open to anyone, and
/// under the same limits (no bodies, no sniffing, the JSON 404).
pub fn router(state: AppState, extra: Router) -> Router {
    let auth = state.auth.clone();
    // Whatever reads a view: with authentication configured, only with a
    // valid token. New routes that serve view data (`/ws`, ...) go here.
    let mut protected = Router::new()
        .route("/views", get(list_views))
        .route("/views/{name}", get(view_contents))
        .route("/views/{name}/sse", get(sse::stream))
        .route("/views/{name}/plan", get(view_plan));
    if let Some(auth) = auth {
        protected = protected
            .route_layer(middleware::from_fn_with_state(auth.clone(), require_token))
            .route_layer(Extension(auth));
    }
    // Open to anyone: the page and its script (they hold no data; the page
    // reads the views like any client), health and metrics.
    let open = Router::new()
        .route("/", get(page::index))
        .route("/page.js", get(page::script))
        .route("/client.js", get(page::client_script))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // A browser's WebSocket cannot send a header: its token comes in the
        // first frame (`hello`), checked by the connection itself.
        .route("/ws", get(ws::upgrade));
    open.merge(protected)
        .with_state(state)
        .merge(extra)
        .fallback(no_route)
        .layer(middleware::from_fn(refuse_bodies))
        .layer(middleware::map_response(no_sniffing))
}

/// The longest view name echoed back in an error: names are file stems, so a
/// real one fits; a longer one is cut rather than reflected whole.
const MAX_ECHOED_NAME: usize = 128;

/// `name` as an error message shows it: cut at [`MAX_ECHOED_NAME`] bytes.
fn shown(name: &str) -> String {
    if name.len() <= MAX_ECHOED_NAME {
        return name.to_string();
    }
    let mut end = MAX_ECHOED_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &name[..end])
}

/// The view name in a path, or a 400 when it is not valid UTF-8 once
/// percent-decoded.
fn view_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(name)| name).map_err(|e| {
        ApiError::BadRequest(format!(
            "the view name in the path is not valid: {}",
            e.body_text()
        ))
    })
}

async fn no_route(req: Request) -> ApiError {
    let path = req.uri().path();
    ApiError::NoRoute(format!("{} {}", req.method(), shown(path)))
}

/// No route reads a body, so one that is declared (a length above zero, or
/// chunked) is refused before anything else happens, rather than left unread
/// on the connection.
async fn refuse_bodies(req: Request, next: Next) -> Response {
    if req.body().size_hint().upper() != Some(0) {
        let mut response = ApiError::BodyNotAccepted.into_response();
        // The unread body makes the connection useless for another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(req).await
}

/// Lets a request through only with a valid token (see the module docs),
/// and puts its [`Claims`](crate::auth::Claims) in the request's extensions.
/// An `access_token` in the query is taken out of the URI before the
/// handler runs, so no handler sees (or echoes, or logs) it and query
/// parameters of its own are parsed without it.
async fn require_token(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let verified = take_token(&mut req).and_then(|token| auth.verify(&token));
    match verified {
        Ok(claims) => {
            req.extensions_mut().insert(claims);
            next.run(req).await
        }
        Err(e) => {
            tracing::debug!(path = %shown(req.uri().path()), reason = %e, "token refused");
            ApiError::Unauthorized(e).into_response()
        }
    }
}

/// The request's token: from `Authorization: Bearer`, else from the query's
/// `access_token` (which is removed from the URI either way).
fn take_token(req: &mut Request) -> Result<String, AuthError> {
    let from_query = take_query_token(req)?;
    let mut headers = req.headers().get_all(header::AUTHORIZATION).iter();
    let Some(value) = headers.next() else {
        return from_query.ok_or(AuthError::Missing);
    };
    if headers.next().is_some() {
        return Err(AuthError::SeveralTokens);
    }
    let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
    match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(token.trim().to_string())
        }
        _ => Err(AuthError::NotBearer),
    }
}

/// Removes every `access_token` from the request's query and returns its
/// value (percent-decoded); more than one is refused.
fn take_query_token(req: &mut Request) -> Result<Option<String>, AuthError> {
    let Some(query) = req.uri().query() else {
        return Ok(None);
    };
    let mut tokens = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("access_token", value)) => tokens.push(percent_decoded(value)),
            _ if pair == "access_token" => tokens.push(String::new()),
            _ => kept.push(pair),
        }
    }
    if tokens.is_empty() {
        return Ok(None);
    }
    if tokens.len() > 1 {
        return Err(AuthError::SeveralTokens);
    }
    let path = req.uri().path();
    let rest = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    // What remains of a URI that parsed still parses; keep it as it was if not.
    if let Ok(path_and_query) = PathAndQuery::try_from(rest) {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    Ok(tokens.pop())
}

/// The `access_token` of a query string (percent-decoded), if it has one.
pub(crate) fn query_token(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some(("access_token", value)) => Some(percent_decoded(value)),
            _ => None,
        })
}

/// `%XX` escapes and `+` decoded, as a form-encoded query value (a JWT needs
/// neither, but a client may escape it anyway); bad escapes stay as they are.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Browsers must take each response for the type it declares: an error
/// message or a plan echoing a request is text or JSON, never a page.
async fn no_sniffing(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Finds a served view, or explains why there is none.
pub(crate) fn lookup(reg: &Registry, name: &str) -> Result<Arc<View>, ApiError> {
    match reg.lookup(name) {
        Lookup::Live(v) | Lookup::Loading(v) => Ok(v),
        Lookup::Refused(r) => Err(ApiError::Refused {
            name: name.to_string(),
            error: r.error,
        }),
        Lookup::NotFound => Err(ApiError::NotFound(shown(name))),
    }
}

async fn healthz(State(reg): State<Arc<Registry>>) -> Response {
    let lsn = reg.progress().to_string();
    let (status, body) = match reg.health() {
        Health::Streaming { .. } if reg.is_streaming() => {
            (StatusCode::OK, json!({ "status": "streaming", "lsn": lsn }))
        }
        Health::Streaming { .. } | Health::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "starting", "lsn": lsn }),
        ),
        Health::Reconnecting { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "reconnecting", "reason": reason, "lsn": lsn }),
        ),
        Health::Failed { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "failed", "reason": reason, "lsn": lsn }),
        ),
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    use std::fmt::Write;
    let mut text = state.registry.metrics();
    let limits = &state.ws;
    let lines: [(&str, &str, &str, usize); 5] = [
        (
            "viewcast_ws_connections",
            "Open websocket connections.",
            "gauge",
            state.ws_open.load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "viewcast_limit_ws_subscriptions",
            "Subscriptions one websocket connection may hold (--ws-max-subscriptions).",
            "gauge",
            limits.max_subscriptions,
        ),
        (
            "viewcast_limit_ws_frame_bytes",
            "Largest frame a websocket client may send (--ws-max-frame-bytes).",
            "gauge",
            limits.max_frame_bytes,
        ),
        (
            "viewcast_limit_ws_pending_bytes",
            "Changes held for a websocket client that does not read before it is closed with 4008 (--ws-max-pending-bytes).",
            "gauge",
            limits.max_pending_bytes,
        ),
        (
            "viewcast_limit_tuples_per_view",
            "Parameter tuples one view keeps at once (--max-tuples-per-view).",
            "gauge",
            state.registry.max_tuples(),
        ),
    ];
    for (name, help, kind, value) in lines {
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn list_views(State(reg): State<Arc<Registry>>) -> Response {
    let list: Vec<_> = reg
        .all()
        .iter()
        .filter_map(|v| {
            let def = v.def()?;
            Some(json!({
                "name": v.name,
                "sql": def.sql,
                "columns": def.columns,
                "params": def.params,
                "memory": reg.memory_of(v),
            }))
        })
        .collect();
    Json(list).into_response()
}

/// A request's query parameters; a query string that does not decode is a 400.
pub(crate) fn query_params(
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<BTreeMap<String, String>, ApiError> {
    query
        .map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))
}

/// The query-string keys that are not view parameters.
const RESERVED_QUERY_KEYS: [&str; 1] = ["access_token"];

/// Opens the parameter tuple a request names (its query string, and the
/// claims of its verified token) and waits, up to `patience`, until its rows
/// are computed. A view without parameters ignores the query string.
pub(crate) async fn open_tuple(
    reg: &Registry,
    view: &Arc<View>,
    query: &BTreeMap<String, String>,
    claims: Option<&serde_json::Map<String, serde_json::Value>>,
    patience: std::time::Duration,
) -> Result<TupleGuard, ApiError> {
    let params = view.def().map(|d| d.params).unwrap_or_default();
    let given: BTreeMap<String, Given> = query
        .iter()
        .filter(|(k, _)| !RESERVED_QUERY_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Given::Text(v.clone())))
        .collect();
    let tuple = crate::views::params::tuple(&params, &given, claims)
        .map_err(|e| ApiError::BadRequest(format!("view \"{}\": {e}", shown(&view.name))))?;
    let guard = reg.open_limited(view, tuple).map_err(ApiError::Limit)?;
    let _ = tokio::time::timeout(patience, reg.wait_tuple(&guard)).await;
    Ok(guard)
}

/// How a view is maintained, as text: its columns, then one plan operator per
/// line with its inputs indented below. A refused view answers 422 with the
/// reason and a caret under the spot in its SQL.
async fn view_plan(
    State(reg): State<Arc<Registry>>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let name = match view_name(path) {
        Ok(name) => name,
        Err(e) => return e.into_response(),
    };
    let text = |status: StatusCode, body: String| {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    };
    match reg.lookup(&name) {
        Lookup::Live(v) | Lookup::Loading(v) => match v.def() {
            Some(def) => {
                let cols: Vec<String> = def
                    .columns
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.ty.name()))
                    .collect();
                text(
                    StatusCode::OK,
                    format!("{name}: {}\n{}", cols.join(", "), def.plan),
                )
            }
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{name}: still compiling; retry shortly\n"),
            ),
        },
        Lookup::Refused(r) => text(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{name}: refused\n{}\n", r.detail),
        ),
        Lookup::NotFound => text(
            StatusCode::NOT_FOUND,
            format!("no view named \"{}\"\n", shown(&name)),
        ),
    }
}

/// How long `GET /views/{name}` waits for a new parameter tuple's rows.
const TUPLE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

async fn view_contents(
    State(reg): State<Arc<Registry>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    claims: Option<Extension<Claims>>,
) -> Result<Response, ApiError> {
    let name = view_name(path)?;
    let query = query_params(query)?;
    let loading = matches!(reg.lookup(&name), Lookup::Loading(_));
    let view = lookup(&reg, &name)?;
    if loading {
        return Err(ApiError::NotReady(name));
    }
    let claims = claims.as_ref().map(|c| c.as_map());
    let guard = open_tuple(&reg, &view, &query, claims, TUPLE_PATIENCE).await?;
    if !guard.is_ready() {
        return Err(ApiError::NotReady(name));
    }
    let snap = reg.snapshot(&guard);
    if let Some(error) = snap.error.clone() {
        if !loading {
            return Err(ApiError::Failed { name, error });
        }
    }
    if loading {
        return Err(ApiError::NotReady(name));
    }
    let body = snapshot_json(&snap, false);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
