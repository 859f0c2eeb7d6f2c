//! The HTTP side: hyper on a loopback listener, routing of the Kubernetes REST paths to the
//! store, content negotiation (JSON, YAML and protobuf bodies, Table output) and Status error
//! responses.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use buoy_crds::structural::UnknownFields;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode, http::request::Parts};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::apply::Scope;
use super::error::ApiError;
use super::fault::FailWith;
use super::patch::PatchType;
use super::resources::ResourceType;
use super::selectors::Selector;
use super::store::{DeleteOpts, Store, WriteCtx};
use super::watch::{self, WatchParams};
use super::{discovery, protobuf, table};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// State shared by every connection.
pub struct Shared {
    store: Mutex<Store>,
    pub addr: SocketAddr,
    pub bookmark_interval: Duration,
    /// Paths nobody serves, for finding out what a client expects.
    pub unknown_paths: Mutex<Vec<String>>,
    /// The injected failure in force, if any; watches subscribe to end when one starts.
    pub failure: tokio::sync::watch::Sender<Option<FailWith>>,
    /// Requests received, by the program of the client's user agent (`unknown` without one),
    /// for benchmarks that count a client's round trips.
    pub requests: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    pub fn new(addr: SocketAddr, bookmark_interval: Duration, history_limit: usize) -> Self {
        Shared {
            store: Mutex::new(Store::new(history_limit)),
            addr,
            bookmark_interval,
            unknown_paths: Mutex::new(Vec::new()),
            failure: tokio::sync::watch::Sender::new(None),
            requests: Mutex::new(BTreeMap::new()),
        }
    }

    /// The store; a panic elsewhere must not wedge the server, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves until `shutdown` fires or its sender is dropped; then the listener closes and so does
/// every open connection (watches included), as when an API server process dies.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else { return };
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
            // Reap finished connections so the set does not grow with every request.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    connections.shutdown().await;
}

fn full(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    full(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    if let Ok(mut r) = shared.requests.lock() {
        *r.entry(agent_program(&parts)).or_default() += 1;
    }
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "cannot read the body: {e}"
            ))));
        }
    };
    tracing::debug!(method = %parts.method, uri = %parts.uri, content_type = header(&parts, CONTENT_TYPE), "request");
    let failing = shared
        .failure
        .borrow()
        .as_ref()
        .filter(|f| f.applies(&parts.method, &path_and_query(&parts), Instant::now()))
        .cloned();
    if let Some(f) = failing {
        let mut resp = error_response(&f.error());
        if let Some(secs) = f.retry_after() {
            resp.headers_mut().insert(RETRY_AFTER, secs.into());
        }
        return Ok(resp);
    }
    Ok(route(&shared, &parts, &bytes).unwrap_or_else(|e| error_response(&e)))
}

/// The request's path with its query, which injected failures match.
fn path_and_query(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), ToString::to_string)
}

struct Query(HashMap<String, String>);

impl Query {
    fn parse(parts: &Parts) -> Query {
        Query(
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

fn header(parts: &Parts, name: hyper::header::HeaderName) -> &str {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn route(shared: &Arc<Shared>, parts: &Parts, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let path = parts.uri.path().trim_matches('/').to_string();
    let segs: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    let get = parts.method == Method::GET;
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match segs.as_slice() {
        ["version"] if get => ok(discovery::version()),
        ["healthz" | "readyz" | "livez"] if get => {
            Ok(full(StatusCode::OK, "text/plain", b"ok".to_vec()))
        }
        ["api" | "apis"] if get && discovery::wants_aggregated(header(parts, ACCEPT)) => {
            let doc = discovery::aggregated(&shared.lock().registry, segs == ["api"]);
            Ok(full(
                StatusCode::OK,
                discovery::AGGREGATED_CONTENT_TYPE,
                serde_json::to_vec(&doc).unwrap_or_default(),
            ))
        }
        ["api"] if get => ok(discovery::core_versions(&shared.addr.to_string())),
        ["apis"] if get => ok(discovery::groups(&shared.lock().registry)),
        ["api", "v1"] if get => discovery::resources(&shared.lock().registry, "", "v1")
            .map_or_else(|| Err(ApiError::path_not_found()), ok),
        ["apis", g] if get => discovery::group(&shared.lock().registry, g)
            .map_or_else(|| Err(ApiError::path_not_found()), ok),
        ["apis", g, v] if get => discovery::resources(&shared.lock().registry, g, v)
            .map_or_else(|| Err(ApiError::path_not_found()), ok),
        ["openapi", "v3"] if get => ok(discovery::openapi_root(&shared.lock().registry)),
        ["openapi", "v3", "api", v] if get => {
            discovery::openapi_group_version(&shared.lock().registry, "", v)
                .map_or_else(|| Err(ApiError::path_not_found()), ok)
        }
        ["openapi", "v3", "apis", g, v] if get => {
            discovery::openapi_group_version(&shared.lock().registry, g, v)
                .map_or_else(|| Err(ApiError::path_not_found()), ok)
        }
        ["api", "v1", rest @ ..] if !rest.is_empty() => {
            resource(shared, parts, body, "", "v1", rest)
        }
        ["apis", g, v, rest @ ..] if !rest.is_empty() => resource(shared, parts, body, g, v, rest),
        _ => {
            if let Ok(mut u) = shared.unknown_paths.lock() {
                u.push(format!("{} {}", parts.method, parts.uri));
            }
            Err(ApiError::path_not_found())
        }
    }
}

/// Parses a JSON, YAML or protobuf request body.
fn decode(parts: &Parts, body: &[u8]) -> Result<Value, ApiError> {
    let ct = header(parts, CONTENT_TYPE);
    if ct.contains("protobuf") {
        // kubectl's typed imperative commands (`create namespace|secret|configmap|service`).
        return Ok(protobuf::decode(body)?);
    }
    if ct.contains("cbor") {
        return Err(ApiError::unsupported_media(ct));
    }
    let v: Value = if ct.contains("yaml") {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    Ok(v)
}

/// The program named by the request's user agent (`kubectl/v1.33.0 …` → `kubectl`), or
/// `unknown` without one.
fn agent_program(parts: &Parts) -> String {
    header(parts, USER_AGENT)
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn write_ctx(parts: &Parts, q: &Query) -> WriteCtx {
    // Without fieldManager the API server names the manager after the user agent's program.
    let manager = q
        .get("fieldManager")
        .map(str::to_string)
        .unwrap_or_else(|| agent_program(parts));
    WriteCtx {
        manager,
        dry_run: q.get("dryRun") == Some("All"),
        unknown: if q.get("fieldValidation") == Some("Strict") {
            UnknownFields::Reject
        } else {
            UnknownFields::Prune
        },
    }
}

#[allow(clippy::too_many_lines)]
fn resource(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: &[u8],
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let (ns, plural, name, sub) = match rest {
        ["namespaces", n, "status" | "finalize"] => {
            (None, "namespaces", Some(*n), rest.get(2).copied())
        }
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => (
            Some(*ns),
            *plural,
            tail.first().copied(),
            tail.get(1).copied(),
        ),
        [plural, tail @ ..] if tail.len() <= 2 => {
            (None, *plural, tail.first().copied(), tail.get(1).copied())
        }
        _ => return Err(ApiError::path_not_found()),
    };
    let rt: ResourceType = shared
        .lock()
        .registry
        .find(group, version, plural)
        .cloned()
        .ok_or_else(ApiError::path_not_found)?;
    if !rt.namespaced && ns.is_some() {
        return Err(ApiError::path_not_found());
    }
    let scope = match sub {
        None => Scope::Main {
            status_split: rt.status_subresource,
        },
        Some("status") if rt.status_subresource => Scope::Status,
        Some(_) => return Err(ApiError::path_not_found()),
    };
    let q = Query::parse(parts);
    let nsname = ns.unwrap_or("");
    if rt.namespaced && ns.is_none() && !(parts.method == Method::GET && name.is_none()) {
        return Err(ApiError::path_not_found());
    }
    let present = |o: &Value| Store::present(&rt, o, version);
    let wants_table = header(parts, ACCEPT).contains("as=Table");
    match (&parts.method, name) {
        (&Method::GET, None) => {
            let selector = Selector::parse(q.get("labelSelector"), q.get("fieldSelector"))?;
            if q.flag("watch") {
                let params = WatchParams {
                    resource_version: q.get("resourceVersion").map(str::to_string),
                    send_initial_events: q.flag("sendInitialEvents"),
                    bookmarks: q.flag("allowWatchBookmarks"),
                    timeout: q
                        .get("timeoutSeconds")
                        .and_then(|t| t.parse().ok())
                        .map(Duration::from_secs),
                    table: wants_table
                        .then(|| q.get("includeObject").unwrap_or("Metadata").to_string()),
                    path: path_and_query(parts),
                };
                let rx = watch::start(
                    shared,
                    rt.clone(),
                    version.to_string(),
                    ns.map(str::to_string),
                    selector,
                    params,
                )?;
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv()
                        .await
                        .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
                });
                let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                return Ok(resp);
            }
            let (items, rv) = {
                let store = shared.lock();
                (store.list(&rt, ns, &selector), store.resource_version())
            };
            if q.get("resourceVersionMatch") == Some("Exact")
                && q.get("resourceVersion") != Some(rv.to_string().as_str())
            {
                return Err(ApiError::gone(
                    "The resourceVersion for the provided list is too old.",
                ));
            }
            // Pages: the continue token is the offset into the (ordered) list.
            let offset: usize = match q.get("continue") {
                Some(c) => c
                    .parse()
                    .map_err(|_| ApiError::bad_request("invalid continue token"))?,
                None => 0,
            };
            let limit = q
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0)
                .unwrap_or(usize::MAX);
            let page: Vec<Value> = items.iter().skip(offset).take(limit).map(present).collect();
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if offset.saturating_add(page.len()) < items.len() {
                meta["continue"] = json!((offset + page.len()).to_string());
                meta["remainingItemCount"] = json!(items.len() - offset - page.len());
            }
            if wants_table {
                let mut t = table::table(
                    &rt,
                    version,
                    &page,
                    &rv.to_string(),
                    q.get("includeObject").unwrap_or("Metadata"),
                );
                t["metadata"] = meta;
                return Ok(json_response(StatusCode::OK, &t));
            }
            let list = json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(version), "metadata": meta, "items": page});
            Ok(json_response(StatusCode::OK, &list))
        }
        (&Method::GET, Some(name)) => {
            let obj = shared.lock().get(&rt, nsname, name)?;
            if wants_table {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(
                        &rt,
                        version,
                        &[present(&obj)],
                        &rv,
                        q.get("includeObject").unwrap_or("Metadata"),
                    ),
                ));
            }
            Ok(json_response(StatusCode::OK, &present(&obj)))
        }
        (&Method::POST, None) if sub.is_none() => {
            let obj = decode(parts, body)?;
            let created = shared
                .lock()
                .create(&rt, nsname, obj, &write_ctx(parts, &q))?;
            Ok(json_response(StatusCode::CREATED, &present(&created)))
        }
        (&Method::PUT, Some(name)) => {
            let obj = decode(parts, body)?;
            let updated =
                shared
                    .lock()
                    .update(&rt, nsname, name, obj, scope, &write_ctx(parts, &q))?;
            Ok(json_response(StatusCode::OK, &present(&updated)))
        }
        (&Method::PATCH, Some(name)) => {
            let kind = PatchType::from_content_type(header(parts, CONTENT_TYPE))?;
            let patch = if kind == PatchType::Apply {
                serde_yaml::from_slice::<Value>(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid apply body: {e}")))?
            } else {
                serde_json::from_slice::<Value>(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid patch body: {e}")))?
            };
            let mut ctx = write_ctx(parts, &q);
            if kind == PatchType::Apply && q.get("fieldManager").is_none() {
                ctx.manager = String::new();
            }
            let patched = shared.lock().patch(
                &rt,
                nsname,
                name,
                kind,
                &patch,
                scope,
                q.flag("force"),
                &ctx,
            )?;
            Ok(json_response(StatusCode::OK, &present(&patched)))
        }
        (&Method::DELETE, name) if sub.is_none() => {
            let opts_body: Value = if body.is_empty() {
                json!({})
            } else {
                decode(parts, body)?
            };
            let policy = opts_body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .or(q.get("propagationPolicy"));
            let opts = DeleteOpts {
                foreground: policy == Some("Foreground"),
                orphan: policy == Some("Orphan")
                    || opts_body.get("orphanDependents").and_then(Value::as_bool) == Some(true),
                dry_run: q.get("dryRun") == Some("All")
                    || opts_body.pointer("/dryRun/0").and_then(Value::as_str) == Some("All"),
                precondition_uid: opts_body
                    .pointer("/preconditions/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                precondition_rv: opts_body
                    .pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            };
            match name {
                Some(name) => {
                    let deleted = shared.lock().delete(&rt, nsname, name, &opts)?;
                    Ok(json_response(StatusCode::OK, &present(&deleted)))
                }
                None => {
                    let selector = Selector::parse(q.get("labelSelector"), q.get("fieldSelector"))?;
                    let mut store = shared.lock();
                    let doomed = store.list(&rt, ns, &selector);
                    let mut items = Vec::new();
                    for o in doomed {
                        let n = o
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        let ons = o
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        if let Ok(d) = store.delete(&rt, &ons, &n, &opts) {
                            items.push(present(&d));
                        }
                    }
                    let list = json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(version), "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": items});
                    Ok(json_response(StatusCode::OK, &list))
                }
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
