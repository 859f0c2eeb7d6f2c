//! Routes of an HTTP listener by host and path (nginx's `server_name` and `location`): the API
//! types, and what is wrong with a listener's routes, in the words the agent and
//! `buoy-agent check` both use.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Listener,
    names::{DNS_SUBDOMAIN_PATTERN, ROUTE_HOST_PATTERN, ROUTE_PATH_PATTERN},
};

impl Listener {
    /// The UpstreamPools the listener names: its own, then its routes' (a name may repeat).
    pub fn pool_names(&self) -> impl Iterator<Item = &str> {
        self.upstream_pool
            .as_deref()
            .into_iter()
            .chain(self.routes.iter().map(|r| r.upstream_pool.as_str()))
    }

    /// What is wrong with the listener's routes given the UpstreamPools of its namespace
    /// (`pool_exists` by name): [`Listener::route_conflicts`], then each route whose pool does
    /// not exist ([`route_pool_not_found`]). The agent reports the same lines in the
    /// VirtualIP's status, `buoy-agent check` as warnings.
    pub fn route_problems(
        &self,
        namespace: &str,
        pool_exists: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut out = self.route_conflicts();
        for (i, r) in self.routes.iter().enumerate() {
            if !pool_exists(&r.upstream_pool) {
                out.push(route_pool_not_found(
                    i,
                    &crate::contract::key(Some(namespace), Some(&r.upstream_pool)),
                ));
            }
        }
        out
    }

    /// Hosts and paths that a route names after an earlier route already has them: the later
    /// one is ignored there (the earlier one keeps serving them), and said, one line each
    /// (`routes[1]: host a.example, Exact path /x: already in routes[0]; ignored here`).
    /// Hosts compare case-insensitively.
    pub fn route_conflicts(&self) -> Vec<String> {
        let mut seen: HashMap<(String, PathMatch, &str), usize> = HashMap::new();
        let mut out = Vec::new();
        let any_host = [RouteHost(String::new())];
        let every_path = [RoutePath {
            match_type: PathMatch::Prefix,
            value: "/".to_string(),
        }];
        for (i, r) in self.routes.iter().enumerate() {
            let hosts = if r.hosts.is_empty() {
                &any_host[..]
            } else {
                &r.hosts[..]
            };
            let paths = if r.paths.is_empty() {
                &every_path[..]
            } else {
                &r.paths[..]
            };
            for h in hosts {
                for p in paths {
                    let key = (h.0.to_ascii_lowercase(), p.match_type, p.value.as_str());
                    match seen.get(&key) {
                        Some(&first) if first != i => out.push(format!(
                            "routes[{i}]: {}, {:?} path {}: already in routes[{first}]; ignored here",
                            if h.0.is_empty() {
                                "any host".to_string()
                            } else {
                                format!("host {}", key.0)
                            },
                            p.match_type,
                            p.value
                        )),
                        Some(_) => {}
                        None => {
                            seen.insert(key, i);
                        }
                    }
                }
            }
        }
        out
    }
}

/// Route `index` names UpstreamPool `pool` (`namespace/name`), which does not exist: its
/// requests are answered 503, the other routes serve.
pub fn route_pool_not_found(index: usize, pool: &str) -> String {
    format!("routes[{index}]: UpstreamPool {pool} not found")
}

/// Requests of some hosts and paths, and the pool they go to (an nginx `server_name` with its
/// `location`s).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Host names, compared with the request's `Host` without its port and case-insensitively
    /// (nginx: `server_name`): exact (`shop.example.com`) or with a wildcard on the left
    /// (`*.example.com`: every name under example.com, not example.com itself). Empty: any host
    /// that no route names (nginx's default server).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub hosts: Vec<RouteHost>,
    /// Paths of those hosts. Empty: every path (as `Prefix /`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub paths: Vec<RoutePath>,
    /// Name of the UpstreamPool, in the same namespace, that receives these requests (nginx:
    /// `proxy_pass`).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub upstream_pool: String,
}

/// A route's host: `shop.example.com` or `*.example.com`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct RouteHost(pub String);

impl JsonSchema for RouteHost {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RouteHost".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "maxLength": 253, "pattern": ROUTE_HOST_PATTERN })
    }
}

/// A path of a route (nginx: `location = /login` is `Exact`, `location /api/` is `Prefix`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoutePath {
    /// `Exact`: the request's path (without its query) is `value`; `Prefix`: it starts with
    /// `value`, as a string (`/api` takes `/apix` too; write `/api/` for the directory). An
    /// `Exact` path wins over every prefix; the longest prefix wins over shorter ones.
    #[serde(rename = "type", default)]
    pub match_type: PathMatch,
    /// The path, starting with `/`.
    #[schemars(length(min = 1, max = 1024), regex(pattern = ROUTE_PATH_PATTERN))]
    pub value: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
// Values of the API, described by the fields that use them: doc comments on the variants
// would turn the schema's `enum` into a `oneOf`.
#[allow(missing_docs)]
pub enum PathMatch {
    Exact,
    #[default]
    Prefix,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(routes: serde_json::Value) -> Listener {
        serde_json::from_value(serde_json::json!({
            "name": "http", "port": 80, "upstreamPool": "web", "routes": routes
        }))
        .expect("a listener")
    }

    #[test]
    fn a_host_and_path_named_again_is_reported_once_per_pair() {
        let l = listener(serde_json::json!([
            {"hosts": ["shop.example.com"], "paths": [{"type": "Prefix", "value": "/api/"}, {"type": "Exact", "value": "/login"}], "upstreamPool": "api"},
            {"hosts": ["SHOP.example.com", "other.example.com"], "paths": [{"type": "Exact", "value": "/login"}, {"type": "Prefix", "value": "/login"}], "upstreamPool": "login"},
            {"paths": [{"type": "Prefix", "value": "/"}], "upstreamPool": "rest"},
            {"upstreamPool": "again"},
        ]));
        assert_eq!(
            l.route_conflicts(),
            vec![
                "routes[1]: host shop.example.com, Exact path /login: already in routes[0]; ignored here",
                "routes[3]: any host, Prefix path /: already in routes[2]; ignored here",
            ]
        );
        assert_eq!(
            l.route_problems("shop", |p| p != "login"),
            vec![
                "routes[1]: host shop.example.com, Exact path /login: already in routes[0]; ignored here",
                "routes[3]: any host, Prefix path /: already in routes[2]; ignored here",
                "routes[1]: UpstreamPool shop/login not found",
            ]
        );
        assert_eq!(
            l.pool_names().collect::<Vec<_>>(),
            ["web", "api", "login", "rest", "again"]
        );
    }
}
