//! Slack in and out. In: [`signature`] verification of the raw request, [`event`] parsing
//! and normalisation into an [`event::IncomingMessage`] (thread key, message id, readable
//! text, harness flag). Out: the [`web_api`] client (`chat.postMessage` with rate-limit and
//! error classification) and [`chunk`]ing of long answers.

pub mod chunk;
pub mod event;
pub mod signature;
pub mod text;
pub mod web_api;

pub use event::{IncomingMessage, SlackRequest};
pub use web_api::{SlackApiError, SlackClient};
