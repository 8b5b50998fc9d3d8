//! Scopes: `*` (everything), `admin`, `agent` (covers `agent:execute`, `agent:status`,
//! `agent:stop`), and the three `agent:*` scopes themselves.

use std::fmt;
use std::str::FromStr;

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    All,
    Admin,
    Agent,
    AgentExecute,
    AgentStatus,
    AgentStop,
}

/// A scope name that is not one of the known scopes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope '{0}'; allowed: *, admin, agent, agent:execute, agent:status, agent:stop")]
pub struct UnknownScope(pub String);

impl Scope {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "*",
            Scope::Admin => "admin",
            Scope::Agent => "agent",
            Scope::AgentExecute => "agent:execute",
            Scope::AgentStatus => "agent:status",
            Scope::AgentStop => "agent:stop",
        }
    }

    /// True if holding `self` grants `needed`.
    pub fn covers(self, needed: Scope) -> bool {
        self == needed
            || self == Scope::All
            || (self == Scope::Agent
                && matches!(
                    needed,
                    Scope::AgentExecute | Scope::AgentStatus | Scope::AgentStop
                ))
    }
}

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "*" => Ok(Scope::All),
            "admin" => Ok(Scope::Admin),
            "agent" => Ok(Scope::Agent),
            "agent:execute" => Ok(Scope::AgentExecute),
            "agent:status" => Ok(Scope::AgentStatus),
            "agent:stop" => Ok(Scope::AgentStop),
            other => Err(UnknownScope(other.to_owned())),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True if any of `held` grants `needed`.
pub fn grants(held: &[Scope], needed: Scope) -> bool {
    held.iter().any(|scope| scope.covers(needed))
}

/// Parses stored or requested scope names.
pub fn parse_all<S: AsRef<str>>(names: &[S]) -> Result<Vec<Scope>, UnknownScope> {
    names.iter().map(|name| name.as_ref().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_covers_its_sub_scopes_but_not_admin() {
        assert!(Scope::Agent.covers(Scope::AgentExecute));
        assert!(Scope::Agent.covers(Scope::AgentStop));
        assert!(!Scope::Agent.covers(Scope::Admin));
    }

    #[test]
    fn star_covers_everything() {
        for needed in [Scope::Admin, Scope::Agent, Scope::AgentStatus] {
            assert!(Scope::All.covers(needed));
        }
    }

    #[test]
    fn admin_does_not_imply_agent() {
        assert!(!grants(&[Scope::Admin], Scope::Agent));
    }

    #[test]
    fn unknown_scope_names_are_refused() {
        assert!(parse_all(&["agent", "root"]).is_err());
        assert_eq!(
            parse_all(&["*", "agent:status"]),
            Ok(vec![Scope::All, Scope::AgentStatus])
        );
    }
}
