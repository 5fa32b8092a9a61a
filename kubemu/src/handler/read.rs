//! get, list and watch.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Query, Reply, key, present, table};
use crate::api_error::Subject;
use crate::resources::Resource;
use crate::select::{FieldSelector, LabelSelector};
use crate::{ApiError, Emulator, watch};

pub fn get(
    em: &Arc<Emulator>,
    res: &Resource,
    ns: &str,
    name: &str,
    as_table: bool,
) -> Result<Reply, ApiError> {
    let obj = em.store.get(&key(res, ns, name)).ok_or_else(|| {
        ApiError::not_found(&Subject {
            plural: &res.plural,
            group: &res.group,
            name,
        })
    })?;
    let obj = present(res, obj);
    if as_table {
        return Ok(Reply::Json(200, table(res, &[obj], "", true)));
    }
    Ok(Reply::Json(200, obj))
}

/// The label and field selectors of a query.
pub fn selectors(q: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
    Ok((labels, fields))
}

pub fn list(
    em: &Arc<Emulator>,
    res: &Resource,
    ns: Option<&str>,
    q: &Query,
    as_table: bool,
) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(q)?;
    let (items, rv) = em.store.list(&res.group, &res.plural, ns);
    let items: Vec<Value> = items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .map(|o| present(res, o))
        .collect();
    if as_table {
        return Ok(Reply::Json(200, table(res, &items, &rv.to_string(), true)));
    }
    Ok(Reply::Json(
        200,
        json!({
            "kind": format!("{}List", res.kind),
            "apiVersion": res.api_version(),
            "metadata": { "resourceVersion": rv.to_string() },
            "items": items,
        }),
    ))
}

pub fn watch(
    em: &Arc<Emulator>,
    res: &Resource,
    ns: Option<&str>,
    q: &Query,
    as_table: bool,
) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(q)?;
    let initial = q.get("sendInitialEvents").map(String::as_str) == Some("true");
    let from = match q.get("resourceVersion").map(String::as_str) {
        _ if initial => None,
        None | Some("" | "0") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?,
        ),
    };
    let spec = watch::WatchSpec {
        resource: res.clone(),
        namespace: ns.map(str::to_string),
        labels,
        fields,
        from,
        bookmarks: q.get("allowWatchBookmarks").map(String::as_str) == Some("true"),
        initial_events_end: initial,
        timeout: q
            .get("timeoutSeconds")
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs),
        as_table,
        bookmark_interval: em.config.bookmark_interval,
    };
    Ok(Reply::Stream(watch::start(em.clone(), spec)))
}
