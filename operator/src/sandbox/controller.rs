//! The controller's role in the sandbox (pure): projects → networks with a
//! complete status, published nodes → mesh with VTEPs, containers →
//! numbers. The real controller does the same against the API server.

use std::collections::{BTreeMap, BTreeSet};

use crate::agent::view::NodeInfo;
use crate::api::{
    DEFAULT_SUBNET, PrivateNetwork, PrivateNetworkSpec, PrivateNetworkStatus, Project,
    ProjectStatus,
};
use crate::core::ipam::gateway_of;
use crate::core::mesh::{Mesh, MeshNode};
use crate::core::naming::DEFAULT_DOMAIN;
use crate::core::vni::VniAllocator;

/// Errors of the controller role.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// VNI allocation failed.
    #[error(transparent)]
    Vni(#[from] crate::core::vni::VniError),
    /// Mesh computation failed.
    #[error(transparent)]
    Mesh(#[from] crate::core::mesh::MeshError),
    /// A subnet does not parse.
    #[error("project {project}: invalid subnet {subnet:?}")]
    Subnet {
        /// Project.
        project: String,
        /// Value.
        subnet: String,
    },
}

/// Default VNI range.
pub const VNI_RANGE: std::ops::RangeInclusive<u32> = 4096..=16_000_000;

/// Networks (one per project) with ids and VNIs stable across calls:
/// `existing` networks keep theirs. `new_id` makes fresh `pn-<uuid>` ids.
pub fn plan_networks(
    projects: &[Project],
    existing: &[PrivateNetwork],
    mut new_id: impl FnMut() -> String,
) -> Result<(Vec<Project>, Vec<PrivateNetwork>), ControllerError> {
    let by_project: BTreeMap<&str, &PrivateNetwork> = existing
        .iter()
        .map(|n| (n.spec.project.as_str(), n))
        .collect();
    let assigned = existing
        .iter()
        .filter_map(|n| Some((n.status.as_ref()?.id.clone()?, n.status.as_ref()?.vni?)));
    let mut vnis = VniAllocator::new(VNI_RANGE, assigned)?;
    let mut networks = Vec::new();
    let mut out_projects = Vec::new();
    for p in projects {
        let name = p.metadata.name.clone().unwrap_or_default();
        let subnet_text = p
            .spec
            .network
            .as_ref()
            .and_then(|n| n.subnet.clone())
            .unwrap_or_else(|| DEFAULT_SUBNET.to_string());
        let subnet: ipnet::Ipv4Net = subnet_text.parse().map_err(|_| ControllerError::Subnet {
            project: name.clone(),
            subnet: subnet_text.clone(),
        })?;
        let id = by_project
            .get(name.as_str())
            .and_then(|n| n.status.as_ref()?.id.clone())
            .unwrap_or_else(&mut new_id);
        let vni = vnis.assign(&id)?;
        let mtu = p.spec.network.as_ref().and_then(|n| n.mtu);
        let mut pn = PrivateNetwork::new(
            &name,
            PrivateNetworkSpec {
                project: name.clone(),
                subnet: subnet.to_string(),
                mtu,
            },
        );
        pn.status = Some(PrivateNetworkStatus {
            id: Some(id.clone()),
            vni: Some(vni),
            gateway: Some(gateway_of(subnet).to_string()),
            zone: Some(format!("{id}.{DEFAULT_DOMAIN}")),
            mtu,
            ..Default::default()
        });
        let mut project = p.clone();
        project.status = Some(ProjectStatus {
            network_id: Some(id),
            network_name: Some(name),
            ..Default::default()
        });
        networks.push(pn);
        out_projects.push(project);
    }
    Ok((out_projects, networks))
}

/// The mesh of the published nodes: each keeps its VTEP from `previous`,
/// new ones get the lowest free address of `cidr`.
pub fn plan_mesh(
    cidr: ipnet::Ipv4Net,
    published: &[NodeInfo],
    previous: &[NodeInfo],
) -> Result<Vec<NodeInfo>, ControllerError> {
    let mut mesh = Mesh::new(cidr)?;
    let names: BTreeSet<&str> = published.iter().map(|n| n.name.as_str()).collect();
    for p in previous.iter().filter(|p| names.contains(p.name.as_str())) {
        let Some(vtep) = p.vtep else { continue };
        let now = published
            .iter()
            .find(|n| n.name == p.name)
            .expect("filtered on names");
        mesh.upsert(MeshNode {
            name: p.name.clone(),
            public_key: now.public_key.clone(),
            endpoint: now.endpoint,
            vtep,
        })?;
    }
    for n in published {
        let vtep = mesh.allocate_vtep(&n.name)?;
        mesh.upsert(MeshNode {
            name: n.name.clone(),
            public_key: n.public_key.clone(),
            endpoint: n.endpoint,
            vtep,
        })?;
    }
    Ok(mesh
        .nodes()
        .map(|n| NodeInfo {
            name: n.name.clone(),
            public_key: n.public_key.clone(),
            endpoint: n.endpoint,
            vtep: Some(n.vtep),
        })
        .collect())
}

/// Lowest free container number given the used ones.
pub fn lowest_free(used: &BTreeSet<u32>) -> u32 {
    (1..).find(|n| !used.contains(n)).expect("u32 space")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::scenario::Scenario;

    #[test]
    fn networks_are_stable_and_vnis_unique() {
        let s = Scenario::default_scenario();
        let mut n = 0;
        let mut ids = || {
            n += 1;
            format!("pn-{n}")
        };
        let (projects, nets) = plan_networks(&s.projects, &[], &mut ids).unwrap();
        assert_eq!(nets.len(), 2);
        let vnis: BTreeSet<_> = nets
            .iter()
            .map(|n| n.status.as_ref().unwrap().vni.unwrap())
            .collect();
        assert_eq!(vnis.len(), 2);
        assert_eq!(
            projects[0].status.as_ref().unwrap().network_id.as_deref(),
            Some("pn-1")
        );
        assert_eq!(
            nets[0].status.as_ref().unwrap().gateway.as_deref(),
            Some("10.240.0.1")
        );
        let (_, again) = plan_networks(&s.projects, &nets, &mut ids).unwrap();
        assert_eq!(again, nets, "a second pass changes nothing");
    }

    #[test]
    fn mesh_keeps_vteps_of_known_nodes() {
        let node = |name: &str, key: &str| NodeInfo {
            name: name.into(),
            public_key: key.into(),
            endpoint: "192.168.1.1:51820".parse().unwrap(),
            vtep: None,
        };
        let k1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let k2 = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let cidr = "100.64.0.0/16".parse().unwrap();
        let first = plan_mesh(cidr, &[node("n2", k2)], &[]).unwrap();
        let both = plan_mesh(cidr, &[node("n1", k1), node("n2", k2)], &first).unwrap();
        assert_eq!(
            both.iter().find(|n| n.name == "n2").unwrap().vtep,
            first[0].vtep
        );
        assert_ne!(both[0].vtep, both[1].vtep);
        assert_eq!(lowest_free(&BTreeSet::from([1, 2, 4])), 3);
    }
}
