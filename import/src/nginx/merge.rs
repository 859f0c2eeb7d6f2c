//! Several nginx files into one configuration: the same nginx.conf copied on every host is read
//! once; a pool defined differently in two files is warned about and the first is used.

use super::config::{Config, Server};
use crate::diagnostics::Warnings;

impl Config {
    /// Adds another file's pools and servers (the same nginx.conf copied on every host is read
    /// once).
    pub(crate) fn merge(&mut self, other: Config, warnings: &mut Warnings) {
        for p in other.pools {
            match self.pools.iter().find(|q| q.name == p.name) {
                Some(q)
                    if q.spec == p.spec
                        && q.ca.as_ref().map(|c| &c.0) == p.ca.as_ref().map(|c| &c.0) => {}
                Some(q) => warnings.add(
                    &p.at,
                    "upstream",
                    format!(
                        "another file defines pool {} differently ({}); the first is used",
                        p.name, q.at
                    ),
                ),
                None => self.pools.push(p),
            }
        }
        for s in other.servers {
            let same = |t: &Server| {
                t.protocol == s.protocol
                    && t.pool == s.pool
                    && t.names == s.names
                    && t.locations.len() == s.locations.len()
                    && t.locations
                        .iter()
                        .zip(&s.locations)
                        .all(|(a, b)| (a.kind, &a.path, &a.pool) == (b.kind, &b.path, &b.pool))
                    && t.client == s.client
                    && t.tls.same(&s.tls)
                    && t.listens.len() == s.listens.len()
                    && t.listens.iter().zip(&s.listens).all(|(a, b)| {
                        (a.address, a.port, a.ssl, a.http2) == (b.address, b.port, b.ssl, b.http2)
                    })
            };
            if !self.servers.iter().any(same) {
                self.servers.push(s);
            }
        }
    }
}
