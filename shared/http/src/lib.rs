//! serve() on lambda_http or a plain server, API errors as JSON, auth extractors, shared state.
