//! The ADD drop guard: every side effect registers its undo; if ADD does not
//! reach [`Rollback::disarm`] (error or panic), dropping the guard undoes
//! everything in reverse order.

use std::path::PathBuf;

use crate::agent_client::AgentClient;
use crate::link::delete_link_by_name;
use crate::log::{LogLevel, Logger};
use crate::netns::Netns;
use privnet_core::rpc::{AttachmentKey, Request};

/// One thing to undo.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Give the address back to the agent.
    Release {
        /// Agent client.
        client: AgentClient,
        /// The reservation.
        key: AttachmentKey,
    },
    /// Delete a link we created (`ip -n <netns> link del <ifname>`).
    DeleteLink {
        /// Namespace holding it.
        netns: PathBuf,
        /// Link name.
        ifname: String,
    },
}

/// Pending undo steps of one ADD.
#[derive(Debug)]
pub struct Rollback {
    steps: Vec<Undo>,
    logger: Logger,
}

impl Rollback {
    /// An empty guard.
    pub fn new(logger: Logger) -> Self {
        Self {
            steps: Vec::new(),
            logger,
        }
    }

    /// Registers an undo step (run last-in first-out).
    pub fn push(&mut self, undo: Undo) {
        self.steps.push(undo);
    }

    /// ADD succeeded: keep everything.
    pub fn disarm(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if self.steps.is_empty() {
            return;
        }
        let steps = std::mem::take(&mut self.steps);
        let logger = self.logger.clone();
        // Drop cannot await and may run inside the plugin's runtime: undo on
        // a separate thread with its own runtime and wait for it.
        let undo = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            else {
                logger.log(LogLevel::Error, "rollback: failed to start a runtime");
                return;
            };
            runtime.block_on(async {
                for step in steps.into_iter().rev() {
                    if let Err(message) = run(&step).await {
                        logger.log(
                            LogLevel::Error,
                            &format!("rollback: failed to undo {step:?}: {message}"),
                        );
                    }
                }
            });
        });
        let _ = undo.join();
    }
}

async fn run(step: &Undo) -> Result<(), String> {
    match step {
        Undo::Release { client, key } => {
            match client.call_with_retry(&Request::Release(key.clone())).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
        Undo::DeleteLink { netns, ifname } => {
            let Some(ns) = Netns::open_if_present(netns).map_err(|e| e.to_string())? else {
                return Ok(());
            };
            delete_link_by_name(&ns.handle, ifname)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}
