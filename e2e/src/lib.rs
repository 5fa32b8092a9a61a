//! End-to-end helpers (sandbox driver).
