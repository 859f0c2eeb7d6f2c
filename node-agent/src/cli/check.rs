//! `buoy-agent check`: validates manifests as the API server would, like `nginx -t`, and warns
//! of what the API server accepts but the agent reports on the VirtualIP (routes that cannot
//! serve, certificates that cannot be served).

use std::{path::PathBuf, process::ExitCode};

pub(super) fn check(configs: &[PathBuf]) -> ExitCode {
    match buoy_crds::manifest::load(configs) {
        Ok(objects) => {
            use buoy_crds::manifest::Object;
            for w in warnings(&objects) {
                eprintln!("warning: {w}");
            }
            let count = |f: fn(&Object) -> bool| objects.iter().filter(|o| f(&o.object)).count();
            println!(
                "configuration OK: {} VirtualIP(s), {} UpstreamPool(s), {} AddressPool(s), {} Secret(s){}",
                count(|o| matches!(o, Object::VirtualIP(_))),
                count(|o| matches!(o, Object::UpstreamPool(_))),
                count(|o| matches!(o, Object::AddressPool(_))),
                count(|o| matches!(o, Object::Secret(_))),
                // Said only when there are some: the standalone agent's configurations have none.
                match count(|o| matches!(o, Object::Service(_))) {
                    0 => String::new(),
                    n => format!(", {n} Service(s)"),
                },
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("configuration invalid: {} error(s)", errors.len());
            ExitCode::FAILURE
        }
    }
}

/// The route and certificate problems of every VirtualIP among `objects` (a route naming an
/// UpstreamPool that the files do not hold, a host and path that an earlier route has, a
/// certificate Secret missing or broken), with the agent's words:
/// `FILE: document N (VirtualIP ns/name): spec.listeners[i]: PROBLEM`.
fn warnings(objects: &[buoy_crds::manifest::Located]) -> Vec<String> {
    use buoy_crds::{contract, manifest::Object};
    let pools: std::collections::BTreeSet<String> = buoy_crds::manifest::upstream_pools(objects)
        .iter()
        .map(|p| contract::key_of(&p.metadata))
        .collect();
    let secrets = buoy_crds::manifest::secrets(objects);
    let mut out = Vec::new();
    for o in objects {
        let Object::VirtualIP(vip) = &o.object else {
            continue;
        };
        let namespace = vip
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(contract::DEFAULT_NAMESPACE);
        let tls = buoy_agent::config::listener_tls(
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
            for problem in l
                .route_problems(namespace, exists)
                .into_iter()
                .chain(certificates)
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
