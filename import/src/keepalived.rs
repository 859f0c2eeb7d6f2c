//! keepalived.conf: the reader (keepalived's own syntax: one statement per line, `{ }` blocks,
//! comments from `#` or `!`, double-quoted strings, `include` with globs relative to the including
//! file) and the translation of its VRRP part into VirtualIP drafts.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    rc::Rc,
};

use buoy_crds::{
    AuthenticationType, Duration, GratuitousArp, InterfaceName, IpAddressString, NodePriority,
    SecretKeyRef, TrackInterfaces, TrackSpec, VipAddress, VirtualIPSpec, VrrpAuthentication,
    VrrpSpec,
};

use super::{
    ImportError, Loc, NodeNameFrom, VipDraft, Warnings, decimal_seconds, dns_label, dns_name,
    syntax,
};

// ---------------------------------------------------------------------------------------------
// Reading

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Word(String),
    Open,
    Close,
    /// End of a line: keepalived statements end there.
    Eol,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub at: Loc,
}

/// Splits one file into tokens (no include handling).
pub fn tokenize(text: &str, file: &Rc<Path>) -> Result<Vec<Token>, ImportError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = Loc {
            file: file.clone(),
            line: i + 1,
        };
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    chars.next();
                }
                // A comment runs to the end of the line (keepalived: `!` or `#` at a token start).
                '#' | '!' => break,
                '{' => {
                    chars.next();
                    out.push(Token {
                        tok: Tok::Open,
                        at: at.clone(),
                    });
                }
                '}' => {
                    chars.next();
                    out.push(Token {
                        tok: Tok::Close,
                        at: at.clone(),
                    });
                }
                '"' => {
                    chars.next();
                    let mut word = String::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => {
                                if let Some(n) = chars.next() {
                                    word.push(n);
                                }
                            }
                            c => word.push(c),
                        }
                    }
                    if !closed {
                        return Err(ImportError::at(&at, "unterminated quoted string"));
                    }
                    out.push(Token {
                        tok: Tok::Word(word),
                        at: at.clone(),
                    });
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || c == '{' || c == '}' || c == '"' {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    out.push(Token {
                        tok: Tok::Word(word),
                        at: at.clone(),
                    });
                }
            }
        }
        out.push(Token { tok: Tok::Eol, at });
    }
    Ok(out)
}

/// A statement: its words, and its block if it opens one.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub at: Loc,
    pub words: Vec<String>,
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }
    fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or(&[])
    }
}

/// Reads a file and every file it includes, as one token stream (keepalived includes textually).
pub fn read_tokens(
    path: &Path,
    stack: &[PathBuf],
    warnings: &mut Warnings,
) -> Result<Vec<Token>, ImportError> {
    let text = syntax::read(path)?;
    let mut stack = stack.to_vec();
    stack.push(syntax::canonical(path));
    let file: Rc<Path> = Rc::from(path);
    let tokens = tokenize(&text, &file)?;
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    let mut line_start = true;
    while i < tokens.len() {
        let t = &tokens[i];
        if line_start && t.tok == Tok::Word("include".into()) {
            let at = t.at.clone();
            let mut args = Vec::new();
            i += 1;
            while let Some(Token {
                tok: Tok::Word(w), ..
            }) = tokens.get(i)
            {
                args.push(w.clone());
                i += 1;
            }
            if args.len() != 1 {
                return Err(ImportError::at(
                    &at,
                    "include takes exactly one file or pattern",
                ));
            }
            let base = path.parent().unwrap_or(Path::new("."));
            let files = syntax::expand(&args[0], base);
            if files.is_empty() {
                warnings.add(&at, "include", format!("{:?} matches no file", args[0]));
            }
            for f in files {
                if !f.exists() {
                    warnings.add(&at, "include", format!("{} does not exist", f.display()));
                    continue;
                }
                syntax::check_include(&at, &f, &stack)?;
                out.extend(read_tokens(&f, &stack, warnings)?);
            }
            continue;
        }
        line_start = t.tok == Tok::Eol || t.tok == Tok::Open || t.tok == Tok::Close;
        out.push(t.clone());
        i += 1;
    }
    Ok(out)
}

/// Groups tokens into statements and blocks.
pub fn statements(tokens: &[Token]) -> Result<Vec<Stmt>, ImportError> {
    let mut pos = 0;
    let list = block(tokens, &mut pos, None)?;
    Ok(list)
}

fn block(
    tokens: &[Token],
    pos: &mut usize,
    opened: Option<&Loc>,
) -> Result<Vec<Stmt>, ImportError> {
    let mut list: Vec<Stmt> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut start: Option<Loc> = None;
    while let Some(t) = tokens.get(*pos) {
        *pos += 1;
        match &t.tok {
            Tok::Word(w) => {
                start.get_or_insert_with(|| t.at.clone());
                words.push(w.clone());
            }
            Tok::Eol => {
                if let Some(at) = start.take() {
                    list.push(Stmt {
                        at,
                        words: std::mem::take(&mut words),
                        block: None,
                    });
                }
            }
            Tok::Open => {
                let inner = block(tokens, pos, Some(&t.at))?;
                match start.take() {
                    Some(at) => list.push(Stmt {
                        at,
                        words: std::mem::take(&mut words),
                        block: Some(inner),
                    }),
                    // `{` alone on the line after its keyword.
                    None => match list.last_mut() {
                        Some(prev) if prev.block.is_none() => prev.block = Some(inner),
                        _ => {
                            return Err(ImportError::at(
                                &t.at,
                                "\"{\" without a keyword before it",
                            ));
                        }
                    },
                }
            }
            Tok::Close => {
                if let Some(at) = start.take() {
                    list.push(Stmt {
                        at,
                        words: std::mem::take(&mut words),
                        block: None,
                    });
                }
                return match opened {
                    Some(_) => Ok(list),
                    None => Err(ImportError::at(&t.at, "unexpected \"}\": no block is open")),
                };
            }
        }
    }
    if let Some(at) = start {
        list.push(Stmt {
            at,
            words,
            block: None,
        });
    }
    match opened {
        Some(at) => Err(ImportError::at(
            at,
            "\"{\" is never closed (missing \"}\" before the end of the file)",
        )),
        None => Ok(list),
    }
}

// ---------------------------------------------------------------------------------------------
// Translation

/// One keepalived.conf, translated.
#[derive(Clone, Debug)]
pub struct File {
    pub path: PathBuf,
    pub router_id: Option<(String, Loc)>,
    pub instances: Vec<Instance>,
}

/// A `vrrp_instance`, in Buoy's terms.
#[derive(Clone, Debug)]
pub struct Instance {
    pub at: Loc,
    pub name: String,
    pub vrid: u8,
    pub priority: Option<u8>,
    pub state: Option<(String, Loc)>,
    pub interface: Option<(String, Loc)>,
    pub addresses: Vec<String>,
    pub vrrp: VrrpSpec,
    pub password: Option<(String, Loc)>,
    pub source: Option<String>,
    pub track_upstreams: Option<(i32, Loc)>,
    pub track_interfaces: Option<TrackInterfaces>,
}

#[derive(Clone, Debug)]
struct Script {
    at: Loc,
    checks_nginx: bool,
    weight: i32,
}

#[derive(Clone, Debug, Default)]
struct Globals {
    version: Option<u8>,
    garp: GratuitousArp,
}

const EVENTS: &str = "Buoy sends no mail and runs no notify scripts: each agent records every state change as a Kubernetes Event and in status.nodes[], and exports it on /metrics; alert on those";

pub fn parse_file(path: &Path, warnings: &mut Warnings) -> Result<File, ImportError> {
    let tokens = read_tokens(path, &[], warnings)?;
    let stmts = statements(&tokens)?;
    let mut file = File {
        path: path.to_path_buf(),
        router_id: None,
        instances: Vec::new(),
    };
    let mut globals = Globals::default();
    let mut scripts: BTreeMap<String, Script> = BTreeMap::new();
    // Definitions first (keepalived reads the whole file before it starts instances).
    for s in &stmts {
        match s.keyword() {
            "global_defs" => global_defs(s, &mut file, &mut globals, warnings)?,
            "vrrp_script" => {
                let (name, script) = vrrp_script(s, warnings)?;
                scripts.insert(name, script);
            }
            _ => {}
        }
    }
    for s in &stmts {
        match s.keyword() {
            "global_defs" | "vrrp_script" => {}
            "vrrp_instance" => {
                let inst = vrrp_instance(s, &globals, &scripts, warnings)?;
                file.instances.push(inst);
            }
            "vrrp_sync_group" => warnings.add(
                &s.at,
                "vrrp_sync_group",
                "each VirtualIP elects its master on its own; to move addresses together, put them in one VirtualIP (up to 16 addresses)",
            ),
            "virtual_server" | "virtual_server_group" => warnings.add(
                &s.at,
                s.keyword(),
                "Buoy does not drive IPVS; balance with an UpstreamPool and a TCP or HTTP listener instead",
            ),
            "static_ipaddress" | "static_routes" | "static_rules" => warnings.add(
                &s.at,
                s.keyword(),
                "configure the host's own addresses and routes outside Buoy",
            ),
            "vrrp_track_process" | "vrrp_track_file" | "track_file" | "track_process"
            | "track_bfd" | "bfd_instance" | "garp_group" | "linkbeat_interfaces" => {
                warnings.add(&s.at, s.keyword(), "Buoy has no equivalent")
            }
            k if s.block.is_some() => {
                return Err(ImportError::at(
                    &s.at,
                    format!("unknown block \"{k}\" (expected global_defs, vrrp_script, vrrp_instance, vrrp_sync_group, virtual_server, …)"),
                ));
            }
            k => warnings.add(&s.at, k, "unknown keyword"),
        }
    }
    Ok(file)
}

fn global_defs(
    s: &Stmt,
    file: &mut File,
    g: &mut Globals,
    warnings: &mut Warnings,
) -> Result<(), ImportError> {
    for d in s.block.iter().flatten() {
        let k = d.keyword();
        match k {
            "router_id" => file.router_id = Some((one_arg(d)?.to_string(), d.at.clone())),
            "notification_email"
            | "notification_email_from"
            | "smtp_server"
            | "smtp_connect_timeout"
            | "smtp_helo_name"
            | "email_faults"
            | "smtp_alert"
            | "smtp_alert_vrrp" => warnings.add(&d.at, k, EVENTS),
            "vrrp_version" => g.version = Some(version_of(d)?),
            "vrrp_garp_master_delay" => g.garp.delay = seconds(d)?,
            "vrrp_garp_master_repeat" => g.garp.repeat = repeat(d)?,
            "vrrp_garp_master_refresh" => g.garp.refresh_interval = seconds(d)?,
            "vrrp_garp_master_refresh_repeat" => g.garp.refresh_repeat = repeat(d)?,
            "enable_script_security" | "script_user" => {
                warnings.add(&d.at, k, "Buoy runs no scripts")
            }
            _ => warnings.add(&d.at, k, "Buoy has no equivalent"),
        }
    }
    Ok(())
}

fn vrrp_script(s: &Stmt, warnings: &mut Warnings) -> Result<(String, Script), ImportError> {
    let name = one_arg(s)?.to_string();
    let mut script = Script {
        at: s.at.clone(),
        checks_nginx: name.to_ascii_lowercase().contains("nginx"),
        weight: 0,
    };
    let mut pending = Vec::new();
    for d in s.block.iter().flatten() {
        let k = d.keyword();
        match k {
            "script" => {
                let command = d.args().join(" ");
                script.checks_nginx |= command.to_ascii_lowercase().contains("nginx");
                pending.push((d.at.clone(), k.to_string()));
            }
            "weight" => {
                script.weight = number(d, d.args().first(), -253, 253)? as i32;
                if d.args().get(1).map(String::as_str) == Some("reverse") {
                    warnings.add(&d.at, "weight", "\"reverse\" has no equivalent: the weight applies as keepalived applies it without reverse");
                }
            }
            _ => pending.push((d.at.clone(), k.to_string())),
        }
    }
    for (at, k) in pending {
        let why = match (script.checks_nginx, k.as_str()) {
            (true, "script") => "Buoy runs no scripts; this one checks nginx, whose job Buoy's own proxy now does, so track.upstreams replaces it (the node's priority moves by the weight while it has a healthy backend for its listeners)".to_string(),
            (true, _) => "the proxy is part of the agent: its health (a healthy backend for every listener) is known continuously, with the pools' health-check timing".to_string(),
            (false, "script") => format!("Buoy runs no scripts; vrrp_script {name} does not check nginx, so nothing replaces it"),
            (false, _) => format!("part of vrrp_script {name}, which is not translated"),
        };
        warnings.add(&at, &k, why);
    }
    Ok((name, script))
}

fn vrrp_instance(
    s: &Stmt,
    globals: &Globals,
    scripts: &BTreeMap<String, Script>,
    warnings: &mut Warnings,
) -> Result<Instance, ImportError> {
    let name = one_arg(s)?.to_string();
    let mut vrid = None;
    let mut inst = Instance {
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
    };
    let mut version = globals.version;
    let mut explicit_version = globals.version.is_some();
    let mut advert: Option<(Duration, Loc)> = None;
    let mut unicast = false;
    let mut peers: Vec<IpAddressString> = Vec::new();
    for d in s.block.iter().flatten() {
        let k = d.keyword();
        match k {
            "state" => inst.state = Some((one_arg(d)?.to_ascii_uppercase(), d.at.clone())),
            "interface" => inst.interface = Some((one_arg(d)?.to_string(), d.at.clone())),
            "virtual_router_id" => vrid = Some(number(d, d.args().first(), 1, 255)? as u8),
            "priority" => {
                let p = number(d, d.args().first(), 1, 255)?;
                if p == 255 {
                    warnings.add(
                        &d.at,
                        "priority",
                        "255 means \"address owner\", which no Buoy node is; 254 is used",
                    );
                }
                inst.priority = Some(p.min(254) as u8);
            }
            "advert_int" => {
                let a = one_arg(d)?;
                let v = decimal_seconds(a).filter(|v| !v.is_zero()).ok_or_else(|| {
                    ImportError::at(
                        &d.at,
                        format!("advert_int: {a:?} is not a positive number of seconds"),
                    )
                })?;
                advert = Some((v, d.at.clone()));
            }
            "version" => {
                version = Some(version_of(d)?);
                explicit_version = true;
            }
            "authentication" => {
                let mut kind = None;
                for a in d.block.iter().flatten() {
                    match a.keyword() {
                        "auth_type" => {
                            kind = Some((one_arg(a)?.to_ascii_uppercase(), a.at.clone()))
                        }
                        "auth_pass" => {
                            let p = one_arg(a)?.to_string();
                            if p.len() > 8 {
                                warnings.add(&a.at, "auth_pass", "only the first 8 characters are used on the wire, by keepalived and Buoy alike");
                            }
                            inst.password = Some((p, a.at.clone()));
                        }
                        other => warnings.add(&a.at, other, "unknown keyword in authentication"),
                    }
                }
                match kind {
                    Some((t, _)) if t == "PASS" => {}
                    Some((t, at)) => {
                        warnings.add(&at, "auth_type", format!("{t} (IPsec AH) authentication is not supported: it was removed from the VRRP specifications; the VirtualIP has no authentication"));
                        inst.password = None;
                    }
                    None => {
                        warnings.add(&d.at, "authentication", "no auth_type: ignored");
                        inst.password = None;
                    }
                }
            }
            "virtual_ipaddress" => {
                for a in d.block.iter().flatten() {
                    virtual_address(a, &mut inst, warnings)?;
                }
            }
            "virtual_ipaddress_excluded" => warnings.add(
                &d.at,
                k,
                "Buoy advertises every address it moves; put these in a second VirtualIP",
            ),
            "mcast_src_ip" => inst.source = Some(ip_arg(d)?),
            "unicast_src_ip" => {
                inst.source = Some(ip_arg(d)?);
                unicast = true;
            }
            "unicast_peer" => {
                unicast = true;
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
            }
            "nopreempt" => inst.vrrp.preempt = false,
            "preempt" => inst.vrrp.preempt = true,
            "preempt_delay" => inst.vrrp.preempt_delay = seconds(d)?,
            "garp_master_delay" => inst.vrrp.gratuitous_arp.delay = seconds(d)?,
            "garp_master_repeat" => inst.vrrp.gratuitous_arp.repeat = repeat(d)?,
            "garp_master_refresh" => inst.vrrp.gratuitous_arp.refresh_interval = seconds(d)?,
            "garp_master_refresh_repeat" => inst.vrrp.gratuitous_arp.refresh_repeat = repeat(d)?,
            "use_vmac" => {
                inst.vrrp.virtual_mac = true;
                if !d.args().is_empty() {
                    warnings.add(&d.at, k, "the macvlan interface's name is chosen by Buoy");
                }
            }
            "track_script" => {
                for t in d.block.iter().flatten() {
                    track_script(t, &mut inst, scripts, warnings)?;
                }
            }
            "track_interface" => {
                let mut names = Vec::new();
                let mut weight: Option<i32> = None;
                for t in d.block.iter().flatten() {
                    let w = match t.args() {
                        [] => 0,
                        [kw, n] if kw == "weight" => number(t, Some(n), -253, 253)? as i32,
                        _ => {
                            return Err(ImportError::at(
                                &t.at,
                                "expected \"INTERFACE [weight N]\"",
                            ));
                        }
                    };
                    match weight {
                        Some(prev) if prev != w => warnings.add(&t.at, "weight", format!("Buoy has one weight for all tracked interfaces; {prev} (the first) is used")),
                        _ => weight = Some(w),
                    }
                    if names.len() == 8 {
                        warnings.add(&t.at, t.keyword(), "Buoy tracks at most 8 interfaces");
                        continue;
                    }
                    names.push(InterfaceName(t.keyword().to_string()));
                }
                if !names.is_empty() {
                    inst.track_interfaces = Some(TrackInterfaces {
                        names,
                        weight: weight.unwrap_or(0),
                    });
                }
            }
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
    inst.vrid = vrid.ok_or_else(|| {
        ImportError::at(
            &s.at,
            format!("vrrp_instance {} has no virtual_router_id", inst.name),
        )
    })?;
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
    // The version: auth exists only in v2 (the seed's case); an explicit vrrp_version wins;
    // otherwise Buoy's default, v3 (keepalived's default is v2: see docs/migration.md).
    let mut v = match (version, &inst.password) {
        (Some(3), Some((_, at))) => {
            warnings.add(
                at,
                "auth_pass",
                "VRRPv3 has no authentication (keepalived ignores it too)",
            );
            inst.password = None;
            3
        }
        (_, Some(_)) => 2,
        (Some(v), None) => v,
        (None, None) => 3,
    };
    if v == 2 && ipv6 {
        if explicit_version {
            warnings.add(
                &s.at,
                "vrrp_version",
                "VRRPv2 carries no IPv6; version 3 is used",
            );
        }
        v = 3;
    }
    inst.vrrp.version = v;
    if let Some((a, at)) = advert {
        let ms = a.as_millis();
        inst.vrrp.advertisement_interval = if v == 2 {
            let secs = (ms.div_ceil(1000)).clamp(1, 255) as u64;
            if ms % 1000 != 0 || ms > 255_000 {
                warnings.add(
                    &at,
                    "advert_int",
                    format!("VRRPv2 adverts are whole seconds from 1 to 255: {secs}s is used"),
                );
            }
            Duration::from_secs(secs)
        } else {
            let cs = (ms.div_ceil(10)).clamp(1, 4095) as u64;
            if ms % 10 != 0 || ms > 40_950 {
                warnings.add(
                    &at,
                    "advert_int",
                    format!(
                        "VRRPv3 adverts are 10ms to 40.95s in steps of 10ms: {}ms is used",
                        cs * 10
                    ),
                );
            }
            Duration::from_millis(cs * 10)
        };
    }
    if let Some((_, _)) = &inst.password {
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

fn one_arg(s: &Stmt) -> Result<&str, ImportError> {
    match s.args() {
        [a] => Ok(a),
        [] => Err(ImportError::at(
            &s.at,
            format!("{} needs a value", s.keyword()),
        )),
        _ => Err(ImportError::at(
            &s.at,
            format!("{} takes one value, got {}", s.keyword(), s.args().len()),
        )),
    }
}

fn number(s: &Stmt, value: Option<&String>, min: i64, max: i64) -> Result<i64, ImportError> {
    let v =
        value.ok_or_else(|| ImportError::at(&s.at, format!("{} needs a number", s.keyword())))?;
    match v.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ImportError::at(
            &s.at,
            format!("{}: {v:?} is not a number from {min} to {max}", s.keyword()),
        )),
    }
}

fn seconds(s: &Stmt) -> Result<Duration, ImportError> {
    let a = one_arg(s)?;
    decimal_seconds(a)
        .filter(|d| d.as_millis() <= 1_000_000)
        .ok_or_else(|| {
            ImportError::at(
                &s.at,
                format!(
                    "{}: {a:?} is not a number of seconds from 0 to 1000",
                    s.keyword()
                ),
            )
        })
}

fn repeat(s: &Stmt) -> Result<u32, ImportError> {
    Ok(number(s, s.args().first(), 1, 100)? as u32)
}

fn version_of(s: &Stmt) -> Result<u8, ImportError> {
    Ok(number(s, s.args().first(), 2, 3)? as u8)
}

fn ip_arg(s: &Stmt) -> Result<String, ImportError> {
    let a = one_arg(s)?;
    a.parse::<IpAddr>().map(|ip| ip.to_string()).map_err(|_| {
        ImportError::at(
            &s.at,
            format!("{}: {a:?} is not an IP address", s.keyword()),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Merging the hosts

/// One VirtualIP per (virtual_router_id, addresses) across the files, one priority per file.
pub(crate) fn merge(
    files: &[File],
    from: NodeNameFrom,
    warnings: &mut Warnings,
) -> Result<Vec<VipDraft>, ImportError> {
    let names = node_names(files, from, warnings)?;
    struct Group<'a> {
        first: &'a Instance,
        members: Vec<(&'a str, &'a Instance)>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for (file, node) in files.iter().zip(&names) {
        for inst in &file.instances {
            let mut key: Vec<&String> = inst.addresses.iter().collect();
            key.sort();
            let found = groups.iter_mut().find(|g| {
                let mut k: Vec<&String> = g.first.addresses.iter().collect();
                k.sort();
                g.first.vrid == inst.vrid && k == key
            });
            match found {
                Some(g) => {
                    if g.members.iter().any(|(n, _)| n == node) {
                        warnings.add(&inst.at, "vrrp_instance", format!("a second instance with virtual_router_id {} and the same addresses on node {node}", inst.vrid));
                        continue;
                    }
                    g.members.push((node, inst));
                }
                None => {
                    for g in &groups {
                        if g.first.vrid == inst.vrid
                            && g.first.interface.as_ref().map(|i| &i.0)
                                == inst.interface.as_ref().map(|i| &i.0)
                        {
                            warnings.add(&inst.at, "virtual_router_id", format!("{} is also used by vrrp_instance {} ({}) with other addresses: two VirtualIPs are made, and their router IDs collide on a shared LAN", inst.vrid, g.first.name, g.first.at));
                        }
                    }
                    groups.push(Group {
                        first: inst,
                        members: vec![(node, inst)],
                    });
                }
            }
        }
    }
    let mut out = Vec::new();
    for (key, g) in groups.iter().enumerate() {
        let first = g.first;
        let mut vrrp = first.vrrp.clone();
        // Unicast peers: the union over the hosts (in standalone mode it is the whole peer list).
        let mut peers: Vec<IpAddressString> = Vec::new();
        for (_, inst) in &g.members {
            for p in inst.vrrp.unicast_peers.iter().flatten() {
                if !peers.contains(p) {
                    peers.push(p.clone());
                }
            }
            let mut theirs = inst.vrrp.clone();
            theirs.unicast_peers = None;
            let mut ours = vrrp.clone();
            ours.unicast_peers = None;
            if theirs != ours {
                // Name the fields (vrrp.advertisementInterval, vrrp.preempt, …) that differ.
                let a = serde_json::to_value(&ours).unwrap_or_default();
                let b = serde_json::to_value(&theirs).unwrap_or_default();
                let fields: Vec<String> = a
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| b.get(k.as_str()) != Some(v))
                    .map(|(k, _)| format!("vrrp.{k}"))
                    .collect();
                warnings.add(
                    &inst.at,
                    "vrrp_instance",
                    format!(
                        "{} differ from {} ({}); Buoy shares one set per VirtualIP: the first file's are used",
                        fields.join(", "),
                        first.name,
                        first.at
                    ),
                );
            }

            if inst.interface.as_ref().map(|i| &i.0) != first.interface.as_ref().map(|i| &i.0)
                && let Some((i, at)) = &inst.interface
            {
                warnings.add(at, "interface", format!("{i} differs from {}'s; Buoy has one interface per VirtualIP: the first file's is used", first.at));
            }
            if inst.track_interfaces != first.track_interfaces {
                warnings.add(
                    &inst.at,
                    "track_interface",
                    format!("differs from {}; the first file's is used", first.at),
                );
            }
            if inst.track_upstreams.as_ref().map(|t| t.0)
                != first.track_upstreams.as_ref().map(|t| t.0)
                && let Some((_, at)) = &inst.track_upstreams
            {
                warnings.add(
                    at,
                    "track_script",
                    format!(
                        "the weight differs from {}'s; the first file's is used",
                        first.at
                    ),
                );
            }
            if inst.password.as_ref().map(|p| &p.0) != first.password.as_ref().map(|p| &p.0)
                && let Some((_, at)) = &inst.password
            {
                warnings.add(
                    at,
                    "auth_pass",
                    format!("differs from {}'s; the first file's is used", first.at),
                );
            }
        }
        vrrp.unicast_peers = (!peers.is_empty()).then_some(peers);
        // Priorities: keepalived's `state` only picks the initial state; it decides only when no
        // host sets a priority (then MASTER gets 100, keepalived's default, and BACKUP 99).
        let any_priority = g.members.iter().any(|(_, i)| i.priority.is_some());
        let mut priorities = Vec::new();
        for (node, inst) in &g.members {
            let priority = match (inst.priority, &inst.state) {
                (Some(p), Some((s, at))) => {
                    warnings.add(at, "state", format!("{s} is only keepalived's initial state; in Buoy every node starts in Initialize and the priorities decide ({node}: {p})"));
                    p
                }
                (Some(p), None) => p,
                (None, state) => {
                    let is_master = state.as_ref().is_some_and(|(s, _)| s == "MASTER");
                    let p = if any_priority || is_master { 100 } else { 99 };
                    let why = match state {
                        Some((s, _)) if !any_priority => format!(
                            "{s} becomes priority {p} ({node} has no priority: keepalived's default is 100, and MASTER is kept ahead of BACKUP)"
                        ),
                        _ => format!("{node} has no priority: keepalived's default, 100, is used"),
                    };
                    warnings.add(state.as_ref().map_or(&inst.at, |(_, at)| at), "state", why);
                    p
                }
            };
            priorities.push(NodePriority {
                node: node.to_string(),
                priority,
                source_address: inst.source.clone().map(IpAddressString),
            });
        }
        let spec = VirtualIPSpec {
            addresses: first.addresses.iter().cloned().map(VipAddress).collect(),
            address_pool: None,
            interface: first.interface.as_ref().map(|i| i.0.clone()),
            virtual_router_id: Some(first.vrid),
            vrrp,
            node_selector: None,
            tolerations: None,
            priorities: Some(priorities),
            track: first.track_interfaces.clone().map(|i| TrackSpec {
                upstreams: None,
                interface: Some(i),
            }),
            listeners: Vec::new(),
        };
        let comments = vec![format!(
            "keepalived vrrp_instance {}: {}.",
            first.name,
            g.members
                .iter()
                .map(|(n, i)| format!(
                    "{} (node {n}, priority {})",
                    i.at,
                    i.priority.map_or("default".into(), |p| p.to_string())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        out.push(VipDraft {
            key,
            name: dns_label(&first.name),
            spec,
            password: first.password.clone(),
            track_upstreams: first.track_upstreams.clone(),
            comments,
        });
    }
    Ok(out)
}

fn node_names(
    files: &[File],
    from: NodeNameFrom,
    warnings: &mut Warnings,
) -> Result<Vec<String>, ImportError> {
    // `lb1.conf` → lb1; when several files share a name (`lb1/keepalived.conf`,
    // `lb2/keepalived.conf`: one directory per host), their directories name them.
    let name = |p: Option<&std::ffi::OsStr>| {
        p.map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    let stems: Vec<String> = files.iter().map(|f| name(f.path.file_stem())).collect();
    let stem = |f: &File| {
        let own = name(f.path.file_stem());
        if stems.iter().filter(|s| **s == own).count() > 1 {
            let dir = name(f.path.parent().and_then(Path::file_name));
            if !dir.is_empty() {
                return dns_name(&dir);
            }
        }
        dns_name(&own)
    };
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for f in files {
        if let Some((r, _)) = &f.router_id {
            *count.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut names = Vec::new();
    for f in files {
        let name = match (&f.router_id, from) {
            (Some((r, at)), NodeNameFrom::RouterId) if count.get(r.as_str()) == Some(&1) => {
                let n = dns_name(r);
                if &n != r {
                    warnings.add(
                        at,
                        "router_id",
                        format!("{r:?} is not a valid node name; the node is called {n:?}"),
                    );
                }
                n
            }
            (Some((r, at)), NodeNameFrom::RouterId) => {
                let n = stem(f);
                warnings.add(at, "router_id", format!("{r:?} is the router_id of several files, so it cannot name a node; the node is named after the file: {n:?}"));
                n
            }
            (Some((_, at)), NodeNameFrom::FileName) => {
                let n = stem(f);
                warnings.add(
                    at,
                    "router_id",
                    format!(
                        "--node-name-from hostname-of-file: the node is named after the file: {n:?}"
                    ),
                );
                n
            }
            (None, _) => stem(f),
        };
        if names.contains(&name) {
            return Err(ImportError::Usage(format!(
                "two keepalived files give the node name {name:?}; name each copy after its host (lb1.conf, lb2.conf) or set distinct router_ids"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<(Tok, usize)> {
        let file: Rc<Path> = Rc::from(Path::new("k.conf"));
        tokenize(text, &file)
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.tok, t.at.line))
            .collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn tokens_carry_lines_and_skip_comments() {
        assert_eq!(
            toks("! comment\nvrrp_instance VI_1 { # trailing\n  script \"/bin/check nginx\"\n}"),
            [
                (Tok::Eol, 1),
                (w("vrrp_instance"), 2),
                (w("VI_1"), 2),
                (Tok::Open, 2),
                (Tok::Eol, 2),
                (w("script"), 3),
                (w("/bin/check nginx"), 3),
                (Tok::Eol, 3),
                (Tok::Close, 4),
                (Tok::Eol, 4),
            ]
        );
    }

    #[test]
    fn braces_split_words_and_quotes_escape() {
        assert_eq!(
            toks("track_script {chk}\nauth_pass \"a\\\"b\""),
            [
                (w("track_script"), 1),
                (Tok::Open, 1),
                (w("chk"), 1),
                (Tok::Close, 1),
                (Tok::Eol, 1),
                (w("auth_pass"), 2),
                (w("a\"b"), 2),
                (Tok::Eol, 2),
            ]
        );
    }

    #[test]
    fn unterminated_quote_is_an_error_with_line() {
        let file: Rc<Path> = Rc::from(Path::new("k.conf"));
        let e = tokenize("a\nscript \"x", &file)
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("k.conf:2: unterminated quoted string"));
    }

    #[test]
    fn statements_nest_and_report_unclosed_blocks() {
        let file: Rc<Path> = Rc::from(Path::new("k.conf"));
        let t = tokenize("a {\n b 1\n c {\n  d\n }\n}\ne\n{\n}\n", &file).unwrap_or_default();
        let s = statements(&t).unwrap_or_default();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].words, ["a"]);
        let inner = s[0].block.clone().unwrap_or_default();
        assert_eq!(inner[0].words, ["b", "1"]);
        assert_eq!(inner[1].block.clone().unwrap_or_default()[0].at.line, 4);
        assert_eq!(s[1].words, ["e"]);
        assert!(
            s[1].block.is_some(),
            "an Allman-style brace attaches to the line before"
        );

        let t = tokenize("x {\n y {\n }\n", &file).unwrap_or_default();
        let e = statements(&t).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("k.conf:1: \"{\" is never closed (missing \"}\" before the end of the file)")
        );
        let t = tokenize("x\n}\n", &file).unwrap_or_default();
        let e = statements(&t).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("k.conf:2: unexpected \"}\": no block is open")
        );
    }
}
