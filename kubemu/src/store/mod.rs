//! The object store: every object of every resource by group, plural,
//! namespace and name, one global resourceVersion (as etcd's revision), and
//! a bounded log of change events that watches replay from a version.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::ApiError;

/// How many events a watch can resume from (older versions get 410 Gone).
const LOG_LEN: usize = 20_000;

/// Where an object lives: group, plural, namespace ("" when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// API group ("" for core).
    pub group: String,
    /// Resource plural.
    pub plural: String,
    /// Namespace, "" for cluster-scoped kinds.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Event {
    /// Added, modified or deleted.
    pub kind: EventType,
    /// Where the object lives.
    pub key: Key,
    /// The object after the change (the last state for a deletion).
    pub object: Value,
    /// The object before the change (selector transitions).
    pub old: Option<Value>,
    /// The resourceVersion of the change.
    pub rv: u64,
}

/// What a read-modify-write decides.
pub enum Write {
    /// Store this object (created or replaced).
    Put(Value),
    /// Remove the object.
    Remove,
    /// Change nothing; answer with this object (dry-run, no-op).
    Nothing(Value),
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    log: VecDeque<Arc<Event>>,
    /// Highest version no longer in the log.
    compacted: u64,
    uids: u64,
}

/// Events to replay and live events after them.
pub struct Subscription {
    /// Current objects (when no version was given) or logged events after it.
    pub backlog: Vec<Arc<Event>>,
    /// Later events.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// The store's version when subscribing.
    pub rv: u64,
}

/// The store (cheap to share behind an `Arc`).
pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Store {
            state: Mutex::new(State::default()),
            tx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.lock().rv
    }

    /// A new unique uid.
    pub fn uid(&self) -> String {
        let mut s = self.lock();
        s.uids += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            nanos,
            s.uids >> 48,
            s.uids
        )
    }

    /// The object at `key`.
    pub fn get(&self, key: &Key) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// Objects of group/plural (in one namespace when given) and the version read.
    pub fn list(&self, group: &str, plural: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let s = self.lock();
        let items = s
            .objects
            .iter()
            .filter(|(k, _)| {
                k.group == group
                    && k.plural == plural
                    && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .map(|(_, v)| v.clone())
            .collect();
        (items, s.rv)
    }

    /// Every object with its key (cascades).
    pub fn all(&self) -> Vec<(Key, Value)> {
        self.lock()
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Read-modify-write of one object under the store's lock: `decide`
    /// sees the current object and says what to do; the stored object (its
    /// new resourceVersion set) or the removed one is returned.
    pub fn write(
        &self,
        key: &Key,
        decide: impl FnOnce(Option<&Value>) -> Result<Write, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock();
        let old = s.objects.get(key).cloned();
        match decide(old.as_ref())? {
            Write::Nothing(v) => Ok(v),
            // A write that changes nothing but bookkeeping is a no-op, as on
            // the API server: no new resourceVersion, no watch event (else
            // every controller that applies in its reconcile loops forever).
            Write::Put(obj) if old.as_ref().is_some_and(|o| unchanged(o, &obj)) => {
                Ok(old.expect("checked"))
            }
            Write::Put(mut obj) => {
                s.rv += 1;
                let rv = s.rv;
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                s.objects.insert(key.clone(), obj.clone());
                let kind = if old.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                self.emit(&mut s, kind, key, obj.clone(), old);
                Ok(obj)
            }
            Write::Remove => {
                let Some(mut obj) = s.objects.remove(key) else {
                    return Err(ApiError::internal("removed an absent object"));
                };
                s.rv += 1;
                obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
                self.emit(&mut s, EventType::Deleted, key, obj.clone(), old);
                Ok(obj)
            }
        }
    }

    fn emit(&self, s: &mut State, kind: EventType, key: &Key, object: Value, old: Option<Value>) {
        let event = Arc::new(Event {
            kind,
            key: key.clone(),
            object,
            old,
            rv: s.rv,
        });
        if s.log.len() == LOG_LEN
            && let Some(dropped) = s.log.pop_front()
        {
            s.compacted = dropped.rv;
        }
        s.log.push_back(event.clone());
        // No receiver is fine: nobody watches.
        let _ = self.tx.send(event);
    }

    /// Subscribes to changes after `from`, or (no version) to the current
    /// objects as ADDED events then every later change. `None` when `from`
    /// is older than the log (410 Gone).
    pub fn subscribe(&self, from: Option<u64>) -> Option<Subscription> {
        let s = self.lock();
        let live = self.tx.subscribe();
        let backlog = match from {
            Some(v) if v < s.compacted => return None,
            Some(v) => s.log.iter().filter(|e| e.rv > v).cloned().collect(),
            None => s
                .objects
                .iter()
                .map(|(k, o)| {
                    Arc::new(Event {
                        kind: EventType::Added,
                        key: k.clone(),
                        object: o.clone(),
                        old: None,
                        rv: s.rv,
                    })
                })
                .collect(),
        };
        Some(Subscription {
            backlog,
            live,
            rv: s.rv,
        })
    }
}

/// Whether `new` differs from `old` only in its resourceVersion and the
/// times of its managedFields entries.
fn unchanged(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            if let Some(fields) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
                for f in fields.iter_mut().filter_map(Value::as_object_mut) {
                    f.remove("time");
                }
            }
        }
        v
    };
    strip(old) == strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_that_changes_nothing_keeps_the_version() {
        let store = Store::new();
        let key = Key {
            group: String::new(),
            plural: "configmaps".into(),
            namespace: "a".into(),
            name: "b".into(),
        };
        let obj = json!({"metadata": {"name": "b", "managedFields": [{"manager": "m", "time": "t1"}]}, "data": {"k": "v"}});
        let first = store.write(&key, |_| Ok(Write::Put(obj.clone()))).unwrap();
        let mut again = obj.clone();
        again["metadata"]["managedFields"][0]["time"] = json!("t2");
        let second = store.write(&key, |_| Ok(Write::Put(again))).unwrap();
        assert_eq!(
            first["metadata"]["resourceVersion"],
            second["metadata"]["resourceVersion"]
        );
        // Positive control: a real change gets a new version.
        let mut changed = obj;
        changed["data"]["k"] = json!("w");
        let third = store.write(&key, |_| Ok(Write::Put(changed))).unwrap();
        assert_ne!(
            first["metadata"]["resourceVersion"],
            third["metadata"]["resourceVersion"]
        );
    }
}
