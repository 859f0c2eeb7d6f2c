//! What the importer's library tests (import/tests/import.rs) and its binary tests
//! (node-agent/tests/import.rs, which includes this file) share: where the fixtures are, and
//! objects compared by kind and name.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use buoy_crds::manifest::{self, Object};

/// The repository (both crates that include this file sit one level below it).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `import/tests/fixtures`: the reference tutorial's `seed`, the `cases` and the `malformed` ones.
pub fn fixtures() -> PathBuf {
    repo().join("import/tests/fixtures")
}

/// Objects keyed by kind and name, so that order does not matter.
fn keyed(objects: Vec<Object>) -> BTreeMap<String, Object> {
    objects
        .into_iter()
        .map(|o| {
            let key = match &o {
                Object::VirtualIP(v) => format!("VirtualIP {:?}", v.metadata.name),
                Object::UpstreamPool(p) => format!("UpstreamPool {:?}", p.metadata.name),
                Object::AddressPool(p) => format!("AddressPool {:?}", p.metadata.name),
                Object::BGPPeer(p) => format!("BGPPeer {:?}", p.metadata.name),
                Object::Secret(s) => format!("Secret {:?}", s.metadata.name),
                Object::Service(s) => {
                    format!("Service {:?}/{:?}", s.metadata.namespace, s.metadata.name)
                }
            };
            (key, o)
        })
        .collect()
}

/// The objects of a manifest, which must validate.
pub fn parse_yaml(name: &str, yaml: &str) -> BTreeMap<String, Object> {
    let located = manifest::parse(Path::new(name), yaml)
        .unwrap_or_else(|e| panic!("{name} does not validate: {e:?}\n{yaml}"));
    keyed(located.into_iter().map(|l| l.object).collect())
}

/// The same objects under the same names.
pub fn assert_same(got: &BTreeMap<String, Object>, want: &BTreeMap<String, Object>, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: not the same objects"
    );
    for (k, w) in want {
        assert_eq!(&got[k], w, "{what}: {k} differs");
    }
}

/// The objects of examples/seed.
pub fn examples_seed() -> BTreeMap<String, Object> {
    let dir = repo().join("examples/seed");
    let located = manifest::load(&[dir]).unwrap();
    keyed(located.into_iter().map(|l| l.object).collect())
}
