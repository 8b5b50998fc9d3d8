//! The Postgres queue.
