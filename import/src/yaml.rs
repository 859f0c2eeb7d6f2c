//! An import as multi-document YAML, read as a hand-written manifest: the AddressPools and
//! BGPPeers first (the cluster admin's part), then Secrets, pools, VirtualIPs and Services, each under its comments,
//! values equal to the API's defaults left out, and quoted where YAML 1.1 (kubectl) would read a
//! name as a boolean.

use buoy_crds::{UpstreamPoolSpec, VirtualIPSpec};
use serde_json::Value;

use crate::{diagnostics::ImportError, objects::Import};

impl Import {
    /// Multi-document YAML, the AddressPools and BGPPeers first (the cluster admin's part), then
    /// Secrets,
    /// then pools, then VirtualIPs, then Services; values equal to the API's defaults are left out so that the
    /// output reads like a hand-written manifest.
    pub fn to_yaml(&self) -> Result<String, ImportError> {
        let mut out = String::new();
        let mut docs: Vec<(Value, &[String])> = Vec::new();
        let json = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| ImportError::Invalid(format!("cannot serialize: {e}")))
        };
        for d in &self.address_pools {
            let mut v = json(serde_json::to_value(&d.object))?;
            if let Some(Value::Object(spec)) = v.get_mut("spec") {
                // The API's defaults.
                spec.retain(|k, v| {
                    !((k == "autoAssign" && v == &Value::Bool(true))
                        || (k == "avoidBuggyIPs" && v == &Value::Bool(false)))
                });
            }
            docs.push((v, &d.comments));
        }
        for d in &self.bgp_peers {
            let mut v = json(serde_json::to_value(&d.object))?;
            if let Some(spec) = v.get_mut("spec") {
                prune_peer(spec);
            }
            docs.push((v, &d.comments));
        }
        for d in &self.secrets {
            docs.push((json(serde_json::to_value(&d.object))?, &d.comments));
        }
        let pool_default = serde_json::to_value(UpstreamPoolSpec {
            backends: None,
            service: None,
            load_balancing: Default::default(),
            health_check: Default::default(),
            retry: Default::default(),
            timeouts: Default::default(),
            http: Default::default(),
            proxy_protocol: None,
            tls: None,
        })
        .unwrap_or(Value::Null);
        for d in &self.pools {
            let mut v = json(serde_json::to_value(&d.object))?;
            if let Some(spec) = v.get_mut("spec") {
                prune_pool(spec, &pool_default);
            }
            docs.push((v, &d.comments));
        }
        let vip_default = serde_json::from_value::<VirtualIPSpec>(
            serde_json::json!({"addresses": ["192.0.2.1"]}),
        )
        .ok()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
        for d in &self.vips {
            let mut v = json(serde_json::to_value(&d.object))?;
            if let Some(spec) = v.get_mut("spec") {
                prune(
                    spec,
                    &vip_default,
                    &[
                        "addresses",
                        "vrrp.version",
                        "vrrp.advertisementInterval",
                        "listeners",
                    ],
                    "",
                );
                if let Some(Value::Array(listeners)) = spec.get_mut("listeners") {
                    for l in listeners {
                        if let Some(Value::Object(tls)) = l.get_mut("tls") {
                            prune_tls(tls);
                        }
                    }
                }
            }
            docs.push((v, &d.comments));
        }
        for d in &self.services {
            docs.push((d.object.clone(), &d.comments));
        }
        for (i, (v, comments)) in docs.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            for c in comments.iter() {
                out.push_str("# ");
                out.push_str(c);
                out.push('\n');
            }
            // Quoted where YAML 1.1 (kubectl) would read a name such as `on` or `n` as a boolean.
            let text = buoy_crds::yaml11::to_string(v)
                .map_err(|e| ImportError::Invalid(format!("cannot write YAML: {e}")))?;
            out.push_str(&text);
        }
        Ok(out)
    }
}

/// Removes the fields of a BGPPeer's spec that are the API's defaults (`peerPort: 179`, the
/// hold and keepalive times).
fn prune_peer(spec: &mut Value) {
    let default = serde_json::from_value::<buoy_crds::BGPPeerSpec>(
        serde_json::json!({"peerAddress": "192.0.2.1", "peerASN": 1, "myASN": 1}),
    )
    .ok()
    .and_then(|s| serde_json::to_value(s).ok())
    .unwrap_or(Value::Null);
    prune(spec, &default, &["peerAddress", "peerASN", "myASN"], "");
}

/// Removes the fields of a pool's spec that are the API's defaults (but the algorithm, said
/// for clarity).
fn prune_pool(spec: &mut Value, default: &Value) {
    prune(spec, default, &["loadBalancing.algorithm"], "");
    if let Some(Value::Object(tls)) = spec.get_mut("tls") {
        tls.retain(|k, v| !(k == "insecureSkipVerify" && v == &Value::Bool(false)));
    }
    if let Some(Value::Array(backends)) = spec.get_mut("backends") {
        for b in backends {
            if let Value::Object(m) = b {
                m.retain(|k, v| !((k == "backup" || k == "down") && v == &Value::Bool(false)));
            }
        }
    }
}

/// Removes a listener's TLS settings that are the API's defaults (`minVersion: "1.2"`, ALPN
/// `h2` and `http/1.1`).
fn prune_tls(tls: &mut serde_json::Map<String, Value>) {
    let defaults = serde_json::from_value::<buoy_crds::ListenerTls>(
        serde_json::json!({"certificates": [{"secretName": "x"}]}),
    )
    .ok()
    .and_then(|t| serde_json::to_value(t).ok());
    if let Some(Value::Object(d)) = defaults {
        tls.retain(|k, v| k == "certificates" || d.get(k) != Some(v));
    }
}

/// Removes the fields of `v` equal to those of `default` (recursively), except `keep`.
fn prune(v: &mut Value, default: &Value, keep: &[&str], path: &str) {
    let (Value::Object(map), Value::Object(dmap)) = (v, default) else {
        return;
    };
    map.retain(|k, val| {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let kept = keep.iter().any(|k| {
            *k == p
                || k.strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('.'))
        });
        kept || dmap.get(k) != Some(val)
    });
    for (k, val) in map.iter_mut() {
        if let Some(d) = dmap.get(k) {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            prune(val, d, keep, &p);
        }
    }
    // An object emptied by pruning says nothing either.
    map.retain(|_, val| !matches!(val, Value::Object(m) if m.is_empty()));
}
