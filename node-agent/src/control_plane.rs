//! The control-plane VIP (`buoy-agent manifest control-plane`): the Buoy configuration that puts
//! a highly available address in front of a cluster's API servers before the cluster exists
//! (kubeadm's `controlPlaneEndpoint`), and the static Pod that runs the agent in standalone mode
//! on every control-plane node. Nothing here, nor in what it writes, needs the cluster: no API
//! access, no DNS (the probes are of IP literals).

use std::net::IpAddr;

use buoy_crds::{UpstreamPool, VirtualIP};
use serde_json::{Value, json};

/// How clients reach the API servers through the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// VRRP only: the master holds the VIP and its own API server answers on it (keepalived
    /// alone; kube-vip's ARP mode).
    Announce,
    /// A TCP listener on the VIP forwards to every healthy API server (keepalived + HAProxy, as
    /// in kubeadm's HA guide), TLS passed through.
    Proxy,
}

/// One control-plane node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPlaneNode {
    /// The node's name (its host name: kubelet's node name, the agent's `NODE_NAME`).
    pub name: String,
    /// Its VRRP priority, 1..254.
    pub priority: u8,
    /// The address its API server listens on (proxy mode's backends).
    pub address: Option<IpAddr>,
}

impl std::str::FromStr for ControlPlaneNode {
    type Err = String;

    /// `NAME=PRIORITY` or `NAME=PRIORITY@ADDRESS`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=PRIORITY[@ADDRESS]"))?;
        let (priority, address) = match rest.split_once('@') {
            Some((p, a)) => (
                p,
                Some(
                    a.parse()
                        .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?,
                ),
            ),
            None => (rest, None),
        };
        let priority = priority
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=254).contains(p))
            .ok_or_else(|| format!("{s:?}: the priority must be 1..254"))?;
        Ok(ControlPlaneNode {
            name: name.to_string(),
            priority,
            address,
        })
    }
}

/// What the configuration is made from (the command's flags).
#[derive(Clone, Debug)]
pub struct ControlPlane {
    /// The VIP, `IP/PREFIX` (or a bare IP: a host address).
    pub address: String,
    /// The interface that carries it.
    pub interface: String,
    /// The control-plane nodes.
    pub nodes: Vec<ControlPlaneNode>,
    /// The port clients use on the VIP.
    pub port: u16,
    /// The port every API server listens on.
    pub apiserver_port: u16,
    /// Announce or proxy.
    pub mode: Mode,
    /// The VRRP virtual router ID (unique on the LAN).
    pub virtual_router_id: u8,
    /// VRRP's advertisement interval.
    pub advertisement_interval: buoy_crds::Duration,
    /// The agent's image.
    pub image: String,
    /// Where the node keeps the configuration (the Pod's hostPath).
    pub config_dir: String,
}

/// The name of the objects (VirtualIP, UpstreamPool) and of the static Pod.
pub const NAME: &str = "control-plane";
/// Their namespace: the control plane's.
pub const NAMESPACE: &str = "kube-system";

impl ControlPlane {
    /// What is wrong with the flags, before anything is written.
    fn check(&self) -> Result<IpAddr, String> {
        let ip: IpAddr = self
            .address
            .split_once('/')
            .map_or(self.address.as_str(), |(ip, _)| ip)
            .parse()
            .map_err(|_| format!("--address {:?} is not IP/PREFIX", self.address))?;
        if self.nodes.is_empty() {
            return Err("at least one --node NAME=PRIORITY is needed".into());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if self.nodes[..i].iter().any(|m| m.name == n.name) {
                return Err(format!("node {:?} is given twice", n.name));
            }
        }
        if self.mode == Mode::Proxy {
            if let Some(n) = self.nodes.iter().find(|n| n.address.is_none()) {
                return Err(format!(
                    "--mode proxy forwards to every API server: give node {:?} its address (--node {}={}@ADDRESS)",
                    n.name, n.name, n.priority
                ));
            }
            if self.port == self.apiserver_port {
                return Err(format!(
                    "--mode proxy needs a VIP port other than the API servers' ({}): an API server listens on every address of its node, the VIP included (kubeadm's HAProxy guide uses 8443)",
                    self.apiserver_port
                ));
            }
        }
        Ok(ip)
    }

    /// The Buoy configuration, one JSON object per document: the VirtualIP, and in proxy mode
    /// its UpstreamPool. Each is validated as the agent will validate it.
    pub fn objects(&self) -> Result<Vec<Value>, String> {
        let ip = self.check()?;
        let loopback = if ip.is_ipv4() { "127.0.0.1" } else { "[::1]" };
        let livez = format!("https://{loopback}:{}/livez", self.apiserver_port);
        let interval = self.advertisement_interval.to_string();
        let mut spec = json!({
            "addresses": [self.address],
            "interface": self.interface,
            "virtualRouterID": self.virtual_router_id,
            "vrrp": {
                "version": 3,
                "advertisementInterval": interval,
                // As kube-vip's lease: the VIP stays where it is when a node with a higher
                // priority comes back, instead of moving twice.
                "preempt": false,
            },
            "priorities": self.nodes.iter().map(|n| json!({"node": n.name, "priority": n.priority})).collect::<Vec<_>>(),
            // The local API server's health: a node whose API server is down holds no VIP.
            "track": {"httpGet": {
                "url": livez,
                "interval": "1s",
                "timeout": "1s",
                "failureThreshold": 2,
                "successThreshold": 1,
                "weight": 0,
            }},
        });
        let mut objects = Vec::new();
        if self.mode == Mode::Proxy {
            spec["listeners"] = json!([{
                "name": "apiserver",
                "port": self.port,
                "protocol": "TCP",
                "upstreamPool": NAME,
                // Watches stay open for minutes; client-go's HTTP/2 pings keep them alive.
                "client": {"idleTimeout": "10m"},
            }]);
            let pool = json!({
                "apiVersion": buoy_crds::API_VERSION,
                "kind": "UpstreamPool",
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "spec": {
                    "backends": self.nodes.iter().filter_map(|n| n.address).map(|a| json!({"address": a.to_string(), "port": self.apiserver_port})).collect::<Vec<_>>(),
                    "healthCheck": {"active": {
                        "protocol": "HTTPS",
                        "path": "/livez",
                        "interval": "1s",
                        "timeout": "1s",
                        "healthyThreshold": 1,
                        "unhealthyThreshold": 2,
                    }},
                    "timeouts": {"connect": "2s", "idle": "10m"},
                },
            });
            let typed: UpstreamPool = serde_json::from_value(pool.clone())
                .map_err(|e| format!("the UpstreamPool: {e}"))?;
            typed
                .validate()
                .map_err(|e| format!("the UpstreamPool: {e}"))?;
            objects.push(pool);
        }
        let vip = json!({
            "apiVersion": buoy_crds::API_VERSION,
            "kind": "VirtualIP",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": spec,
        });
        let typed: VirtualIP =
            serde_json::from_value(vip.clone()).map_err(|e| format!("the VirtualIP: {e}"))?;
        typed
            .validate()
            .map_err(|e| format!("the VirtualIP: {e}"))?;
        objects.insert(0, vip);
        Ok(objects)
    }

    /// The static Pod for `/etc/kubernetes/manifests`: the agent in standalone mode on the
    /// host's network, with only the capabilities VRRP and the listeners need, the
    /// configuration from the host, no service account token.
    pub fn pod(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("buoy-{NAME}"),
                "namespace": NAMESPACE,
                "labels": {
                    "app.kubernetes.io/name": "buoy",
                    "app.kubernetes.io/component": "control-plane-vip",
                },
            },
            "spec": {
                "hostNetwork": true,
                "priorityClassName": "system-node-critical",
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "buoy-agent",
                    "image": self.image,
                    "args": ["standalone", "--config", self.config_dir, "--state-dir", "/run/buoy"],
                    // The kubelet fills it in from its own node name: no API call.
                    "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "securityContext": {
                        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"]},
                    },
                    "livenessProbe": {
                        "httpGet": {"host": "127.0.0.1", "port": 9901, "path": "/healthz"},
                        "periodSeconds": 10,
                        "failureThreshold": 3,
                    },
                    "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                    "volumeMounts": [
                        {"name": "config", "mountPath": self.config_dir, "readOnly": true},
                        {"name": "state", "mountPath": "/run/buoy"},
                    ],
                }],
                "volumes": [
                    {"name": "config", "hostPath": {"path": self.config_dir, "type": "Directory"}},
                    {"name": "state", "hostPath": {"path": "/run/buoy", "type": "DirectoryOrCreate"}},
                ],
            },
        })
    }
}

/// Documents as one YAML stream that reads the same in YAML 1.1 (kubectl, the kubelet).
pub fn to_yaml(documents: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for (i, d) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&buoy_crds::yaml11::to_string(d).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control_plane(mode: Mode) -> ControlPlane {
        ControlPlane {
            address: "10.0.0.100/24".into(),
            interface: "eth0".into(),
            nodes: ["cp1=100@10.0.0.1", "cp2=99@10.0.0.2", "cp3=98@10.0.0.3"]
                .iter()
                .map(|n| n.parse().unwrap())
                .collect(),
            port: if mode == Mode::Proxy { 8443 } else { 6443 },
            apiserver_port: 6443,
            mode,
            virtual_router_id: 51,
            advertisement_interval: buoy_crds::Duration::from_secs(1),
            image: "ghcr.io/buoy-io/buoy-agent:0.1.0".into(),
            config_dir: "/etc/buoy/control-plane".into(),
        }
    }

    #[test]
    fn announce_tracks_the_local_api_server_and_has_no_listener() {
        let objects = control_plane(Mode::Announce).objects().unwrap();
        assert_eq!(objects.len(), 1);
        let spec = &objects[0]["spec"];
        assert_eq!(
            spec["track"]["httpGet"]["url"],
            "https://127.0.0.1:6443/livez"
        );
        assert_eq!(spec["track"]["httpGet"]["weight"], 0);
        assert_eq!(
            spec["priorities"][2],
            json!({"node": "cp3", "priority": 98})
        );
        assert!(spec.get("listeners").is_none());
    }

    #[test]
    fn proxy_forwards_to_every_api_server_checked_over_https() {
        let objects = control_plane(Mode::Proxy).objects().unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0]["spec"]["listeners"][0]["port"], 8443);
        assert_eq!(objects[0]["spec"]["listeners"][0]["protocol"], "TCP");
        let pool = &objects[1]["spec"];
        assert_eq!(pool["backends"].as_array().unwrap().len(), 3);
        assert_eq!(
            pool["backends"][1],
            json!({"address": "10.0.0.2", "port": 6443})
        );
        assert_eq!(pool["healthCheck"]["active"]["protocol"], "HTTPS");
        assert_eq!(pool["healthCheck"]["active"]["path"], "/livez");
    }

    #[test]
    fn bad_flags_are_told_not_written() {
        let mut c = control_plane(Mode::Proxy);
        c.port = 6443;
        assert!(c.objects().unwrap_err().contains("8443"));
        let mut c = control_plane(Mode::Proxy);
        c.nodes[1].address = None;
        assert!(c.objects().unwrap_err().contains("cp2=99@ADDRESS"));
        let mut c = control_plane(Mode::Announce);
        c.address = "cp.example.com".into();
        assert!(c.objects().unwrap_err().contains("IP/PREFIX"));
        let mut c = control_plane(Mode::Announce);
        c.nodes.push("cp1=50".parse().unwrap());
        assert!(c.objects().unwrap_err().contains("twice"));
        assert!("cp1=0".parse::<ControlPlaneNode>().is_err());
        assert!("cp1".parse::<ControlPlaneNode>().is_err());
        assert!("cp1=100@cp1.lan".parse::<ControlPlaneNode>().is_err());
    }

    #[test]
    fn ipv6_tracks_the_ipv6_loopback() {
        let mut c = control_plane(Mode::Announce);
        c.address = "fd00::100/64".into();
        let objects = c.objects().unwrap();
        assert_eq!(
            objects[0]["spec"]["track"]["httpGet"]["url"],
            "https://[::1]:6443/livez"
        );
    }

    #[test]
    fn the_pod_runs_standalone_on_the_host_network_with_three_capabilities() {
        let c = control_plane(Mode::Announce);
        let pod = c.pod();
        let spec = &pod["spec"];
        assert_eq!(spec["hostNetwork"], true);
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["priorityClassName"], "system-node-critical");
        let container = &spec["containers"][0];
        assert_eq!(
            container["securityContext"]["capabilities"]["add"],
            json!(["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"])
        );
        assert_eq!(container["args"][2], "/etc/buoy/control-plane");
        assert_eq!(
            spec["volumes"][0]["hostPath"]["path"],
            "/etc/buoy/control-plane"
        );
        let yaml = to_yaml(std::slice::from_ref(&pod)).unwrap();
        let back: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, pod);
    }
}
