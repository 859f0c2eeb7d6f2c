//! nginx.conf into UpstreamPools and the servers that become listeners: `http { upstream;
//! server { listen; server_name; location / { proxy_pass … } } }` and `stream { upstream; server { listen;
//! proxy_pass } }`.
//!
//! By floor: `parse` reads a file and its includes into directives; `values` reads their
//! arguments; `untranslated` says why a directive has no translation; `config` is what the files
//! translate to; `settings` the proxy and client settings and their inheritance; `upstream` the
//! pools; `server` the servers; `translate` a whole file; `merge` several files into one
//! configuration.

mod config;
mod merge;
mod parse;
mod server;
mod settings;
mod tls;
mod translate;
mod untranslated;
mod upstream;
mod values;

pub(crate) use config::{Config, Listen, ListenAddress, Server};
pub(crate) use translate::parse_file;
