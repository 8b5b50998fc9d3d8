//! The store's error types.

/// A repository call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A column held a value this build has no name for (a status, terminal reason or
    /// harness the enums of `centaur_core` do not know).
    #[error("stored {column} '{value}' is not a value this build knows")]
    UnknownValue { column: &'static str, value: String },
    /// The database's schema is older than this build: migrations run from `api migrate`
    /// (the chart's migrate Job, the AWS deploy step, scripts/up.sh), never at start-up.
    #[error("the database schema is at migration {}, this build needs {needed}: run `api migrate`", applied.map_or_else(|| "none".to_owned(), |v| v.to_string()))]
    SchemaBehind { applied: Option<i64>, needed: i64 },
}

/// Why a spawn, message, execute or release was refused (each maps to a 409), or the
/// store failed.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("thread '{0}' has no active assignment; call /agent/spawn first")]
    NoActiveAssignment(String),
    #[error("assignment generation {given} is stale; the active generation is {active}")]
    GenerationStale { given: i64, active: i64 },
    #[error("thread already has an active '{active}' assignment; release it before spawning '{requested}'")]
    PromptMismatch {
        active: centaur_core::Harness,
        requested: centaur_core::Harness,
    },
    /// A spawn named another repo or `agents_md_override` than the active assignment's.
    #[error("{0}")]
    WorkspaceMismatch(String),
    #[error("{key_name} '{key}' was already used with a different payload")]
    IdempotencyMismatch { key_name: &'static str, key: String },
    #[error(
        "thread '{0}' has had 3 failed executions in the last 300 s; inspect them before retrying"
    )]
    FailureLoop(String),
    /// Every message of the thread already belongs to an execution: nothing to run.
    #[error("thread '{0}' has no message that is not already part of an execution; post one with /agent/message first")]
    NoPendingMessages(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TurnError {
    fn from(err: sqlx::Error) -> Self {
        TurnError::Store(StoreError::Database(err))
    }
}

/// `raw`, read from `column`, as the domain value it names; an unknown value is a
/// [`StoreError::UnknownValue`] naming the column.
pub(crate) fn column<T: std::str::FromStr>(
    column: &'static str,
    raw: String,
) -> Result<T, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::UnknownValue { column, value: raw })
}

/// [`column`] for a nullable column.
pub(crate) fn optional_column<T: std::str::FromStr>(
    name: &'static str,
    raw: Option<String>,
) -> Result<Option<T>, StoreError> {
    raw.map(|raw| column(name, raw)).transpose()
}
