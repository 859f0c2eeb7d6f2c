//! The VRRP decoder must never panic, whatever arrives on the wire; and whatever it accepts must
//! encode back to the same bytes (so nothing it accepted was misread).
#![no_main]

use std::net::IpAddr;

use buoy_vrrp::packet::{decode, decode_ipv4_packet, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_ipv4_packet(data);
    for (src, dst) in [("10.0.0.1", "224.0.0.18"), ("fe80::1", "ff02::12")] {
        let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        if let Ok(advert) = decode(data, src, dst) {
            let again = encode(&advert, src, dst);
            // Reserved bits are not kept, so compare what they do not affect.
            assert_eq!(decode(&again, src, dst).ok(), Some(advert));
        }
    }
});
