//! `PrivateEndpoint`s → one zone ConfigMap per network
//! (`privnet-zone-<pn-id>`, key `db.<zone>`, CoreDNS `file` plugin format).
//! The SOA serial is read back from the ConfigMap and bumped only when the
//! content (serial excluded) changes, so restarts never bump it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::context::{Context, Error};
use privnet_api::keys::{
    FIELD_MANAGER, NETWORK_LABEL, ZONE_DIGEST_ANNOTATION, ZONE_SERIAL_ANNOTATION,
    zone_configmap_name, zone_file_key,
};
use privnet_api::{PrivateEndpoint, PrivateNetwork, PrivateNetworkStatus};
use privnet_core::naming::PrivateName;
use privnet_core::zone::{Zone, ZoneConfig, ZoneEndpoint, next_serial};

/// A rendered zone ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedZone {
    /// Zone origin without the trailing dot.
    pub origin: String,
    /// SOA serial.
    pub serial: u32,
    /// Content digest (serial excluded).
    pub digest: String,
    /// The zone file.
    pub text: String,
    /// Endpoints left out (invalid name or address), with why.
    pub rejected: Vec<String>,
}

/// Renders the zone of network `network_id` over `subnet` from `endpoints`
/// (all of the cluster; others are ignored), given the previously
/// published serial and digest.
pub fn render_zone(
    network_id: &str,
    subnet: ipnet::Ipv4Net,
    domain: &str,
    endpoints: &[PrivateEndpoint],
    previous: Option<(u32, &str)>,
) -> Result<RenderedZone, Error> {
    let zerr = |source| Error::Zone {
        network: network_id.to_string(),
        source,
    };
    let config = |initial_serial| ZoneConfig {
        domain: domain.to_string(),
        initial_serial,
        ..Default::default()
    };
    let mut scratch = Zone::new(network_id, subnet, config(0)).map_err(zerr)?;
    let mut rejected = Vec::new();
    for ep in endpoints.iter().filter(|e| e.spec.network_id == network_id) {
        let s = &ep.spec;
        let accepted = PrivateName::new(
            s.container_number,
            &s.process_type,
            &s.application_id,
            network_id,
            domain,
        )
        .map_err(|e| e.to_string())
        .and_then(|name| {
            Ok(ZoneEndpoint {
                name,
                address: s.ip.parse::<Ipv4Addr>().map_err(|e| e.to_string())?,
            })
        })
        .and_then(|zep| scratch.upsert(&zep).map_err(|e| e.to_string()));
        if let Err(why) = accepted {
            rejected.push(format!(
                "{}/{}: {why}",
                ep.namespace().unwrap_or_default(),
                ep.name_any()
            ));
        }
    }
    let accepted: Vec<ZoneEndpoint> = scratch.endpoints().collect();
    let mut canonical = Zone::new(network_id, subnet, config(0)).map_err(zerr)?;
    canonical.sync(&accepted).map_err(zerr)?;
    let digest = format!("{:016x}", fnv1a(canonical.render().as_bytes()));
    let serial = match previous {
        Some((serial, old)) if old == digest => serial,
        Some((serial, _)) => next_serial(serial),
        None => 1,
    };
    // `sync` bumps once when it adds anything: start one below the target.
    let initial = if accepted.is_empty() {
        serial
    } else {
        serial.wrapping_sub(1)
    };
    let mut zone = Zone::new(network_id, subnet, config(initial)).map_err(zerr)?;
    zone.sync(&accepted).map_err(zerr)?;
    debug_assert_eq!(zone.serial(), serial);
    Ok(RenderedZone {
        origin: zone.origin().trim_end_matches('.').to_string(),
        serial,
        digest,
        text: zone.render(),
        rejected,
    })
}

/// The ConfigMap holding `zone`, owned by `network` (garbage-collected with it).
pub fn zone_configmap(
    network: &PrivateNetwork,
    network_id: &str,
    namespace: &str,
    zone: &RenderedZone,
) -> Result<Value, Error> {
    let owner = network
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingField(format!("network {}", network.name_any()), "uid"))?;
    let data: BTreeMap<String, String> =
        BTreeMap::from([(zone_file_key(&zone.origin), zone.text.clone())]);
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": zone_configmap_name(network_id),
            "namespace": namespace,
            "labels": { NETWORK_LABEL: network_id },
            "annotations": { ZONE_SERIAL_ANNOTATION: zone.serial.to_string(), ZONE_DIGEST_ANNOTATION: zone.digest },
            "ownerReferences": [owner],
        },
        "data": data,
    }))
}

/// Reads the published serial/digest, renders, and applies when changed.
pub async fn apply_zone(
    ctx: &Context,
    network: &PrivateNetwork,
    status: &PrivateNetworkStatus,
    endpoints: &[PrivateEndpoint],
) -> Result<(), Error> {
    let (Some(id), Ok(subnet)) = (
        status.id.as_deref(),
        network.spec.subnet.parse::<ipnet::Ipv4Net>(),
    ) else {
        return Ok(());
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let name = zone_configmap_name(id);
    let current = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get zone configmap {name}")))?;
    let annotation = |cm: &ConfigMap, key: &str| cm.annotations().get(key).cloned();
    let previous = current.as_ref().and_then(|cm| {
        Some((
            annotation(cm, ZONE_SERIAL_ANNOTATION)?
                .parse::<u32>()
                .ok()?,
            annotation(cm, ZONE_DIGEST_ANNOTATION)?,
        ))
    });
    let zone = render_zone(
        id,
        subnet,
        &ctx.config.domain,
        endpoints,
        previous.as_ref().map(|(s, d)| (*s, d.as_str())),
    )?;
    for why in &zone.rejected {
        tracing::warn!(network = id, "endpoint left out of the zone: {why}");
    }
    if previous
        .as_ref()
        .is_some_and(|(s, d)| *s == zone.serial && *d == zone.digest)
    {
        return Ok(());
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(zone_configmap(network, id, &ctx.config.namespace, &zone)?),
    )
    .await
    .map_err(Error::kube(format!("apply zone configmap {name}")))?;
    Ok(())
}

/// FNV-1a, 64 bit: a digest stable across builds and Rust versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_api::PrivateEndpointSpec;

    fn ep(n: u32, ip: &str) -> PrivateEndpoint {
        PrivateEndpoint::new(
            &format!("e{n}"),
            PrivateEndpointSpec {
                network_id: "pn-1".into(),
                application_id: "app".into(),
                process_type: "web".into(),
                container_number: n,
                hostname: format!("{n}.web.app.pn-1.private-network.internal"),
                ip: ip.into(),
                mac: "02:00:00:00:00:01".into(),
                node: "n1".into(),
                container_id: format!("c{n}"),
                interface: "eth1".into(),
            },
        )
    }

    #[test]
    fn serial_bumps_only_on_change() {
        let subnet = "10.240.0.0/22".parse().unwrap();
        let d = "private-network.internal";
        let one = render_zone("pn-1", subnet, d, &[ep(1, "10.240.0.2")], None).unwrap();
        assert_eq!(one.serial, 1);
        assert!(one.text.contains("1.web.app"), "{}", one.text);
        let same = render_zone(
            "pn-1",
            subnet,
            d,
            &[ep(1, "10.240.0.2")],
            Some((one.serial, &one.digest)),
        )
        .unwrap();
        assert_eq!(same, one);
        let two = render_zone(
            "pn-1",
            subnet,
            d,
            &[ep(1, "10.240.0.2"), ep(2, "10.240.0.3")],
            Some((one.serial, &one.digest)),
        )
        .unwrap();
        assert_eq!(two.serial, 2);
        let empty = render_zone("pn-1", subnet, d, &[], Some((two.serial, &two.digest))).unwrap();
        assert_eq!(empty.serial, 3);
        assert!(empty.text.contains(" 3 "), "{}", empty.text);
        let bad = render_zone("pn-1", subnet, d, &[ep(3, "192.168.0.9")], None).unwrap();
        assert_eq!(bad.rejected.len(), 1);
    }
}
