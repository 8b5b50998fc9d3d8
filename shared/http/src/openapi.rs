//! What every function's part of the OpenAPI document shares: the names of the security
//! schemes its `#[utoipa::path]` attributes refer to, and [`complete`], which adds the
//! schemes and the error answers that come from the shared extractors rather than from a
//! handler (401/403 `{detail}` from [`crate::Authorized`] and [`crate::Principal`]; 400,
//! 413 and 422 `{code, message}` from [`crate::ApiJson`], [`crate::ApiPath`] and
//! [`crate::ApiQuery`]; 414 and 503 from the shared layers and the pool).
//!
//! A handler documents its own answers (its body, 404, 409 with their codes); [`complete`]
//! never replaces an answer a handler documented.

use centaur_core::api::{AuthErrorBody, ErrorBody};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::PartialSchema;

/// `X-Api-Key: cnt_…`: a database API key.
pub const API_KEY: &str = "api_key";
/// `Authorization: Bearer cnt_…`: a database API key as a bearer token.
pub const BEARER: &str = "bearer";
/// `Authorization: Bearer sbx1.…`: a sandbox token, scope `agent` on its own thread only.
pub const SANDBOX_TOKEN: &str = "sandbox_token";
/// `X-Slack-Signature` with `X-Slack-Request-Timestamp`: Slack's v0 request signature.
pub const SLACK_SIGNATURE: &str = "slack_signature";

/// The schemes that mean "an API credential" (their failures answer `{detail}`).
const API_SCHEMES: [&str; 3] = [API_KEY, BEARER, SANDBOX_TOKEN];

/// The shared error answers, as `components.responses` names with status and description.
const SHARED: [(&str, &str, &str); 8] = [
    (
        "BadRequest",
        "400",
        "Bad request `{code, message}`: `INVALID_JSON` (the body is not JSON or is empty), \
         `INVALID_PATH` (a path segment is not UTF-8), `INVALID_MESSAGE`, `BAD_REQUEST`.",
    ),
    (
        "Unauthorized",
        "401",
        "No credential (`Missing API key`), or one that is unknown, revoked or expired \
         (`Invalid API key`, `Invalid sandbox token: …`).",
    ),
    (
        "Forbidden",
        "403",
        "The credential's scope does not cover the route (`API key scope does not permit \
         '<scope>'`), a sandbox token on another thread or on a route closed to sandboxes.",
    ),
    (
        "PayloadTooLarge",
        "413",
        "`PAYLOAD_TOO_LARGE`: the body is over 1 MiB.",
    ),
    (
        "UriTooLong",
        "414",
        "`URI_TOO_LONG`: the path and query are over 8 KiB.",
    ),
    (
        "Unprocessable",
        "422",
        "`VALIDATION_ERROR` naming the field: a missing or ill-typed field, a bad query or \
         path parameter, a NUL character (`\\u0000`), or a value out of range; \
         `UNKNOWN_HARNESS`, `INVALID_REPO`, `REPO_NOT_ALLOWED` where a harness or repo is read.",
    ),
    (
        "Unavailable",
        "503",
        "`UNAVAILABLE`: the database (or queue) cannot be reached; retry later.",
    ),
    ("NotFound", "404", "`NOT_FOUND`: no such resource."),
];

fn shared_response(name: &str) -> RefOr<Response> {
    RefOr::Ref(Ref::from_response_name(name))
}

fn json_response(description: &str, detail: bool) -> Response {
    let schema = if detail {
        RefOr::Ref(Ref::from_schema_name("AuthErrorBody"))
    } else {
        RefOr::Ref(Ref::from_schema_name("ErrorBody"))
    };
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

/// Adds `response` under `status` unless the operation documents that status itself.
fn add(operation: &mut Operation, status: &str, name: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| shared_response(name));
}

/// True if the operation accepts an API credential (key, bearer or sandbox token).
fn takes_api_credential(operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|requirements| {
        serde_json::to_value(requirements)
            .ok()
            .and_then(|value| value.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|requirement| requirement.as_object())
            .any(|names| {
                names
                    .keys()
                    .any(|name| API_SCHEMES.contains(&name.as_str()))
            })
    })
}

/// The error answers the shared extractors and layers give on this operation.
fn complete_operation(operation: &mut Operation) {
    let parameters = operation.parameters.clone().unwrap_or_default();
    let has = |location: ParameterIn| {
        parameters
            .iter()
            .any(|parameter| parameter.parameter_in == location)
    };
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.contains_key("application/json"));
    let api_credential = takes_api_credential(operation);
    if api_credential {
        add(operation, "401", "Unauthorized");
        add(operation, "403", "Forbidden");
        add(operation, "503", "Unavailable");
    }
    // A JSON body read by `ApiJson` (routes with their own body reading document theirs).
    if json_body && api_credential {
        add(operation, "400", "BadRequest");
        add(operation, "422", "Unprocessable");
    }
    if operation.request_body.is_some() {
        add(operation, "413", "PayloadTooLarge");
    }
    if has(ParameterIn::Path) {
        add(operation, "400", "BadRequest");
        add(operation, "422", "Unprocessable");
    }
    if has(ParameterIn::Query) {
        add(operation, "422", "Unprocessable");
    }
    add(operation, "414", "UriTooLong");
}

/// The security schemes the functions' operations name.
fn security_schemes(components: &mut Components) {
    components.add_security_scheme(
        API_KEY,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-Api-Key",
            "A database API key (`cnt_` + 43 characters), created with POST /admin/api-keys \
             or bootstrapped from SLACKBOT_API_KEY / LOCAL_DEV_API_KEY. A request from \
             loopback with no key and no forwarding header is the local operator (all scopes) \
             unless LOCAL_OPERATOR=off.",
        ))),
    );
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("cnt_")
                .description(Some(
                    "A database API key as `Authorization: Bearer cnt_…` (read when no \
                     X-Api-Key header is sent).",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        SANDBOX_TOKEN,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("sbx1.")
                .description(Some(
                    "A sandbox token (`Authorization: Bearer sbx1.…`), given to each sandbox: \
                     scope `agent` on its own thread only (another thread → 403); refused on \
                     admin routes, thread listing, usage and final deliveries.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        SLACK_SIGNATURE,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-Slack-Signature",
            "Slack's v0 signature of the raw body with SLACK_SIGNING_SECRET, with \
             X-Slack-Request-Timestamp (within 5 minutes).",
        ))),
    );
}

/// Adds the security schemes, the shared error answers and their schemas to a document
/// merged from the functions' parts.
pub fn complete(document: &mut OpenApi) {
    let components = document.components.get_or_insert_with(Components::new);
    security_schemes(components);
    for (name, _, description) in SHARED {
        let detail = matches!(name, "Unauthorized" | "Forbidden");
        components.responses.insert(
            name.to_owned(),
            RefOr::T(json_response(description, detail)),
        );
    }
    components
        .schemas
        .insert("ErrorBody".to_owned(), ErrorBody::schema());
    components
        .schemas
        .insert("AuthErrorBody".to_owned(), AuthErrorBody::schema());
    for item in document.paths.paths.values_mut() {
        operations(item).for_each(complete_operation);
    }
}

/// Documents `to` as the same route as `from` (an alias path served by the same handler),
/// its operation ids suffixed so each stays unique.
pub fn alias(document: &mut OpenApi, from: &str, to: &str) {
    let Some(mut item) = document.paths.paths.get(from).cloned() else {
        return;
    };
    let suffix: String = to
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    for operation in operations(&mut item) {
        if let Some(id) = operation.operation_id.as_mut() {
            *id = format!("{id}__{suffix}");
        }
    }
    document.paths.paths.insert(to.to_owned(), item);
}

/// Prefixes every operation id of a function's part with the function's name
/// (`agent-threads` + `list` → `agent_threads.list`), so ids stay unique once merged.
pub fn prefix_operation_ids(document: &mut OpenApi, function: &str) {
    let prefix = function.replace('-', "_");
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            if let Some(id) = operation.operation_id.as_mut() {
                *id = format!("{prefix}.{id}");
            }
        }
    }
}

/// Every operation of a path.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}
