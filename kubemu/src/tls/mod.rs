//! TLS for the emulated API server: a CA and a server certificate made with
//! the `openssl` CLI at start (valid for loopback, `localhost` and the
//! addresses asked for), the rustls server configuration, and a kubeconfig
//! that trusts the CA.

mod kubeconfig;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use kubeconfig::write_kubeconfig;

/// Why the certificates or the TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// openssl could not be run or failed.
    #[error("failed to run openssl {step}: {stderr}")]
    Openssl {
        /// Which step.
        step: &'static str,
        /// Its error output.
        stderr: String,
    },
    /// A file could not be read or written.
    #[error("failed to access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file did not parse.
    #[error("failed to read PEM from {path}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the key or certificate.
    #[error("failed to build the TLS configuration")]
    Rustls(#[source] rustls::Error),
}

/// The files of a generated CA and server certificate.
#[derive(Debug, Clone)]
pub struct Certificates {
    /// CA certificate (PEM), what clients trust.
    pub ca: PathBuf,
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Server key (PEM).
    pub key: PathBuf,
}

fn openssl(step: &'static str, args: &[&str]) -> Result<(), TlsError> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| TlsError::Openssl {
            step,
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(TlsError::Openssl {
            step,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or("")
}

/// Makes a CA and a server certificate signed by it in `dir`, valid for
/// 127.0.0.1, ::1, localhost and every entry of `hosts` (IPs or DNS names).
pub fn generate(dir: &Path, hosts: &[String]) -> Result<Certificates, TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let f = |n: &str| dir.join(n);
    let (ca, ca_key, cert, key, csr, ext) = (
        f("ca.crt"),
        f("ca.key"),
        f("apiserver.crt"),
        f("apiserver.key"),
        f("apiserver.csr"),
        f("apiserver.ext"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509", "-days", "3650", "-subj", "/CN=kubemu-ca"];
    args.extend(ec);
    args.extend(["-keyout", path_str(&ca_key), "-out", path_str(&ca)]);
    openssl("req (CA)", &args)?;
    let mut args = vec!["req", "-subj", "/CN=kube-apiserver"];
    args.extend(ec);
    args.extend(["-keyout", path_str(&key), "-out", path_str(&csr)]);
    openssl("req (server)", &args)?;
    let mut sans = vec![
        "IP:127.0.0.1".to_string(),
        "IP:::1".into(),
        "DNS:localhost".into(),
        "DNS:kubernetes.default.svc".into(),
    ];
    for h in hosts {
        sans.push(if h.parse::<std::net::IpAddr>().is_ok() {
            format!("IP:{h}")
        } else {
            format!("DNS:{h}")
        });
    }
    let text = format!(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName={}\n",
        sans.join(",")
    );
    std::fs::write(&ext, text).map_err(io(&ext))?;
    openssl(
        "x509 (sign)",
        &[
            "x509",
            "-req",
            "-days",
            "3650",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&ca),
            "-CAkey",
            path_str(&ca_key),
            "-CAcreateserial",
            "-extfile",
            path_str(&ext),
            "-out",
            path_str(&cert),
        ],
    )?;
    Ok(Certificates { ca, cert, key })
}

/// The rustls server configuration (HTTP/1.1 only) for `certs`.
pub fn server_config(certs: &Certificates) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_file_iter(&certs.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            path: certs.cert.clone(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_file(&certs.key).map_err(|source| TlsError::Pem {
        path: certs.key.clone(),
        source,
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Rustls)?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
