//! Mutating admission webhook: pods of a project's namespaces labelled
//! `privnet.io/application` (+ optional `privnet.io/process-type`) get a container
//! number (claimed with an API-side compare-and-swap), the three
//! environment variables and the annotations the agent reads.

pub mod admit;
pub mod cert;
pub mod mutate;
pub mod networks;
pub mod numbering;
pub mod pod_dns;
pub mod server;

pub use admit::{Admitter, admit};
pub use cert::ReloadingCert;
pub use server::{WebhookServerError, serve_tls, tls_config, tls_config_from_pem};
