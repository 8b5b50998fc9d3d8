//! Locating the workspace's binaries from a test or bench executable.

use std::path::PathBuf;

/// The path of a workspace binary built by `cargo build --workspace --bins` in the same
/// profile as the running test (`target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|err| panic!("current_exe: {err}"));
    // target/<profile>/deps/<test-binary> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let debug_dir = profile_dir
        .parent()
        .map(|target| target.join("debug"))
        .unwrap_or_else(|| profile_dir.to_path_buf());
    [profile_dir.join(name), debug_dir.join(name)]
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "binary '{name}' not found next to {}; run `cargo build --workspace --bins` first",
                exe.display()
            )
        })
}
