//! The webhook's certificate, reloaded when its files change. The chart
//! mounts it from a Secret; kubelet swaps the files in place when the
//! Secret is rotated (cert-manager, `helm upgrade`), so the server picks up
//! the new pair on its next check instead of needing a pod restart. A pair
//! that fails to load is logged and the current one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::server::WebhookServerError;

/// A certificate/key pair read from PEM files, swapped atomically on reload.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// The PEM bytes it was made from: a reload is due when they differ.
    pem: (Vec<u8>, Vec<u8>),
    key: Arc<CertifiedKey>,
}

fn read(path: &Path) -> Result<Vec<u8>, WebhookServerError> {
    std::fs::read(path).map_err(|source| WebhookServerError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn load(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
    pem: (Vec<u8>, Vec<u8>),
) -> Result<Loaded, WebhookServerError> {
    fn bad(p: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> WebhookServerError + '_ {
        move |source| WebhookServerError::Pem {
            path: p.display().to_string(),
            source,
        }
    }
    let chain = CertificateDer::pem_slice_iter(&pem.0)
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad(cert))?;
    let private = PrivateKeyDer::from_pem_slice(&pem.1).map_err(bad(key))?;
    let certified =
        CertifiedKey::from_der(chain, private, provider).map_err(WebhookServerError::Tls)?;
    Ok(Loaded {
        pem,
        key: Arc::new(certified),
    })
}

impl ReloadingCert {
    /// Loads the pair; fails when either file is unreadable or they do not match.
    pub fn load(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, WebhookServerError> {
        let loaded = load(&provider, cert, key, (read(cert)?, read(key)?))?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(loaded),
        })
    }

    /// The crypto provider the pair was loaded with.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.provider.clone()
    }

    /// Re-reads the files; swaps the pair when they changed. `Ok(true)` when
    /// a new pair is now served; on error the current one stays.
    pub fn reload_if_changed(&self) -> Result<bool, WebhookServerError> {
        let pem = (read(&self.cert)?, read(&self.key)?);
        if self.current.read().expect("not poisoned").pem == pem {
            return Ok(false);
        }
        let loaded = load(&self.provider, &self.cert, &self.key, pem)?;
        *self.current.write().expect("not poisoned") = loaded;
        Ok(true)
    }

    /// Checks every `period` until the process ends, logging each reload once.
    pub async fn watch(self: Arc<Self>, period: std::time::Duration) {
        loop {
            tokio::time::sleep(period).await;
            match self.reload_if_changed() {
                Ok(true) => {
                    tracing::info!(cert = %self.cert.display(), "webhook certificate reloaded")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "webhook certificate not reloaded; serving the previous one")
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("not poisoned").key.clone())
    }
}
