//! Centaur function: agent-executions.
