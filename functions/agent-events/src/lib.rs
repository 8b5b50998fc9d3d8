//! Centaur function: agent-events.
