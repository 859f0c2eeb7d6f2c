//! One `vrrp_instance` block into an [`Instance`]: its directives read in order (a `Body`), then
//! the choices that need all of them (address family, VRRP version, advertisement interval,
//! authentication, unicast).

use std::{collections::BTreeMap, net::IpAddr};

use buoy_crds::{
    AuthenticationType, Duration, InterfaceName, IpAddressString, SecretKeyRef, TrackInterfaces,
    VrrpAuthentication, VrrpSpec,
};

use super::{
    defs::{EVENTS, Globals, Script},
    parse::Stmt,
    values::{decimal_seconds, ip_arg, number, one_arg, repeat, seconds, version_of},
};
use crate::diagnostics::{ImportError, Loc, Warnings};

/// A `vrrp_instance`, in Buoy's terms.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    pub(crate) at: Loc,
    pub(crate) name: String,
    pub(crate) vrid: u8,
    pub(crate) priority: Option<u8>,
    pub(crate) state: Option<(String, Loc)>,
    pub(crate) interface: Option<(String, Loc)>,
    pub(crate) addresses: Vec<String>,
    pub(crate) vrrp: VrrpSpec,
    pub(crate) password: Option<(String, Loc)>,
    pub(crate) source: Option<String>,
    pub(crate) track_upstreams: Option<(i32, Loc)>,
    pub(crate) track_interfaces: Option<TrackInterfaces>,
}

/// What an instance's block says, read directive by directive, before the checks and choices
/// that need all of it.
struct Body {
    inst: Instance,
    vrid: Option<u8>,
    /// The block's `version`, else global_defs' `vrrp_version`.
    version: Option<u8>,
    /// Whether either was written (a VRRPv2 request for IPv6 addresses is then warned about).
    explicit_version: bool,
    advert: Option<(Duration, Loc)>,
    unicast: bool,
    peers: Vec<IpAddressString>,
}

/// Translates a `vrrp_instance` block.
pub(crate) fn vrrp_instance(
    s: &Stmt,
    globals: &Globals,
    scripts: &BTreeMap<String, Script>,
    warnings: &mut Warnings,
) -> Result<Instance, ImportError> {
    let mut body = Body::new(s, one_arg(s)?.to_string(), globals);
    for d in s.block.iter().flatten() {
        body.directive(d, scripts, warnings)?;
    }
    body.finish(s, warnings)
}

impl Body {
    fn new(s: &Stmt, name: String, globals: &Globals) -> Self {
        Body {
            inst: Instance {
                at: s.at.clone(),
                name,
                vrid: 0,
                priority: None,
                state: None,
                interface: None,
                addresses: Vec::new(),
                vrrp: VrrpSpec {
                    gratuitous_arp: globals.garp.clone(),
                    ..VrrpSpec::default()
                },
                password: None,
                source: None,
                track_upstreams: None,
                track_interfaces: None,
            },
            vrid: None,
            version: globals.version,
            explicit_version: globals.version.is_some(),
            advert: None,
            unicast: false,
            peers: Vec::new(),
        }
    }

    /// Reads one directive of the block.
    fn directive(
        &mut self,
        d: &Stmt,
        scripts: &BTreeMap<String, Script>,
        warnings: &mut Warnings,
    ) -> Result<(), ImportError> {
        if vrrp_setting(d, &mut self.inst.vrrp, warnings)? {
            return Ok(());
        }
        let inst = &mut self.inst;
        match d.keyword() {
            "state" => inst.state = Some((one_arg(d)?.to_ascii_uppercase(), d.at.clone())),
            "interface" => inst.interface = Some((one_arg(d)?.to_string(), d.at.clone())),
            "virtual_router_id" => self.vrid = Some(number(d, d.args().first(), 1, 255)? as u8),
            "priority" => inst.priority = Some(priority(d, warnings)?),
            "advert_int" => self.advert = Some((advert_int(d)?, d.at.clone())),
            "version" => {
                self.version = Some(version_of(d)?);
                self.explicit_version = true;
            }
            "authentication" => authentication(d, &mut inst.password, warnings)?,
            "virtual_ipaddress" => {
                for a in d.block.iter().flatten() {
                    virtual_address(a, inst, warnings)?;
                }
            }
            "mcast_src_ip" => inst.source = Some(ip_arg(d)?),
            "unicast_src_ip" => {
                inst.source = Some(ip_arg(d)?);
                self.unicast = true;
            }
            "unicast_peer" => {
                self.unicast = true;
                unicast_peers(d, &mut self.peers, warnings)?;
            }
            "track_script" => {
                for t in d.block.iter().flatten() {
                    track_script(t, inst, scripts, warnings)?;
                }
            }
            "track_interface" => {
                if let Some(t) = track_interface(d, warnings)? {
                    inst.track_interfaces = Some(t);
                }
            }
            _ => untranslated(d, warnings),
        }
        Ok(())
    }

    /// The checks and choices that need the whole block.
    fn finish(self, s: &Stmt, warnings: &mut Warnings) -> Result<Instance, ImportError> {
        let Body {
            mut inst,
            vrid,
            version,
            explicit_version,
            advert,
            unicast,
            peers,
        } = self;
        inst.vrid = vrid.ok_or_else(|| {
            ImportError::at(
                &s.at,
                format!("vrrp_instance {} has no virtual_router_id", inst.name),
            )
        })?;
        let ipv6 = is_ipv6(s, &inst, &peers)?;
        let v = settle_version(
            s,
            version,
            explicit_version,
            ipv6,
            &mut inst.password,
            warnings,
        );
        inst.vrrp.version = v;
        if let Some((a, at)) = advert {
            inst.vrrp.advertisement_interval = advertisement_interval(a, &at, v, warnings);
        }
        if inst.password.is_some() {
            inst.vrrp.authentication = Some(VrrpAuthentication {
                auth_type: AuthenticationType::Password,
                // The Secret's name and key are settled when every VirtualIP is known.
                secret_ref: SecretKeyRef {
                    name: "vrrp-auth".into(),
                    key: "password".into(),
                },
            });
        }
        inst.vrrp.unicast = unicast;
        if !peers.is_empty() {
            inst.vrrp.unicast_peers = Some(peers);
        }
        Ok(inst)
    }
}

/// Reads a preemption or gratuitous ARP setting, or `use_vmac`, into `vrrp`; false if `d` is none
/// of those.
fn vrrp_setting(
    d: &Stmt,
    vrrp: &mut VrrpSpec,
    warnings: &mut Warnings,
) -> Result<bool, ImportError> {
    let k = d.keyword();
    match k {
        "nopreempt" => vrrp.preempt = false,
        "preempt" => vrrp.preempt = true,
        "preempt_delay" => vrrp.preempt_delay = seconds(d)?,
        "garp_master_delay" => vrrp.gratuitous_arp.delay = seconds(d)?,
        "garp_master_repeat" => vrrp.gratuitous_arp.repeat = repeat(d)?,
        "garp_master_refresh" => vrrp.gratuitous_arp.refresh_interval = seconds(d)?,
        "garp_master_refresh_repeat" => vrrp.gratuitous_arp.refresh_repeat = repeat(d)?,
        "use_vmac" => {
            vrrp.virtual_mac = true;
            if !d.args().is_empty() {
                warnings.add(&d.at, k, "the macvlan interface's name is chosen by Buoy");
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The directives of an instance that have no translation, and why.
fn untranslated(d: &Stmt, warnings: &mut Warnings) {
    let k = d.keyword();
    match k {
        "virtual_ipaddress_excluded" => warnings.add(
            &d.at,
            k,
            "Buoy advertises every address it moves; put these in a second VirtualIP",
        ),
        "notify"
        | "notify_master"
        | "notify_backup"
        | "notify_fault"
        | "notify_stop"
        | "notify_deleted"
        | "notify_master_rx_lower_pri"
        | "smtp_alert" => warnings.add(&d.at, k, EVENTS),
        "accept" => {}
        "no_accept" => warnings.add(
            &d.at,
            k,
            "the proxy listens on the virtual addresses, so they always accept traffic",
        ),
        "dont_track_primary" => warnings.add(
            &d.at,
            k,
            "Buoy always tracks the VIP's own interface (down = Fault)",
        ),
        _ => warnings.add(&d.at, k, "Buoy has no equivalent"),
    }
}

/// `priority`: 1 to 255, and 255 ("address owner") becomes 254.
fn priority(d: &Stmt, warnings: &mut Warnings) -> Result<u8, ImportError> {
    let p = number(d, d.args().first(), 1, 255)?;
    if p == 255 {
        warnings.add(
            &d.at,
            "priority",
            "255 means \"address owner\", which no Buoy node is; 254 is used",
        );
    }
    Ok(p.min(254) as u8)
}

/// `advert_int`: a positive number of seconds, with a fraction.
fn advert_int(d: &Stmt) -> Result<Duration, ImportError> {
    let a = one_arg(d)?;
    decimal_seconds(a).filter(|v| !v.is_zero()).ok_or_else(|| {
        ImportError::at(
            &d.at,
            format!("advert_int: {a:?} is not a positive number of seconds"),
        )
    })
}

/// `authentication { auth_type PASS; auth_pass … }` into `password`; any other type clears it.
fn authentication(
    d: &Stmt,
    password: &mut Option<(String, Loc)>,
    warnings: &mut Warnings,
) -> Result<(), ImportError> {
    let mut kind = None;
    for a in d.block.iter().flatten() {
        match a.keyword() {
            "auth_type" => kind = Some((one_arg(a)?.to_ascii_uppercase(), a.at.clone())),
            "auth_pass" => {
                let p = one_arg(a)?.to_string();
                if p.len() > 8 {
                    warnings.add(&a.at, "auth_pass", "only the first 8 characters are used on the wire, by keepalived and Buoy alike");
                }
                *password = Some((p, a.at.clone()));
            }
            other => warnings.add(&a.at, other, "unknown keyword in authentication"),
        }
    }
    match kind {
        Some((t, _)) if t == "PASS" => {}
        Some((t, at)) => {
            warnings.add(&at, "auth_type", format!("{t} (IPsec AH) authentication is not supported: it was removed from the VRRP specifications; the VirtualIP has no authentication"));
            *password = None;
        }
        None => {
            warnings.add(&d.at, "authentication", "no auth_type: ignored");
            *password = None;
        }
    }
    Ok(())
}

/// `unicast_peer { … }`: adds each address to `peers` once.
fn unicast_peers(
    d: &Stmt,
    peers: &mut Vec<IpAddressString>,
    warnings: &mut Warnings,
) -> Result<(), ImportError> {
    for p in d.block.iter().flatten() {
        let ip: IpAddr = p.keyword().parse().map_err(|_| {
            ImportError::at(
                &p.at,
                format!("unicast_peer: {:?} is not an IP address", p.keyword()),
            )
        })?;
        if p.words.len() > 1 {
            warnings.add(
                &p.at,
                p.args().first().map_or("", String::as_str),
                "peer options (min_ttl, max_ttl) have no equivalent",
            );
        }
        let ip = IpAddressString(ip.to_string());
        if !peers.contains(&ip) {
            peers.push(ip);
        }
    }
    Ok(())
}

/// `track_interface { … }`: up to 8 interfaces with one weight; None for an empty block.
fn track_interface(
    d: &Stmt,
    warnings: &mut Warnings,
) -> Result<Option<TrackInterfaces>, ImportError> {
    let mut names = Vec::new();
    let mut weight: Option<i32> = None;
    for t in d.block.iter().flatten() {
        let w = match t.args() {
            [] => 0,
            [kw, n] if kw == "weight" => number(t, Some(n), -253, 253)? as i32,
            _ => {
                return Err(ImportError::at(&t.at, "expected \"INTERFACE [weight N]\""));
            }
        };
        match weight {
            Some(prev) if prev != w => warnings.add(
                &t.at,
                "weight",
                format!(
                    "Buoy has one weight for all tracked interfaces; {prev} (the first) is used"
                ),
            ),
            _ => weight = Some(w),
        }
        if names.len() == 8 {
            warnings.add(&t.at, t.keyword(), "Buoy tracks at most 8 interfaces");
            continue;
        }
        names.push(InterfaceName(t.keyword().to_string()));
    }
    Ok((!names.is_empty()).then(|| TrackInterfaces {
        names,
        weight: weight.unwrap_or(0),
    }))
}

/// Whether the instance's addresses are IPv6; an error if it has none, mixes the families, or
/// sends from or to an address of the other family.
fn is_ipv6(s: &Stmt, inst: &Instance, peers: &[IpAddressString]) -> Result<bool, ImportError> {
    if inst.addresses.is_empty() {
        return Err(ImportError::at(
            &s.at,
            format!("vrrp_instance {} has no virtual_ipaddress", inst.name),
        ));
    }
    let ipv6 = inst.addresses.iter().any(|a| a.contains(':'));
    if inst.addresses.iter().any(|a| a.contains(':') != ipv6) {
        return Err(ImportError::at(
            &s.at,
            "virtual_ipaddress mixes IPv4 and IPv6 (keepalived refuses it too)",
        ));
    }
    // Adverts come from and go to addresses of the VIP's family.
    let family = |ip: &str| ip.contains(':');
    let peer_ips = peers.iter().map(|p| p.0.as_str());
    if let Some(bad) = inst
        .source
        .iter()
        .map(String::as_str)
        .chain(peer_ips)
        .find(|ip| family(ip) != ipv6)
    {
        return Err(ImportError::at(
            &s.at,
            format!("{bad} (source or unicast peer) is not of the virtual addresses' family"),
        ));
    }
    Ok(ipv6)
}

/// The version: auth exists only in v2 (the seed's case); an explicit vrrp_version wins;
/// otherwise Buoy's default, v3 (keepalived's default is v2: see docs/migration.md). A v3
/// instance drops its password; IPv6 needs v3.
fn settle_version(
    s: &Stmt,
    asked: Option<u8>,
    explicit: bool,
    ipv6: bool,
    password: &mut Option<(String, Loc)>,
    warnings: &mut Warnings,
) -> u8 {
    let v = match (asked, &*password) {
        (Some(3), Some((_, at))) => {
            warnings.add(
                at,
                "auth_pass",
                "VRRPv3 has no authentication (keepalived ignores it too)",
            );
            *password = None;
            3
        }
        (_, Some(_)) => 2,
        (Some(v), None) => v,
        (None, None) => 3,
    };
    if v == 2 && ipv6 {
        if explicit {
            warnings.add(
                &s.at,
                "vrrp_version",
                "VRRPv2 carries no IPv6; version 3 is used",
            );
        }
        return 3;
    }
    v
}

/// `advert_int` in what version `v` can carry: whole seconds for v2, centiseconds for v3.
fn advertisement_interval(a: Duration, at: &Loc, v: u8, warnings: &mut Warnings) -> Duration {
    let ms = a.as_millis();
    if v == 2 {
        let secs = (ms.div_ceil(1000)).clamp(1, 255) as u64;
        if !ms.is_multiple_of(1000) || ms > 255_000 {
            warnings.add(
                at,
                "advert_int",
                format!("VRRPv2 adverts are whole seconds from 1 to 255: {secs}s is used"),
            );
        }
        Duration::from_secs(secs)
    } else {
        let cs = (ms.div_ceil(10)).clamp(1, 4095) as u64;
        if !ms.is_multiple_of(10) || ms > 40_950 {
            warnings.add(
                at,
                "advert_int",
                format!(
                    "VRRPv3 adverts are 10ms to 40.95s in steps of 10ms: {}ms is used",
                    cs * 10
                ),
            );
        }
        Duration::from_millis(cs * 10)
    }
}

fn virtual_address(
    a: &Stmt,
    inst: &mut Instance,
    warnings: &mut Warnings,
) -> Result<(), ImportError> {
    let spec = a.keyword();
    let (ip, prefix) = match spec.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (spec, None),
    };
    // keepalived's range syntax: 192.168.1.10-12 is three addresses.
    let mut ips: Vec<IpAddr> = Vec::new();
    match ip.parse::<IpAddr>() {
        Ok(ip) => ips.push(ip),
        Err(_) => {
            let range = ip.rsplit_once('-').and_then(|(first, last)| {
                let first: std::net::Ipv4Addr = first.parse().ok()?;
                let last: u8 = last.parse().ok()?;
                let o = first.octets();
                (o[3] <= last).then(|| {
                    (o[3]..=last)
                        .map(|x| IpAddr::from([o[0], o[1], o[2], x]))
                        .collect::<Vec<_>>()
                })
            });
            match range {
                Some(r) => ips.extend(r),
                None => {
                    return Err(ImportError::at(
                        &a.at,
                        format!("virtual_ipaddress: {spec:?} is not an IP address"),
                    ));
                }
            }
        }
    }
    if let Some(p) = prefix {
        let max = if ips.first().is_some_and(IpAddr::is_ipv6) {
            128
        } else {
            32
        };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => {
                return Err(ImportError::at(
                    &a.at,
                    format!("virtual_ipaddress: bad prefix length in {spec:?}"),
                ));
            }
        }
    }
    let mut words = a.args().iter();
    while let Some(w) = words.next() {
        let value = words.next();
        match (w.as_str(), value) {
            ("dev", Some(dev)) => match &inst.interface {
                Some((i, _)) if i != dev => warnings.add(&a.at, "dev", format!("Buoy binds every address of a VirtualIP on one interface; {i} (the instance's) is used")),
                Some(_) => {}
                None => inst.interface = Some((dev.clone(), a.at.clone())),
            },
            ("label" | "brd" | "broadcast" | "scope", Some(_)) => warnings.add(&a.at, w, "not needed: Buoy adds the address without a label, broadcast or scope of its own"),
            (other, _) => warnings.add(&a.at, other, "address option has no equivalent"),
        }
    }
    for ip in ips {
        let text = match prefix {
            Some(p) => format!("{ip}/{p}"),
            None => ip.to_string(),
        };
        if inst.addresses.len() == 16 {
            warnings.add(
                &a.at,
                &text,
                "a VirtualIP holds at most 16 addresses; put the others in a second one",
            );
            continue;
        }
        if !inst.addresses.contains(&text) {
            inst.addresses.push(text);
        }
    }
    Ok(())
}

fn track_script(
    t: &Stmt,
    inst: &mut Instance,
    scripts: &BTreeMap<String, Script>,
    warnings: &mut Warnings,
) -> Result<(), ImportError> {
    let name = t.keyword();
    let Some(script) = scripts.get(name) else {
        warnings.add(
            &t.at,
            name,
            "no vrrp_script of that name (keepalived ignores it too)",
        );
        return Ok(());
    };
    let mut weight = script.weight;
    match t.args() {
        [] => {}
        [kw, n] if kw == "weight" => weight = number(t, Some(n), -253, 253)? as i32,
        [kw, n, r] if kw == "weight" && r == "reverse" => {
            weight = number(t, Some(n), -253, 253)? as i32;
            warnings.add(&t.at, "reverse", "has no equivalent");
        }
        _ => return Err(ImportError::at(&t.at, "expected \"SCRIPT [weight N]\"")),
    }
    if !script.checks_nginx {
        warnings.add(
            &t.at,
            name,
            format!(
                "Buoy runs no scripts, and vrrp_script {name} (at {}) does not check nginx",
                script.at
            ),
        );
        return Ok(());
    }
    match &inst.track_upstreams {
        Some((w, _)) => warnings.add(
            &t.at,
            name,
            format!("a second nginx check: track.upstreams already has weight {w}"),
        ),
        None => inst.track_upstreams = Some((weight, t.at.clone())),
    }
    Ok(())
}
