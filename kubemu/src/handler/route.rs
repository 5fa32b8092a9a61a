//! Request paths → what they address.

/// An addressed resource, collection or object.
#[derive(Debug, Clone)]
pub struct Target {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace in the path.
    pub namespace: Option<String>,
    /// Resource plural.
    pub plural: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`).
    pub sub: Option<String>,
}

/// What a path addresses.
#[derive(Debug, Clone)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/readyz`, `/livez`.
    Health,
    /// `/api`.
    Api,
    /// `/apis`.
    Apis,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`.
    GroupVersion(String, String),
    /// A resource path.
    Resource(Target),
    /// `/openapi/v3`.
    OpenApiRoot,
    /// `/openapi/v3/<api/v1|apis/g/v>`.
    OpenApi(String),
    /// Anything else.
    Unknown,
}

/// Parses a request path.
pub fn parse(path: &str) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Route::Version,
        ["healthz" | "readyz" | "livez", ..] => return Route::Health,
        ["api"] => return Route::Api,
        ["openapi", "v3"] => return Route::OpenApiRoot,
        ["openapi", "v3", rest @ ..] => return Route::OpenApi(rest.join("/")),
        ["apis"] => return Route::Apis,
        ["apis", g] => return Route::Group(g.to_string()),
        ["api", v] => return Route::GroupVersion(String::new(), v.to_string()),
        ["apis", g, v] => return Route::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return Route::Unknown,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r @ ..]
            if r.len() >= 2 || (r.len() == 1 && !matches!(r[0], "status" | "finalize")) =>
        {
            (Some(ns.to_string()), r)
        }
        r => (None, r),
    };
    let Some(plural) = rest.first() else {
        return Route::Unknown;
    };
    if rest.len() > 3 {
        return Route::Unknown;
    }
    Route::Resource(Target {
        group,
        version,
        namespace,
        plural: plural.to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}
