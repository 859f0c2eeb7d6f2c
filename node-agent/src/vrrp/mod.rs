//! VRRP: the wire format, the state machine and the IO shell that drives them.

pub mod host;
pub mod instance;
pub mod machine;
pub mod metrics;
pub mod packet;
pub mod socket;
pub mod track;
