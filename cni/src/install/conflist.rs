//! Editing a CNI configuration list (pure): privnet's plugin entry put at
//! the end of the node's primary conflist (after the primary plugin, whose
//! result it receives as `prevResult`), or taken out again. Every other key
//! and plugin entry is kept as it is (key order is not: the file is written
//! back with sorted keys).

use serde_json::{Value, json};

/// The `type` that marks privnet's entry (the plugin binary's name).
pub const PLUGIN_TYPE: &str = "privnet-cni";

/// A conflist that cannot be edited. Nothing is written when this happens.
#[derive(Debug, thiserror::Error)]
pub enum ConflistError {
    /// The file is not JSON.
    #[error("failed to parse {file} as JSON")]
    Parse {
        /// The file.
        file: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The file is JSON but not a configuration list.
    #[error("failed to edit {file}: {reason}")]
    Shape {
        /// The file.
        file: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// What privnet's entry says (the installer's flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The agent's socket.
    pub agent_socket: String,
    /// Name of privnet's interface in pods (the primary owns `CNI_IFNAME`).
    pub interface_name: String,
    /// Plugin log level.
    pub log_level: String,
}

impl Entry {
    /// The plugin entry as it appears in the conflist.
    pub fn to_value(&self) -> Value {
        json!({
            "type": PLUGIN_TYPE,
            "agentSocket": self.agent_socket,
            "interfaceName": self.interface_name,
            "logLevel": self.log_level,
            "chained": true,
        })
    }
}

fn plugins<'a>(doc: &'a mut Value, file: &str) -> Result<&'a mut Vec<Value>, ConflistError> {
    let shape = |reason| ConflistError::Shape {
        file: file.to_string(),
        reason,
    };
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| shape("not a JSON object"))?;
    match obj.get_mut("plugins") {
        Some(Value::Array(list)) => Ok(list),
        Some(_) => Err(shape("\"plugins\" is not a list")),
        None => Err(shape(
            "no \"plugins\" list (a single-plugin .conf: chained mode needs a .conflist)",
        )),
    }
}

fn parse(text: &str, file: &str) -> Result<Value, ConflistError> {
    serde_json::from_str(text).map_err(|source| ConflistError::Parse {
        file: file.to_string(),
        source,
    })
}

fn is_ours(plugin: &Value) -> bool {
    plugin.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE)
}

fn render(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// `text` with exactly one privnet entry, `entry`, last in `plugins`; `None`
/// when it is so already (nothing to write).
pub fn insert(text: &str, entry: &Entry, file: &str) -> Result<Option<String>, ConflistError> {
    let mut doc = parse(text, file)?;
    let want = entry.to_value();
    let list = plugins(&mut doc, file)?;
    let ours = list.iter().filter(|p| is_ours(p)).count();
    if ours == 1 && list.last() == Some(&want) {
        return Ok(None);
    }
    list.retain(|p| !is_ours(p));
    list.push(want);
    Ok(Some(render(&doc)))
}

/// `text` without privnet's entry; `None` when it has none.
pub fn remove(text: &str, file: &str) -> Result<Option<String>, ConflistError> {
    let mut doc = parse(text, file)?;
    let list = plugins(&mut doc, file)?;
    let before = list.len();
    list.retain(|p| !is_ours(p));
    Ok((list.len() != before).then(|| render(&doc)))
}

/// Whether `text` holds privnet's entry (unparsable text does not).
pub fn has_entry(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|d| d.get("plugins").cloned())
        .and_then(|p| p.as_array().map(|l| l.iter().any(is_ours)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            agent_socket: "/run/privnet/agent.sock".into(),
            interface_name: "eth1".into(),
            log_level: "info".into(),
        }
    }

    const CALICO: &str = r#"{
      "name": "k8s-pod-network", "cniVersion": "0.3.1",
      "x-vendor-extension": {"keep": [1, 2]},
      "plugins": [
        {"type": "calico", "datastore_type": "kubernetes", "ipam": {"type": "calico-ipam"}},
        {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
      ]
    }"#;

    #[test]
    fn insert_appends_once_and_keeps_everything_else() {
        let out = insert(CALICO, &entry(), "10-calico.conflist")
            .unwrap()
            .expect("changed");
        let doc: Value = serde_json::from_str(&out).unwrap();
        let before: Value = serde_json::from_str(CALICO).unwrap();
        let list = doc["plugins"].as_array().unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[..2], before["plugins"].as_array().unwrap()[..]);
        assert_eq!(list[2], entry().to_value());
        // Unknown keys kept, values unchanged.
        for key in ["name", "cniVersion", "x-vendor-extension"] {
            assert_eq!(doc[key], before[key], "{key}");
        }
        // Idempotent: a second insert has nothing to do.
        assert_eq!(insert(&out, &entry(), "f").unwrap(), None);
        assert!(has_entry(&out) && !has_entry(CALICO));
    }

    #[test]
    fn a_changed_or_misplaced_entry_is_replaced_not_duplicated() {
        let out = insert(CALICO, &entry(), "f").unwrap().unwrap();
        let other = Entry {
            interface_name: "net1".into(),
            ..entry()
        };
        let changed = insert(&out, &other, "f").unwrap().unwrap();
        let doc: Value = serde_json::from_str(&changed).unwrap();
        let ours: Vec<_> = doc["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == PLUGIN_TYPE)
            .collect();
        assert_eq!(ours, [&other.to_value()]);
        // The primary rewrote its file with a plugin after ours: ours goes last again.
        let mut doc: Value = serde_json::from_str(&out).unwrap();
        doc["plugins"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "bandwidth"}));
        let fixed = insert(&doc.to_string(), &entry(), "f").unwrap().unwrap();
        let fixed: Value = serde_json::from_str(&fixed).unwrap();
        let list = fixed["plugins"].as_array().unwrap();
        assert_eq!(list.len(), 4);
        assert_eq!(list[2]["type"], "bandwidth");
        assert_eq!(list[3], entry().to_value());
    }

    #[test]
    fn remove_restores_the_primarys_plugins() {
        let out = insert(CALICO, &entry(), "f").unwrap().unwrap();
        let back = remove(&out, "f").unwrap().expect("changed");
        let back: Value = serde_json::from_str(&back).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(CALICO).unwrap());
        // Nothing of ours: nothing to write.
        assert_eq!(remove(CALICO, "f").unwrap(), None);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let e = insert("{\"plugins\": [", &entry(), "10-x.conflist").unwrap_err();
        assert!(
            e.to_string().contains("failed to parse 10-x.conflist"),
            "{e}"
        );
        let e = insert(
            r#"{"cniVersion":"0.3.1","name":"n","type":"bridge"}"#,
            &entry(),
            "10-bridge.conf",
        )
        .unwrap_err();
        assert!(e.to_string().contains("single-plugin .conf"), "{e}");
        let e = remove(r#"{"plugins": {}}"#, "f").unwrap_err();
        assert!(e.to_string().contains("not a list"), "{e}");
        let e = insert("[1]", &entry(), "f").unwrap_err();
        assert!(e.to_string().contains("not a JSON object"), "{e}");
    }
}
