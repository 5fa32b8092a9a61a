//! Watches: newline-delimited JSON events (ADDED, MODIFIED, DELETED) from a
//! resourceVersion or from the current state, filtered by namespace and
//! selectors (an object leaving a selector is seen as DELETED, entering it
//! as ADDED), with periodic BOOKMARKs when asked, the `initial-events-end`
//! bookmark for streaming lists, 410 Expired as an ERROR event when the
//! version is older than the store's log or the watcher fell behind, and an
//! end at `timeoutSeconds`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::handler::table;
use crate::resources::Resource;
use crate::select::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType};
use crate::{ApiError, Emulator};

/// What one watch asks for.
pub struct WatchSpec {
    /// The watched resource (and the version objects are shown at).
    pub resource: Resource,
    /// Only this namespace, when given.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Changes after this version; `None` starts with the current objects.
    pub from: Option<u64>,
    /// Send periodic bookmarks.
    pub bookmarks: bool,
    /// End the initial objects with the `k8s.io/initial-events-end` bookmark.
    pub initial_events_end: bool,
    /// End the watch after this long.
    pub timeout: Option<Duration>,
    /// Events carry one-row Tables (kubectl get -w).
    pub as_table: bool,
    /// Period of bookmarks.
    pub bookmark_interval: Duration,
}

impl WatchSpec {
    fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }

    /// The event type this watch sees for `e`, if any.
    fn seen(&self, e: &Event) -> Option<EventType> {
        if e.key.group != self.resource.group || e.key.plural != self.resource.plural {
            return None;
        }
        let now = self.matches(&e.object);
        let before = e.old.as_ref().is_some_and(|o| self.matches(o));
        match e.kind {
            EventType::Added if now => Some(EventType::Added),
            EventType::Modified if now && before => Some(EventType::Modified),
            EventType::Modified if now => Some(EventType::Added),
            EventType::Modified if before => Some(EventType::Deleted),
            EventType::Deleted if now => Some(EventType::Deleted),
            _ => None,
        }
    }

    fn line(&self, kind: &str, object: Value, first: &mut bool) -> Bytes {
        let mut object = object;
        if kind != "BOOKMARK" && kind != "ERROR" {
            object["apiVersion"] = json!(self.resource.api_version());
            object["kind"] = json!(self.resource.kind);
            if self.as_table {
                let rv = object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                object = table(&self.resource, &[object], &rv, *first);
                *first = false;
            }
        }
        let mut v =
            serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }

    fn bookmark(&self, rv: u64, end_of_initial: bool) -> Value {
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if end_of_initial {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        json!({ "kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": meta })
    }
}

fn expired() -> Value {
    ApiError::new(410, "Expired", "too old resource version").to_status()
}

/// Starts a watch; the events arrive on the returned channel, which closes
/// when the watch ends. Dropping the receiver ends the watch.
pub fn start(em: Arc<Emulator>, spec: WatchSpec) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(256);
    let sub = em.store.subscribe(spec.from);
    tokio::spawn(async move {
        let mut first = true;
        let Some(mut sub) = sub else {
            let _ = tx.send(spec.line("ERROR", expired(), &mut first)).await;
            return;
        };
        let mut last = sub.rv;
        for e in &sub.backlog {
            if let Some(kind) = spec.seen(e)
                && tx
                    .send(spec.line(kind.as_str(), e.object.clone(), &mut first))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if spec.initial_events_end
            && tx
                .send(spec.line("BOOKMARK", spec.bookmark(last, true), &mut first))
                .await
                .is_err()
        {
            return;
        }
        let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(spec.bookmark_interval);
        ticker.tick().await;
        loop {
            let until_end = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = until_end => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if spec.bookmarks => {
                    if tx.send(spec.line("BOOKMARK", spec.bookmark(last, false), &mut first)).await.is_err() {
                        return;
                    }
                }
                got = sub.live.recv() => match got {
                    Ok(e) if e.rv <= sub.rv => {}
                    Ok(e) => {
                        last = e.rv;
                        if let Some(kind) = spec.seen(&e)
                            && tx.send(spec.line(kind.as_str(), e.object.clone(), &mut first)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(spec.line("ERROR", expired(), &mut first)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    rx
}
