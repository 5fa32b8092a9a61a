//! Requests, transport-free: one [`Request`] in, one [`Reply`] out. The
//! HTTP server and in-process clients (the test kit) both come through here.

mod delete;
mod read;
pub mod route;
mod table;
mod write;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::resources::Resource;
use crate::store::Key;
use crate::{ApiError, Emulator, discovery};
use route::{Route, Target};

pub use table::table;

/// One API request.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// `content-type`.
    pub content_type: String,
    /// `accept`.
    pub accept: String,
    /// Body.
    pub body: Bytes,
}

/// The answer.
#[derive(Debug)]
pub enum Reply {
    /// A JSON document with a status code.
    Json(u16, Value),
    /// A watch: newline-delimited JSON events until the sender drops.
    Stream(mpsc::Receiver<Bytes>),
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        Reply::Json(e.code, e.to_status())
    }
}

/// Decoded query parameters.
pub type Query = BTreeMap<String, String>;

fn query(raw: &str) -> Query {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Whether the client asked for server-side printing.
fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// The store key of `name` addressed through `t`.
fn key(res: &Resource, namespace: &str, name: &str) -> Key {
    Key {
        group: res.group.clone(),
        plural: res.plural.clone(),
        namespace: if res.namespaced {
            namespace.to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

/// Sets the apiVersion and kind an object is read at.
fn present(res: &Resource, mut obj: Value) -> Value {
    obj["apiVersion"] = Value::String(res.api_version());
    obj["kind"] = Value::String(res.kind.clone());
    obj
}

impl Emulator {
    /// Answers one request.
    pub async fn handle(self: &Arc<Self>, req: Request) -> Reply {
        match route::parse(&req.path) {
            Route::Version => Reply::Json(200, discovery::version()),
            Route::Health => Reply::Json(200, Value::String("ok".into())),
            Route::Api => Reply::Json(200, discovery::api()),
            Route::Apis => Reply::Json(200, discovery::apis(&self.registry())),
            Route::Group(g) => match discovery::group(&self.registry(), &g) {
                Some(v) => Reply::Json(200, v),
                None => ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
                .into(),
            },
            Route::GroupVersion(g, v) => match discovery::resources(&self.registry(), &g, &v) {
                Some(v) => Reply::Json(200, v),
                None => ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
                .into(),
            },
            Route::Resource(t) => match self.resource_request(&req, &t).await {
                Ok(r) => r,
                Err(e) => e.into(),
            },
            Route::OpenApiRoot => Reply::Json(200, discovery::openapi::root(&self.registry())),
            Route::OpenApi(gv) => match discovery::openapi::document(&self.registry(), &gv) {
                Some(v) => Reply::Json(200, v),
                None => ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
                .into(),
            },
            Route::Unknown => ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
            .into(),
        }
    }

    async fn resource_request(
        self: &Arc<Self>,
        req: &Request,
        t: &Target,
    ) -> Result<Reply, ApiError> {
        let res = self
            .resource(&t.group, &t.version, &t.plural)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            })?;
        if t.namespace.is_some() && !res.namespaced {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        if let Some(sub) = &t.sub
            && !(sub == "status" && res.status_subresource)
        {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        if req
            .content_type
            .starts_with("application/vnd.kubernetes.protobuf")
        {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the emulation decodes JSON and YAML bodies only, not protobuf (use kubectl apply or create -f)",
            ));
        }
        let q = query(&req.query);
        let ns = t.namespace.clone().unwrap_or_default();
        let table = wants_table(&req.accept);
        match (&req.method, &t.name) {
            (&Method::GET, None)
                if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) =>
            {
                read::watch(self, &res, t.namespace.as_deref(), &q, table)
            }
            (&Method::GET, None) => read::list(self, &res, t.namespace.as_deref(), &q, table),
            (&Method::GET, Some(name)) => read::get(self, &res, &ns, name, table),
            (&Method::POST, None) => write::create(self, &res, &ns, &req.body, &q).await,
            (&Method::PUT, Some(name)) => {
                write::update(self, &res, &ns, name, t.sub.as_deref(), &req.body, &q)
            }
            (&Method::PATCH, Some(name)) => {
                write::patch(
                    self,
                    &res,
                    &ns,
                    name,
                    t.sub.as_deref(),
                    &req.content_type,
                    &req.body,
                    &q,
                )
                .await
            }
            (&Method::DELETE, Some(name)) => delete::delete(self, &res, &ns, name, &req.body, &q),
            (&Method::DELETE, None) => {
                delete::delete_collection(self, &res, t.namespace.as_deref(), &req.body, &q)
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )),
        }
    }
}
