//! The objects, one global monotonic resourceVersion, and the history of events that watches
//! replay. Every write goes through here: system fields (uid, creationTimestamp, generation,
//! resourceVersion), optimistic concurrency, the status split, validation, managed fields,
//! finalizers, and then the built-in controllers (garbage collector, DaemonSet shim).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use buoy_crds::{FieldError, structural::UnknownFields};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::apply::{self, Scope};
use super::error::ApiError;
use super::patch::{self, PatchType};
use super::resources::{Registry, ResKey, ResourceType};
use super::selectors::Selector;
use super::{daemonset, gc, schema};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub key: ResKey,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
    /// The object before a MODIFIED (so selector watches can turn it into ADDED/DELETED).
    pub old: Option<Value>,
}

/// Who writes and how: `fieldManager`, `dryRun`, `fieldValidation`.
#[derive(Clone, Debug)]
pub struct WriteCtx {
    pub manager: String,
    pub dry_run: bool,
    pub unknown: UnknownFields,
}

impl WriteCtx {
    pub fn internal(manager: &str) -> Self {
        WriteCtx {
            manager: manager.into(),
            dry_run: false,
            unknown: UnknownFields::Prune,
        }
    }
}

/// Options of a DELETE.
#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub orphan: bool,
    /// `propagationPolicy: Foreground`: the owner goes after its dependents.
    pub foreground: bool,
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

type Objects = BTreeMap<(String, String), Value>;

pub struct Store {
    pub registry: Registry,
    objects: BTreeMap<ResKey, Objects>,
    rv: u64,
    seq: u64,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Events up to this resourceVersion are no longer in the history (410 Gone for older).
    compacted: u64,
    tx: broadcast::Sender<Arc<Event>>,
    reconciling: bool,
    /// The garbage collector's view, kept as objects are stored and removed.
    gc: gc::Graph,
    /// Every sweep looks at every object, as before the garbage collector kept its view: the
    /// reference the incremental sweeps are compared with.
    #[cfg(test)]
    pub(super) full_sweeps: bool,
}

pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("metadata")?.as_object_mut()
}

fn name_errors(path: &str, name: &str) -> Vec<FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Vec::new()
    } else {
        vec![FieldError::new(
            path,
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        )]
    }
}

/// Everything but metadata and status: what `metadata.generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    o
}

fn without_volatile(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = meta_mut(&mut o) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    o
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(16384);
        let mut store = Store {
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            rv: 1,
            seq: 0,
            history: VecDeque::new(),
            history_limit,
            compacted: 0,
            tx,
            reconciling: false,
            gc: gc::Graph::default(),
            #[cfg(test)]
            full_sweeps: false,
        };
        let ns_type = store
            .registry
            .types
            .get(&ResKey {
                group: String::new(),
                plural: "namespaces".into(),
            })
            .cloned();
        if let Some(rt) = ns_type {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let _ = store.create(
                    &rt,
                    "",
                    json!({"metadata": {"name": ns}}),
                    &WriteCtx::internal("testapi"),
                );
            }
        }
        store
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Drops the whole event history: watches from any earlier resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Events of `key` after `from`, or 410 Gone when they were compacted.
    pub fn events_since(&self, key: &ResKey, from: u64) -> Result<Vec<Arc<Event>>, ApiError> {
        if from < self.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {from} ({})",
                self.compacted + 1
            )));
        }
        Ok(self
            .history
            .iter()
            .filter(|e| e.rv > from && e.key == *key)
            .cloned()
            .collect())
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn uid(&mut self) -> String {
        let n = self.next_seq();
        format!("7e57a91d-0000-4000-8000-{n:012x}")
    }

    /// Five characters from the API server's alphabet, as `generateName` appends.
    fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut x =
            self.next_seq().wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (std::process::id() as u64);
        (0..5)
            .map(|_| {
                let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
                x /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    fn emit(
        &mut self,
        key: ResKey,
        namespace: String,
        kind: EventType,
        object: Value,
        old: Option<Value>,
    ) {
        let ev = Arc::new(Event {
            rv: self.rv,
            key,
            namespace,
            kind,
            object,
            old,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        // No receiver is fine: nobody watches.
        let _ = self.tx.send(ev);
    }

    /// The object as served in `version` (one stored shape; only apiVersion differs).
    pub fn present(rt: &ResourceType, obj: &Value, version: &str) -> Value {
        let mut o = obj.clone();
        if !version.is_empty() {
            o["apiVersion"] = json!(rt.api_version(version));
        }
        o
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&rt.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// The stored object, borrowed.
    pub(super) fn stored(&self, key: &ResKey, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Every object in namespace `ns`, of every kind, in the store's order.
    pub(super) fn content_of(&self, ns: &str) -> Vec<gc::Loc> {
        self.objects
            .iter()
            .flat_map(|(k, m)| {
                m.range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(move |((n, name), _)| (k.clone(), n.clone(), name.clone()))
            })
            .collect()
    }

    /// Whether namespace `ns` holds any object, of any kind.
    pub(super) fn has_content(&self, ns: &str) -> bool {
        self.objects.values().any(|m| {
            m.range((ns.to_string(), String::new())..)
                .next()
                .is_some_and(|((n, _), _)| n == ns)
        })
    }

    pub(super) fn gc_graph(&self) -> &gc::Graph {
        &self.gc
    }

    pub(super) fn gc_graph_mut(&mut self) -> &mut gc::Graph {
        &mut self.gc
    }

    /// Stores `obj` (replacing what was there), telling the garbage collector.
    fn put(&mut self, key: ResKey, ns: &str, name: &str, obj: Value) {
        let loc = (key, ns.to_string(), name.to_string());
        let objects = self.objects.entry(loc.0.clone()).or_default();
        let id = (loc.1.clone(), loc.2.clone());
        let old = objects.insert(id.clone(), obj);
        if let Some(new) = objects.get(&id) {
            self.gc.stored(&loc, old.as_ref(), new);
        }
    }

    pub fn list(&self, rt: &ResourceType, ns: Option<&str>, sel: &Selector) -> Vec<Value> {
        self.objects
            .get(&rt.key())
            .map(|m| {
                m.iter()
                    .filter(|((ons, _), _)| ns.is_none_or(|n| n == ons))
                    .map(|(_, o)| o)
                    .filter(|o| sel.matches(o))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every stored object of every kind (for the controllers).
    pub fn all(&self) -> impl Iterator<Item = (&ResKey, &Value)> {
        self.objects
            .iter()
            .flat_map(|(k, m)| m.values().map(move |o| (k, o)))
    }

    pub fn type_of(&self, group: &str, plural: &str) -> Option<ResourceType> {
        self.registry
            .types
            .get(&ResKey {
                group: group.into(),
                plural: plural.into(),
            })
            .cloned()
    }

    fn namespace_check(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let Some(ns_type) = self.type_of("", "namespaces") else {
            return Ok(());
        };
        let namespace = self.get(&ns_type, "", ns)?;
        if namespace.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    rt.group_resource(),
                    name
                ),
            ));
        }
        Ok(())
    }

    fn validate(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        ctx: &WriteCtx,
    ) -> Result<(), ApiError> {
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        let errors = if rt.custom {
            let version = rt.preferred_version().to_string();
            match rt.schema(&version) {
                Some(s) => schema::validate(s, obj, old, ctx.unknown),
                None => name_errors("metadata.name", &name),
            }
        } else {
            let mut errors = name_errors("metadata.name", &name);
            if rt.plural == "customresourcedefinitions"
                && rt.group == "apiextensions.k8s.io"
                && let Err(e) = ResourceType::from_crd(obj)
            {
                let (path, msg) = e.split_once(": ").unwrap_or(("spec", &e));
                errors.push(FieldError::new(path, msg.to_string()));
            }
            errors
        };
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(rt, &name, &errors))
        }
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        obj: Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        self.create_inner(rt, ns, obj, ctx, None)
    }

    /// Creates; `applied` holds the managedFields of a create by server-side apply.
    fn create_inner(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        ctx: &WriteCtx,
        applied: Option<Value>,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind {kind} does not match {}",
                rt.kind
            )));
        }
        obj["apiVersion"] = json!(rt.api_version(rt.preferred_version()));
        obj["kind"] = json!(rt.kind);
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        if meta_str(&obj, "name").is_none_or(str::is_empty) {
            match meta_str(&obj, "generateName").map(str::to_string) {
                Some(prefix) => {
                    let name = format!("{prefix}{}", self.random_suffix());
                    obj["metadata"]["name"] = json!(name);
                }
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        &[FieldError::new(
                            "metadata.name",
                            "Required value: name or generateName is required".into(),
                        )],
                    ));
                }
            }
        }
        if rt.namespaced {
            if let Some(given) = meta_str(&obj, "namespace")
                && given != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = meta_mut(&mut obj) {
            m.remove("namespace");
        }
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        self.namespace_check(rt, ns, &name)?;
        // Status is the controllers' (except a Node's, which its kubelet registers with).
        if rt.status_subresource
            && rt.kind != "Node"
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        // The initial status the real server's strategies set.
        match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Namespace") => obj["status"] = json!({"phase": "Active"}),
            ("", "Pod") => obj["status"] = json!({"phase": "Pending"}),
            _ => {}
        }
        self.validate(rt, &mut obj, None, ctx)?;
        // As in the API server, validation comes before the storage's existence check.
        if self.get(rt, ns, &name).is_ok() {
            return Err(ApiError::already_exists(rt, &name));
        }
        let (uid, ts) = (self.uid(), now());
        if let Some(m) = meta_mut(&mut obj) {
            for k in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "resourceVersion",
            ] {
                m.remove(k);
            }
            m.insert("uid".into(), json!(uid));
            m.insert("creationTimestamp".into(), json!(ts));
            m.insert("generation".into(), json!(1));
        }
        if rt.kind == "CustomResourceDefinition" {
            crd_established(&mut obj);
        }
        let api_version = rt.api_version(rt.preferred_version());
        match applied {
            Some(managed) => obj["metadata"]["managedFields"] = managed,
            None => apply::record_update(
                None,
                &mut obj,
                rt.schema(rt.preferred_version()),
                &ctx.manager,
                Scope::Main {
                    status_split: false,
                },
                &api_version,
                &ts,
            ),
        }
        if ctx.dry_run {
            return Ok(obj);
        }
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.put(rt.key(), ns, &name, obj.clone());
        self.emit(
            rt.key(),
            ns.to_string(),
            EventType::Added,
            obj.clone(),
            None,
        );
        self.crd_hook(rt, &obj, false);
        self.after_write();
        Ok(obj)
    }

    /// PUT: replaces the object (or its status), with optimistic concurrency.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        new: Value,
        scope: Scope,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        let old = self.get(rt, ns, name)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if rt.custom && meta_str(&new, "resourceVersion").is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                rt,
                name,
                &[FieldError::new(
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update".into(),
                )],
            ));
        }
        self.replace(rt, ns, name, old, new, scope, ctx, false)
    }

    /// PATCH of any type; apply creates the object when it does not exist.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchType,
        body: &Value,
        scope: Scope,
        force: bool,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        let current = self.get(rt, ns, name);
        if kind == PatchType::Apply {
            if ctx.manager.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[FieldError::new(
                        "fieldManager",
                        "Required value: is required for apply patch".into(),
                    )],
                ));
            }
            let version = rt.preferred_version().to_string();
            let api_version = rt.api_version(&version);
            let live = match &current {
                Ok(o) => Some(o),
                Err(_) if scope == Scope::Status => return Err(ApiError::not_found(rt, name)),
                Err(_) => None,
            };
            let merged = apply::apply(live, body, rt.schema(&version), &ctx.manager, scope, force, &api_version, &now()).map_err(|conflicts| {
                let shown: Vec<String> = conflicts.iter().map(|(m, p)| format!("conflict with \"{m}\" using {api_version}: {p}")).collect();
                let mut e = ApiError::new(409, "Conflict", format!("Apply failed with {} conflict{}: {}", conflicts.len(), if conflicts.len() == 1 { "" } else { "s" }, shown.join("\n")));
                e.details = json!({"causes": conflicts.iter().map(|(m, p)| json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {api_version}"), "field": p})).collect::<Vec<_>>()});
                e
            })?;
            return match current {
                Ok(old) => {
                    let mut new = merged;
                    // The applied object's own resourceVersion, if any, is a precondition.
                    if let Some(rv) = body.pointer("/metadata/resourceVersion") {
                        new["metadata"]["resourceVersion"] = rv.clone();
                    } else if let Some(rv) = old.pointer("/metadata/resourceVersion") {
                        new["metadata"]["resourceVersion"] = rv.clone();
                    }
                    self.replace(rt, ns, name, old, new, scope, ctx, true)
                }
                Err(_) => {
                    let mut new = merged;
                    new["metadata"]["name"] = json!(name);
                    let managed = new.pointer("/metadata/managedFields").cloned();
                    self.create_inner(rt, ns, new, ctx, managed)
                }
            };
        }
        let old = current?;
        let mut new = old.clone();
        patch::patch(&mut new, kind, body)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the patch must leave an object"));
        }
        self.replace(rt, ns, name, old, new, scope, ctx, false)
    }

    /// The common update path. `applied`: managedFields were already computed (server-side apply).
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Value,
        mut new: Value,
        scope: Scope,
        ctx: &WriteCtx,
        applied: bool,
    ) -> Result<Value, ApiError> {
        if let Some(given) = meta_str(&new, "name")
            && given != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        if let (Some(given), Some(current)) = (
            meta_str(&new, "resourceVersion"),
            meta_str(&old, "resourceVersion"),
        ) && !given.is_empty()
            && given != current
        {
            return Err(ApiError::conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        new = match scope {
            Scope::Status => {
                // /status changes status only (and managedFields, tracked for it).
                let mut o = old.clone();
                match new.get("status") {
                    Some(s) => o["status"] = s.clone(),
                    None => {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                if applied && let Some(mf) = new.pointer("/metadata/managedFields").cloned() {
                    o["metadata"]["managedFields"] = mf;
                }
                o
            }
            Scope::Main { status_split } => {
                if status_split {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                new
            }
        };
        new["apiVersion"] = json!(rt.api_version(rt.preferred_version()));
        new["kind"] = json!(rt.kind);
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match old.pointer(&format!("/metadata/{k}")) {
                Some(v) => new["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = meta_mut(&mut new) {
                        m.remove(k);
                    }
                }
            }
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let finalizers = |o: &Value| -> Vec<Value> {
                o.pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let (before, after) = (finalizers(&old), finalizers(&new));
            if after.iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[FieldError::new(
                        "metadata.finalizers",
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                    )],
                ));
            }
        }
        self.validate(rt, &mut new, Some(&old), ctx)?;
        if spec_part(&new) != spec_part(&old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if rt.kind == "CustomResourceDefinition" {
            crd_established(&mut new);
        }
        let version = rt.preferred_version().to_string();
        if !applied {
            if let Some(m) = old.pointer("/metadata/managedFields").cloned() {
                new["metadata"]["managedFields"] = m;
            }
            apply::record_update(
                Some(&old),
                &mut new,
                rt.schema(&version),
                &ctx.manager,
                scope,
                &rt.api_version(&version),
                &now(),
            );
        }
        if without_volatile(&new) == without_volatile(&old) {
            // A no-op write changes nothing, not even the resourceVersion.
            return Ok(old);
        }
        if ctx.dry_run {
            return Ok(new);
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let finalized = new.pointer("/metadata/deletionTimestamp").is_some()
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if finalized {
            self.remove(rt, ns, name, new.clone());
        } else {
            self.put(rt.key(), ns, name, new.clone());
            self.emit(
                rt.key(),
                ns.to_string(),
                EventType::Modified,
                new.clone(),
                Some(old),
            );
            self.crd_hook(rt, &new, false);
        }
        self.after_write();
        Ok(new)
    }

    /// Removes an object for good (rv already bumped) and tells the watches.
    fn remove(&mut self, rt: &ResourceType, ns: &str, name: &str, mut obj: Value) {
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let loc = (rt.key(), ns.to_string(), name.to_string());
        if let Some(gone) = self
            .objects
            .get_mut(&loc.0)
            .and_then(|m| m.remove(&(loc.1.clone(), loc.2.clone())))
        {
            self.gc.removed(&loc, &gone);
        }
        self.emit(
            rt.key(),
            ns.to_string(),
            EventType::Deleted,
            obj.clone(),
            None,
        );
        self.crd_hook(rt, &obj, true);
    }

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        let obj = self.get(rt, ns, name)?;
        if let Some(uid) = &opts.precondition_uid
            && meta_str(&obj, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&obj, "uid").unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && meta_str(&obj, "resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if opts.dry_run {
            return Ok(obj);
        }
        if opts.orphan {
            let uid = meta_str(&obj, "uid").unwrap_or("").to_string();
            gc::orphan_dependents(self, &uid);
        }
        let mut finalizers: Vec<Value> = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let is_namespace = rt.kind == "Namespace" && rt.group.is_empty();
        // Foreground deletion is a finalizer that the garbage collector removes once the
        // dependents are gone.
        let foreground = opts.foreground && obj.pointer("/metadata/deletionTimestamp").is_none();
        if foreground && !finalizers.contains(&json!(gc::FOREGROUND)) {
            finalizers.push(json!(gc::FOREGROUND));
        }
        if !finalizers.is_empty() || is_namespace {
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(obj);
            }
            let mut new = obj.clone();
            if foreground {
                new["metadata"]["finalizers"] = Value::Array(finalizers);
            }
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if is_namespace {
                new["status"] = json!({"phase": "Terminating"});
            }
            self.rv += 1;
            new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.put(rt.key(), ns, name, new.clone());
            self.emit(
                rt.key(),
                ns.to_string(),
                EventType::Modified,
                new.clone(),
                Some(obj),
            );
            self.after_write();
            return Ok(new);
        }
        self.rv += 1;
        self.remove(rt, ns, name, obj.clone());
        self.after_write();
        let mut gone = obj;
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        Ok(gone)
    }

    /// Namespaces being deleted whose content is gone are removed (the namespace controller).
    pub fn finish_namespace(&mut self, name: &str) -> bool {
        let Some(rt) = self.type_of("", "namespaces") else {
            return false;
        };
        let Ok(obj) = self.get(&rt, "", name) else {
            return false;
        };
        self.rv += 1;
        self.remove(&rt, "", name, obj);
        true
    }

    /// Registers (or drops) the kinds a CustomResourceDefinition serves.
    fn crd_hook(&mut self, rt: &ResourceType, crd: &Value, deleted: bool) {
        if rt.kind != "CustomResourceDefinition" || rt.group != "apiextensions.k8s.io" {
            return;
        }
        let Ok(served) = ResourceType::from_crd(crd) else {
            return;
        };
        if deleted {
            let key = served.key();
            let doomed: Vec<Value> = self
                .objects
                .get(&key)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            for obj in doomed {
                self.rv += 1;
                let (ns, name) = (
                    meta_str(&obj, "namespace").unwrap_or("").to_string(),
                    meta_str(&obj, "name").unwrap_or("").to_string(),
                );
                self.remove(&served, &ns, &name, obj);
            }
            self.registry.types.remove(&key);
        } else {
            self.registry.types.insert(served.key(), served);
        }
    }

    /// Runs the built-in controllers until nothing changes.
    fn after_write(&mut self) {
        if self.reconciling {
            return;
        }
        self.reconciling = true;
        for _ in 0..32 {
            #[cfg(test)]
            if self.full_sweeps {
                let all: Vec<gc::Loc> = self
                    .objects
                    .iter()
                    .flat_map(|(k, m)| {
                        m.keys()
                            .map(move |(ns, n)| (k.clone(), ns.clone(), n.clone()))
                    })
                    .collect();
                self.gc.touch(all);
            }
            let changed = gc::sweep(self) | daemonset::reconcile(self);
            if !changed {
                break;
            }
        }
        self.reconciling = false;
    }
}

/// A CRD is established as soon as it is stored: conditions as the real server sets them.
fn crd_established(crd: &mut Value) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    // Unchanged names keep their conditions (and transition times): no spurious update.
    if crd.pointer("/status/acceptedNames") == Some(&names)
        && crd.pointer("/status/conditions").is_some()
    {
        return;
    }
    let ts = now();
    crd["status"] = json!({
        "acceptedNames": names,
        "storedVersions": crd.pointer("/spec/versions").and_then(Value::as_array).map(|v| v.iter().filter(|x| x.get("storage").and_then(Value::as_bool) == Some(true)).filter_map(|x| x.get("name").cloned()).collect::<Vec<_>>()).unwrap_or_default(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": ts},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": ts},
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounded_history_expires_old_versions() {
        let mut store = Store::new(2);
        let rt = store.type_of("", "configmaps").unwrap();
        let ctx = WriteCtx::internal("test");
        let first = store.resource_version();
        for name in ["a", "b", "c"] {
            store
                .create(&rt, "default", json!({"metadata": {"name": name}}), &ctx)
                .unwrap();
        }
        assert_eq!(store.events_since(&rt.key(), first).unwrap_err().code, 410);
        let recent = store
            .events_since(&rt.key(), store.resource_version() - 2)
            .unwrap();
        assert_eq!(recent.len(), 2);
        store.compact();
        assert!(
            store
                .events_since(&rt.key(), store.resource_version())
                .unwrap()
                .is_empty()
        );
    }
}
