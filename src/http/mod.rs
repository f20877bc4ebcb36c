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

use crate::views::{snapshot_json, Registry};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no view named \"{0}\"")]
    NotFound(String),
    #[error("view \"{name}\" was refused: {error}")]
    Refused { name: String, error: String },
    #[error("view \"{name}\" failed: {error}")]
    Failed { name: String, error: String },
    #[error("view \"{0}\" is still loading its initial snapshot; retry shortly")]
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
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/views", get(list_views))
        .route("/views/{name}", get(view_contents))
        .route("/views/{name}/sse", get(sse::stream))
        .route("/views/{name}/plan", get(view_plan))
        .with_state(registry)
}

/// Finds a served view, or explains why there is none.
pub(crate) fn lookup(reg: &Registry, name: &str) -> Result<usize, ApiError> {
    if let Some((i, _)) = reg.get(name) {
        return Ok(i);
    }
    match reg.refused(name) {
        Some(r) => Err(ApiError::Refused {
            name: name.to_string(),
            error: r.error.clone(),
        }),
        None => Err(ApiError::NotFound(name.to_string())),
    }
}

async fn healthz(State(reg): State<AppState>) -> Response {
    let lsn = reg.progress().to_string();
    if reg.is_streaming() {
        (
            StatusCode::OK,
            Json(json!({ "status": "streaming", "lsn": lsn })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting", "lsn": lsn })),
        )
            .into_response()
    }
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
        .views()
        .iter()
        .map(|v| json!({ "name": v.def.name, "sql": v.def.sql, "columns": v.def.columns }))
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
    if let Some((_, view)) = reg.get(&name) {
        let cols: Vec<String> = view
            .def
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.ty.name()))
            .collect();
        return text(
            StatusCode::OK,
            format!("{name}: {}\n{}", cols.join(", "), view.def.plan),
        );
    }
    match reg.refused(&name) {
        Some(r) => text(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{name}: refused\n{}\n", r.detail),
        ),
        None => text(StatusCode::NOT_FOUND, format!("no view named \"{name}\"\n")),
    }
}

async fn view_contents(
    State(reg): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let i = lookup(&reg, &name)?;
    let view = &reg.views()[i];
    let snap = reg.snapshot(i);
    if snap.error.is_none() && !reg.is_loaded() {
        return Err(ApiError::NotReady(name));
    }
    if let Some(error) = snap.error {
        return Err(ApiError::Failed { name, error });
    }
    let body = snapshot_json(&view.def.columns, &snap, false);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
