//! The kinds the server serves: the built-in ones and, from each CustomResourceDefinition, its
//! kinds with their schema, printer columns and subresources.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Identity of a resource: its group and plural name (versions share storage).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResKey {
    pub group: String,
    pub plural: String,
}

#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    /// Served versions; the first is the preferred one.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// `openAPIV3Schema` per version (custom resources only).
    pub schemas: BTreeMap<String, Value>,
    /// `additionalPrinterColumns` per version (custom resources only).
    pub printer_columns: BTreeMap<String, Vec<Value>>,
    /// Served from a CustomResourceDefinition.
    pub custom: bool,
}

impl ResourceType {
    fn builtin(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        status: bool,
    ) -> Self {
        ResourceType {
            group: group.into(),
            versions: vec![version.into()],
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            status_subresource: status,
            schemas: BTreeMap::new(),
            printer_columns: BTreeMap::new(),
            custom: false,
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn key(&self) -> ResKey {
        ResKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn preferred_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    /// `pods`, `virtualips.buoy.io`: how error messages name the resource.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Pod`, `VirtualIP.buoy.io`.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn schema(&self, version: &str) -> Option<&Value> {
        self.schemas.get(version)
    }

    /// The `APIResource` entries of discovery: the resource and its subresources.
    pub fn discovery(&self) -> Vec<Value> {
        let verbs = json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]);
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }

    /// The kinds served by a CustomResourceDefinition object, or why it cannot be served.
    pub fn from_crd(crd: &Value) -> Result<ResourceType, String> {
        let spec = crd.get("spec").ok_or("spec: Required value")?;
        let s = |p: &str| spec.pointer(p).and_then(Value::as_str).map(str::to_string);
        let group = s("/group").ok_or("spec.group: Required value")?;
        let plural = s("/names/plural").ok_or("spec.names.plural: Required value")?;
        let kind = s("/names/kind").ok_or("spec.names.kind: Required value")?;
        let strings = |p: &str| -> Vec<String> {
            spec.pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut rt = ResourceType {
            singular: s("/names/singular").unwrap_or_else(|| kind.to_lowercase()),
            namespaced: s("/scope").as_deref() != Some("Cluster"),
            short_names: strings("/names/shortNames"),
            categories: strings("/names/categories"),
            group,
            versions: Vec::new(),
            kind,
            plural,
            status_subresource: false,
            schemas: BTreeMap::new(),
            printer_columns: BTreeMap::new(),
            custom: true,
        };
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .ok_or("spec.versions: Required value")?;
        // The storage version is preferred; the others are served alongside (no conversion: the
        // test server stores one shape).
        let mut ordered: Vec<&Value> = versions.iter().collect();
        ordered.sort_by_key(|v| v.get("storage").and_then(Value::as_bool) != Some(true));
        for v in ordered {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or("spec.versions[].name: Required value")?
                .to_string();
            if v.pointer("/subresources/status").is_some() {
                rt.status_subresource = true;
            }
            if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
                rt.schemas.insert(name.clone(), schema.clone());
            }
            if let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
                rt.printer_columns.insert(name.clone(), cols.clone());
            }
            rt.versions.push(name);
        }
        if rt.versions.is_empty() {
            return Err("spec.versions: must have exactly one storage version".into());
        }
        Ok(rt)
    }
}

/// Every served kind, by group and plural.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub types: BTreeMap<ResKey, ResourceType>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let b = ResourceType::builtin;
        let mut reg = Registry::default();
        for rt in [
            b("", "v1", "Namespace", "namespaces", false, true).short(&["ns"]),
            b("", "v1", "Node", "nodes", false, true).short(&["no"]),
            b("", "v1", "Pod", "pods", true, true).short(&["po"]),
            b("", "v1", "Service", "services", true, true).short(&["svc"]),
            b("", "v1", "Endpoints", "endpoints", true, false).short(&["ep"]),
            b("", "v1", "ConfigMap", "configmaps", true, false).short(&["cm"]),
            b("", "v1", "Secret", "secrets", true, false),
            b("", "v1", "ServiceAccount", "serviceaccounts", true, false).short(&["sa"]),
            b("", "v1", "Event", "events", true, false).short(&["ev"]),
            b("apps", "v1", "DaemonSet", "daemonsets", true, true).short(&["ds"]),
            // Stored only (no controller): what the Helm chart installs beside the operator.
            b("apps", "v1", "Deployment", "deployments", true, true).short(&["deploy"]),
            b(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                true,
                true,
            )
            .short(&["pdb"]),
            b(
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                "endpointslices",
                true,
                false,
            ),
            b("coordination.k8s.io", "v1", "Lease", "leases", true, false),
            b("events.k8s.io", "v1", "Event", "events", true, false).short(&["ev"]),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "Role",
                "roles",
                true,
                false,
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
                true,
                false,
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                false,
                false,
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                false,
                false,
            ),
            b(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
                true,
            )
            .short(&["crd", "crds"]),
        ] {
            reg.types.insert(rt.key(), rt);
        }
        reg
    }

    /// The kind served at `/apis/{group}/{version}/{plural}`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&ResKey {
                group: group.into(),
                plural: plural.into(),
            })
            .filter(|rt| rt.versions.iter().any(|v| v == version))
    }

    /// `(group, versions)` in discovery order: the legacy core group apart, built-ins first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for rt in self.types.values().filter(|rt| !rt.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == rt.group) {
                Some((_, versions)) => {
                    for v in &rt.versions {
                        if !versions.contains(v) {
                            versions.push(v.clone());
                        }
                    }
                }
                None => groups.push((rt.group.clone(), rt.versions.clone())),
            }
        }
        groups
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceType> {
        self.types
            .values()
            .filter(move |rt| rt.group == group && rt.versions.iter().any(|v| v == version))
    }
}
