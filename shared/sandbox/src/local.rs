//! The local-process backend.
