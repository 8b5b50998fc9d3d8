//! Behaviour every `Queue` backend must have. Each backend's test file runs this suite.
#![allow(dead_code)]

pub mod conformance;
