//! Discovery documents (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}[/{version}]`) in
//! their legacy (unaggregated) form, which kube-rs and kubectl both fall back to.

use serde_json::{Value, json};

use super::resources::Registry;

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-buoy-testapi",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn core_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}],
    })
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(json!({})),
    })
}

pub fn groups(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .map(|(g, vs)| {
            let mut d = group_doc(g, vs);
            if let Some(m) = d.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            d
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    reg.groups()
        .iter()
        .find(|(g, _)| g == name)
        .map(|(g, vs)| group_doc(g, vs))
}

/// `APIResourceList` of one group version, or None when nothing is served there.
pub fn resources(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = reg
        .in_group_version(group, version)
        .flat_map(|rt| rt.discovery())
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per served group version. kubectl reads it to learn that the server
/// validates fields itself (`fieldValidation`), instead of validating against full schemas.
pub fn openapi_root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    let mut gvs = vec![(String::new(), "v1".to_string())];
    for (g, vs) in reg.groups() {
        gvs.extend(vs.into_iter().map(|v| (g.clone(), v)));
    }
    for (g, v) in gvs {
        let p = gv_path(&g, &v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=0")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/apis/{group}/{version}`: a skeleton document with each kind's PATCH operation and
/// its `fieldValidation` parameter (no schemas: the server validates).
pub fn openapi_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for rt in reg.in_group_version(group, version) {
        let scope = if rt.namespaced {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        let path = format!("/{}/{scope}{}/{{name}}", gv_path(group, version), rt.plural);
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
        let gvk = json!({"group": group, "version": version, "kind": rt.kind});
        paths.insert(path, json!({
            "patch": {"operationId": format!("patch{}", rt.kind), "parameters": params, "responses": {}, "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk},
        }));
    }
    if paths.is_empty() {
        return None;
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "components": {"schemas": {}}}),
    )
}

/// Content type of aggregated discovery responses (clients check it before parsing).
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery (v2).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|t| {
        t.contains("as=APIGroupDiscoveryList") && t.contains("v=v2") && !t.contains("v=v2beta1")
    })
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`): of the core group for `/api`, or of every
/// other group for `/apis`, with each version's resources and subresources.
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let groups: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        reg.groups()
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .in_group_version(g, v)
                        .map(|rt| {
                            let kind = json!({"group": g, "version": v, "kind": rt.kind});
                            let mut subresources = Vec::new();
                            if rt.status_subresource {
                                subresources.push(json!({"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}));
                            }
                            json!({
                                "resource": rt.plural,
                                "responseKind": kind,
                                "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": rt.singular,
                                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                                "shortNames": rt.short_names,
                                "categories": rt.categories,
                                "subresources": subresources,
                            })
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
