//! The agent's heap on glibc. Every namespace operation runs on a short-lived
//! thread (`setns` is per thread), and glibc gives threads their own malloc
//! arenas and keeps what they freed: over 10,000 ADD/DEL cycles the agent's
//! RSS grew 5 % while the heap in use stayed flat at ~1.4 MB (bench-soak,
//! `malloc_stats`). Two arenas and a periodic trim hand that memory back.

use std::time::Duration;

/// How often freed memory is returned to the kernel.
pub const TRIM_PERIOD: Duration = Duration::from_secs(10);

/// Caps glibc's arenas at two (call before any thread starts).
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before threads start.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

/// Returns the free memory of every arena to the kernel.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes the allocator's own locks; it is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Trims every [`TRIM_PERIOD`], forever.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_PERIOD);
    loop {
        tick.tick().await;
        trim();
    }
}
