//! The CNI Result and its conversion to each supported version.
//!
//! Every struct keeps unknown keys in `extra` so a `prevResult` written by
//! another plugin survives a round trip unchanged (chained mode).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SpecVersion;
use crate::error::CniError;

/// Interface keys that only exist from 1.1.0 on.
const IFACE_1_1_KEYS: [&str; 3] = ["mtu", "socketPath", "pciID"];
/// Route keys that only exist from 1.1.0 on.
const ROUTE_1_1_KEYS: [&str; 5] = ["mtu", "advmss", "priority", "table", "scope"];

/// One interface of the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Netns path; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One IP configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length.
    pub address: IpNet,
    /// Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop (absent: on-link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Keys we do not model (including the 1.1.0 extras).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// DNS block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    /// Resolvers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The ADD result (also `prevResult`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    /// Interfaces.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// IP configurations.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// DNS.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
    /// Top-level keys we do not model (never `cniVersion`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CniResult {
    /// Decodes a result of any supported version (the 0.4.0 per-ip `version`
    /// and the top-level `cniVersion` are dropped: they are re-derived on
    /// output). Malformed input is 7 (it arrives as `prevResult`).
    pub fn from_value(value: Value) -> Result<CniResult, CniError> {
        let mut result: CniResult = serde_json::from_value(value)
            .map_err(|e| CniError::config("prevResult", e.to_string()))?;
        result.extra.remove("cniVersion");
        for ip in &mut result.ips {
            ip.extra.remove("version");
        }
        Ok(result)
    }

    /// The JSON a caller speaking `version` expects.
    pub fn to_value(&self, version: SpecVersion) -> Value {
        let mut value = serde_json::to_value(self).expect("a result always serializes");
        let obj = value.as_object_mut().expect("a result is an object");
        if version < SpecVersion::V1_1_0 {
            strip_keys(obj.get_mut("interfaces"), &IFACE_1_1_KEYS);
            strip_keys(obj.get_mut("routes"), &ROUTE_1_1_KEYS);
        }
        // 0.3.x and 0.4.0 carry the per-ip `version`.
        if version <= SpecVersion::V0_4_0
            && let Some(Value::Array(ips)) = obj.get_mut("ips")
        {
            for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                let v6 = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.contains(':'));
                ip.insert("version".into(), Value::from(if v6 { "6" } else { "4" }));
            }
        }
        obj.insert("cniVersion".into(), Value::from(version.as_str()));
        value
    }
}

fn strip_keys(list: Option<&mut Value>, keys: &[&str]) {
    if let Some(Value::Array(items)) = list {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for k in keys {
                item.remove(*k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1370),
                sandbox: Some("/var/run/netns/c".into()),
                extra: Map::new(),
            }],
            ips: vec![IpConfig {
                address: "10.240.0.2/22".parse().unwrap(),
                gateway: Some("10.240.0.1".parse().unwrap()),
                interface: Some(0),
                extra: Map::new(),
            }],
            routes: vec![Route {
                dst: "10.240.0.0/22".parse().unwrap(),
                gw: None,
                extra: Map::new(),
            }],
            dns: Dns {
                nameservers: vec!["10.240.0.1".into()],
                ..Dns::default()
            },
            extra: Map::new(),
        }
    }

    #[test]
    fn v1_1_keeps_mtu_and_has_no_ip_version() {
        let v = sample().to_value(SpecVersion::V1_1_0);
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["interfaces"][0]["mtu"], 1370);
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["ips"][0]["interface"], 0);
    }

    #[test]
    fn v1_0_drops_1_1_keys() {
        let mut r = sample();
        r.routes[0].extra.insert("mtu".into(), json!(1000));
        let v = r.to_value(SpecVersion::V1_0_0);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["interfaces"][0].get("mtu").is_none());
        assert!(v["routes"][0].get("mtu").is_none());
        assert_eq!(v["interfaces"][0]["sandbox"], "/var/run/netns/c");
    }

    #[test]
    fn v0_4_adds_ip_version() {
        let v = sample().to_value(SpecVersion::V0_4_0);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
    }

    #[test]
    fn v0_3_results_are_0_4_results() {
        // What most primary CNIs hand a chained plugin.
        let prev = json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "eth0", "sandbox": "/n"}],
            "ips": [{"version": "4", "address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 0}],
            "routes": [],
            "dns": {}
        });
        let r = CniResult::from_value(prev.clone()).unwrap();
        let mut out = r.to_value(SpecVersion::V0_3_1);
        assert_eq!(out["cniVersion"], "0.3.1");
        assert_eq!(out["ips"][0]["version"], "4");
        out.as_object_mut().unwrap().insert("dns".into(), json!({}));
        assert_eq!(out, prev);
    }

    #[test]
    fn prev_result_round_trips_unknown_keys() {
        let prev = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/n", "custom": 1}],
            "ips": [{"version": "4", "address": "10.0.0.5/24", "gateway": "10.0.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
            "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
            "topLevelExtra": true
        });
        let r = CniResult::from_value(prev.clone()).unwrap();
        assert_eq!(r.to_value(SpecVersion::V0_4_0), prev);
    }

    #[test]
    fn malformed_prev_result_is_invalid_config() {
        let err = CniResult::from_value(json!({"ips": [{"address": "nope"}]})).unwrap_err();
        assert_eq!(err.code(), 7);
        assert!(err.to_string().contains("prevResult"));
    }
}
