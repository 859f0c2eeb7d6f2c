//! The node agent DaemonSet of one placement, pure: the contract between the operator and
//! `buoy-agent run --placement KEY` (see docs/operator.md), with FRR in the agent's Pod when
//! the operator is given its image ([`frr`]).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

use crate::applied;

pub(crate) mod frr;

/// `app.kubernetes.io/name` of every agent DaemonSet and pod.
pub(crate) const APP: &str = "buoy-agent";
/// The label key of [`APP`].
pub(crate) const APP_LABEL: &str = "app.kubernetes.io/name";
/// Annotation on the DaemonSet: the hash of what the operator applied, so that an unchanged
/// DaemonSet is not applied again.
/// The agent's port for /metrics, /healthz and /readyz (host network).
pub(crate) const AGENT_PORT: u16 = 9901;

/// How agents run, from the operator's flags.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AgentSettings {
    /// Namespace of the DaemonSets (the operator's).
    pub(crate) namespace: String,
    pub(crate) image: String,
    pub(crate) image_pull_policy: String,
    pub(crate) service_account: String,
    pub(crate) resources: ResourceRequirements,
    /// Passed on to the agents (`--address-policy`): they decide admission again themselves.
    pub(crate) address_policy: buoy_crds::policy::AddressPolicy,
    /// Passed on to the agents (`--allow-node-local-backends`).
    pub(crate) allow_node_local_backends: bool,
    /// FRR in a container of every agent Pod (BGP mode); none: no FRR container.
    pub(crate) frr: Option<frr::FrrSettings>,
}

/// A VirtualIP that owns a DaemonSet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Owner {
    pub(crate) name: String,
    pub(crate) uid: String,
}

/// What the DaemonSet of one placement is made of.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Placement {
    pub(crate) key: String,
    pub(crate) node_selector: Option<LabelSelector>,
    /// The AddressPool's `nodeSelector`, required as well.
    pub(crate) pool_node_selector: Option<LabelSelector>,
    pub(crate) tolerations: Option<Vec<Toleration>>,
    /// VirtualIPs of this placement in the DaemonSet's namespace (owner references may not
    /// cross namespaces), sorted.
    pub(crate) owners: Vec<Owner>,
}

/// `buoy-agent-<key>`.
pub(crate) fn name(key: &str) -> String {
    format!("buoy-agent-{key}")
}

/// The nodeSelectors (all must match) as required node affinity: `matchLabels` become `In`
/// expressions, and `matchExpressions` keep their operators (node selector requirements have
/// the same four), all in one term (ANDed).
fn node_affinity(selectors: &[Option<&LabelSelector>]) -> Option<Value> {
    let mut exprs: Vec<Value> = Vec::new();
    for sel in selectors.iter().flatten() {
        exprs.extend(
            sel.match_labels
                .iter()
                .flatten()
                .map(|(k, v)| json!({"key": k, "operator": "In", "values": [v]})),
        );
        for e in sel.match_expressions.iter().flatten() {
            let mut r = json!({"key": e.key, "operator": e.operator});
            if let Some(values) = &e.values {
                r["values"] = json!(values);
            }
            exprs.push(r);
        }
    }
    if exprs.is_empty() {
        return None;
    }
    Some(
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": exprs}]}}}),
    )
}

/// iptables' lock file, shared with the host.
const XTABLES_LOCK: &str = "/run/xtables.lock";
/// Where agents keep their ledgers on the host: a restarted agent undoes what a crashed one
/// left (addresses, chains) before anything else.
const STATE_DIR: &str = "/run/buoy";

/// The DaemonSet for `placement`, as applied (server-side apply, field manager
/// `buoy-operator`), stamped with the hash of the rest ([`applied::stamp`]).
pub(crate) fn desired(settings: &AgentSettings, placement: &Placement) -> Value {
    let labels = json!({APP_LABEL: APP, buoy_crds::placement::LABEL: placement.key});
    let owners: Vec<Value> = placement
        .owners
        .iter()
        .map(|o| {
            json!({"apiVersion": buoy_crds::API_VERSION, "kind": "VirtualIP", "name": o.name,
                   "uid": o.uid, "controller": false, "blockOwnerDeletion": false})
        })
        .collect();
    let mut args = vec![
        "run".to_string(),
        "--node-name".into(),
        "$(NODE_NAME)".into(),
        "--placement".into(),
        placement.key.clone(),
        // The admin endpoint: port 9901 of $HOST_IP (the agent's default).
        "--address-policy".into(),
        settings.address_policy.as_str().into(),
    ];
    if settings.allow_node_local_backends {
        args.push("--allow-node-local-backends".into());
    }
    let probe = |path: &str, period: u32| {
        json!({"httpGet": {"path": path, "port": AGENT_PORT}, "periodSeconds": period,
               "timeoutSeconds": 2, "failureThreshold": 3})
    };
    let mut pod_spec = json!({
        "hostNetwork": true,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "serviceAccountName": settings.service_account,
        "terminationGracePeriodSeconds": 30,
        "containers": [{
            "name": "agent",
            "image": settings.image,
            "imagePullPolicy": settings.image_pull_policy,
            "args": args,
            "env": [
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                // The admin endpoint listens on the node's own address, never on a VIP.
                {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            ],
            "ports": [{"name": "metrics", "containerPort": AGENT_PORT, "protocol": "TCP"}],
            "securityContext": {
                "privileged": false,
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "livenessProbe": probe("/healthz", 10),
            "readinessProbe": probe("/readyz", 5),
            "resources": serde_json::to_value(&settings.resources).unwrap_or(Value::Null),
            // The host's iptables lock: kube-proxy and CNIs write the same tables, and iptables
            // only waits for them (`-w`) if all take the same lock file.
            "volumeMounts": [
                {"name": "xtables-lock", "mountPath": XTABLES_LOCK},
                {"name": "state", "mountPath": STATE_DIR},
            ],
        }],
        "volumes": [
            {"name": "xtables-lock", "hostPath": {"path": XTABLES_LOCK, "type": "FileOrCreate"}},
            {"name": "state", "hostPath": {"path": STATE_DIR, "type": "DirectoryOrCreate"}},
        ],
    });
    if let Some(affinity) = node_affinity(&[
        placement.node_selector.as_ref(),
        placement.pool_node_selector.as_ref(),
    ]) {
        pod_spec["affinity"] = affinity;
    }
    if let Some(t) = placement.tolerations.as_ref().filter(|t| !t.is_empty()) {
        pod_spec["tolerations"] = serde_json::to_value(t).unwrap_or(Value::Null);
    }
    if let Some(f) = &settings.frr {
        frr::add(&mut pod_spec, f);
    }
    let ds = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": name(&placement.key),
            "namespace": settings.namespace,
            "labels": labels,
            "ownerReferences": owners,
        },
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    });
    applied::stamp(ds)
}

/// The hash an applied DaemonSet carries.
pub(crate) fn applied_hash(ds: &DaemonSet) -> Option<&str> {
    applied::of(&ds.metadata)
}

/// The hash [`desired`] put on `desired`.
pub(crate) fn desired_hash(desired: &Value) -> Option<&str> {
    applied::desired(desired)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The hash of `desired(&settings(), &bare_placement())` before `agent.frr` existed
    /// (computed by the code of main at 2a758b5).
    const HASH_BEFORE_FRR: &str = "af65edeaf0b093ef";

    fn settings() -> AgentSettings {
        AgentSettings {
            namespace: "buoy-system".into(),
            image: "ghcr.io/buoy-io/buoy-agent:0.1.0".into(),
            image_pull_policy: "IfNotPresent".into(),
            service_account: "buoy-agent".into(),
            resources: serde_json::from_value(
                json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}),
            )
            .unwrap(),
            address_policy: buoy_crds::policy::AddressPolicy::Enforce,
            allow_node_local_backends: false,
            frr: None,
        }
    }

    #[test]
    fn daemonset_follows_the_contract() {
        let placement = Placement {
            key: "ad1269f96e".into(),
            node_selector: Some(
                serde_json::from_value(json!({"matchLabels": {"role": "lb"},
                    "matchExpressions": [{"key": "zone", "operator": "Exists"}]}))
                .unwrap(),
            ),
            pool_node_selector: Some(
                serde_json::from_value(json!({"matchLabels": {"buoy.io/lb": "true"}})).unwrap(),
            ),
            tolerations: Some(
                serde_json::from_value(json!([{"key": "cp", "operator": "Exists"}])).unwrap(),
            ),
            owners: vec![Owner {
                name: "web".into(),
                uid: "u1".into(),
            }],
        };
        let v = desired(&settings(), &placement);
        // It is a valid DaemonSet.
        let ds: DaemonSet = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(ds.metadata.name.as_deref(), Some("buoy-agent-ad1269f96e"));
        let spec = ds.spec.unwrap();
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            "run --node-name $(NODE_NAME) --placement ad1269f96e --address-policy Enforce"
        );
        // The admin endpoint listens on the node's own address (the agent reads $HOST_IP).
        assert!(c.env.as_ref().unwrap().iter().any(|e| {
            e.name == "HOST_IP"
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .map(|f| f.field_path.as_str())
                    == Some("status.hostIP")
        }));
        // Crash cleanup: the agent's ledger lives on the host.
        let state = &c.volume_mounts.as_ref().unwrap()[1];
        assert_eq!(state.mount_path, "/run/buoy");
        let caps = c
            .security_context
            .as_ref()
            .unwrap()
            .capabilities
            .as_ref()
            .unwrap();
        assert_eq!(caps.drop.as_ref().unwrap(), &vec!["ALL".to_string()]);
        assert_eq!(caps.add.as_ref().unwrap().len(), 3);
        // The connection handover's iptables takes the host's lock, as kube-proxy does.
        let mount = &c.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.mount_path, "/run/xtables.lock");
        let volume = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == mount.name)
            .unwrap();
        let host = volume.host_path.as_ref().unwrap();
        assert_eq!(host.path, "/run/xtables.lock");
        assert_eq!(host.type_.as_deref(), Some("FileOrCreate"));
        assert_eq!(
            v.pointer("/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions").unwrap(),
            &json!([{"key": "role", "operator": "In", "values": ["lb"]}, {"key": "zone", "operator": "Exists"},
                     {"key": "buoy.io/lb", "operator": "In", "values": ["true"]}])
        );
        assert_eq!(
            spec.update_strategy
                .unwrap()
                .rolling_update
                .unwrap()
                .max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
        );
        assert_eq!(
            v.pointer("/metadata/ownerReferences/0/uid"),
            Some(&json!("u1"))
        );
        // The hash changes with what matters and only with it.
        let same = desired(&settings(), &placement);
        assert_eq!(desired_hash(&same), desired_hash(&v));
        let mut other = settings();
        other.image = "ghcr.io/buoy-io/buoy-agent:0.2.0".into();
        assert_ne!(desired_hash(&desired(&other, &placement)), desired_hash(&v));
    }

    fn frr_settings() -> frr::FrrSettings {
        frr::FrrSettings {
            image: "quay.io/frrouting/frr:8.4.4".into(),
            image_pull_policy: "Always".into(),
            resources: serde_json::from_value(
                json!({"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}}),
            )
            .unwrap(),
        }
    }

    fn bare_placement() -> Placement {
        Placement {
            key: "k".into(),
            node_selector: None,
            pool_node_selector: None,
            tolerations: None,
            owners: vec![Owner {
                name: "web".into(),
                uid: "u1".into(),
            }],
        }
    }

    /// The volume names `c` mounts, by mount path.
    fn mounts(c: &k8s_openapi::api::core::v1::Container) -> BTreeMap<String, String> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.mount_path.clone(), m.name.clone()))
            .collect()
    }

    #[test]
    fn frr_runs_beside_the_agent_sharing_its_configuration_and_sockets() {
        let mut with = settings();
        with.frr = Some(frr_settings());
        let v = desired(&with, &bare_placement());
        let ds: DaemonSet = serde_json::from_value(v.clone()).unwrap();
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["agent", "frr"]);
        let (agent, frr) = (&pod.containers[0], &pod.containers[1]);

        // The agent drives FRR through the shared directories.
        assert_eq!(
            agent.args.as_ref().unwrap().join(" "),
            "run --node-name $(NODE_NAME) --placement k --address-policy Enforce \
             --frr-config-dir /etc/frr --frr-vty-socket /var/run/frr"
        );
        let volumes: BTreeMap<&str, &k8s_openapi::api::core::v1::Volume> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v))
            .collect();
        for (path, volume) in [("/etc/frr", "frr-config"), ("/var/run/frr", "frr-run")] {
            assert_eq!(mounts(agent).get(path).map(String::as_str), Some(volume));
            assert_eq!(mounts(frr).get(path).map(String::as_str), Some(volume));
            assert!(volumes[volume].empty_dir.is_some(), "{volume}");
        }
        // The agent keeps its own mounts, and the host's nothing of FRR's.
        assert_eq!(mounts(agent).len(), 4);
        assert_eq!(volumes.len(), 4);
        assert!(volumes["frr-config"].host_path.is_none());

        // FRR: its image, FRR's own entrypoint, the capabilities it needs.
        assert_eq!(frr.image.as_deref(), Some("quay.io/frrouting/frr:8.4.4"));
        assert_eq!(frr.image_pull_policy.as_deref(), Some("Always"));
        assert!(frr.command.is_none() && frr.args.is_none());
        let caps = |c: &k8s_openapi::api::core::v1::Container| {
            c.security_context
                .as_ref()
                .and_then(|s| s.capabilities.as_ref())
                .and_then(|c| c.add.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            caps(frr),
            ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE", "SYS_ADMIN"]
        );
        let sc = frr.security_context.as_ref().unwrap();
        assert_ne!(sc.privileged, Some(true));
        assert_ne!(
            sc.allow_privilege_escalation,
            Some(false),
            "refused with SYS_ADMIN"
        );
        // The agent still drops everything else, and may open FRR's vty sockets.
        assert_eq!(
            caps(agent),
            ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE", "DAC_OVERRIDE"]
        );
        assert_eq!(
            v.pointer("/spec/template/spec/containers/1/resources"),
            Some(
                &json!({"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}})
            )
        );
        // FRR outlives the agent's graceful shutdown, within the grace period.
        let sleep = frr
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.clone())
            .unwrap();
        assert_eq!(sleep[0], "sleep");
        let secs: i64 = sleep[1].parse().unwrap();
        assert!(secs > 3 + 2 && secs < pod.termination_grace_period_seconds.unwrap());

        // The daemons file, written before FRR starts, into the shared configuration.
        let init = pod.init_containers.as_ref().unwrap();
        assert_eq!(init.len(), 1);
        assert_eq!(
            init[0].image.as_deref(),
            Some("quay.io/frrouting/frr:8.4.4")
        );
        assert_eq!(
            mounts(&init[0]).get("/etc/frr").map(String::as_str),
            Some("frr-config")
        );
        let env: BTreeMap<&str, &str> = init[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
            .collect();
        let daemons: Vec<&str> = env["FRR_DAEMONS"].lines().collect();
        for line in ["bgpd=yes", "bfdd=yes", r#"frr_profile="datacenter""#] {
            assert!(daemons.contains(&line), "{line} in {daemons:?}");
        }
        assert_eq!(env["FRR_VTYSH_CONF"], "service integrated-vtysh-config\n");
        let script = init[0].command.as_ref().unwrap().join(" ");
        for file in [
            "/etc/frr/daemons",
            "/etc/frr/vtysh.conf",
            "/etc/frr/frr.conf",
        ] {
            assert!(script.contains(file), "{script}");
        }
        assert!(caps(&init[0]).is_empty());

        // FRR's settings are part of the hash: a new image rolls the agents.
        let without = desired(&settings(), &bare_placement());
        assert_ne!(desired_hash(&without), desired_hash(&v));
        let mut newer = with.clone();
        if let Some(f) = newer.frr.as_mut() {
            f.image = "quay.io/frrouting/frr:8.4.5".into();
        }
        assert_ne!(
            desired_hash(&desired(&newer, &bare_placement())),
            desired_hash(&v)
        );
    }

    #[test]
    fn without_frr_the_daemonset_is_what_it_was() {
        let v = desired(&settings(), &bare_placement());
        let spec = v.pointer("/spec/template/spec").unwrap();
        assert!(spec.get("initContainers").is_none());
        assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
        assert!(!v.to_string().contains("frr"), "{v:#}");
        // The hash this DaemonSet had before FRR could be added: existing installations are
        // not rolled by an upgrade that leaves FRR off.
        assert_eq!(desired_hash(&v), Some(HASH_BEFORE_FRR));
    }

    #[test]
    fn no_selector_no_affinity() {
        let placement = Placement {
            key: "k".into(),
            node_selector: None,
            pool_node_selector: None,
            tolerations: None,
            owners: vec![],
        };
        let v = desired(&settings(), &placement);
        assert!(v.pointer("/spec/template/spec/affinity").is_none());
        assert!(v.pointer("/spec/template/spec/tolerations").is_none());
    }
}
