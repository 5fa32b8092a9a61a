//! The UAPI/netlink adapter: the few operations the agent needs, over both
//! `WGApi` flavours (`Kernel` speaks generic netlink, `Userspace` the
//! wireguard-go socket under `/var/run/wireguard`), always run on a thread
//! inside the agent namespace.

use defguard_wireguard_rs::error::WireguardInterfaceError;
use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::{Kernel, Userspace, WGApi};

use super::super::netns;
use super::api::{KernelOps, WgOps};
use super::{Backend, Wireguard, WireguardError};

impl Wireguard {
    pub(super) async fn read_host(&self) -> Result<Host, WireguardError> {
        self.call("read the interface", |api| api.read()).await
    }

    /// Runs `f` against the right `WGApi` on a thread inside the agent namespace (the kernel
    /// API speaks generic netlink, bound to the caller's namespace).
    pub(super) async fn call<R: Send + 'static>(
        &self,
        action: &'static str,
        f: impl FnOnce(&dyn WgOps) -> Result<R, WireguardInterfaceError> + Send + 'static,
    ) -> Result<R, WireguardError> {
        call_in(&self.ns, self.backend, &self.config.ifname, action, f).await
    }
}

/// Runs `f` against the `WGApi` of `backend` for `ifname`, on a thread inside `ns`.
pub(super) async fn call_in<R: Send + 'static>(
    ns: &netns::NetnsFd,
    backend: Backend,
    ifname: &str,
    action: &'static str,
    f: impl FnOnce(&dyn WgOps) -> Result<R, WireguardInterfaceError> + Send + 'static,
) -> Result<R, WireguardError> {
    let (ifname, name) = (ifname.to_string(), ifname.to_string());
    netns::run_in_async(ns, move || match backend {
        Backend::Kernel => f(&KernelOps(WGApi::<Kernel>::new(ifname)?)),
        Backend::Userspace => f(&WGApi::<Userspace>::new(ifname)?),
    })
    .await?
    .map_err(api_err(action, &name))
}

fn api_err(
    action: &'static str,
    ifname: &str,
) -> impl FnOnce(WireguardInterfaceError) -> WireguardError + use<> {
    let ifname = ifname.to_string();
    move |e| WireguardError::Api {
        action,
        ifname,
        reason: e.to_string(),
    }
}
