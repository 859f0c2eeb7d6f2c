//! The garbage collector: an object whose owners are all gone is deleted (background
//! propagation); an owner deleted in the foreground goes once its dependents are gone; and the
//! namespace controller: a namespace being deleted loses its content, then goes.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::apply::Scope;
use super::resources::ResKey;
use super::selectors::Selector;
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

fn deleting(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some()
}

/// Where an object is stored: its kind, namespace and name (the store's order).
pub type Loc = (ResKey, String, String);

/// The garbage collector's view of the store, kept up to date as the store writes: where each
/// uid lives, who names whom as owner, and what changed since the last sweep. A sweep then looks
/// only at what the writes since the last one can have changed (the objects written, the
/// dependents and owners of what was written or removed, the namespaces that lost content)
/// instead of at every object after every write, which made n writes cost O(n²).
#[derive(Debug, Default)]
pub struct Graph {
    by_uid: HashMap<String, Loc>,
    /// Dependents by owner uid (whether or not the owner exists).
    dependents: HashMap<String, BTreeSet<Loc>>,
    dirty: Dirty,
}

/// What to look at in the next sweep.
#[derive(Debug, Default)]
struct Dirty {
    /// Objects written, and dependents of removed objects.
    objects: BTreeSet<Loc>,
    /// Owners (by uid) whose dependents were written or removed.
    owners: BTreeSet<String>,
    /// Namespaces that lost content.
    namespaces: BTreeSet<String>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.owners.is_empty() && self.namespaces.is_empty()
    }
}

impl Graph {
    /// `loc` now holds `new` (it held `old`, if anything).
    pub(super) fn stored(&mut self, loc: &Loc, old: Option<&Value>, new: &Value) {
        if let Some(old) = old {
            self.unlink(loc, old);
        }
        let uid = meta_str(new, "uid");
        if !uid.is_empty() {
            self.by_uid.insert(uid.to_string(), loc.clone());
        }
        for owner in owner_uids(new) {
            self.dependents
                .entry(owner.clone())
                .or_default()
                .insert(loc.clone());
            self.dirty.owners.insert(owner);
        }
        self.dirty.objects.insert(loc.clone());
    }

    /// `obj` at `loc` is gone for good.
    pub(super) fn removed(&mut self, loc: &Loc, obj: &Value) {
        self.unlink(loc, obj);
        let uid = meta_str(obj, "uid");
        if self.by_uid.get(uid) == Some(loc) {
            self.by_uid.remove(uid);
        }
        // Its dependents may be orphans now.
        if let Some(deps) = self.dependents.get(uid) {
            self.dirty.objects.extend(deps.iter().cloned());
        }
        if !loc.1.is_empty() {
            self.dirty.namespaces.insert(loc.1.clone());
        }
    }

    /// Forgets `obj`'s ownerReferences from `loc`; its owners are to be looked at again.
    fn unlink(&mut self, loc: &Loc, obj: &Value) {
        for owner in owner_uids(obj) {
            if let Some(deps) = self.dependents.get_mut(&owner) {
                deps.remove(loc);
                if deps.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
            self.dirty.owners.insert(owner);
        }
    }

    fn live(&self, uid: &str) -> bool {
        self.by_uid.contains_key(uid)
    }

    /// The objects whose ownerReferences name `uid`, in the store's order.
    pub(super) fn dependents_of(&self, uid: &str) -> Vec<Loc> {
        self.dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }

    /// Marks `locs` to be looked at in the next sweep, as if written.
    #[cfg(test)]
    pub(super) fn touch(&mut self, locs: Vec<Loc>) {
        self.dirty.objects.extend(locs);
    }

    /// Marks `loc` to be looked at again (a sweep's write that failed).
    fn retry(&mut self, loc: Loc) {
        self.dirty.objects.insert(loc);
    }
}

/// Whether `obj` has owners and all of them are gone.
fn orphaned(obj: &Value, graph: &Graph) -> bool {
    let refs = obj
        .get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array);
    let mut uids = refs
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
        .peekable();
    uids.peek().is_some() && uids.all(|u| !graph.live(u))
}

fn lookup<'a>(store: &'a Store, loc: &Loc) -> Option<&'a Value> {
    store.stored(&loc.0, &loc.1, &loc.2)
}

/// What one sweep decides, before it writes.
#[derive(Default)]
struct Decisions {
    /// Owners deleted in the foreground whose dependents are gone: their finalizer goes.
    releasable: Vec<(Loc, Value)>,
    /// Objects to delete.
    doomed: Vec<Loc>,
    /// Terminating namespaces with no content left.
    finished: Vec<String>,
}

/// Decides from what changed since the last sweep. Every decision of a sweep over all objects
/// depends only on an object, the existence of its owners, its namespace, and an owner's
/// dependents: what did not change since the last sweep would decide nothing new. The order
/// of the writes is the store's, as a sweep over all objects would make them.
fn decide(store: &Store, dirty: &Dirty) -> Decisions {
    let graph = store.gc_graph();
    let terminating: BTreeSet<String> = store
        .type_of("", "namespaces")
        .map(|rt| store.list(&rt, None, &Selector::default()))
        .unwrap_or_default()
        .iter()
        .filter(|n| deleting(n))
        .map(|n| meta_str(n, "name").to_string())
        .collect();
    // Objects to check: the changed ones, and the content of namespaces that terminate.
    let mut objects = dirty.objects.clone();
    let mut namespaces = dirty.namespaces.clone();
    for loc in &dirty.objects {
        if loc.0.group.is_empty() && loc.0.plural == "namespaces" && terminating.contains(&loc.2) {
            objects.extend(store.content_of(&loc.2));
            namespaces.insert(loc.2.clone());
        }
    }
    let mut out = Decisions::default();
    for loc in &objects {
        let Some(obj) = lookup(store, loc) else {
            continue;
        };
        let ns = meta_str(obj, "namespace");
        if !ns.is_empty() && terminating.contains(ns) {
            if !deleting(obj) {
                out.doomed.push(loc.clone());
            }
            continue;
        }
        if orphaned(obj, graph) && !deleting(obj) {
            out.doomed.push(loc.clone());
        }
    }
    // Owners deleted in the foreground: their dependents go first, then the finalizer.
    let owners: BTreeSet<&Loc> = dirty
        .owners
        .iter()
        .filter_map(|u| graph.by_uid.get(u))
        .chain(&objects)
        .collect();
    for loc in owners {
        let Some(obj) = lookup(store, loc) else {
            continue;
        };
        let in_foreground = deleting(obj)
            && obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|x| x == FOREGROUND));
        if !in_foreground {
            continue;
        }
        let dependents = graph.dependents_of(meta_str(obj, "uid"));
        if dependents.is_empty() {
            out.releasable.push((loc.clone(), obj.clone()));
        }
        for d in dependents {
            if lookup(store, &d).is_some_and(|o| !deleting(o)) {
                out.doomed.push(d);
            }
        }
    }
    out.finished = namespaces
        .into_iter()
        .filter(|ns| terminating.contains(ns) && !store.has_content(ns))
        .collect();
    out
}

/// One pass over what changed since the last; true when it changed anything.
pub fn sweep(store: &mut Store) -> bool {
    let dirty = store.gc_graph_mut().take_dirty();
    if dirty.is_empty() {
        return false;
    }
    let Decisions {
        releasable,
        doomed,
        finished,
    } = decide(store, &dirty);
    let mut changed = false;
    for (loc, mut obj) in releasable {
        let Some(rt) = store.type_of(&loc.0.group, &loc.0.plural) else {
            continue;
        };
        if let Some(f) = obj
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|x| x != FOREGROUND);
        }
        let scope = Scope::Main {
            status_split: rt.status_subresource,
        };
        let ok = store
            .update(
                &rt,
                &loc.1,
                &loc.2,
                obj,
                scope,
                &WriteCtx::internal("generic-garbage-collector"),
            )
            .is_ok();
        if !ok {
            store.gc_graph_mut().retry(loc);
        }
        changed |= ok;
    }
    for loc in doomed {
        if let Some(rt) = store.type_of(&loc.0.group, &loc.0.plural) {
            let ok = store
                .delete(&rt, &loc.1, &loc.2, &DeleteOpts::default())
                .is_ok();
            if !ok {
                store.gc_graph_mut().retry(loc);
            }
            changed |= ok;
        }
    }
    for ns in finished {
        let finalizers_left = store
            .type_of("", "namespaces")
            .and_then(|rt| store.get(&rt, "", &ns).ok())
            .and_then(|o| {
                o.pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .map(|f| !f.is_empty())
            })
            .unwrap_or(false);
        if !finalizers_left {
            changed |= store.finish_namespace(&ns);
        }
    }
    changed
}

/// `propagationPolicy: Orphan`: dependents lose their reference to the owner instead of going.
pub fn orphan_dependents(store: &mut Store, owner_uid: &str) {
    let dependents: Vec<(Loc, Value)> = store
        .gc_graph()
        .dependents_of(owner_uid)
        .into_iter()
        .filter_map(|loc| {
            let obj = lookup(store, &loc)?.clone();
            Some((loc, obj))
        })
        .collect();
    for ((key, ns, name), mut obj) in dependents {
        let Some(rt) = store.type_of(&key.group, &key.plural) else {
            continue;
        };
        if let Some(refs) = obj
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
        }
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::apply::Scope;
    use super::super::store::{DeleteOpts, Store, WriteCtx};

    /// A small deterministic generator (SplitMix64): random, repeatable inputs without a crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const KINDS: &[(&str, &str)] = &[
        ("", "configmaps"),
        ("", "secrets"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("", "namespaces"),
    ];
    const HOLD: &str = "example.com/hold";

    /// Everything a sweep can change, as `kind ns/name uid rv deleting [finalizers]`.
    fn state(store: &Store) -> Vec<String> {
        store
            .all()
            .map(|(k, o)| {
                let m = |f: &str| {
                    o.pointer(&format!("/metadata/{f}"))
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                format!(
                    "{} {}/{} {} {} {} {}",
                    k.plural,
                    m("namespace"),
                    m("name"),
                    m("uid"),
                    m("resourceVersion"),
                    m("deletionTimestamp").is_string(),
                    m("finalizers")
                )
            })
            .collect()
    }

    fn history(store: &Store, from: u64) -> Vec<String> {
        KINDS
            .iter()
            .flat_map(|(g, p)| {
                let rt = store.type_of(g, p).unwrap();
                store.events_since(&rt.key(), from).unwrap()
            })
            .map(|e| {
                format!(
                    "{} {} {}",
                    e.rv,
                    e.kind.as_str(),
                    e.object.pointer("/metadata/name").unwrap_or(&Value::Null)
                )
            })
            .collect()
    }

    /// One random operation, applied to every store alike.
    fn step(rng: &mut Rng, stores: &mut [Store; 2]) {
        let ctx = WriteCtx::internal("test");
        let (g, p) = KINDS[rng.below(KINDS.len())];
        let rt = stores[0].type_of(g, p).unwrap();
        let namespaces = ["default", "ns1", "ns2"];
        let ns = if rt.namespaced {
            namespaces[rng.below(3)]
        } else {
            ""
        };
        let existing: Vec<(String, String, String)> = stores[0]
            .all()
            .filter(|(k, _)| k.plural == p && k.group == g)
            .map(|(_, o)| {
                let m = |f: &str| {
                    o.pointer(&format!("/metadata/{f}"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                (m("namespace"), m("name"), m("uid"))
            })
            .collect();
        let uids: Vec<String> = stores[0]
            .all()
            .filter_map(|(_, o)| o.pointer("/metadata/uid")?.as_str().map(str::to_string))
            .collect();
        match rng.below(10) {
            // Create, with owners among the live objects and the gone.
            0..=4 => {
                let name = if p == "namespaces" {
                    ["ns1", "ns2"][rng.below(2)].to_string()
                } else {
                    format!("o{}", rng.below(40))
                };
                let mut refs = Vec::new();
                for _ in 0..rng.below(3) {
                    let uid = if rng.below(5) == 0 || uids.is_empty() {
                        format!("gone-{}", rng.below(3))
                    } else {
                        uids[rng.below(uids.len())].clone()
                    };
                    refs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}));
                }
                let mut meta = json!({"name": name});
                if !refs.is_empty() && p != "namespaces" {
                    meta["ownerReferences"] = json!(refs);
                }
                if rng.below(4) == 0 {
                    meta["finalizers"] = json!([HOLD]);
                }
                for s in stores.iter_mut() {
                    let _ = s.create(&rt, ns, json!({"metadata": meta.clone()}), &ctx);
                }
            }
            // Delete, in the background, the foreground or orphaning.
            5..=7 if !existing.is_empty() => {
                let (ons, name, _) = &existing[rng.below(existing.len())];
                let opts = match rng.below(3) {
                    0 => DeleteOpts::default(),
                    1 => DeleteOpts {
                        foreground: true,
                        ..Default::default()
                    },
                    _ => DeleteOpts {
                        orphan: true,
                        ..Default::default()
                    },
                };
                for s in stores.iter_mut() {
                    let _ = s.delete(&rt, ons, name, &opts);
                }
            }
            // Let go of the finalizer that holds an object.
            _ if !existing.is_empty() => {
                let (ons, name, _) = &existing[rng.below(existing.len())];
                for s in stores.iter_mut() {
                    let Ok(mut o) = s.get(&rt, ons, name) else {
                        continue;
                    };
                    if let Some(f) = o
                        .pointer_mut("/metadata/finalizers")
                        .and_then(Value::as_array_mut)
                    {
                        f.retain(|x| x != HOLD);
                    }
                    let scope = Scope::Main {
                        status_split: rt.status_subresource,
                    };
                    let _ = s.update(&rt, ons, name, o, scope, &ctx);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn incremental_sweeps_write_what_full_sweeps_write() {
        let mut cascades = 0;
        for seed in 0..40 {
            let mut rng = Rng(seed);
            let mut stores = [Store::new(1_000_000), Store::new(1_000_000)];
            stores[1].full_sweeps = true;
            let from = stores[0].resource_version();
            for i in 0..150 {
                let before = history(&stores[0], from).len();
                step(&mut rng, &mut stores);
                let events = history(&stores[0], from);
                assert_eq!(
                    state(&stores[0]),
                    state(&stores[1]),
                    "seed {seed}, step {i}"
                );
                assert_eq!(events, history(&stores[1], from), "seed {seed}, step {i}");
                // One operation, more than one write: the collector (or the namespace
                // controller) acted.
                cascades += usize::from(events.len() > before + 1);
            }
        }
        assert!(
            cascades > 40,
            "the collector acted after only {cascades} operations"
        );
    }
}
