//! The garbage collector (background propagation): an object whose owners are all gone is
//! deleted; and the namespace controller: a namespace being deleted loses its content, then goes.

use serde_json::Value;

use super::store::{DeleteOpts, Store, WriteCtx};

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

fn ident(obj: &Value) -> (String, String) {
    let s = |f: &str| {
        obj.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (s("namespace"), s("name"))
}

/// One pass; true when it changed anything.
pub fn sweep(store: &mut Store) -> bool {
    let live: std::collections::HashSet<String> = store
        .all()
        .filter_map(|(_, o)| o.pointer("/metadata/uid").and_then(Value::as_str))
        .map(str::to_string)
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
        let (ns, name) = ident(obj);
        if !ns.is_empty() && terminating.contains(&ns) {
            occupied.insert(ns.clone());
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                doomed.push((key.clone(), ns, name));
            }
            continue;
        }
        let owners = owner_uids(obj);
        if !owners.is_empty()
            && owners.iter().all(|u| !live.contains(u))
            && obj.pointer("/metadata/deletionTimestamp").is_none()
        {
            doomed.push((key.clone(), ns, name));
        }
    }
    let mut changed = false;
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
        let scope = super::apply::Scope::Main {
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
