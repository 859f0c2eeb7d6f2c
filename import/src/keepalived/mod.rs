//! keepalived.conf into VirtualIP drafts, one per VRRP instance across the hosts' files.
//!
//! By floor: `parse` reads a file and its includes into statements; `values` reads a statement's
//! arguments; `defs` the definitions instances refer to (`global_defs`, `vrrp_script`);
//! `instance` one `vrrp_instance`; `translate` a whole file; `merge` the hosts' files into
//! VirtualIP drafts.

mod defs;
mod instance;
mod merge;
mod parse;
mod translate;
mod values;

pub(crate) use merge::merge;
pub(crate) use translate::parse_file;
