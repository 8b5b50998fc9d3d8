//! Cross-crate integration and end-to-end tests, and the benchmarks.
