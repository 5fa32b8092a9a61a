//! Building the ADD result (pure): standalone or appended to `prevResult`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Map;

use crate::spec::{CniResult, Dns, Interface, IpConfig, Route};
use privnet_core::rpc::Attachment;

/// Our result: `prev` kept entirely (chained mode) plus the container
/// interface, its address (pointing at that interface) and the subnet route
/// (the kernel's connected route, no gateway — never a default route). DNS
/// comes from the attachment unless `prev` already has DNS: the primary
/// network's resolver configuration is not ours to replace.
pub fn build_add_result(
    prev: Option<CniResult>,
    att: &Attachment,
    ifname: &str,
    netns: &str,
) -> CniResult {
    let mut result = prev.unwrap_or_default();
    result.interfaces.push(Interface {
        name: ifname.to_string(),
        mac: Some(att.mac.to_ascii_lowercase()),
        mtu: Some(att.mtu),
        sandbox: Some(netns.to_string()),
        extra: Map::new(),
    });
    let index = result.interfaces.len() - 1;
    result.ips.push(IpConfig {
        address: IpNet::V4(att.address),
        gateway: Some(IpAddr::V4(att.gateway)),
        interface: Some(index),
        extra: Map::new(),
    });
    result.routes.push(Route {
        dst: IpNet::V4(att.address.trunc()),
        gw: None,
        extra: Map::new(),
    });
    if result.dns.is_empty() {
        result.dns = Dns {
            nameservers: att.dns.nameservers.clone(),
            search: att.dns.search.clone(),
            ..Dns::default()
        };
    }
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::SpecVersion;
    use privnet_core::rpc::{AttachmentKey, Dns as RpcDns};

    pub(crate) fn attachment() -> Attachment {
        Attachment {
            key: AttachmentKey {
                container_id: "c1".into(),
                ifname: "eth1".into(),
            },
            network_id: "pn-1".into(),
            address: "10.240.0.7/22".parse().unwrap(),
            gateway: "10.240.0.1".parse().unwrap(),
            mac: "02:AA:00:00:00:07".into(),
            mtu: 1370,
            network_netns: "/run/netns/pn".into(),
            bridge: "br0".into(),
            host_ifname: "pv1234".into(),
            hostname: "1.web.app.pn-1.private-network.internal".into(),
            dns: RpcDns {
                nameservers: vec!["10.240.0.1".into()],
                search: vec!["pn-1.private-network.internal".into()],
            },
        }
    }

    #[test]
    fn standalone_result() {
        let r = build_add_result(None, &attachment(), "eth1", "/run/netns/c1");
        let v = r.to_value(SpecVersion::V1_1_0);
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth1", "mac": "02:aa:00:00:00:07", "mtu": 1370, "sandbox": "/run/netns/c1"}],
                "ips": [{"address": "10.240.0.7/22", "gateway": "10.240.0.1", "interface": 0}],
                "routes": [{"dst": "10.240.0.0/22"}],
                "dns": {"nameservers": ["10.240.0.1"], "search": ["pn-1.private-network.internal"]}
            })
        );
    }

    #[test]
    fn chained_result_keeps_prev_and_appends() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"}, {"name": "eth0", "sandbox": "/run/netns/c1"}],
            "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
            "dns": {"nameservers": ["10.96.0.10"]}
        });
        let prev_typed = CniResult::from_value(prev.clone()).unwrap();
        let r = build_add_result(Some(prev_typed), &attachment(), "eth1", "/run/netns/c1");
        let v = r.to_value(SpecVersion::V1_0_0);
        assert_eq!(v["interfaces"][0], prev["interfaces"][0]);
        assert_eq!(v["interfaces"][1], prev["interfaces"][1]);
        assert_eq!(v["interfaces"][2]["name"], "eth1");
        assert_eq!(v["ips"][0], prev["ips"][0]);
        assert_eq!(v["ips"][1]["interface"], 2);
        assert_eq!(v["routes"][0], prev["routes"][0]);
        assert_eq!(v["routes"][1], json!({"dst": "10.240.0.0/22"}));
        assert_eq!(v["dns"], prev["dns"], "primary DNS untouched");
        assert!(
            v["interfaces"][2].get("mtu").is_none(),
            "1.0.0 has no interface mtu"
        );
    }

    #[test]
    fn never_adds_a_default_route() {
        let r = build_add_result(None, &attachment(), "eth1", "/n");
        assert!(
            r.routes
                .iter()
                .all(|rt| rt.dst.prefix_len() != 0 && rt.gw.is_none())
        );
    }
}
