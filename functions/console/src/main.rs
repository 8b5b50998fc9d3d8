//! `console`: see the crate docs.

centaur_http::function_main!(console::router);
