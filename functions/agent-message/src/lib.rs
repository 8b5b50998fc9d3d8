//! Centaur function: agent-message.
