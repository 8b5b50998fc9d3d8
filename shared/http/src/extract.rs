//! Extractors whose rejections are JSON: syntax errors 400, wrong or missing fields 422
//! (naming the field), bodies over 1 MiB 413. No Content-Type is required.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use centaur_core::api::codes;
use serde::de::DeserializeOwned;

/// The largest accepted body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest {
                        code: codes::INVALID_JSON,
                        message: format!("could not read the request body: {rejection}"),
                    }
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body with the API's error mapping.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            code: codes::INVALID_JSON,
            message: "the request body is empty; a JSON object is required".into(),
        });
    }
    serde_json::from_slice(bytes).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => {
            ApiError::validation(format!("invalid request body: {err}"))
        }
        _ => ApiError::BadRequest {
            code: codes::INVALID_JSON,
            message: format!("the request body is not valid JSON: {err}"),
        },
    })
}

/// A query string.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                ApiError::validation(format!("invalid query string: {}", rejection.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[allow(dead_code)]
        thread_key: String,
    }

    #[test]
    fn a_missing_field_is_a_422_that_names_it() {
        let err = parse_json::<Body>(br#"{"other": 1}"#).expect_err("error");
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.to_string().contains("thread_key"), "{err}");
    }

    #[test]
    fn a_wrongly_typed_field_is_a_422() {
        let err = parse_json::<Body>(br#"{"thread_key": 5}"#).expect_err("error");
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn broken_json_is_a_400() {
        let err = parse_json::<Body>(b"{not json").expect_err("error");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn an_empty_body_is_a_400() {
        let err = parse_json::<Body>(b"  ").expect_err("error");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
