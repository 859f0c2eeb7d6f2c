//! Server-side apply and `metadata.managedFields`: which manager owns which field (FieldsV1:
//! `f:name`, `k:{"key":"value"}` for list-map entries, `v:value` for set members, `.` for an entry
//! itself), conflicts between managers, and removal of fields a manager stopped applying.
//!
//! Lists follow the schema's `x-kubernetes-list-type` (`map` entries merged by their keys, `set`
//! members by value, anything else atomic). Built-in kinds have no schema here; a few well-known
//! lists (`containers`, `conditions`, `ownerReferences`, `finalizers`) get their real types.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A set of owned fields, each a path of FieldsV1 segments ending at a leaf (or at `.`).
pub type FieldSet = BTreeSet<Vec<String>>;

/// Which part of an object a request may change: the main resource or its `/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything but status (when the kind has a status subresource).
    Main {
        status_split: bool,
    },
    Status,
}

impl Scope {
    pub fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Status => Some("status"),
            Scope::Main { .. } => None,
        }
    }

    fn includes(self, top: &str) -> bool {
        match self {
            Scope::Status => top == "status",
            Scope::Main { status_split } => !(status_split && top == "status"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

fn items_schema(schema: Option<&Value>) -> Option<&Value> {
    schema?.get("items")
}

fn list_kind(schema: Option<&Value>, name: &str) -> ListKind {
    if let Some(s) = schema {
        return match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListKind::Set,
            Some("map") => ListKind::Map(
                s.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| {
                        k.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => ListKind::Atomic,
        };
    }
    match name {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" => {
            ListKind::Map(vec!["name".into()])
        }
        "conditions" => ListKind::Map(vec!["type".into()]),
        "ownerReferences" => ListKind::Map(vec!["uid".into()]),
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

fn item_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k)?.clone());
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// The fields set in `value` (a whole object, restricted to `scope`).
pub fn fields_of(value: &Value, schema: Option<&Value>, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = value.as_object() else {
        return out;
    };
    for (k, v) in map {
        if !scope.includes(k) || k == "apiVersion" || k == "kind" {
            continue;
        }
        if k == "metadata" {
            // Only these metadata fields are owned; name, uid, resourceVersion… are the server's.
            for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                if let Some(mv) = v.get(mk) {
                    let mut prefix = vec!["f:metadata".to_string(), format!("f:{mk}")];
                    collect_field(mv, None, mk, &mut prefix, &mut out);
                }
            }
            continue;
        }
        let mut prefix = vec![format!("f:{k}")];
        collect_field(v, child_schema(schema, k), k, &mut prefix, &mut out);
    }
    out
}

fn collect_field(
    v: &Value,
    schema: Option<&Value>,
    name: &str,
    prefix: &mut Vec<String>,
    out: &mut FieldSet,
) {
    match v {
        Value::Array(items) if !items.is_empty() => match list_kind(schema, name) {
            ListKind::Map(keys) => {
                for item in items {
                    let Some(seg) = item_key(item, &keys) else {
                        out.insert(prefix.clone());
                        continue;
                    };
                    prefix.push(seg);
                    prefix.push(".".into());
                    out.insert(prefix.clone());
                    prefix.pop();
                    collect(item, items_schema(schema), prefix, out);
                    prefix.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    prefix.push(format!("v:{item}"));
                    out.insert(prefix.clone());
                    prefix.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(prefix.clone());
            }
        },
        _ => collect(v, schema, prefix, out),
    }
}

fn collect(v: &Value, schema: Option<&Value>, prefix: &mut Vec<String>, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, cv) in m {
                prefix.push(format!("f:{k}"));
                collect_field(cv, child_schema(schema, k), k, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

fn matches_key(item: &Value, key_json: &str) -> bool {
    serde_json::from_str::<Map<String, Value>>(key_json)
        .is_ok_and(|k| k.iter().all(|(name, want)| item.get(name) == Some(want)))
}

/// The value at a FieldsV1 path (`.` yields the list entry itself).
pub fn get_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = value;
    for seg in path {
        if seg == "." {
            return Some(v);
        }
        v = if let Some(k) = seg.strip_prefix("f:") {
            v.get(k)?
        } else if let Some(k) = seg.strip_prefix("k:") {
            v.as_array()?.iter().find(|i| matches_key(i, k))?
        } else if let Some(x) = seg.strip_prefix("v:") {
            let want: Value = serde_json::from_str(x).ok()?;
            v.as_array()?.iter().find(|i| **i == want)?
        } else {
            return None;
        };
    }
    Some(v)
}

/// Removes the field (or list entry, for a path ending in `.`, or set member) at `path`.
fn remove_at(value: &mut Value, path: &[String]) {
    let (path, entry) = match path.split_last() {
        Some((last, rest)) if last == "." => (rest, true),
        _ => (path, false),
    };
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut v = value;
    for seg in parent_path {
        let next = if let Some(k) = seg.strip_prefix("f:") {
            v.get_mut(k)
        } else if let Some(k) = seg.strip_prefix("k:") {
            v.as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| matches_key(i, k)))
        } else {
            None
        };
        match next {
            Some(n) => v = n,
            None => return,
        }
    }
    if let Some(k) = last.strip_prefix("f:") {
        if let Some(m) = v.as_object_mut() {
            m.remove(k);
        }
    } else if let (Some(k), true) = (last.strip_prefix("k:"), entry) {
        if let Some(a) = v.as_array_mut() {
            a.retain(|i| !matches_key(i, k));
        }
    } else if let Some(x) = last.strip_prefix("v:")
        && let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(x), v.as_array_mut())
    {
        a.retain(|i| *i != want);
    }
}

/// Human-readable path of a field, as conflict messages show it: `.status.nodes[node="n1"].state`.
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if let Some(k) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(k);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(n, v)| format!("{n}={v}")).collect())
                .unwrap_or_default();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(x) = seg.strip_prefix("v:") {
            s.push_str(&format!("[={x}]"));
        }
    }
    s
}

/// Merges an applied configuration into the live object: maps recursively, list-maps by key,
/// sets by value; atomic lists and scalars are replaced.
fn merge(live: &mut Value, applied: &Value, schema: Option<&Value>, name: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                if av.is_null() {
                    l.remove(k);
                    continue;
                }
                let cs = child_schema(schema, k);
                match l.get_mut(k) {
                    Some(lv) => merge(lv, av, cs, k),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => match list_kind(schema, name) {
            ListKind::Map(keys) => {
                for item in a {
                    let key = item_key(item, &keys);
                    match l
                        .iter_mut()
                        .find(|i| key.is_some() && item_key(i, &keys) == key)
                    {
                        Some(existing) => merge(existing, item, items_schema(schema), ""),
                        None => l.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => *l = a.clone(),
        },
        (l, a) => *l = a.clone(),
    }
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

fn tree_to_set(tree: &Value, prefix: &mut Vec<String>, out: &mut FieldSet) {
    let Some(m) = tree.as_object() else {
        return;
    };
    for (k, child) in m {
        prefix.push(k.clone());
        if child.as_object().is_none_or(Map::is_empty) {
            out.insert(prefix.clone());
        } else {
            tree_to_set(child, prefix, out);
        }
        prefix.pop();
    }
}

fn set_to_tree(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for seg in path {
            let next = node.entry(seg.clone()).or_insert_with(|| json!({}));
            if !next.is_object() {
                *next = json!({});
            }
            match next.as_object_mut() {
                Some(n) => node = n,
                None => break,
            }
        }
    }
    Value::Object(root)
}

/// The entries of an object's `metadata.managedFields`.
pub fn entries(object: &Value) -> Vec<Entry> {
    let Some(list) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            let mut fields = FieldSet::new();
            if let Some(t) = e.get("fieldsV1") {
                tree_to_set(t, &mut Vec::new(), &mut fields);
            }
            Entry {
                manager: s("manager").unwrap_or_default(),
                operation: s("operation").unwrap_or_else(|| "Update".into()),
                subresource: s("subresource"),
                api_version: s("apiVersion").unwrap_or_default(),
                time: s("time").unwrap_or_default(),
                fields,
            }
        })
        .collect()
}

/// Writes `entries` (those owning anything) into the object's `metadata.managedFields`.
pub fn store_entries(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": set_to_tree(&e.fields),
            });
            if let Some(sub) = &e.subresource {
                v["subresource"] = json!(sub);
            }
            v
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn upsert<'a>(
    entries: &'a mut Vec<Entry>,
    manager: &str,
    operation: &str,
    scope: Scope,
    api_version: &str,
    time: &str,
) -> &'a mut Entry {
    let sub = scope.subresource().map(str::to_string);
    let pos = entries
        .iter()
        .position(|e| e.manager == manager && e.operation == operation && e.subresource == sub);
    let idx = match pos {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.into(),
                operation: operation.into(),
                subresource: sub,
                api_version: api_version.into(),
                time: time.into(),
                fields: FieldSet::new(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[idx];
    e.api_version = api_version.into();
    e.time = time.into();
    e
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes ownership of every
/// field it changed (from everyone else, without conflicts), and removed fields lose their owners.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    schema: Option<&Value>,
    manager: &str,
    scope: Scope,
    api_version: &str,
    time: &str,
) {
    let all = Scope::Main {
        status_split: false,
    };
    let mut list = old.map(entries).unwrap_or_default();
    let new_set = fields_of(new, schema, all);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| old.and_then(|o| get_at(o, p)) != get_at(new, p))
        .cloned()
        .collect();
    let old_set = old.map(|o| fields_of(o, schema, all)).unwrap_or_default();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    for e in list.iter_mut() {
        e.fields = e
            .fields
            .difference(&changed)
            .filter(|p| !removed.contains(*p))
            .cloned()
            .collect();
    }
    if !changed.is_empty() {
        let e = upsert(&mut list, manager, "Update", scope, api_version, time);
        e.fields.extend(changed);
    }
    store_entries(new, &list);
}

/// Conflicting fields of an apply: (manager, path) pairs.
pub type Conflicts = Vec<(String, String)>;

/// Server-side apply of `applied` (restricted to `scope`) by `manager` onto `live` (`None`:
/// the object is created). Returns the new object with its managedFields, or the conflicts.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    schema: Option<&Value>,
    manager: &str,
    scope: Scope,
    force: bool,
    api_version: &str,
    time: &str,
) -> Result<Value, Conflicts> {
    // Only the part of the configuration this endpoint may change counts.
    let mut scoped = Map::new();
    if let Some(m) = applied.as_object() {
        for (k, v) in m {
            if k == "metadata" {
                if scope.subresource().is_none() {
                    let keep: Map<String, Value> = v
                        .as_object()
                        .map(|mm| {
                            mm.iter()
                                .filter(|(mk, _)| {
                                    ["labels", "annotations", "finalizers", "ownerReferences"]
                                        .contains(&mk.as_str())
                                })
                                .map(|(a, b)| (a.clone(), b.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    scoped.insert(k.clone(), Value::Object(keep));
                }
            } else if scope.includes(k) && k != "apiVersion" && k != "kind" {
                scoped.insert(k.clone(), v.clone());
            }
        }
    }
    let scoped = Value::Object(scoped);
    let applied_set = fields_of(&scoped, schema, scope);
    let mut list = live.map(entries).unwrap_or_default();
    let sub = scope.subresource().map(str::to_string);
    let is_self =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub;

    let mut conflicts = Conflicts::new();
    for e in list.iter_mut().filter(|e| !is_self(e)) {
        let clash: Vec<Vec<String>> = e
            .fields
            .intersection(&applied_set)
            .filter(|p| p.last().is_some_and(|l| l != "."))
            .filter(|p| live.and_then(|l| get_at(l, p)) != get_at(&scoped, p))
            .cloned()
            .collect();
        if clash.is_empty() {
            continue;
        }
        if force {
            e.fields.retain(|p| !clash.contains(p));
        } else {
            conflicts.extend(clash.iter().map(|p| (e.manager.clone(), display_path(p))));
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }

    let mut object = live.cloned().unwrap_or_else(|| json!({}));
    merge(&mut object, &scoped, schema, "");
    // Fields this manager applied before but not now go, unless someone else still owns them.
    let previous: FieldSet = list
        .iter()
        .filter(|e| is_self(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let others: FieldSet = list
        .iter()
        .filter(|e| !is_self(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut removed: Vec<&Vec<String>> = previous
        .iter()
        .filter(|p| !applied_set.contains(*p) && !others.contains(*p))
        .collect();
    removed.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in removed {
        remove_at(&mut object, p);
    }
    let e = upsert(&mut list, manager, "Apply", scope, api_version, time);
    e.fields = applied_set;
    store_entries(&mut object, &list);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes_schema() -> Value {
        json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
            "master": {"type": "string"},
            "nodes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["node"],
                      "items": {"type": "object", "properties": {"node": {"type": "string"}, "state": {"type": "string"}}}}}}}})
    }

    #[test]
    fn two_managers_own_two_list_map_entries() {
        let schema = nodes_schema();
        let live = json!({"metadata": {"name": "v"}, "status": {}});
        let s = Scope::Status;
        let a = apply(
            Some(&live),
            &json!({"status": {"nodes": [{"node": "n1", "state": "Master"}]}}),
            Some(&schema),
            "agent-n1",
            s,
            false,
            "v1",
            "t",
        )
        .unwrap();
        let b = apply(
            Some(&a),
            &json!({"status": {"nodes": [{"node": "n2", "state": "Backup"}]}}),
            Some(&schema),
            "agent-n2",
            s,
            false,
            "v1",
            "t",
        )
        .unwrap();
        assert_eq!(
            b["status"]["nodes"],
            json!([{"node": "n1", "state": "Master"}, {"node": "n2", "state": "Backup"}])
        );
        // n1 stops reporting: only its entry goes.
        let c = apply(
            Some(&b),
            &json!({"status": {"nodes": []}}),
            Some(&schema),
            "agent-n1",
            s,
            false,
            "v1",
            "t",
        )
        .unwrap();
        assert_eq!(
            c["status"]["nodes"],
            json!([{"node": "n2", "state": "Backup"}])
        );
        // n2 writing n1's field… there is no n1 entry any more; writing n2's own entry's state as another manager conflicts.
        let err = apply(
            Some(&c),
            &json!({"status": {"nodes": [{"node": "n2", "state": "Fault"}]}}),
            Some(&schema),
            "intruder",
            s,
            false,
            "v1",
            "t",
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![(
                "agent-n2".to_string(),
                ".status.nodes[node=\"n2\"].state".to_string()
            )]
        );
        let forced = apply(
            Some(&c),
            &json!({"status": {"nodes": [{"node": "n2", "state": "Fault"}]}}),
            Some(&schema),
            "intruder",
            s,
            true,
            "v1",
            "t",
        )
        .unwrap();
        assert_eq!(forced["status"]["nodes"][0]["state"], "Fault");
    }
}
