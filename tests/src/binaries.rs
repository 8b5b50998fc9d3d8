//! Locating the workspace's binaries from a test or bench executable.

use std::path::PathBuf;

/// The path of a workspace binary built in the same profile as the running test or bench
/// (`target/<profile>/<name>`). Never another profile's: a bench must not time a debug
/// build it found lying around.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|err| panic!("current_exe: {err}"));
    // target/<profile>/deps/<test-binary> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let path = profile_dir.join(name);
    if !path.is_file() {
        let release = profile_dir.file_name().is_some_and(|dir| dir == "release");
        panic!(
            "binary '{name}' not found in {}; run `cargo build {}--workspace --bins` first",
            profile_dir.display(),
            if release { "--release " } else { "" }
        );
    }
    path
}
