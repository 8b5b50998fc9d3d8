//! assignments
