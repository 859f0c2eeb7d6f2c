//! FRR beside the agent, in its Pod (BGP mode, docs/bgp.md): what the operator adds to every
//! agent DaemonSet when it is given an FRR image (`--agent-frr-image`, the chart's
//! `agent.frr`). A container `frr` runs FRR's own image, whose entrypoint (`docker-start`)
//! has watchfrr start the daemons the `daemons` file names; an init container writes that file;
//! two volumes are shared by both containers: FRR's configuration directory, where the agent
//! writes `frr.conf`, and its run directory, where the daemons' vty sockets are, which the
//! agent's vtysh and frr-reload.py use. Without an FRR image nothing of this is added, so that
//! the DaemonSets of existing installations keep their hash.

use k8s_openapi::api::core::v1::ResourceRequirements;
use serde_json::{Value, json};

/// FRR's configuration directory, in both containers (the agent's `--frr-config-dir`).
pub(crate) const CONFIG_DIR: &str = "/etc/frr";
/// FRR's run directory with the daemons' vty sockets, in both containers (the agent's
/// `--frr-vty-socket`).
pub(crate) const RUN_DIR: &str = "/var/run/frr";
/// The name of FRR's container in the agent Pod.
pub(crate) const CONTAINER: &str = "frr";

/// How FRR runs beside the agents, from the operator's flags.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FrrSettings {
    /// FRR's image (the chart's default: FRR 8.4, the version of the agent image's vtysh).
    pub(crate) image: String,
    pub(crate) image_pull_policy: String,
    pub(crate) resources: ResourceRequirements,
}

/// FRR's `daemons` file: watchfrr starts zebra and staticd (always), bgpd and bfdd, with the
/// `datacenter` profile, which Buoy's configuration names (`frr defaults datacenter`) and which
/// frr-reload.py cannot change in a running FRR. `-P 0`: no vty on TCP (the Pod is in the
/// host's network): vtysh goes through the sockets. `-s`: zebra's netlink buffer, as Debian's.
const DAEMONS: &str = r#"bgpd=yes
bfdd=yes
vtysh_enable=yes
frr_profile="datacenter"
zebra_options="-s 90000000 -P 0"
staticd_options="-P 0"
bgpd_options="-P 0"
bfdd_options="-P 0"
"#;

/// vtysh's own configuration: one `frr.conf` for all daemons, the file the agent writes
/// (frr-reload.py needs that mode).
const VTYSH_CONF: &str = "service integrated-vtysh-config\n";

/// Writes the two files into the shared configuration directory, and an empty `frr.conf` only
/// when there is none: after a restart of the Pod's sandbox the agent's configuration is kept,
/// for FRR to start with.
const WRITE_FILES: &str = r#"set -e
printf '%s' "$FRR_DAEMONS" > /etc/frr/daemons
printf '%s' "$FRR_VTYSH_CONF" > /etc/frr/vtysh.conf
[ -e /etc/frr/frr.conf ] || : > /etc/frr/frr.conf
"#;

/// How long FRR outlives the Pod's stop (a `preStop` sleep): on SIGTERM the agent announces its
/// routes with GRACEFUL_SHUTDOWN for `--bgp-drain` (3 s by default) and then withdraws them,
/// each step a reload of FRR (under a second): bgpd must still run then. Within the Pod's 30 s
/// of grace.
const OUTLIVE_SECONDS: u32 = 15;

/// What FRR needs of the kernel. NET_ADMIN: zebra's netlink (routes, interfaces); NET_RAW:
/// bfdd's packets and TCP-MD5 on BGP sessions; NET_BIND_SERVICE: BGP's port 179. SYS_ADMIN:
/// zebra and bgpd put it in their permitted capabilities when they start (for network
/// namespace VRFs, which Buoy does not use), and exit ("privs_init: initial cap_set_proc
/// failed") when the container does not have it, unless FRR is built without capabilities.
/// The runtime's default capabilities stay: FRR's start scripts run as root and the daemons
/// switch to the `frr` user (SETUID, SETGID, CHOWN, KILL among them).
const CAPABILITIES: [&str; 4] = ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE", "SYS_ADMIN"];

/// The shared volumes: FRR's configuration in memory (it holds the BGP peers' passwords: kept
/// off the node's disk), its run directory.
fn volumes() -> [Value; 2] {
    [
        json!({"name": "frr-config", "emptyDir": {"medium": "Memory"}}),
        json!({"name": "frr-run", "emptyDir": {}}),
    ]
}

/// Both volumes, mounted at FRR's own paths in each container.
fn mounts() -> [Value; 2] {
    [
        json!({"name": "frr-config", "mountPath": CONFIG_DIR}),
        json!({"name": "frr-run", "mountPath": RUN_DIR}),
    ]
}

/// The init container: FRR's image (it has a shell), no capability.
fn init_container(settings: &FrrSettings) -> Value {
    json!({
        "name": "frr-files",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["/bin/sh", "-c", WRITE_FILES],
        "env": [
            {"name": "FRR_DAEMONS", "value": DAEMONS},
            {"name": "FRR_VTYSH_CONF", "value": VTYSH_CONF},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": resources(settings),
        "volumeMounts": [mounts()[0].clone()],
    })
}

/// The `frr` container, with the image's own entrypoint (tini, then `docker-start`: watchfrr on
/// the `daemons` file). Host network: the Pod's. No privilege escalation setting: Kubernetes
/// refuses `allowPrivilegeEscalation: false` with SYS_ADMIN.
fn container(settings: &FrrSettings) -> Value {
    json!({
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "securityContext": {
            "privileged": false,
            "capabilities": {"add": CAPABILITIES},
        },
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", OUTLIVE_SECONDS.to_string()]}}},
        "resources": resources(settings),
        "volumeMounts": mounts(),
    })
}

fn resources(settings: &FrrSettings) -> Value {
    serde_json::to_value(&settings.resources).unwrap_or(Value::Null)
}

/// Adds FRR to the agent Pod `pod` (its spec, the agent the first container): the containers,
/// the volumes, and the agent's flags and mounts. The agent runs as root with every capability
/// but its three dropped, and the daemons' vty sockets are `frr:frrvty` with mode 0770, so it
/// gets DAC_OVERRIDE to open them (the group's ID differs between FRR's builds, so a
/// supplementary group would tie the Pod to one image).
pub(super) fn add(pod: &mut Value, settings: &FrrSettings) {
    if let Some(agent) = pod.pointer_mut("/containers/0") {
        if let Some(args) = agent.get_mut("args").and_then(Value::as_array_mut) {
            args.extend(
                ["--frr-config-dir", CONFIG_DIR, "--frr-vty-socket", RUN_DIR].map(Value::from),
            );
        }
        if let Some(add) = agent
            .pointer_mut("/securityContext/capabilities/add")
            .and_then(Value::as_array_mut)
        {
            add.push(json!("DAC_OVERRIDE"));
        }
        if let Some(m) = agent.get_mut("volumeMounts").and_then(Value::as_array_mut) {
            m.extend(mounts());
        }
    }
    if let Some(containers) = pod.get_mut("containers").and_then(Value::as_array_mut) {
        containers.push(container(settings));
    }
    if let Some(pod_volumes) = pod.get_mut("volumes").and_then(Value::as_array_mut) {
        pod_volumes.extend(volumes());
    }
    if let Some(spec) = pod.as_object_mut() {
        spec.insert("initContainers".into(), json!([init_container(settings)]));
    }
}
