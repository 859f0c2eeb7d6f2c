//! Service-backed pools: the ready endpoints of a Service's EndpointSlices become the pool's
//! backends (kube-proxy's view: the Service port is mapped to each endpoint's target port by the
//! port's name).

use std::collections::BTreeSet;

use buoy_crds::{Backend, UpstreamPool};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

/// Label that ties an EndpointSlice to its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Services (`namespace/name`) with a ready endpoint on `node`, from their EndpointSlices
/// (an endpoint without a ready condition is ready, as the API defines it).
pub(crate) fn ready_on(node: &str, slices: &[&EndpointSlice]) -> BTreeSet<String> {
    slices
        .iter()
        .filter(|s| {
            s.endpoints.iter().any(|e| {
                e.node_name.as_deref() == Some(node)
                    && e.conditions.as_ref().and_then(|c| c.ready) != Some(false)
            })
        })
        .filter_map(|s| {
            let service = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
            Some(buoy_crds::contract::key(
                s.metadata.namespace.as_deref(),
                Some(service),
            ))
        })
        .collect()
}

/// `pool` with static backends: its own, or those of its Service (none until the Service and
/// its endpoints exist: the pool then answers 503, as nginx does with no live upstream).
pub(crate) fn resolve(
    pool: &UpstreamPool,
    services: &[&Service],
    slices: &[&EndpointSlice],
) -> UpstreamPool {
    let Some(service_ref) = &pool.spec.service else {
        return pool.clone();
    };
    let namespace = pool
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(buoy_crds::contract::DEFAULT_NAMESPACE);
    let mut resolved = pool.clone();
    resolved.spec.service = None;
    let mut backends = Vec::new();
    let service = services.iter().find(|s| {
        s.metadata.name.as_deref() == Some(service_ref.name.as_str())
            && s.metadata.namespace.as_deref() == Some(namespace)
    });
    // The Service port's name names the endpoints' port ("" when the Service has one unnamed port).
    let port_name = service.and_then(|s| {
        s.spec
            .as_ref()?
            .ports
            .as_ref()?
            .iter()
            .find(|p| p.port == i32::from(service_ref.port))
            .map(|p| p.name.clone().unwrap_or_default())
    });
    if let Some(port_name) = port_name {
        for slice in slices.iter().filter(|e| {
            e.metadata.namespace.as_deref() == Some(namespace)
                && e.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    == Some(&service_ref.name)
        }) {
            let Some(port) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.clone().unwrap_or_default() == port_name)
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for endpoint in &slice.endpoints {
                // Absent `ready` means ready (the API's convention); terminating ones are not.
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    backends.push(Backend {
                        address: address.clone(),
                        port,
                        weight: 1,
                        backup: false,
                        down: false,
                        max_fails: None,
                        fail_timeout: None,
                    });
                }
            }
        }
    }
    backends.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
    backends.dedup_by(|a, b| a.address == b.address && a.port == b.port);
    resolved.spec.backends = Some(backends);
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn ready_endpoints_on_the_target_port_of_the_named_service_port() {
        let pool: UpstreamPool = yaml(
            "{apiVersion: buoy.io/v1alpha1, kind: UpstreamPool, metadata: {name: p, namespace: web},
              spec: {service: {name: shop, port: 80}}}",
        );
        let service: Service = yaml(
            "{metadata: {name: shop, namespace: web},
              spec: {ports: [{name: metrics, port: 9090}, {name: http, port: 80, targetPort: 8080}]}}",
        );
        let slice: EndpointSlice = yaml(
            "{metadata: {name: shop-abc, namespace: web, labels: {kubernetes.io/service-name: shop}},
              addressType: IPv4,
              ports: [{name: http, port: 8080}, {name: metrics, port: 9090}],
              endpoints: [
                {addresses: [10.1.0.1]},
                {addresses: [10.1.0.2], conditions: {ready: true}},
                {addresses: [10.1.0.3], conditions: {ready: false, terminating: true}}]}",
        );
        let other: EndpointSlice = yaml(
            "{metadata: {name: other, namespace: web, labels: {kubernetes.io/service-name: other}},
              addressType: IPv4, ports: [{name: http, port: 1}], endpoints: [{addresses: [10.9.9.9]}]}",
        );
        let r = resolve(&pool, &[&service], &[&slice, &other]);
        let got: Vec<(String, u16)> = r
            .spec
            .backends
            .unwrap()
            .iter()
            .map(|b| (b.address.clone(), b.port))
            .collect();
        assert_eq!(
            got,
            [
                ("10.1.0.1".to_string(), 8080),
                ("10.1.0.2".to_string(), 8080)
            ]
        );
        // No Service yet: no backends (503 until it appears), not an error.
        let r = resolve(&pool, &[], &[&slice]);
        assert_eq!(r.spec.backends.map(|b| b.len()), Some(0));
    }

    #[test]
    fn services_with_a_ready_endpoint_on_the_node() {
        let slice = |name: &str, service: &str, endpoints: &str| -> EndpointSlice {
            yaml(&format!(
                "{{metadata: {{name: {name}, namespace: web, labels: {{kubernetes.io/service-name: {service}}}}},
                  addressType: IPv4, endpoints: {endpoints}}}"
            ))
        };
        let a = slice(
            "a-1",
            "a",
            "[{addresses: [10.0.0.1], nodeName: n1, conditions: {ready: true}}]",
        );
        let b = slice("b-1", "b", "[{addresses: [10.0.0.2], nodeName: n1}]");
        let c = slice(
            "c-1",
            "c",
            "[{addresses: [10.0.0.3], nodeName: n1, conditions: {ready: false, serving: true, terminating: true}},
              {addresses: [10.0.0.4], nodeName: n2, conditions: {ready: true}}]",
        );
        let all = [&a, &b, &c];
        assert_eq!(
            ready_on("n1", &all),
            BTreeSet::from(["web/a".to_string(), "web/b".to_string()]),
            "a terminating endpoint is not ready; no condition is ready"
        );
        assert_eq!(ready_on("n2", &all), BTreeSet::from(["web/c".to_string()]));
        assert!(ready_on("n3", &all).is_empty());
    }
}
