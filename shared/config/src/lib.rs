//! Typed configuration parsed once at start-up from the environment.
//!
//! Every reader takes an [`Env`], built from the process environment in `main` and from a
//! map in tests, so nothing calls `std::env::set_var`. A missing or malformed value is a
//! [`ConfigError`] that names the variable.

pub mod api;
pub mod common;
pub mod dispatcher;
pub mod env;
pub mod kubernetes;
pub mod retention;
pub mod slack;
pub mod workspace;

pub use api::ApiConfig;
pub use common::{
    AuthConfig, DatabaseConfig, LocalSandboxConfig, QueueBackend, QueueConfig, SandboxBackendKind,
    SandboxConfig, DEFAULT_SANDBOX_USER,
};
pub use dispatcher::DispatcherConfig;
pub use env::{ConfigError, Env};
pub use kubernetes::KubernetesConfig;
pub use retention::RetentionConfig;
pub use slack::SlackDeliveryConfig;
pub use workspace::WorkspaceConfig;
