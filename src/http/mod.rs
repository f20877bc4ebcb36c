//! HTTP delivery: health, the view list, a view's contents, its SSE stream,
//! and the live page. Errors are JSON bodies with a status (see [`ApiError`]).

mod page;
mod sse;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::views::{snapshot_json, Health, Lookup, Registry, View};

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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

pub type AppState = Arc<Registry>;

pub fn router(registry: AppState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/page.js", get(page::script))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/views", get(list_views))
        .route("/views/{name}", get(view_contents))
        .route("/views/{name}/sse", get(sse::stream))
        .route("/views/{name}/plan", get(view_plan))
        .with_state(registry)
}

/// Finds a served view, or explains why there is none.
pub(crate) fn lookup(reg: &Registry, name: &str) -> Result<Arc<View>, ApiError> {
    match reg.lookup(name) {
        Lookup::Live(v) | Lookup::Loading(v) => Ok(v),
        Lookup::Refused(r) => Err(ApiError::Refused {
            name: name.to_string(),
            error: r.error,
        }),
        Lookup::NotFound => Err(ApiError::NotFound(name.to_string())),
    }
}

async fn healthz(State(reg): State<AppState>) -> Response {
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

async fn metrics(State(reg): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        reg.metrics(),
    )
        .into_response()
}

async fn list_views(State(reg): State<AppState>) -> Response {
    let list: Vec<_> = reg
        .all()
        .iter()
        .filter_map(|v| {
            let def = v.def()?;
            Some(json!({ "name": v.name, "sql": def.sql, "columns": def.columns }))
        })
        .collect();
    Json(list).into_response()
}

/// How a view is maintained, as text: its columns, then one plan operator per
/// line with its inputs indented below. A refused view answers 422 with the
/// reason and a caret under the spot in its SQL.
async fn view_plan(State(reg): State<AppState>, Path(name): Path<String>) -> Response {
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
        Lookup::NotFound => text(StatusCode::NOT_FOUND, format!("no view named \"{name}\"\n")),
    }
}

async fn view_contents(
    State(reg): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let loading = matches!(reg.lookup(&name), Lookup::Loading(_));
    let view = lookup(&reg, &name)?;
    let snap = reg.snapshot(&view);
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
