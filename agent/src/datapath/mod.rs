//! Kernel datapath of the agent: namespaces, bridge, VXLAN, FDB, guard rules, WireGuard.
//!
//! Facade for the rest of the agent. Every operation is idempotent and adopts what already
//! exists in the kernel (restart safety); pure logic (rule text, diffs) is separate from I/O.
//!
//! - [`netns`]: named namespaces, running code/commands inside one, rtnetlink handles there.
//! - [`network`]: one private network's namespace, bridge, VXLAN port and gateway.
//! - [`fdb`]: the VXLAN device's static forwarding database; [`arp_answers`]: the bridge's
//!   ARP answers for remote endpoints.
//! - [`guard`]: nftables guard rules; [`nft_elements`]: the port sets changed over nfnetlink;
//!   [`guard_drift`]: the rules as rendered against the kernel's, and what puts back the difference.
//! - [`neighbours`]: clashes with the primary CNI's VXLAN and ports, found before start.
//! - [`wireguard`]: the node's WireGuard interface and peers.
//! - [`seam`]: the [`NodeDatapath`] trait the agent calls; [`kernel`] implements it on the
//!   modules above, [`memory`] is the in-memory fake for unit tests.
//! - [`drift`], [`observe`]: what the read-back found wrong, and the read-back of a network;
//!   [`events`], [`nft_events`]: kernel and nftables events that bring the read-back forward.
//! - [`snapshot`]: normalised kernel state, for "restart leaves the kernel identical" tests.

pub mod arp_answers;
pub mod drift;
pub mod events;
pub mod fdb;
pub mod guard;
pub mod guard_drift;
pub mod kernel;
pub mod links;
pub mod memory;
pub mod neighbours;
pub mod netns;
pub mod network;
pub mod nft_elements;
pub mod nft_events;
pub mod observe;
pub mod seam;
pub mod snapshot;
pub mod wireguard;

pub use drift::{Drift, What};
pub use fdb::FdbEntry;
pub use guard::GuardedPort;
pub use kernel::KernelDatapath;
pub use memory::MemoryDatapath;
pub use netns::NetnsFd;
pub use network::NetworkDatapath;
pub use seam::{DatapathError, MeshSpec, NodeDatapath, Step};
pub use snapshot::Snapshot;
pub use wireguard::{MeshPeer, Wireguard, WireguardConfig};
