//! Offline validation of manifests, as the API server would validate them (like `nginx -t`),
//! with warnings of what the API server accepts but the agent reports on the VirtualIP (routes
//! that cannot serve, certificates that cannot be served, a pool's CA that cannot be read or its
//! `insecureSkipVerify`). Shared by `buoy-agent check` and `kubectl buoy check`.

use std::{io::Write, path::PathBuf};

use buoy_crds::manifest::{Located, ManifestError, Object};

/// Manifests that passed: what they hold, and what would go wrong when they are served.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// `FILE: document N (Kind ns/name): FIELD: PROBLEM`, one per problem.
    pub warnings: Vec<String>,
    /// `configuration OK: 1 VirtualIP(s), …`.
    pub summary: String,
}

/// Loads and validates every manifest under `configs` (files, or directories of `*.yaml` /
/// `*.yml`); each error with its file, document and field.
pub fn check(configs: &[PathBuf]) -> Result<Checked, Vec<ManifestError>> {
    let objects = buoy_crds::manifest::load(configs)?;
    let count = |f: fn(&Object) -> bool| objects.iter().filter(|o| f(&o.object)).count();
    // Said only when there are some: the standalone agent's configurations have none.
    let some = |n: usize, kind: &str| match n {
        0 => String::new(),
        n => format!(", {n} {kind}(s)"),
    };
    let summary = format!(
        "configuration OK: {} VirtualIP(s), {} UpstreamPool(s), {} AddressPool(s), {} Secret(s){}{}",
        count(|o| matches!(o, Object::VirtualIP(_))),
        count(|o| matches!(o, Object::UpstreamPool(_))),
        count(|o| matches!(o, Object::AddressPool(_))),
        count(|o| matches!(o, Object::Secret(_))),
        some(count(|o| matches!(o, Object::BGPPeer(_))), "BGPPeer"),
        some(count(|o| matches!(o, Object::Service(_))), "Service"),
    );
    Ok(Checked {
        warnings: warnings(&objects),
        summary,
    })
}

/// The last line after `errors`: `configuration invalid: N error(s)`.
fn invalid(errors: &[ManifestError]) -> String {
    format!("configuration invalid: {} error(s)", errors.len())
}

/// Checks `configs` and writes the report as both commands print it: warnings and errors
/// (`warning: …`, `error: …`) and the error count to `err`, the summary to `out`; whether every
/// manifest is valid.
pub fn report(
    configs: &[PathBuf],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<bool> {
    match check(configs) {
        Ok(checked) => {
            for w in &checked.warnings {
                writeln!(err, "warning: {w}")?;
            }
            writeln!(out, "{}", checked.summary)?;
            Ok(true)
        }
        Err(errors) => {
            for e in &errors {
                writeln!(err, "error: {e}")?;
            }
            writeln!(err, "{}", invalid(&errors))?;
            Ok(false)
        }
    }
}

/// The route and certificate problems of every VirtualIP among `objects` (a route naming an
/// UpstreamPool that the files do not hold, a host and path that an earlier route has, a
/// certificate Secret missing or broken, a UDP listener's pool with `tls`), with the agent's
/// words: `FILE: document N (VirtualIP ns/name): spec.listeners[i]: PROBLEM`; and the TLS
/// problems of every UpstreamPool (its CA Secret missing or broken, `insecureSkipVerify`):
/// `FILE: document N (UpstreamPool ns/name): spec.tls: PROBLEM`.
fn warnings(objects: &[Located]) -> Vec<String> {
    use buoy_crds::contract;
    let all_pools = buoy_crds::manifest::upstream_pools(objects);
    let pools: std::collections::BTreeSet<String> = all_pools
        .iter()
        .map(|p| contract::key_of(&p.metadata))
        .collect();
    let with_tls: std::collections::BTreeSet<String> = all_pools
        .iter()
        .filter(|p| p.spec.tls.is_some())
        .map(|p| contract::key_of(&p.metadata))
        .collect();
    let secrets = buoy_crds::manifest::secrets(objects);
    let mut out = Vec::new();
    for o in objects {
        if let Object::UpstreamPool(pool) = &o.object {
            let (tls, warnings) = crate::config::pool_tls(
                pool,
                &secrets,
                &std::collections::BTreeMap::new(),
                &mut std::collections::BTreeSet::new(),
            );
            for problem in tls.err().into_iter().chain(warnings) {
                out.push(format!(
                    "{}: document {} (UpstreamPool {}): spec.tls: {problem}",
                    o.file.display(),
                    o.document,
                    contract::key_of(&pool.metadata),
                ));
            }
        }
        let Object::VirtualIP(vip) = &o.object else {
            continue;
        };
        let namespace = vip
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(contract::DEFAULT_NAMESPACE);
        let tls = crate::config::listener_tls(
            vip,
            &secrets,
            &std::collections::BTreeMap::new(),
            &mut std::collections::BTreeSet::new(),
        );
        for (i, l) in vip.spec.listeners.iter().enumerate() {
            let exists = |p: &str| pools.contains(&contract::key(Some(namespace), Some(p)));
            let certificates = tls
                .get(&l.name)
                .into_iter()
                .flat_map(|(_, p)| p.iter().cloned());
            let udp_tls = l
                .upstream_pool
                .as_ref()
                .map(|p| contract::key(Some(namespace), Some(p)))
                .filter(|p| l.protocol == buoy_crds::ListenerProtocol::UDP && with_tls.contains(p))
                .map(|p| buoy_crds::udp_pool_with_tls(&p));
            for problem in l
                .route_problems(namespace, exists)
                .into_iter()
                .chain(certificates)
                .chain(udp_tls)
            {
                out.push(format!(
                    "{}: document {} (VirtualIP {}): spec.listeners[{i}]: {problem}",
                    o.file.display(),
                    o.document,
                    contract::key_of(&vip.metadata),
                ));
            }
        }
    }
    out
}
