//! The local-directory backend (sandbox and tests). Layout, all written
//! atomically (temp file + rename):
//!
//! ```text
//! projects/<name>.yaml           Project manifests (status.networkId set)
//! networks/<name>.yaml           PrivateNetwork manifests (status id + vni set)
//! nodes/<node>.json              published by each agent: name, key, endpoint
//! mesh.json                      [NodeInfo] with VTEPs, written by the controller role
//! endpoints/<node>/<cid>-<if>.yaml  PrivateEndpoint manifests, written by agents
//! claims/<network>/<ip>          address claims (owner written to a temp file, then
//!                                hard-linked into place: the CAS, never a torn claim)
//! ```
//!
//! Changes are picked up by polling a cheap fingerprint (names, sizes,
//! mtimes) every 50 ms: no restart, sub-second convergence, no inotify
//! edge cases with rename-based writers.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::{AddressClaim, Source, SourceError};
use privnet_api::readers::{endpoint_info, endpoint_spec, network_info};
use privnet_api::{PrivateEndpoint, PrivateNetwork, Project};
use privnet_core::view::{ClusterView, EndpointInfo, NodeInfo};

const POLL: Duration = Duration::from_millis(50);

/// A directory of manifests.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
    node: String,
}

impl LocalDir {
    /// Backend rooted at `root`, publishing as node `node`.
    pub fn new(root: impl Into<PathBuf>, node: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            node: node.into(),
        }
    }

    /// Root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn fingerprint(&self) -> u64 {
        use std::hash::{DefaultHasher, Hasher};
        let mut h = DefaultHasher::new();
        for sub in ["projects", "networks", "nodes", "endpoints", ""] {
            hash_dir(&self.root.join(sub), &mut h, sub == "endpoints");
        }
        h.finish().max(1)
    }

    fn read_view(&self) -> Result<ClusterView, SourceError> {
        let mut view = ClusterView::default();
        if let Some(text) = read_opt(&self.root.join("mesh.json"))? {
            view.nodes =
                serde_json::from_str(&text).map_err(|e| decode(&self.root.join("mesh.json"), e))?;
        }
        // mesh.json gives the VTEPs (the controller role's); the keys are
        // what each agent publishes now, so a key rotation needs no new mesh.
        for n in &mut view.nodes {
            let path = self.root.join("nodes").join(format!("{}.json", n.name));
            let Some(text) = read_opt(&path)? else {
                continue;
            };
            let published: NodeInfo = serde_json::from_str(&text).map_err(|e| decode(&path, e))?;
            n.public_key = published.public_key;
            n.next_public_key = published.next_public_key;
            n.accepted_keys = published.accepted_keys;
        }
        for (path, text) in read_all(&self.root.join("networks"))? {
            let pn: PrivateNetwork = serde_yaml::from_str(&text).map_err(|e| decode(&path, e))?;
            if let Some(info) = network_info(&pn) {
                view.networks.push(info);
            }
        }
        for (path, text) in read_all(&self.root.join("projects"))? {
            let p: Project = serde_yaml::from_str(&text).map_err(|e| decode(&path, e))?;
            if let Some(id) = p.status.as_ref().and_then(|s| s.network_id.clone()) {
                view.namespace_networks
                    .extend(p.spec.namespaces.iter().map(|ns| (ns.clone(), id.clone())));
            }
        }
        let ep_root = self.root.join("endpoints");
        for node_dir in list(&ep_root)? {
            for (path, text) in read_all(&node_dir)? {
                let ep: PrivateEndpoint =
                    serde_yaml::from_str(&text).map_err(|e| decode(&path, e))?;
                if let Some(info) = endpoint_info(&ep.spec) {
                    view.endpoints.push(info);
                }
            }
        }
        view.networks.sort_by(|a, b| a.id.cmp(&b.id));
        view.endpoints.sort_by(|a, b| {
            (&a.node, &a.container_id, &a.interface).cmp(&(&b.node, &b.container_id, &b.interface))
        });
        Ok(view)
    }

    fn endpoint_path(&self, ep: &EndpointInfo) -> PathBuf {
        self.root
            .join("endpoints")
            .join(&self.node)
            .join(format!("{}-{}.yaml", ep.container_id, ep.interface))
    }
}

impl Source for LocalDir {
    async fn next_view(&self, since: u64) -> Result<(u64, ClusterView), SourceError> {
        loop {
            let rev = self.fingerprint();
            if rev != since {
                let view = self.read_view()?;
                // A writer may have raced the read: only report a revision
                // that still holds after reading.
                if self.fingerprint() == rev {
                    return Ok((rev, view));
                }
                continue;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn publish_node(&self, node: &NodeInfo) -> Result<(), SourceError> {
        let text = serde_json::to_string_pretty(node).expect("node info serializes");
        write_atomic(
            &self.root.join("nodes").join(format!("{}.json", node.name)),
            &text,
        )
    }

    async fn publish_endpoint(&self, ep: &EndpointInfo) -> Result<(), SourceError> {
        let name = format!(
            "{}-{}-{}",
            ep.application_id, ep.process_type, ep.container_number
        );
        let mut obj = PrivateEndpoint::new(&name, endpoint_spec(ep));
        obj.metadata.namespace = Some("default".into());
        let text = serde_yaml::to_string(&obj).expect("endpoint serializes");
        write_atomic(&self.endpoint_path(ep), &text)
    }

    async fn claim_address(
        &self,
        network_id: &str,
        ip: std::net::Ipv4Addr,
        owner: &str,
    ) -> Result<bool, SourceError> {
        let dir = self.root.join("claims").join(network_id);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let path = dir.join(ip.to_string());
        // The owner is written before the claim exists: `link` creates the
        // claim whole or not at all (create + write could be cut in between
        // by a crash, leaving an empty claim nobody holds).
        let tmp = dir.join(format!(".{ip}.{}.tmp", owner.replace('/', "+")));
        std::fs::write(&tmp, owner).map_err(|e| io(&tmp, e))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Written by a racing claimer a moment ago, or ours already.
                let holder = read_opt(&path)?.unwrap_or_default();
                Ok(holder == owner)
            }
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn node_claims(&self, node: &str) -> Result<Vec<AddressClaim>, SourceError> {
        let mut out = Vec::new();
        for net in list(&self.root.join("claims"))? {
            let network_id = net.file_name().unwrap().to_string_lossy().into_owned();
            for path in list(&net)? {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let Ok(ip) = name.parse() else {
                    // A temp file of a claim cut short: this node's are removed.
                    if name.starts_with('.') && name.contains(&format!(".{node}+")) {
                        let _ = std::fs::remove_file(&path);
                    }
                    continue;
                };
                let owner = read_opt(&path)?.unwrap_or_default();
                if privnet_api::keys::parse_address_claim_owner(&owner)
                    .is_some_and(|(n, _, _)| n == node)
                {
                    out.push(AddressClaim {
                        network_id: network_id.clone(),
                        ip,
                        owner,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn release_address(
        &self,
        network_id: &str,
        ip: std::net::Ipv4Addr,
        owner: &str,
    ) -> Result<(), SourceError> {
        let path = self
            .root
            .join("claims")
            .join(network_id)
            .join(ip.to_string());
        if read_opt(&path)?.is_some_and(|holder| holder == owner) {
            std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        }
        Ok(())
    }

    async fn withdraw_endpoint(&self, ep: &EndpointInfo) -> Result<(), SourceError> {
        let path = self.endpoint_path(ep);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path, e)),
            _ => Ok(()),
        }
    }
}

/// Writes `text` to `path` atomically (`privnet_sys::file`).
pub fn write_atomic(path: &Path, text: &str) -> Result<(), SourceError> {
    Ok(privnet_sys::file::write_atomic(path, text)?)
}

fn hash_dir(dir: &Path, h: &mut impl std::hash::Hasher, recurse: bool) {
    use std::hash::Hash;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut items: Vec<_> = entries.flatten().collect();
    items.sort_by_key(|e| e.file_name());
    for e in items {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            if recurse {
                hash_dir(&e.path(), h, false);
            }
            continue;
        }
        e.file_name().hash(h);
        meta.len().hash(h);
        meta.modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .hash(h);
    }
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut v: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(dir, e)),
    }
}

fn read_all(dir: &Path) -> Result<Vec<(PathBuf, String)>, SourceError> {
    let mut out = Vec::new();
    for path in list(dir)? {
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".json")) {
            continue;
        }
        if let Some(text) = read_opt(&path)? {
            out.push((path, text));
        }
    }
    Ok(out)
}

fn read_opt(path: &Path) -> Result<Option<String>, SourceError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, e)),
    }
}

fn io(path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn decode(path: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Decode {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(n: u32) -> EndpointInfo {
        EndpointInfo {
            network_id: "pn-a".into(),
            application_id: "app".into(),
            process_type: "web".into(),
            container_number: n,
            ip: format!("10.240.0.{}", n + 1).parse().unwrap(),
            mac: "02:00:00:00:00:01".into(),
            node: "n1".into(),
            container_id: format!("c{n}"),
            interface: "eth1".into(),
        }
    }

    #[tokio::test]
    async fn endpoints_roundtrip_and_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let src = LocalDir::new(dir.path(), "n1");
        let (rev0, view) = src.next_view(0).await.unwrap();
        assert!(view.endpoints.is_empty());
        src.publish_endpoint(&ep(1)).await.unwrap();
        let (rev1, view) = tokio::time::timeout(Duration::from_secs(2), src.next_view(rev0))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(rev0, rev1);
        assert_eq!(view.endpoints, vec![ep(1)]);
        src.withdraw_endpoint(&ep(1)).await.unwrap();
        src.withdraw_endpoint(&ep(1)).await.unwrap();
        let (_, view) = tokio::time::timeout(Duration::from_secs(2), src.next_view(rev1))
            .await
            .unwrap()
            .unwrap();
        assert!(view.endpoints.is_empty());
    }

    #[tokio::test]
    async fn address_claims_are_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalDir::new(dir.path(), "n1");
        let b = LocalDir::new(dir.path(), "n2");
        let ip = "10.240.0.2".parse().unwrap();
        assert!(a.claim_address("pn-a", ip, "n1/c1/eth1").await.unwrap());
        assert!(
            a.claim_address("pn-a", ip, "n1/c1/eth1").await.unwrap(),
            "idempotent for the holder"
        );
        assert!(!b.claim_address("pn-a", ip, "n2/c9/eth1").await.unwrap());
        assert!(
            b.claim_address("pn-b", ip, "n2/c9/eth1").await.unwrap(),
            "networks are independent"
        );
        b.release_address("pn-a", ip, "n2/c9/eth1").await.unwrap();
        assert!(
            !b.claim_address("pn-a", ip, "n2/c9/eth1").await.unwrap(),
            "only the holder releases"
        );
        a.release_address("pn-a", ip, "n1/c1/eth1").await.unwrap();
        assert!(b.claim_address("pn-a", ip, "n2/c9/eth1").await.unwrap());
        assert!(
            std::fs::read_dir(dir.path().join("claims/pn-a"))
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')),
            "no temp file left"
        );
    }

    #[tokio::test]
    async fn a_node_lists_its_own_claims_and_clears_its_cut_short_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalDir::new(dir.path(), "n1");
        let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
        assert!(
            a.claim_address("pn-a", ip("10.240.0.2"), "n1/c1/eth1")
                .await
                .unwrap()
        );
        assert!(
            a.claim_address("pn-b", ip("10.240.0.3"), "n1/c2/eth1")
                .await
                .unwrap()
        );
        assert!(
            a.claim_address("pn-a", ip("10.240.0.4"), "n2/c3/eth1")
                .await
                .unwrap()
        );
        let stray = dir.path().join("claims/pn-a/.10.240.0.5.n1+c4+eth1.tmp");
        std::fs::write(&stray, "n1/c4/eth1").unwrap();
        let mut mine = a.node_claims("n1").await.unwrap();
        mine.sort_by_key(|c| c.ip);
        let owners: Vec<&str> = mine.iter().map(|c| c.owner.as_str()).collect();
        assert_eq!(
            owners,
            ["n1/c1/eth1", "n1/c2/eth1"],
            "n2's claim is not n1's"
        );
        assert_eq!(mine[1].network_id, "pn-b");
        assert!(!stray.exists(), "n1's cut-short temp file removed");
    }

    #[tokio::test]
    async fn networks_without_status_are_not_usable() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "apiVersion: privnet.io/v1alpha1\nkind: PrivateNetwork\nmetadata: {name: a}\nspec: {project: p}\n";
        write_atomic(&dir.path().join("networks/a.yaml"), yaml).unwrap();
        let done = format!("{yaml}status: {{id: pn-a, vni: 4096}}\n");
        write_atomic(
            &dir.path().join("networks/b.yaml"),
            &done.replace("name: a", "name: b"),
        )
        .unwrap();
        let (_, view) = LocalDir::new(dir.path(), "n1").next_view(0).await.unwrap();
        assert_eq!(view.networks.len(), 1);
        assert_eq!(view.networks[0].subnet, "10.240.0.0/22".parse().unwrap());
        assert_eq!(view.networks[0].vni, 4096);
    }

    #[tokio::test]
    async fn a_broken_manifest_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(&dir.path().join("networks/x.yaml"), "spec: [").unwrap();
        let err = LocalDir::new(dir.path(), "n1")
            .next_view(0)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("networks/x.yaml"), "{err}");
    }
}
