//! Build script of `api` (and of the benchmark's hello-world, linked the same way so that
//! the two compare fairly): links the crate's binaries with packed relative relocations
//! (`DT_RELR`). The loader then applies them from a table a hundred times smaller than the
//! `.rela.dyn` it replaces (for `api`, 14 KiB instead of 1.5 MiB), so a start reads and
//! faults in far fewer pages.
//!
//! Only for a native glibc build on a glibc that reads `DT_RELR` (2.36 and later): such a
//! binary does not load on an older one (the linker makes it require
//! `GLIBC_ABI_DT_RELR`). `api` runs on the image's Debian bookworm (glibc 2.36) and on the
//! machine that built it, never as a Lambda function (Amazon Linux 2023 has glibc 2.34),
//! and a cross build (cargo-lambda's) is left as it is.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed={}", file!());
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let native = var("TARGET") == var("HOST");
    let glibc_linux = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if native && glibc_linux && glibc_reads_dt_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// `getconf GNU_LIBC_VERSION` says `glibc 2.36` or later.
fn glibc_reads_dt_relr() -> bool {
    let Ok(output) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.trim().strip_prefix("glibc ").unwrap_or("");
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}
