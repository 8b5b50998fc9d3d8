//! `final-deliveries`: see the crate docs.

centaur_http::function_main!(final_deliveries::router);
