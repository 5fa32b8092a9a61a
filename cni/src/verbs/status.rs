//! STATUS: 50 while the agent is unreachable or not ready.

use crate::error::CniError;
use crate::plugin::Invocation;
use privnet_core::rpc::{Request, Response};

/// Asks the agent once (bounded by `agentTimeoutMs`).
pub async fn status(inv: &Invocation) -> Result<(), CniError> {
    match inv.client().call(&Request::Status).await {
        Ok(Response::Ready) => Ok(()),
        Ok(other) => Err(CniError::NotAvailable {
            reason: format!("unexpected agent answer {other:?}"),
        }),
        Err(e) => Err(CniError::NotAvailable {
            reason: e.to_string(),
        }),
    }
}
