//! An UpstreamPool's `tls` in the plan: the verification settings of its backends' TLS, with
//! its CA read from a Secret at hand, and what is wrong with them in words for its status and
//! `buoy-agent check`.

use std::collections::{BTreeMap, BTreeSet};

use buoy_crds::{UpstreamPool, contract, secret_keys};
use k8s_openapi::api::core::v1::Secret;

use super::secret_value;
use crate::proxy::tls::{BackendTls, Verify};

/// A pool's TLS to its backends ([`pool_tls`]): the settings, or `Err` with why its backends
/// cannot be used (its CA cannot be read); and what to warn of.
pub type PoolTls = (Result<Option<BackendTls>, String>, Vec<String>);

/// The TLS of `pool`'s backends from the Secrets at hand (`problems_of`: why a wanted Secret
/// could not be read lately; the last copy read is used meanwhile, with a warning). A CA Secret
/// that is missing or holds no usable CA certificate is an `Err`: every connection would fail
/// verification, so the pool has no usable backend. `insecureSkipVerify` is warned of. The
/// Secret goes in `wants`.
pub fn pool_tls(
    pool: &UpstreamPool,
    secrets: &[&Secret],
    problems_of: &BTreeMap<(String, String), String>,
    wants: &mut BTreeSet<(String, String)>,
) -> PoolTls {
    let Some(tls) = &pool.spec.tls else {
        return (Ok(None), Vec::new());
    };
    let mut warnings = Vec::new();
    let verify = if tls.insecure_skip_verify {
        warnings.push(
            "tls.insecureSkipVerify: backend certificates are not verified; whoever is on the path to the backends can read and change the traffic"
                .to_string(),
        );
        Verify::Insecure
    } else if let Some(name) = &tls.ca_secret_name {
        let namespace = pool
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(contract::DEFAULT_NAMESPACE);
        let id = (namespace.to_string(), name.clone());
        wants.insert(id.clone());
        let pem = secret_value(secrets, namespace, name, secret_keys::CA_CERTIFICATE);
        let read = match pem {
            Some(pem) => Verify::ca_from_pem(&pem).map_err(|e| e.to_string()),
            None => Err(match problems_of.get(&id) {
                Some(problem) => problem.clone(),
                None if secrets.iter().any(|s| {
                    s.metadata.name.as_deref() == Some(name.as_str())
                        && s.metadata
                            .namespace
                            .as_deref()
                            .unwrap_or(contract::DEFAULT_NAMESPACE)
                            == namespace
                }) =>
                {
                    format!("no {}", secret_keys::CA_CERTIFICATE)
                }
                None => "not found".to_string(),
            }),
        };
        match read {
            Ok(v) => {
                if let Some(problem) = problems_of.get(&id) {
                    warnings.push(format!(
                        "tls.caSecretName {name}: {problem}; the last CA read is used"
                    ));
                }
                v
            }
            Err(why) => {
                return (
                    Err(format!(
                        "tls.caSecretName {name}: {why}; no backend is used, as none could be verified"
                    )),
                    warnings,
                );
            }
        }
    } else {
        Verify::SystemRoots
    };
    let config = BackendTls {
        server_name: tls.server_name.as_ref().map(|n| n.to_ascii_lowercase()),
        verify,
    };
    (Ok(Some(config)), warnings)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::{
        config::{BackendPolicy, pool as plan_pool},
        dns::Resolutions,
    };

    #[test]
    fn a_pool_whose_ca_cannot_be_read_has_no_backends() {
        let pool = |tls: &str| -> UpstreamPool {
            serde_yaml::from_str(&format!(
                "apiVersion: buoy.io/v1alpha1\nkind: UpstreamPool\nmetadata: {{name: p, namespace: t}}\nspec:\n  backends:\n    - {{address: 10.0.0.9, port: 443}}\n    - {{address: web.example, port: 443}}\n  tls: {tls}\n"
            ))
            .unwrap()
        };
        let resolved: Resolutions = [(
            "web.example".to_string(),
            crate::refresh::Fetched {
                value: Some(vec!["10.0.0.8".parse().unwrap()]),
                ..Default::default()
            },
        )]
        .into();
        let allow = BackendPolicy::default();
        let mut wants = BTreeSet::new();
        // Missing: no backend, the reason first; the Secret is wanted.
        let missing = pool("{caSecretName: backend-ca}");
        let tls = pool_tls(&missing, &[], &BTreeMap::new(), &mut wants);
        let c = plan_pool(&missing, &resolved, &allow, tls);
        assert!(c.backends.is_empty() && c.tls.is_none());
        assert_eq!(
            c.problems,
            [
                "tls.caSecretName backend-ca: not found; no backend is used, as none could be verified"
            ]
        );
        assert!(wants.contains(&("t".to_string(), "backend-ca".to_string())));
        // Not PEM.
        let secret: Secret = serde_yaml::from_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: backend-ca, namespace: t}\nstringData: {ca.crt: nonsense}\n",
        )
        .unwrap();
        let tls = pool_tls(&missing, &[&secret], &BTreeMap::new(), &mut wants);
        let c = plan_pool(&missing, &resolved, &allow, tls);
        assert!(c.backends.is_empty());
        assert!(
            c.problems[0].contains("ca.crt holds no usable CA certificate"),
            "{:?}",
            c.problems
        );
        // insecureSkipVerify serves, with a warning; each backend's own name is its default TLS
        // name, the pool's serverName otherwise.
        let insecure = pool("{insecureSkipVerify: true}");
        let tls = pool_tls(&insecure, &[], &BTreeMap::new(), &mut wants);
        let c = plan_pool(&insecure, &resolved, &allow, tls);
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.backends[1].host.as_deref(), Some("web.example"));
        assert_eq!(c.tls.as_ref().map(|t| &t.verify), Some(&Verify::Insecure));
        assert!(c.problems[0].contains("not verified"), "{:?}", c.problems);
        // Without a CA: the host's.
        let system = pool("{serverName: Backend.Example}");
        let tls = pool_tls(&system, &[], &BTreeMap::new(), &mut wants);
        let c = plan_pool(&system, &resolved, &allow, tls);
        let tls = c.tls.unwrap();
        assert_eq!(
            (tls.server_name.as_deref(), tls.verify),
            (Some("backend.example"), Verify::SystemRoots)
        );
        assert!(c.problems.is_empty());
    }
}
