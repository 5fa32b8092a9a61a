//! The one-line root check of every root-only test tier (datapath, plugin,
//! e2e): a test run without root fails with
//! `<test>: needs root (network namespaces); run scripts/test-all as root`,
//! not with a panic deep in a helper.

/// Fails the calling test at once, with one line, unless it runs as root.
/// A macro so the line names the test (its function's path).
#[macro_export]
macro_rules! require_root {
    () => {{
        fn here() {}
        let path = std::any::type_name_of_val(&here);
        $crate::root::fail_unless_root(
            path.trim_end_matches("::here")
                .trim_end_matches("::{{closure}}"),
        )
    }};
}

/// The body of [`require_root!`]: the one line, then an unwind that skips the
/// panic hook (no "panicked at" location deep in a helper).
pub fn fail_unless_root(test: &str) {
    // Effective uid from /proc (no libc call needed): the second field of `Uid:`.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        let line = format!("{test}: needs root (network namespaces); run scripts/test-all as root");
        eprintln!("{line}");
        std::panic::resume_unwind(Box::new(line));
    }
}
