//! Centaur function: health.
