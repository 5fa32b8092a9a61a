//! Minimal plugin logging to `logFile` or stderr — never stdout, which
//! belongs to the CNI result.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::spec::config::LogLevel;

/// Where and how much to log.
#[derive(Debug, Clone)]
pub struct Logger {
    level: LogLevel,
    file: Option<PathBuf>,
}

impl Logger {
    /// A logger writing at most `level` to `file` (stderr when `None`).
    pub fn new(level: LogLevel, file: Option<PathBuf>) -> Self {
        Self { level, file }
    }

    /// Writes one line if `level` is enabled; logging failures are ignored
    /// (a log must never fail a verb).
    pub fn log(&self, level: LogLevel, message: &str) {
        if level > self.level {
            return;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let line = format!(
            "{ts:.3} {level:?} privnet-cni[{}]: {message}\n",
            std::process::id()
        );
        match &self.file {
            Some(path) => {
                if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_level_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let logger = Logger::new(LogLevel::Info, Some(path.clone()));
        logger.log(LogLevel::Info, "kept one");
        logger.log(LogLevel::Debug, "dropped");
        logger.log(LogLevel::Error, "kept two");
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("kept one") && text.contains("kept two"));
        assert!(!text.contains("dropped"));
        assert_eq!(text.lines().count(), 2);
    }
}
