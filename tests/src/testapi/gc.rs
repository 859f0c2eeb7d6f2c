//! The garbage collector: an object whose owners are all gone is deleted (background
//! propagation); an owner deleted in the foreground goes once its dependents are gone; and the
//! namespace controller: a namespace being deleted loses its content, then goes.

use serde_json::Value;

use super::apply::Scope;
use super::store::{DeleteOpts, Store, WriteCtx};

/// The finalizer of foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn ident(obj: &Value) -> (String, String) {
    (
        meta_str(obj, "namespace").to_string(),
        meta_str(obj, "name").to_string(),
    )
}

/// Whether `obj` has owners and all of them are gone (without allocating: this runs over every
/// object after every write).
fn orphaned(obj: &Value, live: &std::collections::HashSet<&str>) -> bool {
    let refs = obj
        .get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array);
    let mut uids = refs
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
        .peekable();
    uids.peek().is_some() && uids.all(|u| !live.contains(u))
}

/// One pass; true when it changed anything.
pub fn sweep(store: &mut Store) -> bool {
    let live: std::collections::HashSet<&str> = store
        .all()
        .map(|(_, o)| meta_str(o, "uid"))
        .filter(|u| !u.is_empty())
        .collect();
    let terminating: Vec<String> = store
        .all()
        .filter(|(k, o)| {
            k.group.is_empty()
                && k.plural == "namespaces"
                && o.pointer("/metadata/deletionTimestamp").is_some()
        })
        .map(|(_, o)| ident(o).1)
        .collect();
    let mut doomed = Vec::new();
    let mut occupied = std::collections::HashSet::new();
    for (key, obj) in store.all() {
        let ns = meta_str(obj, "namespace");
        if !ns.is_empty() && terminating.iter().any(|t| t == ns) {
            occupied.insert(ns.to_string());
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                let (ns, name) = ident(obj);
                doomed.push((key.clone(), ns, name));
            }
            continue;
        }
        if orphaned(obj, &live) && obj.pointer("/metadata/deletionTimestamp").is_none() {
            let (ns, name) = ident(obj);
            doomed.push((key.clone(), ns, name));
        }
    }
    // Owners deleted in the foreground: their dependents go first, then the finalizer.
    let mut releasable = Vec::new();
    for (key, obj) in store.all() {
        let deleting_in_foreground = obj.pointer("/metadata/deletionTimestamp").is_some()
            && obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|x| x == FOREGROUND));
        if !deleting_in_foreground {
            continue;
        }
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        let dependents: Vec<(super::resources::ResKey, String, String, bool)> = store
            .all()
            .filter(|(_, d)| owner_uids(d).iter().any(|u| u == uid))
            .map(|(k, d)| {
                let (ns, name) = ident(d);
                (
                    k.clone(),
                    ns,
                    name,
                    d.pointer("/metadata/deletionTimestamp").is_some(),
                )
            })
            .collect();
        if dependents.is_empty() {
            releasable.push((key.clone(), obj.clone()));
        }
        for (k, ns, name, deleting) in dependents {
            if !deleting {
                doomed.push((k, ns, name));
            }
        }
    }
    let mut changed = false;
    for (key, mut obj) in releasable {
        let Some(rt) = store.type_of(&key.group, &key.plural) else {
            continue;
        };
        if let Some(f) = obj
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|x| x != FOREGROUND);
        }
        let (ns, name) = ident(&obj);
        let scope = Scope::Main {
            status_split: rt.status_subresource,
        };
        changed |= store
            .update(
                &rt,
                &ns,
                &name,
                obj,
                scope,
                &WriteCtx::internal("generic-garbage-collector"),
            )
            .is_ok();
    }
    for (key, ns, name) in doomed {
        if let Some(rt) = store.type_of(&key.group, &key.plural) {
            changed |= store
                .delete(&rt, &ns, &name, &DeleteOpts::default())
                .is_ok();
        }
    }
    for ns in terminating {
        let finalizers_left = store
            .type_of("", "namespaces")
            .and_then(|rt| store.get(&rt, "", &ns).ok())
            .and_then(|o| {
                o.pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .map(|f| !f.is_empty())
            })
            .unwrap_or(false);
        if !occupied.contains(&ns) && !finalizers_left {
            changed |= store.finish_namespace(&ns);
        }
    }
    changed
}

/// `propagationPolicy: Orphan`: dependents lose their reference to the owner instead of going.
pub fn orphan_dependents(store: &mut Store, owner_uid: &str) {
    let dependents: Vec<_> = store
        .all()
        .filter(|(_, o)| owner_uids(o).iter().any(|u| u == owner_uid))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (key, mut obj) in dependents {
        let Some(rt) = store.type_of(&key.group, &key.plural) else {
            continue;
        };
        if let Some(refs) = obj
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
        }
        let (ns, name) = ident(&obj);
        let scope = Scope::Main {
            status_split: rt.status_subresource,
        };
        let _ = store.update(
            &rt,
            &ns,
            &name,
            obj,
            scope,
            &WriteCtx::internal("generic-garbage-collector"),
        );
    }
}
