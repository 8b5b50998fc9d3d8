//! executions
