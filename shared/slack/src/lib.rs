//! Slack in and out. In: [`signature`] verification of the raw request, [`event`] parsing
//! and normalisation into an [`event::IncomingMessage`] (thread key, message id, readable
//! text, harness flag), a thread's earlier messages as [`context`]. Out: the [`web_api`]
//! client (`chat.postMessage`, `chat.update`, `conversations.replies`, with rate-limit and
//! error classification) and [`chunk`]ing of long answers.

pub mod chunk;
pub mod context;
pub mod event;
pub mod signature;
pub mod text;
pub mod web_api;

pub use event::{Identity, IncomingMessage, SlackRequest};
pub use web_api::{SlackApiError, SlackClient};
