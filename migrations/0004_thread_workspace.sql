-- The repository a thread works in (`owner/name` or an https URL, after the deployment's
-- default and allowlist were applied at spawn) and the thread's own instructions
-- (`agents_md_override`), appended to the base prompt and the repository's AGENTS.md.
ALTER TABLE runtime_assignments
    ADD COLUMN repo               text,
    ADD COLUMN agents_md_override text;
