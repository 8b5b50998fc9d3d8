//! `ApiError`: every expected failure is a response, never an `Err` to the runtime.
//! Control-plane errors are `{"code","message"}`; auth errors are `{"detail"}`. Bodies
//! never carry internal `Debug` text; the cause goes to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use centaur_core::api::codes;
use centaur_store::{StoreError, TurnError};
use serde_json::json;

/// An API failure with its status and body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a code (e.g. `INVALID_JSON`, `INVALID_MESSAGE`).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 422 with a code (`VALIDATION_ERROR`, `UNKNOWN_HARNESS`, `INVALID_REPO`, `REPO_NOT_ALLOWED`).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 413.
    #[error("request body exceeds 1 MiB")]
    PayloadTooLarge,
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409 with a code.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 401 `{"detail"}`.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `{"detail"}`.
    #[error("{0}")]
    Forbidden(String),
    /// 503: a dependency is unreachable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug. The message is logged, the body is generic.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// 422 `VALIDATION_ERROR` naming what is wrong.
    pub fn validation(message: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            code: codes::VALIDATION_ERROR,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Conflict { code, .. } => code,
            ApiError::PayloadTooLarge => codes::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => codes::NOT_FOUND,
            ApiError::Unavailable(_) => codes::UNAVAILABLE,
            ApiError::Internal(_) | ApiError::Unauthorized(_) | ApiError::Forbidden(_) => {
                codes::INTERNAL
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Unauthorized(detail) | ApiError::Forbidden(detail) => {
                json!({"detail": detail})
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                json!({"code": codes::INTERNAL, "message": "internal error; see the server log"})
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "dependency unavailable");
                json!({"code": codes::UNAVAILABLE, "message": "a dependency is unavailable; retry later"})
            }
            other => json!({"code": other.code(), "message": other.to_string()}),
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::Database(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_),
            ) => ApiError::Unavailable(err.to_string()),
            _ => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<TurnError> for ApiError {
    fn from(err: TurnError) -> Self {
        let conflict = |code: &'static str, err: &TurnError| ApiError::Conflict {
            code,
            message: err.to_string(),
        };
        match err {
            TurnError::NoActiveAssignment(_) => conflict(codes::NO_ACTIVE_ASSIGNMENT, &err),
            TurnError::GenerationStale { .. } => conflict(codes::ASSIGNMENT_GENERATION_STALE, &err),
            TurnError::PromptMismatch { .. } | TurnError::WorkspaceMismatch(_) => {
                conflict(codes::ACTIVE_ASSIGNMENT_PROMPT_MISMATCH, &err)
            }
            TurnError::IdempotencyMismatch { .. } => {
                conflict(codes::IDEMPOTENCY_PAYLOAD_MISMATCH, &err)
            }
            TurnError::FailureLoop(_) => conflict(codes::THREAD_FAILURE_LOOP, &err),
            TurnError::NoPendingMessages(_) => conflict(codes::NO_PENDING_MESSAGES, &err),
            TurnError::Store(store) => store.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn conflicts_carry_their_code_and_message() {
        let (status, body) = body_of(
            TurnError::GenerationStale {
                given: 1,
                active: 2,
            }
            .into(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "ASSIGNMENT_GENERATION_STALE");
        assert!(body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("active generation is 2"));
    }

    #[tokio::test]
    async fn auth_errors_use_detail() {
        let (status, body) = body_of(ApiError::Unauthorized("Missing API key".into())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, json!({"detail": "Missing API key"}));
    }

    #[tokio::test]
    async fn internal_errors_never_leak_their_cause() {
        let (status, body) = body_of(ApiError::Internal("secret table layout".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("secret table layout"));
    }
}
