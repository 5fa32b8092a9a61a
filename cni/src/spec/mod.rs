//! CNI specification types (network config, results, replies) and the
//! version conversion rules between 0.4.0, 1.0.0 and 1.1.0.

pub mod config;
pub mod reply;
pub mod result;
pub mod version;

pub use config::{NetConf, ValidAttachment};
pub use reply::{ErrorReply, VersionReply};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::SpecVersion;
