//! Tests that need something installed (Tomcat 10, Chromium): in CI a missing tool fails the
//! test; elsewhere the test is skipped with a banner written past cargo's output capture, so
//! a skipped test is seen in `cargo test`'s output instead of passing silently.

use std::io::Write;

/// Running in CI: `CI` is set to anything but empty, "false" or "0".
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether the test can run: true when `what` is `present`; otherwise panics in CI and says
/// SKIPPED loudly elsewhere. `install` says how to get it.
pub fn require(what: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    if in_ci() {
        panic!("{} is required in CI and is not installed ({})", what, install);
    }
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let bar = "*".repeat(78);
    let msg = format!(
        "\n{bar}\n*** SKIPPED {test}: {what} is not installed ({install}).\n*** `make test` installs it; in CI (CI=true) this test fails instead.\n{bar}\n"
    );
    // Straight to the process's stderr: the test harness captures only print!/eprint!.
    let _ = std::io::stderr().write_all(msg.as_bytes());
    false
}
