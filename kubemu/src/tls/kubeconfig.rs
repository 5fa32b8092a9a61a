//! A kubeconfig for the emulated API server.

use std::path::Path;

use base64::Engine;

use super::TlsError;

/// Writes a kubeconfig at `path` for `server` (`https://host:port`),
/// trusting the CA at `ca`, with one context named `kubemu` and a token
/// (the emulation authenticates nobody; the token only keeps kubectl from
/// prompting).
pub fn write_kubeconfig(path: &Path, server: &str, ca: &Path) -> Result<(), TlsError> {
    let pem = std::fs::read(ca).map_err(|source| TlsError::Io {
        path: ca.to_path_buf(),
        source,
    })?;
    let ca_data = base64::engine::general_purpose::STANDARD.encode(pem);
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubemu
  cluster:
    server: {server}
    certificate-authority-data: {ca_data}
users:
- name: kubemu
  user:
    token: kubemu
contexts:
- name: kubemu
  context:
    cluster: kubemu
    user: kubemu
    namespace: default
current-context: kubemu
"
    );
    std::fs::write(path, text).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}
