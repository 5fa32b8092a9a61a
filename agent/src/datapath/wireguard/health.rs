//! Read-back of the WireGuard interface for the agent's repairs: the daemon answers, the link
//! is there, up, with its address and MTU, and the peers are the mesh's.

use super::super::drift::{Drift, What};
use super::super::links;
use super::super::netns;
use super::{Backend, MeshPeer, Wireguard, WireguardError};

impl Wireguard {
    /// What differs from [`Wireguard::ensure`] and `peers` (empty when all is right).
    pub async fn observe(&self, peers: &[MeshPeer]) -> Result<Vec<Drift>, WireguardError> {
        let ifname = &self.config.ifname;
        let mut out = Vec::new();
        if self.backend == Backend::Userspace && !self.uapi_answers().await {
            // A dead daemon took its link and peers with it: one repair restarts all three.
            let detail = match self.daemon_pid() {
                Some(pid) => format!("wireguard-go (pid {pid}) does not answer"),
                None => "wireguard-go does not answer".to_string(),
            };
            out.push(Drift::new(What::WireguardDaemon, ifname, detail));
            return Ok(out);
        }
        let h = netns::handle_in(&self.ns).await?;
        match links::get(&h, ifname).await? {
            None => out.push(Drift::new(What::WireguardLink, ifname, "missing")),
            Some(link) => {
                let mut wrong = Vec::new();
                if !link.up {
                    wrong.push("down".to_string());
                }
                if link.mtu != self.config.mtu {
                    wrong.push(format!("MTU {}", link.mtu));
                }
                if links::ipv4_addresses(&h, link.index).await? != [self.config.address] {
                    wrong.push(format!("address {} missing", self.config.address));
                }
                if !wrong.is_empty() {
                    out.push(Drift::new(What::WireguardLink, ifname, wrong.join(", ")));
                }
            }
        }
        let have = self.read_peers().await?;
        let missing: Vec<&MeshPeer> = peers
            .iter()
            .filter(|p| {
                let want: Vec<String> = if p.standby {
                    Vec::new()
                } else {
                    vec![format!("{}/32", p.vtep)]
                };
                !have
                    .iter()
                    .any(|h| h.public_key == p.public_key && h.allowed_ips == want)
            })
            .collect();
        let extra = have
            .iter()
            .filter(|h| !peers.iter().any(|p| p.public_key == h.public_key))
            .count();
        if !missing.is_empty() || extra > 0 {
            let detail = format!("{} missing or changed, {extra} extra", missing.len());
            out.push(Drift::new(What::Peers, ifname, detail));
        }
        Ok(out)
    }
}
