//! GC: the agent releases every attachment not in `cni.dev/valid-attachments`.

use crate::error::CniError;
use crate::plugin::Invocation;
use crate::spec::ValidAttachment;
use privnet_core::rpc::{AttachmentKey, Request};

/// The GC request for a config (pure). With `interfaceName` set (chained
/// after a primary plugin) the runtime lists the primary's interface name;
/// privnet's attachments are keyed by its own, so that one is kept.
pub fn gc_request(
    network: Option<&str>,
    interface_name: Option<&str>,
    valid: &[ValidAttachment],
) -> Request {
    Request::Gc {
        network_id: network.map(str::to_string),
        valid: valid
            .iter()
            .map(|v| AttachmentKey {
                container_id: v.container_id.clone(),
                ifname: interface_name.unwrap_or(&v.ifname).to_string(),
            })
            .collect(),
    }
}

/// Sends the GC request; an unreachable agent is 11 (retry later).
pub async fn gc(inv: &Invocation) -> Result<(), CniError> {
    let valid = inv.conf.valid_attachments.as_deref().unwrap_or_default();
    let client = inv.client();
    client
        .call(&gc_request(
            inv.conf.network.as_deref(),
            inv.conf.interface_name.as_deref(),
            valid,
        ))
        .await
        .map(|_| ())
        .map_err(|e| e.into_cni(client.socket()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_network_and_valid_keys() {
        let valid = [ValidAttachment {
            container_id: "c1".into(),
            ifname: "eth1".into(),
        }];
        let Request::Gc {
            network_id,
            valid: keys,
        } = gc_request(Some("pn-1"), None, &valid)
        else {
            panic!("not gc")
        };
        assert_eq!(network_id.as_deref(), Some("pn-1"));
        assert_eq!(
            keys,
            [AttachmentKey {
                container_id: "c1".into(),
                ifname: "eth1".into()
            }]
        );
        // Chained: the runtime lists the primary's eth0; privnet keeps its eth1.
        let primary = [ValidAttachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }];
        let Request::Gc { valid: keys, .. } = gc_request(None, Some("eth1"), &primary) else {
            panic!("not gc")
        };
        assert_eq!(
            keys,
            valid.map(|v| AttachmentKey {
                container_id: v.container_id,
                ifname: v.ifname
            })
        );
    }
}
