//! Support for the cross-process tests and benchmarks: the workspace's binaries run as
//! real processes against a fresh Postgres database, talking real HTTP.

pub mod binaries;
pub mod client;
pub mod database;
pub mod eventually;
pub mod fake_kube;
pub mod fake_slack;
pub mod lambda_runtime;
#[path = "../../shared/queue/tests/support/moto.rs"]
pub mod moto;
pub mod process;
pub mod slack_sender;
pub mod stack;

pub use client::ApiClient;
pub use database::TestDatabase;
pub use eventually::{eventually, until};
pub use process::ChildProcess;
pub use stack::{QueueKind, Stack, StackOptions};

/// Runs each named `async fn(QueueKind)` test twice: in `on_postgres` and in `on_sqs`
/// (moto), so the dispatcher is held to the same behaviour on both queues.
#[macro_export]
macro_rules! on_both_queues {
    ($($name:ident),* $(,)?) => {
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::QueueKind::Postgres).await;
                }
            )*
        }
        mod on_sqs {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::QueueKind::Sqs).await;
                }
            )*
        }
    };
}
