//! Tracing and Prometheus metrics set-up.
