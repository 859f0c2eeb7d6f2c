//! Reading Buoy objects from YAML manifests (the same files users `kubectl apply`): multi-document
//! streams of VirtualIP, UpstreamPool, AddressPool, BGPPeer, Secret (VRRPv2 and BGP passwords in
//! standalone mode) and Service.
//! Every error names the file, the document and the field.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{Secret, Service};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    API_VERSION, AddressPool, BGPPeer, FieldError, UpstreamPool, VirtualIP,
    validation::validate_value,
};

/// One object read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A `VirtualIP`.
    VirtualIP(Box<VirtualIP>),
    /// An `UpstreamPool`.
    UpstreamPool(Box<UpstreamPool>),
    /// An `AddressPool`.
    AddressPool(Box<AddressPool>),
    /// A `BGPPeer`.
    BGPPeer(Box<BGPPeer>),
    /// A `Secret` (standalone mode: VRRP passwords beside the objects).
    Secret(Box<Secret>),
    /// A `Service` (a LoadBalancer Service's Buoy annotations; standalone mode ignores it).
    Service(Box<Service>),
}

/// An object and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    /// The file it was read from.
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    /// The object.
    pub object: Object,
}

/// Why a document was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    /// `VirtualIP default/web`, when known.
    pub object: Option<String>,
    /// The field and what is wrong with it.
    pub error: FieldError,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)?;
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        write!(f, ": {}", self.error)
    }
}

/// Parses and validates every document of `text` (read from `file`). Returns the objects, or every
/// error found (documents are checked independently so one run shows all mistakes).
pub fn parse(file: &Path, text: &str) -> Result<Vec<Located>, Vec<ManifestError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let fail = |object: Option<String>, path: &str, message: String| ManifestError {
            file: file.to_path_buf(),
            document,
            object,
            error: FieldError::new(path, message),
        };
        let value = match Value::deserialize(doc) {
            Ok(Value::Null) => continue, // an empty document, e.g. after a trailing `---`
            Ok(v) => v,
            Err(e) => {
                errors.push(fail(None, "", format!("invalid YAML: {e}")));
                // The stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        match parse_object(&value) {
            Ok(object) => objects.push(Located {
                file: file.to_path_buf(),
                document,
                object,
            }),
            Err(errs) => {
                let label = describe(&value);
                errors.extend(errs.into_iter().map(|e| ManifestError {
                    file: file.to_path_buf(),
                    document,
                    object: label.clone(),
                    error: e,
                }));
            }
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// Reads files and directories (every `*.yaml` / `*.yml` inside, sorted), like `kubectl apply -f`.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Located>, Vec<ManifestError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for path in files(paths, &mut errors) {
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse(&path, &text) {
                Ok(found) => objects.extend(found),
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(ManifestError {
                file: path.clone(),
                document: 0,
                object: None,
                error: FieldError::new("", format!("cannot read: {e}")),
            }),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// The manifest files that `paths` name: files as given, and every `*.yaml` / `*.yml` of a
/// directory, sorted. Unreadable directories are reported in `errors`.
pub fn files(paths: &[PathBuf], errors: &mut Vec<ManifestError>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.is_file()
                                && matches!(
                                    p.extension().and_then(|e| e.to_str()),
                                    Some("yaml" | "yml")
                                )
                        })
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => errors.push(ManifestError {
                    file: path.clone(),
                    document: 0,
                    object: None,
                    error: FieldError::new("", format!("cannot read directory: {e}")),
                }),
            }
        } else {
            files.push(path.clone());
        }
    }
    files
}

fn describe(value: &Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    // Cluster-scoped kinds have no namespace to show.
    if matches!(kind, "AddressPool" | "BGPPeer") {
        return Some(format!("{kind} {name}"));
    }
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    Some(format!("{kind} {ns}/{name}"))
}

fn parse_object(value: &Value) -> Result<Object, Vec<FieldError>> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    match (api_version, kind) {
        (API_VERSION, "VirtualIP") => {
            validate_value::<VirtualIP>(value).map_err(|e| e.0)?;
            typed(value).map(|v| Object::VirtualIP(Box::new(v)))
        }
        (API_VERSION, "UpstreamPool") => {
            validate_value::<UpstreamPool>(value).map_err(|e| e.0)?;
            typed(value).map(|v| Object::UpstreamPool(Box::new(v)))
        }
        (API_VERSION, "AddressPool") => {
            validate_value::<AddressPool>(value).map_err(|e| e.0)?;
            typed(value).map(|v| Object::AddressPool(Box::new(v)))
        }
        (API_VERSION, "BGPPeer") => {
            validate_value::<BGPPeer>(value).map_err(|e| e.0)?;
            typed(value).map(|v| Object::BGPPeer(Box::new(v)))
        }
        ("v1", "Secret") => typed(value).map(|v| Object::Secret(Box::new(v))),
        ("v1", "Service") => {
            let service: Service = typed(value)?;
            let errors = crate::service::validate_service(&service);
            if errors.is_empty() {
                Ok(Object::Service(Box::new(service)))
            } else {
                Err(errors)
            }
        }
        ("", _) => Err(vec![FieldError::new(
            "apiVersion",
            "Required value".to_string(),
        )]),
        (_, "") => Err(vec![FieldError::new("kind", "Required value".to_string())]),
        (a, k) => Err(vec![FieldError::new(
            "kind",
            format!(
                "Unsupported value: \"{a}, Kind={k}\": supported: {API_VERSION} VirtualIP, {API_VERSION} UpstreamPool, {API_VERSION} AddressPool, {API_VERSION} BGPPeer, v1 Secret, v1 Service"
            ),
        )]),
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, Vec<FieldError>> {
    serde_json::from_value(value.clone())
        .map_err(|e| vec![FieldError::new("", format!("cannot decode: {e}"))])
}

/// The VirtualIPs among `objects`.
pub fn virtual_ips(objects: &[Located]) -> Vec<&VirtualIP> {
    objects
        .iter()
        .filter_map(|o| match &o.object {
            Object::VirtualIP(v) => Some(&**v),
            _ => None,
        })
        .collect()
}

/// The Secrets among `objects` (VRRPv2 passwords in standalone mode).
pub fn secrets(objects: &[Located]) -> Vec<&Secret> {
    objects
        .iter()
        .filter_map(|o| match &o.object {
            Object::Secret(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

/// The AddressPools among `objects`.
pub fn address_pools(objects: &[Located]) -> Vec<&AddressPool> {
    objects
        .iter()
        .filter_map(|o| match &o.object {
            Object::AddressPool(p) => Some(&**p),
            _ => None,
        })
        .collect()
}

/// The BGPPeers among `objects`.
pub fn bgp_peers(objects: &[Located]) -> Vec<&BGPPeer> {
    objects
        .iter()
        .filter_map(|o| match &o.object {
            Object::BGPPeer(p) => Some(&**p),
            _ => None,
        })
        .collect()
}

/// The UpstreamPools among `objects`.
pub fn upstream_pools(objects: &[Located]) -> Vec<&UpstreamPool> {
    objects
        .iter()
        .filter_map(|o| match &o.object {
            Object::UpstreamPool(p) => Some(&**p),
            _ => None,
        })
        .collect()
}

/// The Services among `objects`.
pub fn services(objects: &[Located]) -> Vec<&Service> {
    objects
        .iter()
        .filter_map(|o| match &o.object {
            Object::Service(s) => Some(&**s),
            _ => None,
        })
        .collect()
}
