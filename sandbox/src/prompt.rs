//! The system prompt of a turn, from three parts: the deployment's base prompt
//! (`$CENTAUR_PROMPTS_DIR/AGENTS_BASE.md`), the repository's own `AGENTS.md` (in the
//! checkout) and the thread's instructions (`agents_md_override`). Harnesses that read the
//! project's `AGENTS.md` themselves (codex, pi, amp) get base and instructions in their
//! global `AGENTS.md`; Claude Code gets all three as `--append-system-prompt`. Nothing is
//! written into the checkout, so the repository's `git status` stays clean.

use std::path::Path;

/// The base prompt's file name in the prompts directory.
pub const BASE_FILE: &str = "AGENTS_BASE.md";

/// Heading of the repository's part in an assembled prompt.
const REPO_HEADING: &str = "# The repository's AGENTS.md";

/// Heading of the thread's instructions in an assembled prompt.
const INSTRUCTIONS_HEADING: &str = "# Instructions for this thread";

/// The three parts of a turn's system prompt; each may be absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemPrompt {
    /// The deployment's base prompt.
    pub base: Option<String>,
    /// The repository's own `AGENTS.md`.
    pub repo: Option<String>,
    /// The thread's instructions.
    pub instructions: Option<String>,
}

fn non_blank(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn read_optional(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "cannot read a prompt file; leaving it out");
            None
        }
    }
}

impl SystemPrompt {
    /// Reads the parts: the base prompt from `prompts_dir` (if given and present), the
    /// repository's `AGENTS.md` from `checkout` (if given and present), and `instructions`.
    pub fn load(
        prompts_dir: Option<&Path>,
        checkout: Option<&Path>,
        instructions: Option<&str>,
    ) -> Self {
        Self {
            base: non_blank(prompts_dir.and_then(|dir| read_optional(&dir.join(BASE_FILE)))),
            repo: non_blank(checkout.and_then(|dir| read_optional(&dir.join("AGENTS.md")))),
            instructions: non_blank(instructions.map(str::to_owned)),
        }
    }

    /// All three parts, for a harness that takes the prompt as a flag and does not read
    /// the repository's `AGENTS.md` (Claude Code). `None` when every part is absent.
    pub fn full(&self) -> Option<String> {
        join(&[
            self.base.as_deref().map(str::to_owned),
            self.repo
                .as_deref()
                .map(|repo| format!("{REPO_HEADING}\n\n{repo}")),
            self.instructions_section(),
        ])
    }

    /// Base and instructions, for a harness's global `AGENTS.md` when the harness reads
    /// the repository's own `AGENTS.md` itself (codex, pi, amp).
    pub fn global_agents_md(&self) -> Option<String> {
        join(&[self.base.clone(), self.instructions_section()])
    }

    fn instructions_section(&self) -> Option<String> {
        self.instructions
            .as_deref()
            .map(|text| format!("{INSTRUCTIONS_HEADING}\n\n{text}"))
    }
}

fn join(parts: &[Option<String>]) -> Option<String> {
    let present: Vec<&str> = parts.iter().flatten().map(String::as_str).collect();
    (!present.is_empty()).then(|| present.join("\n\n") + "\n")
}

/// Writes `content` to `path` (creating its directory), or removes the file when there is
/// no content, so an earlier turn's prompt never lingers.
pub fn install(path: &Path, content: Option<&str>) -> std::io::Result<()> {
    match content {
        Some(text) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
                std::fs::write(path, text)?;
            }
            Ok(())
        }
        None => match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(base: Option<&str>, repo: Option<&str>, instructions: Option<&str>) -> SystemPrompt {
        SystemPrompt {
            base: base.map(str::to_owned),
            repo: repo.map(str::to_owned),
            instructions: instructions.map(str::to_owned),
        }
    }

    #[test]
    fn the_full_prompt_has_base_then_repo_then_instructions() {
        let full = prompt(Some("BASE"), Some("REPO"), Some("THREAD"))
            .full()
            .expect("a prompt");
        let base = full.find("BASE").expect("base");
        let repo = full.find("REPO").expect("repo");
        let thread = full.find("THREAD").expect("instructions");
        assert!(base < repo && repo < thread, "{full}");
        assert!(full.contains(REPO_HEADING) && full.contains(INSTRUCTIONS_HEADING));
    }

    #[test]
    fn the_global_agents_md_leaves_the_repository_part_to_the_harness() {
        let global = prompt(Some("BASE"), Some("REPO"), Some("THREAD"))
            .global_agents_md()
            .expect("a prompt");
        assert!(global.contains("BASE") && global.contains("THREAD"));
        assert!(!global.contains("REPO"), "{global}");
    }

    #[test]
    fn absent_parts_are_left_out_and_no_parts_is_no_prompt() {
        assert_eq!(prompt(None, None, None).full(), None);
        assert_eq!(prompt(None, Some("REPO"), None).global_agents_md(), None);
        assert_eq!(
            prompt(None, None, Some("THREAD")).full().as_deref(),
            Some("# Instructions for this thread\n\nTHREAD\n")
        );
        assert_eq!(
            prompt(Some("BASE"), None, None).full().as_deref(),
            Some("BASE\n")
        );
    }

    #[test]
    fn parts_are_read_from_the_prompts_dir_and_the_checkout_and_blank_ones_dropped() {
        let root = std::env::temp_dir().join(format!("centaur-prompt-{}", std::process::id()));
        let prompts = root.join("prompts");
        let checkout = root.join("checkout");
        std::fs::create_dir_all(&prompts).expect("prompts dir");
        std::fs::create_dir_all(&checkout).expect("checkout");
        std::fs::write(prompts.join(BASE_FILE), "You are in a sandbox.\n").expect("base");
        std::fs::write(checkout.join("AGENTS.md"), "  \n").expect("blank repo file");
        let loaded = SystemPrompt::load(Some(&prompts), Some(&checkout), Some("Be brief."));
        assert_eq!(loaded.base.as_deref(), Some("You are in a sandbox."));
        assert_eq!(loaded.repo, None);
        assert_eq!(loaded.instructions.as_deref(), Some("Be brief."));
        let none = SystemPrompt::load(Some(&root.join("missing")), None, Some(" "));
        assert_eq!(none, SystemPrompt::default());

        let installed = root.join("home/.codex/AGENTS.md");
        install(&installed, Some("X\n")).expect("install");
        assert_eq!(std::fs::read_to_string(&installed).expect("read"), "X\n");
        install(&installed, None).expect("remove");
        assert!(!installed.exists());
        install(&installed, None).expect("removing nothing is fine");
        let _ = std::fs::remove_dir_all(&root);
    }
}
