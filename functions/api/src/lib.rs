//! All Centaur functions on one port (8000).
