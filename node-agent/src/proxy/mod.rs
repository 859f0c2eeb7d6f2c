//! The proxy: balancing, health and retry decisions (pure), and the listeners that use them.

pub mod access_log;
pub(crate) mod active;
pub(crate) mod balance;
pub(crate) mod buffered;
pub(crate) mod health;
pub(crate) mod http;
pub mod listener;
pub mod metrics;
pub(crate) mod passive;
pub(crate) mod pool;
pub(crate) mod proxy_protocol;
pub(crate) mod retry;
pub mod route;
pub mod service;
pub(crate) mod tcp;
pub mod tls;
pub(crate) mod udp;
pub(crate) mod upstream;
