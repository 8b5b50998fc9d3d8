//! Extractors whose rejections are JSON: syntax errors 400, wrong or missing fields 422
//! (naming the field), bodies over 1 MiB 413, path segments that are not UTF-8 400. No
//! Content-Type is required. A NUL character cannot be stored in Postgres text, so a body,
//! path or query value carrying one is refused with a 422 naming where it was.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
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
    if may_hold_nul(bytes) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if let Some(field) = nul_field(&value, "") {
                return Err(nul_error(&format!("the field '{field}'")));
            }
        }
    }
    serde_json::from_slice(bytes).map_err(|err| match err.classify() {
        serde_json::error::Category::Data
            if err
                .to_string()
                .starts_with(centaur_core::harness::UNKNOWN_HARNESS_MESSAGE) =>
        {
            ApiError::Unprocessable {
                code: codes::UNKNOWN_HARNESS,
                message: err.to_string(),
            }
        }
        serde_json::error::Category::Data => {
            ApiError::validation(format!("invalid request body: {err}"))
        }
        _ => ApiError::BadRequest {
            code: codes::INVALID_JSON,
            message: format!("the request body is not valid JSON: {err}"),
        },
    })
}

/// True if a JSON text may decode to a string with NUL (its only spelling is `\u0000`).
fn may_hold_nul(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|window| window == b"\\u0000")
}

/// The path (`parts[0].text`, or the key itself) of the first string holding a NUL.
fn nul_field(value: &serde_json::Value, at: &str) -> Option<String> {
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| at.to_owned()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_field(item, &format!("{at}[{index}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            if key.contains('\0') {
                Some(path)
            } else {
                nul_field(item, &path)
            }
        }),
        _ => None,
    }
}

fn nul_error(place: &str) -> ApiError {
    ApiError::validation(format!(
        "{place} contains a NUL character (\\u0000), which cannot be stored"
    ))
}

/// Path parameters. A segment that is not valid UTF-8 after percent-decoding is a 400
/// `INVALID_PATH`; one holding NUL is a 422.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::BadRequest {
                code: codes::INVALID_PATH,
                message: format!("invalid path parameter: {}", rejection.body_text()),
            })?;
        if let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0')) {
            return Err(nul_error(&format!("the path parameter '{name}'")));
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| {
                ApiError::validation(format!("invalid path parameter: {}", rejection.body_text()))
            })
    }
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
        let raw = parts.uri.query().unwrap_or_default();
        if let Some((name, _)) = form_urlencoded::parse(raw.as_bytes())
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(nul_error(&format!("the query parameter '{name}'")));
        }
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
    fn a_nul_anywhere_in_a_body_is_a_422_naming_the_field() {
        for (body, field) in [
            (r#"{"thread_key": "a\u0000b"}"#, "'thread_key'"),
            (
                r#"{"thread_key": "t", "parts": [{"text": "x\u0000"}]}"#,
                "'parts[0].text'",
            ),
            (
                r#"{"thread_key": "t", "metadata": {"k\u0000": 1}}"#,
                "'metadata.k\u{0}'",
            ),
        ] {
            let err = parse_json::<Body>(body.as_bytes()).expect_err("refused");
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_not_a_nul() {
        let parsed = parse_json::<Body>(br#"{"thread_key": "a\\u0000"}"#).expect("ok");
        assert_eq!(parsed.thread_key, "a\\u0000");
    }

    #[test]
    fn an_empty_body_is_a_400() {
        let err = parse_json::<Body>(b"  ").expect_err("error");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
