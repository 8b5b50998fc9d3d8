//! Centaur function: admin-api-keys.
