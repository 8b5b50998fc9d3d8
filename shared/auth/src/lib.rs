//! Authentication primitives: API keys (generation, hashing, scopes) and `sbx1.` sandbox
//! tokens. Pure functions; looking keys up in Postgres is `centaur-store`'s job.

pub mod api_key;
pub mod sandbox_token;
pub mod scope;

pub use sandbox_token::{SandboxClaims, SandboxTokenError};
pub use scope::Scope;
