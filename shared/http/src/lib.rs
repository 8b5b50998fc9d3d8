//! What every function crate shares: [`serve`] (Lambda or a plain HTTP server), the JSON
//! error type, extractors that turn bad input into 4xx JSON, the [`Principal`] auth
//! extractor, and the [`AppState`] built once at start-up.

pub mod app;
pub mod auth;
pub mod error;
pub mod execute_batch;
pub mod extract;
pub mod openapi;
pub mod peer_uid;
pub mod serve;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod turn;
pub mod validate;

pub use app::app;
pub use auth::{require, Authorized, Peer, Principal};
pub use error::ApiError;
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use serve::{function_command, run_function, serve};
pub use state::AppState;
