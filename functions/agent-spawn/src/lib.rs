//! Centaur function: agent-spawn.
