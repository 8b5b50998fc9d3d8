//! The program inside a sandbox: the stdin/stdout protocol and the harness drivers.
