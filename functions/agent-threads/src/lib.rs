//! Centaur function: agent-threads.
