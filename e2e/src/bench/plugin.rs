//! One CNI plugin invocation as a runtime makes it: spawn with the `CNI_*`
//! environment, the network configuration on stdin, wait for the exit. Shared
//! by the CNI latency bench and the soak.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::ProcessError;

/// A plugin and the configuration it is called with.
#[derive(Debug, Clone)]
pub struct CniPlugin {
    /// The plugin executable.
    pub binary: PathBuf,
    /// The network configuration (stdin).
    pub conf: Value,
    /// `CNI_PATH`.
    pub cni_path: String,
    /// `CNI_ARGS`.
    pub cni_args: String,
    /// Namespace the plugin process runs in (the caller enters it; the
    /// reference plugin's "host" in the CNI bench).
    pub host_netns: Option<String>,
}

impl CniPlugin {
    /// One invocation: its duration from exec to exit.
    pub fn invoke(
        &self,
        command: &str,
        container: &str,
        netns: &str,
    ) -> Result<Duration, ProcessError> {
        Ok(self.invoke_output(command, container, netns)?.0)
    }

    /// One invocation: its duration from exec to exit, and its stdout. A
    /// non-zero exit is an error carrying the plugin's reply.
    pub fn invoke_output(
        &self,
        command: &str,
        container: &str,
        netns: &str,
    ) -> Result<(Duration, Vec<u8>), ProcessError> {
        let line = format!("{} {command} {container}", self.binary.display());
        let start = Instant::now();
        let mut child = Command::new(&self.binary)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth1")
            .env("CNI_PATH", &self.cni_path)
            .env("CNI_ARGS", &self.cni_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                command: line.clone(),
                source,
            })?;
        let io = |source| ProcessError::Io {
            path: line.clone(),
            source,
        };
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(self.conf.to_string().as_bytes())
            .map_err(io)?;
        let out = child.wait_with_output().map_err(io)?;
        let elapsed = start.elapsed();
        if !out.status.success() {
            return Err(ProcessError::Failed {
                command: line,
                code: out.status.code(),
                stderr: format!(
                    "{} {}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok((elapsed, out.stdout))
    }
}
