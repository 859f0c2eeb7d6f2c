//! `kubectl buoy`, a kubectl plugin for Buoy: where each VirtualIP is and why (`status`), what
//! happened to it (`events`), and the offline validation of manifests (`check`, the same as
//! `buoy-agent check`). The binary parses kubectl's flags and calls these.

#![warn(unreachable_pub, missing_docs)]

pub mod age;
pub mod connect;
pub mod events;
pub mod status;
pub mod table;

/// What a command prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// A table, for stdout.
    Table(String),
    /// Nothing to show, and what to say about it on stderr (as kubectl says `No resources
    /// found`): no failure.
    Empty(String),
}

/// Why the API server's answer is not a table.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `get` of a VirtualIP that does not exist.
    #[error("virtualips.buoy.io {name:?} not found in namespace {namespace:?}")]
    NotFound {
        /// The namespace asked.
        namespace: String,
        /// The name asked.
        name: String,
    },
    /// The server does not serve the kind: Buoy's CRDs are not installed.
    #[error("the server does not serve {0} (are Buoy's CRDs installed?)")]
    NotServed(&'static str),
    /// Any other failure to ask (unreachable, forbidden, …).
    #[error(transparent)]
    Api(#[from] kube::Error),
}

impl ApiError {
    fn from_get(e: kube::Error, namespace: &str, name: &str) -> ApiError {
        match e {
            kube::Error::Api(s) if s.is_not_found() => ApiError::NotFound {
                namespace: namespace.into(),
                name: name.into(),
            },
            e => ApiError::Api(e),
        }
    }

    fn from_list(e: kube::Error) -> ApiError {
        match e {
            kube::Error::Api(s) if s.is_not_found() => ApiError::NotServed("virtualips.buoy.io"),
            e => ApiError::Api(e),
        }
    }
}
