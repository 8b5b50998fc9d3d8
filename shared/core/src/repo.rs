//! A thread's repository: a typed reference parsed once from `owner/name` or an
//! `https://host/owner/name(.git)` URL, the deployment's allowlist of repositories, and the
//! name of the branch a thread works on. No IO.
//!
//! Normal form (what [`RepoRef::as_str`] returns and the database stores):
//! - a repository on `github.com` is `owner/name` whichever way it was written;
//! - any other host is `https://host/owner/name` (host lowercased, no `.git`, no trailing `/`).

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Longest accepted repository reference (and allowlist pattern), in bytes.
pub const MAX_REPO_LEN: usize = 512;

/// Host that `owner/name` refers to.
pub const DEFAULT_GIT_HOST: &str = "github.com";

/// Why a repository reference or an allowlist was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error("repository must not be empty")]
    Empty,
    #[error("repository must be at most {MAX_REPO_LEN} characters")]
    TooLong,
    #[error("repository must not contain whitespace, control characters or NUL")]
    ControlCharacter,
    #[error("repository URL must use https:// (got {0})")]
    NotHttps(String),
    #[error("repository URL must not contain credentials, a query or a fragment")]
    Credentials,
    #[error("repository must be `owner/name` or `https://host/owner/name`")]
    Shape,
    #[error("repository host {0:?} is not a valid host name")]
    Host(String),
    #[error("repository path segment {0:?} is not allowed (letters, digits, '.', '-', '_'; no '..', no leading '-' or '.')")]
    Segment(String),
    #[error("allowlist pattern {pattern:?} is invalid: {reason}")]
    Pattern { pattern: String, reason: String },
}

/// A validated repository reference. Construct with [`RepoRef::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoRef {
    /// Lowercased host, with an optional `:port`.
    host: String,
    owner: String,
    name: String,
    /// The normal form, computed once.
    normal: String,
}

impl RepoRef {
    /// Parses `owner/name` (GitHub) or `https://host/owner/name(.git)`; anything else
    /// (ssh, `git@`, `http://`, credentials, `..`, empty parts, NUL, over-long) is refused.
    pub fn parse(raw: &str) -> Result<Self, RepoError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(RepoError::Empty);
        }
        if raw.len() > MAX_REPO_LEN {
            return Err(RepoError::TooLong);
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(RepoError::ControlCharacter);
        }
        let (host, path) = split_host(raw)?;
        let path = path.strip_suffix('/').unwrap_or(path);
        if let Some(dots) = path.split('/').find(|part| part.contains("..")) {
            return Err(RepoError::Segment(dots.to_string()));
        }
        let mut parts = path.split('/');
        let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(RepoError::Shape);
        };
        let name = name.strip_suffix(".git").unwrap_or(name);
        check_segment(owner)?;
        check_segment(name)?;
        let normal = if host == DEFAULT_GIT_HOST {
            format!("{owner}/{name}")
        } else {
            format!("https://{host}/{owner}/{name}")
        };
        Ok(Self {
            host,
            owner: owner.to_string(),
            name: name.to_string(),
            normal,
        })
    }

    /// The normal form (`owner/name` on github.com, else `https://host/owner/name`).
    pub fn as_str(&self) -> &str {
        &self.normal
    }

    /// The HTTPS URL to clone, always ending in `.git`.
    pub fn clone_url(&self) -> String {
        format!("https://{}/{}/{}.git", self.host, self.owner, self.name)
    }

    /// The repository's name without owner or `.git` (`api` for `acme/api`).
    pub fn short_name(&self) -> &str {
        &self.name
    }

    /// The owner (user, organisation or group) part.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lowercased host (with `:port` if one was given).
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normal)
    }
}

impl std::str::FromStr for RepoRef {
    type Err = RepoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for RepoRef {
    type Error = RepoError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RepoRef> for String {
    fn from(value: RepoRef) -> Self {
        value.normal
    }
}

/// Splits a reference into (lowercased host, path). `owner/name` has host github.com.
fn split_host(raw: &str) -> Result<(String, &str), RepoError> {
    let Some((scheme, rest)) = raw.split_once("://") else {
        if raw.contains(':') || raw.contains('@') {
            // `git@github.com:acme/api`, `github.com:acme/api` and the like.
            return Err(RepoError::NotHttps("ssh".to_string()));
        }
        if raw.contains(['?', '#', '%', '\\']) {
            return Err(RepoError::Shape);
        }
        return Ok((DEFAULT_GIT_HOST.to_string(), raw));
    };
    if !scheme.eq_ignore_ascii_case("https") {
        return Err(RepoError::NotHttps(format!("{scheme}://")));
    }
    let (authority, path) = rest.split_once('/').ok_or(RepoError::Shape)?;
    if authority.contains('@') || rest.contains(['?', '#']) {
        return Err(RepoError::Credentials);
    }
    if rest.contains(['%', '\\']) {
        return Err(RepoError::Shape);
    }
    let host = authority.to_ascii_lowercase();
    check_host(&host)?;
    Ok((host, path))
}

fn check_host(host: &str) -> Result<(), RepoError> {
    let bad = || RepoError::Host(host.to_string());
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_segment(segment: &str) -> Result<(), RepoError> {
    let ok = !segment.is_empty()
        && segment.len() <= 100
        && !segment.starts_with(['-', '.'])
        && !segment.contains("..")
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RepoError::Segment(segment.to_string()))
    }
}

/// Which repositories a deployment lets threads use (`AGENT_REPOS_ALLOWED`).
///
/// Patterns are globs over the normal form (`acme/*`, `acme-labs/api`,
/// `https://git.example.com/team/*`); `*` does not cross a `/`, `**` does; matching ignores
/// case. A pattern written as a github.com URL is the same as its `owner/name` form.
#[derive(Debug, Clone)]
pub struct RepoAllowlist {
    patterns: Vec<String>,
    set: GlobSet,
}

impl RepoAllowlist {
    /// Builds an allowlist from a comma-separated glob list; empty entries are ignored.
    pub fn parse(list: &str) -> Result<Self, RepoError> {
        Self::from_patterns(list.split(',').map(str::trim).filter(|p| !p.is_empty()))
    }

    /// Builds an allowlist from individual glob patterns.
    pub fn from_patterns<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, RepoError> {
        let mut builder = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for raw in patterns {
            let pattern = normalize_pattern(raw)?;
            let glob = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .case_insensitive(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| RepoError::Pattern {
                    pattern: raw.to_string(),
                    reason: e.kind().to_string(),
                })?;
            builder.add(glob);
            kept.push(pattern);
        }
        let set = builder.build().map_err(|e| RepoError::Pattern {
            pattern: kept.join(","),
            reason: e.to_string(),
        })?;
        Ok(Self {
            patterns: kept,
            set,
        })
    }

    /// The allowlist that allows exactly `repo` (the default when only `AGENT_REPO` is set).
    pub fn only(repo: &RepoRef) -> Self {
        let mut builder = GlobSetBuilder::new();
        // The normal form has no glob metacharacters, so escaping it gives a literal.
        if let Ok(glob) = GlobBuilder::new(&globset::escape(repo.as_str()))
            .literal_separator(true)
            .case_insensitive(true)
            .build()
        {
            builder.add(glob);
        }
        Self {
            patterns: vec![repo.as_str().to_string()],
            set: builder.build().unwrap_or_else(|_| GlobSet::empty()),
        }
    }

    /// The allowlist that allows nothing.
    pub fn none() -> Self {
        Self {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    /// The deployment's allowlist: `allowed` if given, else only `default`, else nothing.
    pub fn resolve(default: Option<&RepoRef>, allowed: Option<&str>) -> Result<Self, RepoError> {
        match (allowed, default) {
            (Some(list), _) => Self::parse(list),
            (None, Some(repo)) => Ok(Self::only(repo)),
            (None, None) => Ok(Self::none()),
        }
    }

    /// Whether threads may use `repo`.
    pub fn allows(&self, repo: &RepoRef) -> bool {
        self.set.is_match(repo.as_str())
    }

    /// Whether no repository is allowed.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The normalised patterns, for logs and `check-config`.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl Default for RepoAllowlist {
    fn default() -> Self {
        Self::none()
    }
}

impl PartialEq for RepoAllowlist {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for RepoAllowlist {}

/// Puts a pattern in the same normal form as [`RepoRef::as_str`].
fn normalize_pattern(raw: &str) -> Result<String, RepoError> {
    let bad = |reason: &str| RepoError::Pattern {
        pattern: raw.to_string(),
        reason: reason.to_string(),
    };
    if raw.len() > MAX_REPO_LEN {
        return Err(bad("too long"));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("contains whitespace or control characters"));
    }
    if raw.contains('@') {
        return Err(bad("must not contain credentials"));
    }
    let pattern = raw.strip_suffix('/').unwrap_or(raw);
    let pattern = pattern.strip_suffix(".git").unwrap_or(pattern);
    match pattern.split_once("://") {
        None => {
            if pattern.contains(':') {
                return Err(bad("must be owner/name or an https:// URL"));
            }
            Ok(pattern.to_string())
        }
        Some((scheme, rest)) => {
            if !scheme.eq_ignore_ascii_case("https") {
                return Err(bad("URLs must use https://"));
            }
            let (host, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
            let host = host.to_ascii_lowercase();
            if host == DEFAULT_GIT_HOST {
                Ok(path.to_string())
            } else {
                Ok(format!("https://{host}/{path}"))
            }
        }
    }
}

/// The branch a thread's `n`th sandbox works on: `centaur/<8 hex of sha256(thread_key)>-<n>`.
/// Stable for a thread key and always a valid git ref name.
pub fn branch_name(thread_key: &str, n: u64) -> String {
    let digest = Sha256::digest(thread_key.as_bytes());
    let short = hex::encode(&digest[..4]);
    format!("centaur/{short}-{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoRef {
        RepoRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn owner_name_is_github() {
        let r = repo("acme/api");
        assert_eq!(r.as_str(), "acme/api");
        assert_eq!(r.to_string(), "acme/api");
        assert_eq!(r.clone_url(), "https://github.com/acme/api.git");
        assert_eq!(r.short_name(), "api");
        assert_eq!(r.owner(), "acme");
        assert_eq!(r.host(), "github.com");
    }

    #[test]
    fn owner_name_with_dot_git_and_dots() {
        let r = repo("acme/my.repo.git");
        assert_eq!(r.as_str(), "acme/my.repo");
        assert_eq!(r.clone_url(), "https://github.com/acme/my.repo.git");
        assert_eq!(repo("  acme-labs/api_v2 ").as_str(), "acme-labs/api_v2");
    }

    #[test]
    fn github_url_normalises_to_owner_name() {
        for s in [
            "https://github.com/acme/api",
            "https://github.com/acme/api.git",
            "https://GitHub.com/acme/api/",
            "HTTPS://github.com/acme/api",
        ] {
            let r = repo(s);
            assert_eq!(r.as_str(), "acme/api", "{s}");
            assert_eq!(r.clone_url(), "https://github.com/acme/api.git", "{s}");
        }
    }

    #[test]
    fn other_host_url_keeps_host() {
        let r = repo("https://Git.Example.com:8443/team/svc");
        assert_eq!(r.as_str(), "https://git.example.com:8443/team/svc");
        assert_eq!(r.clone_url(), "https://git.example.com:8443/team/svc.git");
        assert_eq!(r.short_name(), "svc");
        let r = repo("https://git.example.com/team/svc.git");
        assert_eq!(r.clone_url(), "https://git.example.com/team/svc.git");
        assert_eq!(r, repo(r.as_str()), "the normal form parses to itself");
    }

    #[test]
    fn refuses_other_schemes_and_credentials() {
        assert!(matches!(
            RepoRef::parse("http://github.com/acme/api"),
            Err(RepoError::NotHttps(_))
        ));
        assert!(matches!(
            RepoRef::parse("ssh://git@github.com/acme/api"),
            Err(RepoError::NotHttps(_))
        ));
        assert!(matches!(
            RepoRef::parse("git@github.com:acme/api.git"),
            Err(RepoError::NotHttps(_))
        ));
        assert!(matches!(
            RepoRef::parse("file:///etc/passwd"),
            Err(RepoError::NotHttps(_))
        ));
        assert!(matches!(
            RepoRef::parse("https://user:pw@github.com/acme/api"),
            Err(RepoError::Credentials)
        ));
        assert!(matches!(
            RepoRef::parse("https://tok@github.com/acme/api"),
            Err(RepoError::Credentials)
        ));
        assert!(matches!(
            RepoRef::parse("https://github.com/acme/api?x=1"),
            Err(RepoError::Credentials)
        ));
        assert!(matches!(
            RepoRef::parse("https://github.com/acme/api#main"),
            Err(RepoError::Credentials)
        ));
    }

    #[test]
    fn refuses_bad_shapes() {
        for s in [
            "",
            "   ",
            "acme",
            "acme/",
            "/api",
            "acme//api",
            "acme/api/extra",
            "acme/.git",
            "https://github.com",
            "https://github.com/",
            "https://github.com/acme",
            "https://github.com/acme/api/tree/main",
            "https:///acme/api",
            "acme/a%2Fb",
            "acme\\api",
        ] {
            assert!(RepoRef::parse(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn refuses_traversal_nul_and_odd_characters() {
        for s in [
            "../api",
            "acme/..",
            "acme/a..b",
            "https://github.com/../etc/passwd",
            "acme/.hidden",
            "acme/-upload-pack",
            "acme/a b",
            "acme/a\0b",
            "acme/a\nb",
            "acme/ä",
            "acme/a;rm",
            "https://exa_mple.com/a/b",
            "https://-bad.com/a/b",
            "https://host:99999999/a/b",
            "https://host:/a/b",
        ] {
            assert!(RepoRef::parse(s).is_err(), "{s:?} should be refused");
        }
        assert_eq!(
            RepoRef::parse("acme/a\0b"),
            Err(RepoError::ControlCharacter)
        );
        assert!(matches!(
            RepoRef::parse("acme/.."),
            Err(RepoError::Segment(_))
        ));
    }

    #[test]
    fn refuses_over_long() {
        let long = format!("acme/{}", "a".repeat(MAX_REPO_LEN));
        assert_eq!(RepoRef::parse(&long), Err(RepoError::TooLong));
        let long_segment = format!("acme/{}", "a".repeat(101));
        assert!(matches!(
            RepoRef::parse(&long_segment),
            Err(RepoError::Segment(_))
        ));
    }

    #[test]
    fn errors_say_why() {
        let e = RepoRef::parse("http://github.com/acme/api").unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = RepoRef::parse("acme/..").unwrap_err();
        assert!(e.to_string().contains(".."), "{e}");
    }

    #[test]
    fn serde_round_trips_through_the_normal_form() {
        let r: RepoRef = serde_json::from_str("\"https://github.com/acme/api.git\"")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            serde_json::to_string(&r).ok().as_deref(),
            Some("\"acme/api\"")
        );
        assert!(serde_json::from_str::<RepoRef>("\"ssh://x/y/z\"").is_err());
    }

    #[test]
    fn allowlist_globs() {
        let list = RepoAllowlist::parse("acme/*, acme-labs/api,https://git.example.com/team/*,,")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(list.patterns().len(), 3);
        assert!(list.allows(&repo("acme/api")));
        assert!(list.allows(&repo("acme/web")));
        assert!(list.allows(&repo("https://github.com/acme/web.git")));
        assert!(list.allows(&repo("ACME/Web")), "matching ignores case");
        assert!(list.allows(&repo("acme-labs/api")));
        assert!(!list.allows(&repo("acme-labs/web")));
        assert!(!list.allows(&repo("evil/api")));
        assert!(!list.allows(&repo("acmex/api")));
        assert!(list.allows(&repo("https://git.example.com/team/svc")));
        assert!(!list.allows(&repo("https://git.example.com/other/svc")));
        assert!(!list.allows(&repo("https://evil.com/team/svc")));
    }

    #[test]
    fn allowlist_github_url_pattern_is_owner_name() {
        let list = RepoAllowlist::parse("https://github.com/acme/api.git")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(list.patterns(), ["acme/api"]);
        assert!(list.allows(&repo("acme/api")));
        assert!(!list.allows(&repo("acme/web")));
    }

    #[test]
    fn allowlist_star_does_not_cross_hosts_or_slashes() {
        let list = RepoAllowlist::parse("*/*").unwrap_or_else(|e| panic!("{e}"));
        assert!(list.allows(&repo("anyone/anything")));
        assert!(
            !list.allows(&repo("https://git.example.com/a/b")),
            "*/* is github.com only"
        );
        let all = RepoAllowlist::parse("**").unwrap_or_else(|e| panic!("{e}"));
        assert!(all.allows(&repo("https://git.example.com/a/b")));
    }

    #[test]
    fn allowlist_refuses_bad_patterns() {
        assert!(RepoAllowlist::parse("acme/[").is_err());
        assert!(RepoAllowlist::parse("http://github.com/acme/*").is_err());
        assert!(RepoAllowlist::parse("git@github.com:acme/*").is_err());
        assert!(RepoAllowlist::parse("https://u:p@github.com/acme/*").is_err());
        let e = RepoAllowlist::parse("acme/[").unwrap_err();
        assert!(e.to_string().contains("acme/["), "{e}");
    }

    #[test]
    fn allowlist_defaults() {
        let api = repo("acme/api");
        let only = RepoAllowlist::only(&api);
        assert!(only.allows(&api));
        assert!(!only.allows(&repo("acme/web")));
        let none = RepoAllowlist::none();
        assert!(none.is_empty());
        assert!(!none.allows(&api));
        assert!(RepoAllowlist::resolve(None, None)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty());
        let d = RepoAllowlist::resolve(Some(&api), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.patterns(), ["acme/api"]);
        let explicit =
            RepoAllowlist::resolve(Some(&api), Some("acme/web")).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !explicit.allows(&api),
            "an explicit list replaces the default"
        );
        assert!(RepoAllowlist::parse("")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty());
        // Globs with metacharacters in a repo name are impossible: names are [A-Za-z0-9._-].
        let dotted = repo("acme/a.b");
        assert!(RepoAllowlist::only(&dotted).allows(&dotted));
    }

    #[test]
    fn branch_names_are_stable_and_ref_safe() {
        let a = branch_name("slack:T1:C1:1700000000.000100", 1);
        assert_eq!(a, branch_name("slack:T1:C1:1700000000.000100", 1));
        assert_ne!(a, branch_name("slack:T1:C1:1700000000.000200", 1));
        let rest = a.strip_prefix("centaur/").unwrap_or_else(|| panic!("{a}"));
        let (short, n) = rest.split_once('-').unwrap_or_else(|| panic!("{a}"));
        assert_eq!(short.len(), 8);
        assert!(short
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(n, "1");
        assert!(branch_name("k", 42).ends_with("-42"));
        // sha256("abc") starts with ba7816bf.
        assert_eq!(branch_name("abc", 3), "centaur/ba7816bf-3");
    }
}
