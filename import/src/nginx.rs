//! nginx.conf: the reader (nginx's syntax: directives ending in `;`, `{ }` blocks, `#` comments,
//! single and double quotes with backslash escapes, `include` relative to the main file's
//! directory with globs) and the translation of its proxy part: `http { upstream; server { listen;
//! location / { proxy_pass … } } }` and `stream { upstream; server { listen; proxy_pass } }`.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    rc::Rc,
};

use buoy_crds::{
    Algorithm, Backend, ClientSettings, Duration, HashKey, HttpSettings, ListenerProtocol,
    LoadBalancing, Retry, RetryOn, UpstreamPoolSpec,
};

use super::{ImportError, Loc, Warnings, dns_label, dns_name, syntax};

// ---------------------------------------------------------------------------------------------
// Reading

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub at: Loc,
}

/// Splits one file into tokens.
pub fn tokenize(text: &str, file: &Rc<Path>) -> Result<Vec<Token>, ImportError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    let at = |line| Loc {
        file: file.clone(),
        line,
    };
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    chars.next();
                }
            }
            ';' | '{' | '}' => {
                chars.next();
                let tok = match c {
                    ';' => Tok::Semi,
                    '{' => Tok::Open,
                    _ => Tok::Close,
                };
                out.push(Token { tok, at: at(line) });
            }
            '"' | '\'' => {
                let start = line;
                chars.next();
                let mut word = String::new();
                let mut closed = false;
                while let Some(ch) = chars.next() {
                    match ch {
                        q if q == c => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some('t') => word.push('\t'),
                            Some('r') => word.push('\r'),
                            Some('n') => word.push('\n'),
                            Some(q @ ('"' | '\'' | '\\')) => word.push(q),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                                if other == '\n' {
                                    line += 1;
                                }
                            }
                            None => {}
                        },
                        '\n' => {
                            line += 1;
                            word.push('\n');
                        }
                        ch => word.push(ch),
                    }
                }
                if !closed {
                    return Err(ImportError::at(&at(start), "unterminated quoted string"));
                }
                out.push(Token {
                    tok: Tok::Word(word),
                    at: at(start),
                });
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || ch == ';' || ch == '{' || ch == '}' {
                        break;
                    }
                    chars.next();
                    match ch {
                        // An escaped character never ends the word; the backslash stays, as in
                        // nginx's unquoted words (regexes such as `\.php$`).
                        '\\' => {
                            word.push('\\');
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        // `${name}` is a variable, not a block.
                        '$' if chars.peek() == Some(&'{') => {
                            word.push('$');
                            for n in chars.by_ref() {
                                word.push(n);
                                if n == '}' {
                                    break;
                                }
                            }
                        }
                        ch => word.push(ch),
                    }
                }
                out.push(Token {
                    tok: Tok::Word(word),
                    at: at(line),
                });
            }
        }
    }
    Ok(out)
}

/// A directive, its arguments and its block.
#[derive(Clone, Debug, PartialEq)]
pub struct Directive {
    pub at: Loc,
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
}

/// Directives that take a block; any other name followed by `{` is an error, as in nginx.
const BLOCKS: &[&str] = &[
    "events",
    "http",
    "stream",
    "mail",
    "server",
    "location",
    "upstream",
    "if",
    "map",
    "geo",
    "types",
    "limit_except",
    "split_clients",
    "match",
];

pub fn parse(tokens: &[Token]) -> Result<Vec<Directive>, ImportError> {
    let mut pos = 0;
    block(tokens, &mut pos, None)
}

fn block(
    tokens: &[Token],
    pos: &mut usize,
    opened: Option<&Loc>,
) -> Result<Vec<Directive>, ImportError> {
    let mut list = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut start: Option<Loc> = None;
    while let Some(t) = tokens.get(*pos) {
        *pos += 1;
        match &t.tok {
            Tok::Word(w) => {
                start.get_or_insert_with(|| t.at.clone());
                words.push(w.clone());
            }
            Tok::Semi => {
                let Some(at) = start.take() else {
                    return Err(ImportError::at(&t.at, "unexpected \";\""));
                };
                let mut w = std::mem::take(&mut words).into_iter();
                list.push(Directive {
                    at,
                    name: w.next().unwrap_or_default(),
                    args: w.collect(),
                    block: None,
                });
            }
            Tok::Open => {
                let Some(at) = start.take() else {
                    return Err(ImportError::at(&t.at, "unexpected \"{\""));
                };
                let mut w = std::mem::take(&mut words).into_iter();
                let name = w.next().unwrap_or_default();
                if !BLOCKS.contains(&name.as_str()) {
                    let message = if t.at.line > at.line {
                        format!(
                            "\"{name}\" cannot open a block: is a \";\" missing at the end of line {}?",
                            at.line
                        )
                    } else {
                        format!("unknown block directive \"{name}\"")
                    };
                    return Err(ImportError::at(&at, message));
                }
                let inner = block(tokens, pos, Some(&t.at))?;
                list.push(Directive {
                    at,
                    name,
                    args: w.collect(),
                    block: Some(inner),
                });
            }
            Tok::Close => {
                if let Some(at) = start.take() {
                    return Err(ImportError::at(
                        &at,
                        format!(
                            "directive \"{}\" is not terminated by \";\"",
                            words.first().map_or("", String::as_str)
                        ),
                    ));
                }
                return match opened {
                    Some(_) => Ok(list),
                    None => Err(ImportError::at(&t.at, "unexpected \"}\": no block is open")),
                };
            }
        }
    }
    if let Some(at) = start {
        return Err(ImportError::at(
            &at,
            format!(
                "directive \"{}\" is not terminated by \";\" before the end of the file",
                words.first().map_or("", String::as_str)
            ),
        ));
    }
    match opened {
        Some(at) => Err(ImportError::at(
            at,
            "\"{\" is never closed (missing \"}\" before the end of the file)",
        )),
        None => Ok(list),
    }
}

/// Reads a file and splices the files its `include`s name (relative to `base`, the main file's
/// directory, as nginx resolves them against its configuration prefix).
pub fn read(
    path: &Path,
    base: &Path,
    stack: &[PathBuf],
    warnings: &mut Warnings,
) -> Result<Vec<Directive>, ImportError> {
    let text = syntax::read(path)?;
    let file: Rc<Path> = Rc::from(path);
    let list = parse(&tokenize(&text, &file)?)?;
    let mut stack = stack.to_vec();
    stack.push(syntax::canonical(path));
    splice(list, base, &stack, warnings)
}

fn splice(
    list: Vec<Directive>,
    base: &Path,
    stack: &[PathBuf],
    warnings: &mut Warnings,
) -> Result<Vec<Directive>, ImportError> {
    let mut out = Vec::new();
    for mut d in list {
        if d.name == "include" && d.block.is_none() {
            let [pattern] = d.args.as_slice() else {
                return Err(ImportError::at(&d.at, "include takes one file or pattern"));
            };
            for f in syntax::expand(pattern, base) {
                if !f.is_file() {
                    let why = if pattern.ends_with("mime.types") {
                        format!(
                            "{} cannot be read; MIME types matter only to serve files, which a proxy does not",
                            f.display()
                        )
                    } else {
                        format!(
                            "{} cannot be read, so its directives are not translated",
                            f.display()
                        )
                    };
                    warnings.add(&d.at, "include", why);
                    continue;
                }
                syntax::check_include(&d.at, &f, stack)?;
                out.extend(read(&f, base, stack, warnings)?);
            }
            continue;
        }
        if let Some(inner) = d.block.take() {
            d.block = Some(splice(inner, base, stack, warnings)?);
        }
        out.push(d);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Translation

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    /// `listen 80;` (IPv4) or `listen [::]:80;` (IPv6): every address of that family.
    Any {
        ipv6: bool,
    },
    Ip(IpAddr),
}

#[derive(Clone, Debug)]
pub struct Listen {
    pub at: Loc,
    pub address: ListenAddress,
    pub port: u16,
    /// As written, for comments.
    pub text: String,
}

/// A `server` block that proxies everything to one pool.
#[derive(Clone, Debug)]
pub struct Server {
    pub at: Loc,
    pub protocol: ListenerProtocol,
    pub listens: Vec<Listen>,
    pub pool: String,
    pub client: Option<ClientSettings>,
}

#[derive(Clone, Debug)]
pub struct Pool {
    pub name: String,
    pub spec: UpstreamPoolSpec,
    pub comments: Vec<String>,
    pub at: Loc,
}

/// What nginx files translate to.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub pools: Vec<Pool>,
    pub servers: Vec<Server>,
}

impl Config {
    /// Adds another file's pools and servers (the same nginx.conf copied on every host is read
    /// once).
    pub fn merge(&mut self, other: Config, warnings: &mut Warnings) {
        for p in other.pools {
            match self.pools.iter().find(|q| q.name == p.name) {
                Some(q) if q.spec == p.spec => {}
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
                    && t.client == s.client
                    && t.listens.len() == s.listens.len()
                    && t.listens
                        .iter()
                        .zip(&s.listens)
                        .all(|(a, b)| a.address == b.address && a.port == b.port)
            };
            if !self.servers.iter().any(same) {
                self.servers.push(s);
            }
        }
    }
}

/// proxy_* settings, inherited from http to server to location as nginx does.
#[derive(Clone, Debug, Default)]
struct Proxy {
    next_upstream: Option<(Vec<String>, Loc)>,
    tries: Option<u32>,
    connect: Option<Duration>,
    read: Option<Duration>,
    send: Option<Duration>,
    /// proxy_timeout (stream).
    idle: Option<Duration>,
    /// Replaced as a whole by an inner level that has any (nginx's rule for proxy_set_header).
    headers: Option<Vec<(String, String, Loc)>>,
}

/// Client-side settings, inherited likewise.
#[derive(Clone, Debug, Default)]
struct Client {
    keepalive: Option<Duration>,
    header_timeout: Option<Duration>,
    body_timeout: Option<Duration>,
    max_body: Option<u64>,
    max_header: Option<u32>,
    send_timeout: Option<Duration>,
}

/// An upstream block, before the locations that use it add their proxy settings.
#[derive(Clone, Debug)]
struct Upstream {
    at: Loc,
    nginx_name: String,
    spec: UpstreamPoolSpec,
    servers: u32,
    used_by: Option<Loc>,
    /// Made for a `proxy_pass http://host:port` without an upstream block.
    implicit: bool,
}

struct Ctx<'a> {
    warnings: &'a mut Warnings,
    max_connections: Option<u32>,
    config: Config,
}

pub fn parse_file(path: &Path, warnings: &mut Warnings) -> Result<Config, ImportError> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let main = read(path, &base, &[], warnings)?;
    let mut ctx = Ctx {
        warnings,
        max_connections: None,
        config: Config::default(),
    };
    // `events` first: worker_connections applies to every listener.
    for d in &main {
        if d.name == "events" {
            for e in d.block.iter().flatten() {
                match e.name.as_str() {
                    "worker_connections" => {
                        ctx.max_connections = Some(number(e, one(e)?, 1, 1_000_000)? as u32)
                    }
                    _ => untranslated(ctx.warnings, e),
                }
            }
        }
    }
    for d in &main {
        match d.name.as_str() {
            "events" => {}
            "http" => http(d, &mut ctx)?,
            "stream" => stream(d, &mut ctx)?,
            _ => untranslated(ctx.warnings, d),
        }
    }
    Ok(ctx.config)
}

fn http(block: &Directive, ctx: &mut Ctx) -> Result<(), ImportError> {
    let mut proxy = Proxy::default();
    let mut client = Client::default();
    let mut upstreams: BTreeMap<String, Upstream> = BTreeMap::new();
    let body = block.block.as_deref().unwrap_or_default();
    for d in body {
        if !proxy_setting(d, &mut proxy, false, ctx.warnings)?
            && !client_setting(d, &mut client, ctx.warnings)?
            && d.name == "upstream"
        {
            let u = upstream(d, false, ctx.warnings)?;
            upstreams.insert(u.nginx_name.clone(), u);
        }
    }
    let mut servers = Vec::new();
    for d in body {
        match d.name.as_str() {
            "upstream" => {}
            "server" => {
                if let Some(s) = http_server(d, &proxy, &client, &mut upstreams, ctx)? {
                    servers.push(s);
                }
            }
            _ if is_proxy_setting(&d.name, false) || is_client_setting(&d.name) => {}
            _ => untranslated(ctx.warnings, d),
        }
    }
    finish(upstreams, servers, ctx);
    Ok(())
}

fn stream(block: &Directive, ctx: &mut Ctx) -> Result<(), ImportError> {
    let mut proxy = Proxy::default();
    let mut upstreams: BTreeMap<String, Upstream> = BTreeMap::new();
    let body = block.block.as_deref().unwrap_or_default();
    for d in body {
        if !proxy_setting(d, &mut proxy, true, ctx.warnings)? && d.name == "upstream" {
            let u = upstream(d, true, ctx.warnings)?;
            upstreams.insert(u.nginx_name.clone(), u);
        }
    }
    let mut servers = Vec::new();
    for d in body {
        match d.name.as_str() {
            "upstream" => {}
            "server" => {
                if let Some(s) = stream_server(d, &proxy, &mut upstreams, ctx)? {
                    servers.push(s);
                }
            }
            _ if is_proxy_setting(&d.name, true) => {}
            _ => untranslated(ctx.warnings, d),
        }
    }
    finish(upstreams, servers, ctx);
    Ok(())
}

/// Adds a block's upstreams as pools (under names unique across http and stream) and its servers.
fn finish(upstreams: BTreeMap<String, Upstream>, servers: Vec<Server>, ctx: &mut Ctx) {
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut ordered: Vec<Upstream> = upstreams.into_values().collect();
    ordered.sort_by_key(|u| (u.at.file.to_path_buf(), u.at.line));
    for u in ordered {
        let base = dns_name(&u.nginx_name);
        let mut name = base.clone();
        let mut n = 2;
        while ctx.config.pools.iter().any(|p| p.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        renamed.insert(u.nginx_name.clone(), name.clone());
        let mut comments = vec![if u.implicit {
            format!("nginx proxy_pass to a single server ({})", u.at)
        } else {
            format!("nginx upstream {} ({})", u.nginx_name, u.at)
        }];
        match &u.used_by {
            Some(at) => comments.push(format!("proxy settings from {at}")),
            None => comments.push("no server proxies to it: no listener uses this pool".into()),
        }
        if name != u.nginx_name {
            comments.push(format!(
                "(named {name}: Kubernetes names allow only lower case letters, digits, '-' and '.')"
            ));
        }
        ctx.config.pools.push(Pool {
            name,
            spec: u.spec,
            comments,
            at: u.at,
        });
    }
    for mut s in servers {
        if let Some(n) = renamed.get(&s.pool) {
            s.pool = n.clone();
        }
        ctx.config.servers.push(s);
    }
}

fn http_server(
    d: &Directive,
    outer_proxy: &Proxy,
    outer_client: &Client,
    upstreams: &mut BTreeMap<String, Upstream>,
    ctx: &mut Ctx,
) -> Result<Option<Server>, ImportError> {
    let mut proxy = outer_proxy.clone();
    proxy.headers = None;
    let mut client = outer_client.clone();
    let mut listens = Vec::new();
    let mut skip = false;
    let body = d.block.as_deref().unwrap_or_default();
    let mut own_headers = false;
    for s in body {
        if s.name == "proxy_set_header" {
            own_headers = true;
        }
        if proxy_setting(s, &mut proxy, false, ctx.warnings)?
            || client_setting(s, &mut client, ctx.warnings)?
        {
            continue;
        }
        if s.name == "listen" {
            match listen(s, false, ctx.warnings)? {
                Some(l) => listens.push(l),
                None => skip = true,
            }
        }
    }
    if !own_headers {
        proxy.headers = outer_proxy.headers.clone();
    }
    let mut target: Option<(String, Loc, Proxy, Client)> = None;
    for s in body {
        match s.name.as_str() {
            "listen" => {}
            _ if is_proxy_setting(&s.name, false) || is_client_setting(&s.name) => {}
            "location" if s.args == ["/"] => {
                let mut lp = proxy.clone();
                let mut lc = client.clone();
                let mut pass = None;
                let inner = s.block.as_deref().unwrap_or_default();
                if inner.iter().any(|x| x.name == "proxy_set_header") {
                    lp.headers = None;
                }
                for x in inner {
                    if proxy_setting(x, &mut lp, false, ctx.warnings)?
                        || client_setting(x, &mut lc, ctx.warnings)?
                    {
                        continue;
                    }
                    match x.name.as_str() {
                        "proxy_pass" => pass = Some((one(x)?.to_string(), x.at.clone())),
                        _ => untranslated(ctx.warnings, x),
                    }
                }
                if lp.headers.is_none() && !inner.iter().any(|x| x.name == "proxy_set_header") {
                    lp.headers = proxy.headers.clone();
                }
                if let Some((_, first, _, _)) = &target {
                    return Err(ImportError::at(
                        &s.at,
                        format!("duplicate location \"/\" (the first is at {first})"),
                    ));
                }
                match pass {
                    Some((p, at)) => target = Some((p, at, lp, lc)),
                    None => ctx.warnings.add(
                        &s.at,
                        "location",
                        "no proxy_pass: Buoy only proxies",
                    ),
                }
            }
            "location" => ctx.warnings.add(
                &s.at,
                "location",
                format!(
                    "{}: a listener sends every request to one pool (only `location /` is translated)",
                    s.args.join(" ")
                ),
            ),
            _ => untranslated(ctx.warnings, s),
        }
    }
    let Some((pass, pass_at, lp, lc)) = target else {
        ctx.warnings.add(
            &d.at,
            "server",
            "no `location /` with proxy_pass, so nothing to proxy",
        );
        return Ok(None);
    };
    if skip && listens.is_empty() {
        return Ok(None);
    }
    if listens.is_empty() {
        // nginx's default: `listen *:80`.
        listens.push(Listen {
            at: d.at.clone(),
            address: ListenAddress::Any { ipv6: false },
            port: 80,
            text: "80 (nginx's default)".into(),
        });
    }
    let Some(pool) = proxy_pass(&pass, &pass_at, false, upstreams, ctx.warnings)? else {
        return Ok(None);
    };
    if let Some(u) = upstreams.get_mut(&pool) {
        let spec = pool_settings(&u.spec, u.servers, &lp, false, ctx.warnings);
        match &u.used_by {
            None => {
                u.spec = spec;
                u.used_by = Some(pass_at.clone());
            }
            Some(first) if spec != u.spec => ctx.warnings.add(
                &pass_at,
                "proxy_pass",
                format!(
                    "upstream {} is also used at {first} with other proxy settings; a pool has one set: the first is used",
                    u.nginx_name
                ),
            ),
            Some(_) => {}
        }
    }
    let client = client_settings(&lc, ctx.max_connections, ListenerProtocol::HTTP);
    Ok(Some(Server {
        at: d.at.clone(),
        protocol: ListenerProtocol::HTTP,
        listens,
        pool,
        client,
    }))
}

fn stream_server(
    d: &Directive,
    outer: &Proxy,
    upstreams: &mut BTreeMap<String, Upstream>,
    ctx: &mut Ctx,
) -> Result<Option<Server>, ImportError> {
    let mut proxy = outer.clone();
    let mut listens = Vec::new();
    let mut pass = None;
    let mut skip = false;
    for s in d.block.iter().flatten() {
        if proxy_setting(s, &mut proxy, true, ctx.warnings)? {
            continue;
        }
        match s.name.as_str() {
            "listen" => match listen(s, true, ctx.warnings)? {
                Some(l) => listens.push(l),
                None => skip = true,
            },
            "proxy_pass" => pass = Some((one(s)?.to_string(), s.at.clone())),
            _ => untranslated(ctx.warnings, s),
        }
    }
    let Some((pass, pass_at)) = pass else {
        ctx.warnings
            .add(&d.at, "server", "no proxy_pass, so nothing to proxy");
        return Ok(None);
    };
    if listens.is_empty() {
        if !skip {
            return Err(ImportError::at(&d.at, "stream server without listen"));
        }
        return Ok(None);
    }
    let Some(pool) = proxy_pass(&pass, &pass_at, true, upstreams, ctx.warnings)? else {
        return Ok(None);
    };
    if let Some(u) = upstreams.get_mut(&pool) {
        let spec = pool_settings(&u.spec, u.servers, &proxy, true, ctx.warnings);
        match &u.used_by {
            None => {
                u.spec = spec;
                u.used_by = Some(pass_at.clone());
            }
            Some(first) if spec != u.spec => ctx.warnings.add(
                &pass_at,
                "proxy_pass",
                format!(
                    "upstream {} is also used at {first} with other proxy settings; the first are used",
                    u.nginx_name
                ),
            ),
            Some(_) => {}
        }
    }
    let client = Client {
        body_timeout: proxy.idle,
        ..Client::default()
    };
    Ok(Some(Server {
        at: d.at.clone(),
        protocol: ListenerProtocol::TCP,
        listens,
        pool,
        client: client_settings(&client, ctx.max_connections, ListenerProtocol::TCP),
    }))
}

/// The pool a proxy_pass names: an upstream, or a new one-backend pool for `host:port`.
fn proxy_pass(
    target: &str,
    at: &Loc,
    stream: bool,
    upstreams: &mut BTreeMap<String, Upstream>,
    warnings: &mut Warnings,
) -> Result<Option<String>, ImportError> {
    if target.contains('$') {
        warnings.add(
            at,
            "proxy_pass",
            format!("{target}: variables cannot be evaluated; the server is not translated"),
        );
        return Ok(None);
    }
    let rest = if stream {
        target
    } else if let Some(r) = target.strip_prefix("http://") {
        r
    } else {
        warnings.add(
            at,
            "proxy_pass",
            format!(
                "{target}: Buoy speaks plain HTTP to backends (no TLS); the server is not translated"
            ),
        );
        return Ok(None);
    };
    let (hostport, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !uri.is_empty() && uri != "/" {
        warnings.add(
            at,
            "proxy_pass",
            format!(
                "the URI part {uri:?} is not translated: Buoy forwards the request path unchanged"
            ),
        );
    }
    if upstreams.contains_key(hostport) {
        return Ok(Some(hostport.to_string()));
    }
    // A single backend, written in place: a pool of its own.
    let (host, port) = host_port(hostport, if stream { None } else { Some(80) }, at)?;
    let spec = UpstreamPoolSpec {
        backends: Some(vec![Backend {
            address: host.clone(),
            port,
            weight: 1,
            backup: false,
            down: false,
            max_fails: None,
            fail_timeout: None,
        }]),
        ..blank_pool()
    };
    let name = format!("{host}-{port}");
    upstreams.insert(
        dns_label(&name),
        Upstream {
            at: at.clone(),
            nginx_name: dns_label(&name),
            spec,
            servers: 1,
            used_by: None,
            implicit: true,
        },
    );
    Ok(Some(dns_label(&name)))
}

fn blank_pool() -> UpstreamPoolSpec {
    UpstreamPoolSpec {
        backends: None,
        service: None,
        load_balancing: LoadBalancing::default(),
        health_check: Default::default(),
        retry: Retry::default(),
        timeouts: Default::default(),
        http: HttpSettings::default(),
    }
}

fn upstream(d: &Directive, stream: bool, warnings: &mut Warnings) -> Result<Upstream, ImportError> {
    let name = one(d)?.to_string();
    let mut spec = blank_pool();
    let mut backends = Vec::new();
    let mut hashing: Option<Loc> = None;
    for s in d.block.iter().flatten() {
        match s.name.as_str() {
            "server" => {
                if let Some(b) = upstream_server(s, stream, warnings)? {
                    backends.push((b, s.at.clone()));
                }
            }
            "least_conn" => spec.load_balancing.algorithm = Algorithm::LeastConnections,
            "ip_hash" => {
                spec.load_balancing = LoadBalancing {
                    algorithm: Algorithm::ConsistentHash,
                    hash_key: Some(HashKey::ClientIp),
                    hash_key_name: None,
                };
                hashing = Some(s.at.clone());
            }
            "hash" => {
                let key = first(s)?;
                if !matches!(s.args.get(1..), Some([] | [_]))
                    || s.args.get(1).is_some_and(|c| c != "consistent")
                {
                    return Err(ImportError::at(
                        &s.at,
                        "hash takes a key and optionally \"consistent\"",
                    ));
                }
                let lb = if key == "$remote_addr" || key == "$binary_remote_addr" {
                    Some((HashKey::ClientIp, None))
                } else if let Some(h) = key.strip_prefix("$http_") {
                    Some((HashKey::Header, Some(h.replace('_', "-"))))
                } else {
                    key.strip_prefix("$cookie_")
                        .map(|c| (HashKey::Cookie, Some(c.to_string())))
                };
                match lb {
                    Some((k, n)) => {
                        spec.load_balancing = LoadBalancing {
                            algorithm: Algorithm::ConsistentHash,
                            hash_key: Some(k),
                            hash_key_name: n,
                        };
                        hashing = Some(s.at.clone());
                    }
                    None => warnings.add(
                        &s.at,
                        "hash",
                        format!(
                            "Buoy hashes the client IP, a header or a cookie, not {key:?}; the pool balances round robin"
                        ),
                    ),
                }
            }
            "keepalive" => spec.http.keepalive_connections = number(s, one(s)?, 0, 10_000)? as u32,
            "keepalive_timeout" => spec.timeouts.idle = time(s, one(s)?)?,
            "zone" => warnings.add(
                &s.at,
                "zone",
                "not needed: the agent's workers share backend state without a shared memory zone",
            ),
            _ => untranslated(warnings, s),
        }
    }
    if let Some(at) = &hashing
        && let Some((_, bat)) = backends.iter().find(|(b, _)| b.backup)
    {
        return Err(ImportError::at(
            bat,
            format!(
                "\"backup\" cannot be used with the hash balancing of {at} (nginx refuses it too)"
            ),
        ));
    }
    if backends.is_empty() {
        return Err(ImportError::at(
            &d.at,
            format!("upstream {name} has no server"),
        ));
    }
    let servers = backends.len() as u32;
    spec.backends = Some(backends.into_iter().map(|(b, _)| b).collect());
    // nginx's default proxy_next_upstream tries every server once.
    spec.retry.attempts = servers.clamp(1, 10);
    Ok(Upstream {
        at: d.at.clone(),
        nginx_name: name,
        spec,
        servers,
        used_by: None,
        implicit: false,
    })
}

fn upstream_server(
    s: &Directive,
    stream: bool,
    warnings: &mut Warnings,
) -> Result<Option<Backend>, ImportError> {
    let addr = first(s)?;
    if addr.starts_with("unix:") {
        warnings.add(
            &s.at,
            "server",
            format!("{addr}: Buoy connects to backends over TCP only"),
        );
        return Ok(None);
    }
    let (host, port) = host_port(addr, if stream { None } else { Some(80) }, &s.at)?;
    let mut b = Backend {
        address: host,
        port,
        weight: 1,
        backup: false,
        down: false,
        max_fails: None,
        fail_timeout: None,
    };
    for p in &s.args[1..] {
        let (k, v) = p.split_once('=').unwrap_or((p.as_str(), ""));
        match k {
            "weight" => {
                let w = number(s, v, 1, 1_000_000)?;
                if w > 100 {
                    warnings.add(&s.at, "weight", format!("{w} is above Buoy's maximum, 100; 100 is used (scale the other weights to keep the ratios)"));
                }
                b.weight = w.min(100) as u32;
            }
            "max_fails" => b.max_fails = Some(number(s, v, 0, 1000)? as u32),
            "fail_timeout" => b.fail_timeout = Some(time(s, v)?),
            "backup" => b.backup = true,
            "down" => b.down = true,
            _ => warnings.add(
                &s.at,
                "server",
                format!("the parameter {p} has no equivalent"),
            ),
        }
    }
    Ok(Some(b))
}

/// `host:port`, `host`, `[v6]:port`.
fn host_port(s: &str, default_port: Option<u16>, at: &Loc) -> Result<(String, u16), ImportError> {
    let bad = || ImportError::at(at, format!("{s:?} is not an address with a valid port"));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (s.to_string(), None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad()),
        },
        (None, Some(d)) => d,
        (None, None) => {
            return Err(ImportError::at(
                at,
                format!("{s:?} needs a port (host:port)"),
            ));
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// `listen`; None when the listener cannot be translated (warned).
fn listen(
    s: &Directive,
    stream: bool,
    warnings: &mut Warnings,
) -> Result<Option<Listen>, ImportError> {
    let spec = first(s)?;
    if spec.starts_with("unix:") {
        warnings.add(
            &s.at,
            "listen",
            format!("{spec}: Buoy listens on TCP ports of the virtual addresses only"),
        );
        return Ok(None);
    }
    let bad = || ImportError::at(&s.at, format!("listen: invalid port in {spec:?}"));
    let port_of = |p: &str| match p.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad()),
    };
    let (address, port) = if let Some(rest) = spec.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => port_of(p)?,
            None if stream => return Err(bad()),
            None => 80,
        };
        let ip: IpAddr = h.parse().map_err(|_| bad())?;
        if ip.is_unspecified() {
            (ListenAddress::Any { ipv6: true }, port)
        } else {
            (ListenAddress::Ip(ip), port)
        }
    } else if spec.bytes().all(|b| b.is_ascii_digit()) {
        (ListenAddress::Any { ipv6: false }, port_of(spec)?)
    } else {
        let (h, p) = match spec.rsplit_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None if stream => return Err(bad()),
            None => (spec, 80),
        };
        if h == "*" || h == "0.0.0.0" {
            (ListenAddress::Any { ipv6: false }, p)
        } else {
            match h.parse::<IpAddr>() {
                Ok(ip) => (ListenAddress::Ip(ip), p),
                Err(_) => {
                    warnings.add(&s.at, "listen", format!("{h} is a host name; Buoy listens on the virtual addresses, so give the VirtualIP the address it resolves to"));
                    return Ok(None);
                }
            }
        }
    };
    for p in &s.args[1..] {
        match p.as_str() {
            "default_server" | "default" => {}
            "ssl" => {
                warnings.add(&s.at, "listen", format!("{spec} ssl: Buoy does not terminate TLS (a TCP listener can pass TLS through to backends that terminate it); not translated"));
                return Ok(None);
            }
            "udp" => {
                warnings.add(
                    &s.at,
                    "listen",
                    format!("{spec} udp: Buoy proxies TCP only; not translated"),
                );
                return Ok(None);
            }
            other => warnings.add(
                &s.at,
                "listen",
                format!("the parameter {other} has no equivalent"),
            ),
        }
    }
    Ok(Some(Listen {
        at: s.at.clone(),
        address,
        port,
        text: s.args.join(" "),
    }))
}

/// The proxy_* directives that [`proxy_setting`] reads in that context.
fn is_proxy_setting(name: &str, stream: bool) -> bool {
    match name {
        "proxy_next_upstream" | "proxy_next_upstream_tries" | "proxy_connect_timeout" => true,
        "proxy_read_timeout" | "proxy_send_timeout" | "proxy_set_header" | "proxy_http_version" => {
            !stream
        }
        "proxy_timeout" => stream,
        _ => false,
    }
}

/// Reads a proxy_* setting into `p`; false if `d` is not one.
fn proxy_setting(
    d: &Directive,
    p: &mut Proxy,
    stream: bool,
    warnings: &mut Warnings,
) -> Result<bool, ImportError> {
    match d.name.as_str() {
        "proxy_next_upstream" => p.next_upstream = Some((d.args.clone(), d.at.clone())),
        "proxy_next_upstream_tries" => p.tries = Some(number(d, one(d)?, 0, 1000)? as u32),
        "proxy_connect_timeout" => p.connect = Some(time(d, one(d)?)?),
        "proxy_read_timeout" if !stream => p.read = Some(time(d, one(d)?)?),
        "proxy_send_timeout" if !stream => p.send = Some(time(d, one(d)?)?),
        "proxy_timeout" if stream => p.idle = Some(time(d, one(d)?)?),
        "proxy_set_header" if !stream => {
            let [name, value] = d.args.as_slice() else {
                return Err(ImportError::at(
                    &d.at,
                    "proxy_set_header takes a header name and a value",
                ));
            };
            p.headers.get_or_insert_with(Vec::new).push((
                name.clone(),
                value.clone(),
                d.at.clone(),
            ));
        }
        "proxy_http_version" if !stream => {
            if one(d)? != "1.1" {
                warnings.add(
                    &d.at,
                    "proxy_http_version",
                    "Buoy always speaks HTTP/1.1 to backends",
                );
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn is_client_setting(name: &str) -> bool {
    matches!(
        name,
        "keepalive_timeout"
            | "client_header_timeout"
            | "client_body_timeout"
            | "client_max_body_size"
            | "large_client_header_buffers"
            | "send_timeout"
    )
}

fn client_setting(
    d: &Directive,
    c: &mut Client,
    warnings: &mut Warnings,
) -> Result<bool, ImportError> {
    match d.name.as_str() {
        "keepalive_timeout" => {
            c.keepalive = Some(time(d, first(d)?)?);
            if d.args.len() > 1 {
                warnings.add(
                    &d.at,
                    "keepalive_timeout",
                    "the second value (the Keep-Alive response header) has no equivalent",
                );
            }
        }
        "client_header_timeout" => c.header_timeout = Some(time(d, one(d)?)?),
        "client_body_timeout" => c.body_timeout = Some(time(d, one(d)?)?),
        "client_max_body_size" => c.max_body = Some(size(d, one(d)?)?),
        "send_timeout" => c.send_timeout = Some(time(d, one(d)?)?),
        "large_client_header_buffers" => {
            let [n, s] = d.args.as_slice() else {
                return Err(ImportError::at(
                    &d.at,
                    "large_client_header_buffers takes a number and a size",
                ));
            };
            let total = number(d, n, 1, 1024)? as u64 * size(d, s)?;
            let clamped = total.clamp(1024, 1_048_576);
            if clamped != total {
                warnings.add(
                    &d.at,
                    "large_client_header_buffers",
                    format!("{total} bytes of headers is outside Buoy's range; {clamped} is used"),
                );
            }
            c.max_header = Some(clamped as u32);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn client_settings(
    c: &Client,
    max_connections: Option<u32>,
    protocol: ListenerProtocol,
) -> Option<ClientSettings> {
    let http = protocol == ListenerProtocol::HTTP;
    let s = ClientSettings {
        max_connections,
        keepalive_timeout: c.keepalive.filter(|_| http),
        header_timeout: c.header_timeout.filter(|_| http),
        idle_timeout: c.body_timeout,
        max_request_header_bytes: c.max_header.filter(|_| http),
        max_request_body_bytes: c.max_body.filter(|_| http),
        send_timeout: c.send_timeout,
    };
    (s != ClientSettings::default()).then_some(s)
}

/// The upstream's spec with the settings of the location that proxies to it.
fn pool_settings(
    base: &UpstreamPoolSpec,
    servers: u32,
    p: &Proxy,
    stream: bool,
    warnings: &mut Warnings,
) -> UpstreamPoolSpec {
    let mut spec = base.clone();
    if let Some(c) = p.connect {
        spec.timeouts.connect = c;
    }
    if let Some(r) = p.read {
        spec.timeouts.read = r;
    }
    if let Some(w) = p.send {
        spec.timeouts.write = w;
    }
    if let Some(i) = p.idle {
        spec.timeouts.idle = i;
    }
    let mut attempts = servers;
    if let Some((values, at)) = &p.next_upstream {
        let mut on = Vec::new();
        for v in values {
            let r = match v.as_str() {
                "error" => Some(RetryOn::ConnectFailure),
                "timeout" => Some(RetryOn::Timeout),
                "invalid_header" => Some(RetryOn::InvalidHeader),
                "http_500" => Some(RetryOn::Http500),
                "http_502" => Some(RetryOn::Http502),
                "http_503" => Some(RetryOn::Http503),
                "http_504" => Some(RetryOn::Http504),
                "http_429" => Some(RetryOn::Http429),
                "non_idempotent" => {
                    spec.retry.non_idempotent = true;
                    None
                }
                "off" => {
                    attempts = 1;
                    None
                }
                // stream: `proxy_next_upstream on` is nginx's default.
                "on" if stream => None,
                other => {
                    warnings.add(at, other, "this retry condition has no equivalent");
                    None
                }
            };
            if let Some(r) = r
                && !on.contains(&r)
            {
                on.push(r);
            }
        }
        if !stream {
            spec.retry.retry_on = on;
        }
    }
    if let Some(t) = p.tries
        && t > 0
    {
        attempts = attempts.min(t);
    }
    spec.retry.attempts = attempts.clamp(1, 10);
    if !stream {
        spec.http = headers(
            p.headers.as_deref().unwrap_or_default(),
            &base.http,
            warnings,
        );
    }
    spec
}

/// proxy_set_header → the four header switches. Without any, nginx sends `Host: $proxy_host` and
/// none of the others, so all four are off.
fn headers(
    list: &[(String, String, Loc)],
    base: &HttpSettings,
    warnings: &mut Warnings,
) -> HttpSettings {
    let mut h = HttpSettings {
        preserve_host: false,
        x_forwarded_for: false,
        x_real_ip: false,
        x_forwarded_proto: false,
        keepalive_connections: base.keepalive_connections,
    };
    for (name, value, at) in list {
        match (name.to_ascii_lowercase().as_str(), value.as_str()) {
            ("host", "$host" | "$http_host") => h.preserve_host = true,
            ("host", "$proxy_host") => h.preserve_host = false,
            ("x-real-ip", "$remote_addr") => h.x_real_ip = true,
            ("x-forwarded-for", "$proxy_add_x_forwarded_for") => h.x_forwarded_for = true,
            ("x-forwarded-for", "$remote_addr") => {
                h.x_forwarded_for = true;
                warnings.add(at, "proxy_set_header", "X-Forwarded-For $remote_addr replaces the list; Buoy appends the client address to it ($proxy_add_x_forwarded_for)");
            }
            ("x-forwarded-proto", "$scheme" | "http") => h.x_forwarded_proto = true,
            // Buoy manages hop-by-hop headers and upstream keep-alive itself.
            ("connection", "") => {}
            _ => warnings.add(at, "proxy_set_header", format!("{name} {value:?}: Buoy sets only Host, X-Real-IP, X-Forwarded-For and X-Forwarded-Proto (as nginx's $host, $remote_addr, $proxy_add_x_forwarded_for and $scheme)")),
        }
    }
    h
}

fn untranslated(warnings: &mut Warnings, d: &Directive) {
    let why = match d.name.as_str() {
        "worker_processes" => {
            "the agent's proxy threads are set with `buoy-agent --threads` (default: one per core)"
        }
        "user"
        | "pid"
        | "daemon"
        | "master_process"
        | "worker_rlimit_nofile"
        | "worker_cpu_affinity"
        | "worker_priority"
        | "load_module"
        | "env"
        | "pcre_jit"
        | "thread_pool" => {
            "a setting of the nginx process; the agent runs as a DaemonSet or under systemd"
        }
        "use" | "multi_accept" | "accept_mutex" => "the agent's event loop needs no tuning",
        "default_type"
        | "types"
        | "sendfile"
        | "tcp_nopush"
        | "root"
        | "index"
        | "autoindex"
        | "try_files"
        | "alias"
        | "charset"
        | "etag"
        | "expires"
        | "open_file_cache"
        | "types_hash_max_size"
        | "aio"
        | "directio" => {
            "serves files, which a proxy does not; Buoy passes the backend's Content-Type through"
        }
        "access_log" | "error_log" | "log_format" | "log_not_found" | "rewrite_log" => {
            "the agent logs to stderr and exports request counters on /metrics"
        }
        "server_name" | "server_names_hash_bucket_size" | "server_names_hash_max_size" => {
            "a listener serves every Host on its port (Buoy routes by port)"
        }
        "server_tokens" => "Buoy adds no Server header",
        "tcp_nodelay" => "Buoy sets TCP_NODELAY itself",
        n if n.starts_with("gzip") => {
            "Buoy does not compress responses; the backend's encoding passes through"
        }
        n if n.starts_with("ssl") => "Buoy does not terminate TLS",
        "return"
        | "rewrite"
        | "if"
        | "set"
        | "allow"
        | "deny"
        | "auth_basic"
        | "auth_basic_user_file"
        | "add_header"
        | "error_page"
        | "limit_except" => "Buoy does not rewrite, filter or answer requests itself",
        n if n.starts_with("limit_") => {
            "Buoy has no rate or connection limits per key (listeners[].client.maxConnections bounds a listener)"
        }
        n if n.starts_with("proxy_cache") => "Buoy does not cache",
        n if n.starts_with("proxy_") => "Buoy has no equivalent of this proxy setting",
        "map" | "geo" | "split_clients" => "variables do not exist in Buoy",
        "mail" => "Buoy does not proxy mail protocols",
        "resolver" | "resolver_timeout" => {
            "backend host names are resolved when the configuration is loaded"
        }
        "keepalive_requests" => "Buoy does not limit requests per client connection",
        _ => "Buoy has no equivalent",
    };
    warnings.add(&d.at, &d.name, why);
}

/// The only argument of `d`.
fn one(d: &Directive) -> Result<&str, ImportError> {
    match d.args.as_slice() {
        [a] => Ok(a),
        [] => Err(ImportError::at(
            &d.at,
            format!("\"{}\" needs a value", d.name),
        )),
        _ => Err(ImportError::at(
            &d.at,
            format!("\"{}\" takes one value, got {}", d.name, d.args.len()),
        )),
    }
}

fn first(d: &Directive) -> Result<&str, ImportError> {
    d.args
        .first()
        .map(String::as_str)
        .ok_or_else(|| ImportError::at(&d.at, format!("\"{}\" needs a value", d.name)))
}

fn number(d: &Directive, v: &str, min: i64, max: i64) -> Result<i64, ImportError> {
    match v.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ImportError::at(
            &d.at,
            format!("{}: {v:?} is not a number from {min} to {max}", d.name),
        )),
    }
}

/// nginx's time syntax: `60`, `60s`, `500ms`, `1m30s`, `1h`, `2d`.
pub fn parse_time(v: &str) -> Option<Duration> {
    let mut total: u128 = 0;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let ms: u128 = match &rest[..unit_len] {
            // A bare number is seconds (only possible at the end: anything else is a bad unit).
            "" => 1000,
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * ms;
    }
    Some(Duration::from_millis(u64::try_from(total).ok()?))
}

fn time(d: &Directive, v: &str) -> Result<Duration, ImportError> {
    parse_time(v).ok_or_else(|| {
        ImportError::at(
            &d.at,
            format!("{}: {v:?} is not a time (60, 60s, 500ms, 1m)", d.name),
        )
    })
}

/// nginx's size syntax: `1024`, `8k`, `1m`, `1g`.
pub fn parse_size(v: &str) -> Option<u64> {
    let (n, mult) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1024),
        b'm' | b'M' => (&v[..v.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    n.parse::<u64>().ok()?.checked_mul(mult)
}

fn size(d: &Directive, v: &str) -> Result<u64, ImportError> {
    parse_size(v).ok_or_else(|| {
        ImportError::at(
            &d.at,
            format!("{}: {v:?} is not a size (1024, 8k, 1m)", d.name),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Rc<Path> {
        Rc::from(Path::new("n.conf"))
    }

    fn toks(text: &str) -> Vec<(Tok, usize)> {
        tokenize(text, &file())
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.tok, t.at.line))
            .collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn tokens_quotes_escapes_comments_lines() {
        assert_eq!(
            toks(
                "# c\nlog_format x '$a \"b\"' \"c\\\"d\";\nset $v ${x}y;{}\nlocation ~ \\.php$ {}"
            ),
            [
                (w("log_format"), 2),
                (w("x"), 2),
                (w("$a \"b\""), 2),
                (w("c\"d"), 2),
                (Tok::Semi, 2),
                (w("set"), 3),
                (w("$v"), 3),
                (w("${x}y"), 3),
                (Tok::Semi, 3),
                (Tok::Open, 3),
                (Tok::Close, 3),
                (w("location"), 4),
                (w("~"), 4),
                (w("\\.php$"), 4),
                (Tok::Open, 4),
                (Tok::Close, 4),
            ]
        );
        let e = tokenize("a;\nb \"x;\n", &file())
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("n.conf:2: unterminated quoted string"));
    }

    #[test]
    fn multi_line_quotes_keep_counting_lines() {
        assert_eq!(toks("a 'x\ny';\nb;")[3], (w("b"), 3));
    }

    fn err(text: &str) -> String {
        tokenize(text, &file())
            .and_then(|t| parse(&t))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn structure_errors_name_the_line() {
        assert_eq!(
            err("http {\n server {\n listen 80;\n }\n"),
            "n.conf:1: \"{\" is never closed (missing \"}\" before the end of the file)"
        );
        assert_eq!(
            err("server {\n listen 80\n}\n"),
            "n.conf:2: directive \"listen\" is not terminated by \";\""
        );
        assert_eq!(
            err("server {\n listen 80\n location / {\n }\n}"),
            "n.conf:2: \"listen\" cannot open a block: is a \";\" missing at the end of line 2?"
        );
        assert_eq!(err("htp {\n}"), "n.conf:1: unknown block directive \"htp\"");
        assert_eq!(err("a;\n}"), "n.conf:2: unexpected \"}\": no block is open");
        assert_eq!(err("a;\n;"), "n.conf:2: unexpected \";\"");
        assert_eq!(
            err("worker_processes 1"),
            "n.conf:1: directive \"worker_processes\" is not terminated by \";\" before the end of the file"
        );
    }

    #[test]
    fn parses_nested_blocks() {
        let t = tokenize(
            "http { upstream u { server a:1; } server { listen 80; } }",
            &file(),
        )
        .unwrap_or_default();
        let d = parse(&t).unwrap_or_default();
        assert_eq!(d[0].name, "http");
        let inner = d[0].block.clone().unwrap_or_default();
        assert_eq!(inner[0].args, ["u"]);
        assert_eq!(inner[1].name, "server");
    }

    #[test]
    fn times_and_sizes() {
        assert_eq!(parse_time("65"), Some(Duration::from_secs(65)));
        assert_eq!(parse_time("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_time("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_time("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_time("x"), None);
        assert_eq!(parse_time("5x"), None);
        assert_eq!(parse_size("8k"), Some(8192));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1q"), None);
    }
}
