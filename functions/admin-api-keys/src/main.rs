//! `admin-api-keys`: see the crate docs.

centaur_http::function_main!(admin_api_keys::router);
