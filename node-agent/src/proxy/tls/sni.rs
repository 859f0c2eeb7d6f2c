//! Which certificate a handshake gets (nginx's `server_name` choice for TLS): the certificate
//! with the client's SNI name exactly, else the one with a wildcard for it (`*.example.com`
//! covers `a.example.com`, not `example.com` nor `a.b.example.com`, as RFC 6125 says), else the
//! first. Names compare case-insensitively. The set is swapped whole when a Secret changes:
//! handshakes after the swap get the new certificate, connections already up keep theirs.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use super::certificate::Certificate;

/// The certificates of one listener, by name.
#[derive(Debug, Default)]
pub(crate) struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    first: Option<Arc<CertifiedKey>>,
}

impl Certificates {
    /// The set of `certificates`, in the configuration's order: a name two of them have is the
    /// earlier one's.
    pub(crate) fn new(certificates: &[Certificate]) -> Self {
        let mut set = Certificates {
            first: certificates.first().map(|c| c.key.clone()),
            ..Certificates::default()
        };
        for c in certificates {
            for name in &c.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(rest) => (&mut set.wildcard, rest),
                    None => (&mut set.exact, name.as_str()),
                };
                map.entry(key.to_string()).or_insert_with(|| c.key.clone());
            }
        }
        set
    }

    /// The certificate for SNI name `name` (none: the first).
    pub(crate) fn choose(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = name else {
            return self.first.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(k) = self.wildcard.get(parent)
        {
            return Some(k.clone());
        }
        self.first.clone()
    }
}

/// A listener's certificates as the handshakes see them, replaced in place on rotation.
#[derive(Debug, Default)]
pub(crate) struct Resolver(RwLock<Arc<Certificates>>);

impl Resolver {
    /// Handshakes from now on use `set`.
    pub(crate) fn replace(&self, set: Certificates) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        set.choose(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::{super::certificate::tests::self_signed, *};

    fn cert(secret: &str, names: &[&str]) -> Certificate {
        let (crt, key) = self_signed(names);
        Certificate::parse(secret, &crt, &key).unwrap()
    }

    #[test]
    fn exact_then_wildcard_then_first() {
        let a = cert("ns/a", &["a.example.com"]);
        let w = cert("ns/w", &["*.example.com", "Exact.Example.Org"]);
        let set = Certificates::new(&[a.clone(), w.clone()]);
        let is = |got: Option<Arc<CertifiedKey>>, c: &Certificate| {
            got.is_some_and(|k| Arc::ptr_eq(&k, &c.key))
        };
        assert!(is(set.choose(Some("a.example.com")), &a));
        assert!(
            is(set.choose(Some("A.EXAMPLE.COM.")), &a),
            "case and trailing dot"
        );
        assert!(is(set.choose(Some("b.example.com")), &w), "wildcard");
        assert!(is(set.choose(Some("exact.example.org")), &w));
        assert!(
            is(set.choose(Some("x.b.example.com")), &a),
            "one label only: the first"
        );
        assert!(
            is(set.choose(Some("example.com")), &a),
            "the wildcard is not the parent"
        );
        assert!(is(set.choose(None), &a), "no SNI: the first");
        assert!(
            Certificates::new(&[])
                .choose(Some("a.example.com"))
                .is_none()
        );
    }
}
