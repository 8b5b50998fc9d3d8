//! Reading variables with errors that name them.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

/// A configuration value was missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Looks a variable up by name.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A source of environment variables.
pub struct Env {
    lookup: Lookup,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// A fixed set of variables (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self {
            lookup: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// The value, treating an empty or all-blank value as absent.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    /// The value, or [`ConfigError::Missing`].
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// The value parsed with `FromStr`, or `default` when absent.
    pub fn parsed_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|err: T::Err| ConfigError::Invalid {
                    name,
                    reason: format!("'{raw}': {err}"),
                }),
        }
    }

    /// A boolean (`true/false/1/0/yes/no/on/off`), or `default` when absent.
    pub fn flag_or(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                name,
                reason: format!("'{v}' is not a boolean"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_in_the_error() {
        let env = Env::from_pairs([]);
        let err = env.required("DATABASE_URL").expect_err("missing");
        assert_eq!(
            err.to_string(),
            "missing required environment variable DATABASE_URL"
        );
    }

    #[test]
    fn blank_values_count_as_missing() {
        let env = Env::from_pairs([("X", "  ")]);
        assert_eq!(env.optional("X"), None);
    }

    #[test]
    fn malformed_numbers_name_the_variable_and_value() {
        let env = Env::from_pairs([("PORT", "eighty")]);
        let err = env.parsed_or::<u16>("PORT", 8000).expect_err("invalid");
        assert!(
            err.to_string().contains("PORT") && err.to_string().contains("eighty"),
            "{err}"
        );
    }

    #[test]
    fn flags_accept_common_spellings() {
        let env = Env::from_pairs([("A", "yes"), ("B", "0"), ("C", "maybe")]);
        assert_eq!(env.flag_or("A", false), Ok(true));
        assert_eq!(env.flag_or("B", true), Ok(false));
        assert!(env.flag_or("C", true).is_err());
        assert_eq!(env.flag_or("D", true), Ok(true));
    }
}
