//! The controller's role in the sandbox (pure): projects → networks with a
//! complete status, published nodes → mesh with VTEPs, containers →
//! numbers. The real controller does the same against the API server.

use std::collections::BTreeMap;

use privnet_api::{
    DEFAULT_SUBNET, PrivateNetwork, PrivateNetworkSpec, PrivateNetworkStatus, Project,
    ProjectStatus,
};

use privnet_core::naming::DEFAULT_DOMAIN;
use privnet_core::vni::VniAllocator;

/// Errors of the controller role.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// VNI allocation failed.
    #[error(transparent)]
    Vni(#[from] privnet_core::vni::VniError),
    /// Mesh computation failed.
    #[error(transparent)]
    Mesh(#[from] privnet_core::mesh::MeshError),
    /// A subnet does not parse.
    #[error("project {project}: invalid subnet {subnet:?}")]
    Subnet {
        /// Project.
        project: String,
        /// Value.
        subnet: String,
    },
}

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
    let mut vnis = VniAllocator::new(privnet_core::vni::DEFAULT_VNI_RANGE, assigned)?;
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
        let mut status = PrivateNetworkStatus::default();
        status.set_identity(&id, vni, &pn.spec, DEFAULT_DOMAIN);
        pn.status = Some(status);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use std::collections::BTreeSet;

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
}
