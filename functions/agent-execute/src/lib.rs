//! Centaur function: agent-execute.
