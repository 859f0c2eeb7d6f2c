//! The proxy: balancing, health and retry decisions (pure), and the listeners that use them.

pub mod active;
pub mod balance;
pub mod buffered;
pub mod health;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod passive;
pub mod pool;
pub mod retry;
pub mod service;
pub mod tcp;
pub mod upstream;
