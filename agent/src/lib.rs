//! privnet's node agent: WireGuard mesh, per-network namespaces with bridge and
//! VXLAN, IPAM for the CNI plugin, private DNS and guard rules.
#![warn(missing_docs)]

pub mod book;
pub mod config;
pub mod datapath;
pub mod dns;
pub mod doctor;
pub mod heap;
pub mod local_network;
pub mod metrics;
pub mod node;
pub mod rpc_server;
pub mod source;
pub mod store;

/// An error and its sources, `outer: inner: …`, for logs and CNI messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_chain_lists_every_source() {
        let inner = std::io::Error::other("disk full");
        let outer = crate::store::StoreError::Io {
            path: "/x".into(),
            source: inner,
        };
        let text = super::error_chain(&outer);
        assert!(text.ends_with(": disk full"), "{text}");
        assert!(text.starts_with(&outer.to_string()), "{text}");
    }
}
