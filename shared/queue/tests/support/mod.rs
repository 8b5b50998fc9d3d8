//! Test support shared by each backend's test file.
#![allow(dead_code)]

pub mod conformance;
pub mod moto;
