//! The routes of an HTTP listener, chosen as nginx chooses a `server` by `server_name` and then
//! a `location` in it: compiled once per configuration into lookup tables, matched per request
//! without allocating (but for paths that need nginx's normalisation). Pure: no IO.
//!
//! The host comes first: an exact name, else the longest wildcard (`*.example.com`), else the
//! routes without hosts. Only that host's paths are then looked at: an `Exact` path, else the
//! longest `Prefix`. What matches nothing is the listener's own pool's (or a 404).

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
};

use buoy_crds::PathMatch;

/// One route as configured: lower-case hosts (empty: any), paths (empty: every path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// Exact names and `*.suffix` wildcards, lower case.
    pub hosts: Vec<String>,
    /// Each path and how it matches.
    pub paths: Vec<(PathMatch, String)>,
    /// `namespace/pool`.
    pub pool: String,
}

/// The paths of one host.
#[derive(Debug, Default)]
struct VirtualHost {
    exact: HashMap<Box<str>, usize>,
    /// Longest first, so that the first match is nginx's.
    prefixes: Vec<(Box<str>, usize)>,
    /// Paths that end in `/` without it (`/api` of `/api/`): nginx redirects those to the path
    /// with the slash when no exact path takes them.
    redirects: HashSet<Box<str>>,
}

/// What takes a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// This route (its index in the configuration).
    Route(usize),
    /// A 301 to the path with a `/` added: `/api` where a route has `/api/` (nginx's
    /// redirect for proxied locations that end in a slash).
    AddSlash,
    /// No route: the listener's own pool, or 404.
    None,
}

/// A listener's routes, compiled. [`Routes::select`] gives the index of the route (in the
/// configuration's order) that takes a request.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    exact: HashMap<Box<str>, usize>,
    /// By the suffix with its dot (`.example.com`).
    wildcard: HashMap<Box<str>, usize>,
    /// The virtual host of the routes without hosts.
    any: Option<usize>,
    hosts: Vec<VirtualHost>,
}

/// The longest host name looked up (DNS names are at most 253 bytes).
const MAX_HOST: usize = 255;

impl Routes {
    /// The table of `routes`. A host and path that an earlier route has is left to it, as
    /// [`buoy_crds::Listener::route_conflicts`] reports.
    pub(crate) fn compile(routes: &[RouteConfig]) -> Routes {
        let mut table = Routes::default();
        let every_path = [(PathMatch::Prefix, "/".to_string())];
        for (i, r) in routes.iter().enumerate() {
            let paths = if r.paths.is_empty() {
                &every_path[..]
            } else {
                &r.paths[..]
            };
            let mut vhosts = Vec::new();
            if r.hosts.is_empty() {
                vhosts.push(table.any_host());
            }
            for h in &r.hosts {
                vhosts.push(table.host(h));
            }
            for v in vhosts {
                let vh = &mut table.hosts[v];
                for (kind, value) in paths {
                    if let Some(bare) = value.strip_suffix('/')
                        && !bare.is_empty()
                    {
                        vh.redirects.insert(bare.into());
                    }
                    match kind {
                        PathMatch::Exact => {
                            vh.exact.entry(value.as_str().into()).or_insert(i);
                        }
                        PathMatch::Prefix => {
                            if !vh.prefixes.iter().any(|(p, _)| **p == **value) {
                                vh.prefixes.push((value.as_str().into(), i));
                            }
                        }
                    }
                }
            }
        }
        for vh in &mut table.hosts {
            // Stable: among equal lengths (never equal strings) the order does not matter.
            vh.prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        }
        table
    }

    fn any_host(&mut self) -> usize {
        match self.any {
            Some(v) => v,
            None => {
                self.hosts.push(VirtualHost::default());
                self.any = Some(self.hosts.len() - 1);
                self.hosts.len() - 1
            }
        }
    }

    fn host(&mut self, name: &str) -> usize {
        let (map, key) = match name.strip_prefix('*') {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, name),
        };
        let next = self.hosts.len();
        let v = *map.entry(key.to_ascii_lowercase().into()).or_insert(next);
        if v == next {
            self.hosts.push(VirtualHost::default());
        }
        v
    }

    /// Whether there is any route.
    pub(crate) fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The route that takes a request for `host` (the `Host` header's value, or the request
    /// line's authority: port and case do not matter) and `path` (without the query); `None`:
    /// no route does.
    pub(crate) fn select(&self, host: Option<&[u8]>, path: &str) -> Choice {
        if self.hosts.is_empty() {
            return Choice::None;
        }
        let mut buf = [0u8; MAX_HOST];
        let Some(vhost) = host
            .and_then(|h| lower_host(h, &mut buf))
            .and_then(|h| self.virtual_host(h))
            .or(self.any)
        else {
            return Choice::None;
        };
        let vh = &self.hosts[vhost];
        let Some(path) = normalize(path) else {
            return Choice::None;
        };
        if let Some(&i) = vh.exact.get(path.as_ref()) {
            return Choice::Route(i);
        }
        if !vh.redirects.is_empty() && vh.redirects.contains(path.as_ref()) {
            return Choice::AddSlash;
        }
        vh.prefixes
            .iter()
            .find(|(p, _)| path.starts_with(&**p))
            .map_or(Choice::None, |&(_, i)| Choice::Route(i))
    }

    /// The virtual host of a lower-case name: exact, else the longest wildcard suffix.
    fn virtual_host(&self, host: &str) -> Option<usize> {
        if let Some(&v) = self.exact.get(host) {
            return Some(v);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Each suffix that starts at a dot, longest first (never the whole name: `*.a.b` does
        // not take `a.b`).
        host.match_indices('.')
            .find_map(|(at, _)| self.wildcard.get(&host[at..]).copied())
    }
}

/// The host of a `Host` value in lower case, without its port and trailing dot, in `buf`;
/// `None` when it is empty, too long or not text.
fn lower_host<'b>(host: &[u8], buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    let name = if host.first() == Some(&b'[') {
        // An IPv6 literal: up to its bracket.
        let end = host.iter().position(|&b| b == b']')?;
        &host[..=end]
    } else {
        host.split(|&b| b == b':').next().unwrap_or_default()
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// The path as nginx matches locations against it: `%XX` decoded, `//` merged, `.` and `..`
/// segments resolved. Borrowed unless it has any of those (most paths have none). `None`: a
/// path that climbs above the root, or decodes to something that is not text (nginx answers
/// those 400; here they match no route).
pub(crate) fn normalize(path: &str) -> Option<Cow<'_, str>> {
    if !path.contains('%') && !path.contains("//") && !path.contains("/.") {
        return Some(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    decoded.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => decoded.push(b'%'),
            },
            b => decoded.push(b),
        }
        i += 1;
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/').skip(1) {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            s => segments.push(s),
        }
    }
    // A trailing slash, `/.` or `/..` keeps the path a directory, as nginx does.
    let dir = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if dir || out.is_empty() {
        out.push('/');
    }
    Some(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(hosts: &[&str], paths: &[(PathMatch, &str)], pool: &str) -> RouteConfig {
        RouteConfig {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            paths: paths.iter().map(|(k, p)| (*k, p.to_string())).collect(),
            pool: pool.to_string(),
        }
    }

    use PathMatch::{Exact, Prefix};

    fn table() -> Routes {
        Routes::compile(&[
            route(&["shop.example.com"], &[(Prefix, "/")], "shop"),
            route(&["shop.example.com"], &[(Prefix, "/api/")], "api"),
            route(&["shop.example.com"], &[(Exact, "/api/login")], "login"),
            route(
                &["shop.example.com"],
                &[(Prefix, "/api/login")],
                "login-prefix",
            ),
            route(&["*.example.com"], &[], "wild"),
            route(&["*.eu.example.com"], &[(Prefix, "/")], "wild-eu"),
            route(&[], &[(Prefix, "/static/")], "static"),
        ])
    }

    fn pick(t: &Routes, host: &str, path: &str) -> Option<usize> {
        match t.select(Some(host.as_bytes()), path) {
            Choice::Route(i) => Some(i),
            Choice::None => None,
            Choice::AddSlash => panic!("a redirect for {host} {path}"),
        }
    }

    #[test]
    fn exact_path_before_the_longest_prefix() {
        let t = table();
        assert_eq!(pick(&t, "shop.example.com", "/api/login"), Some(2));
        assert_eq!(pick(&t, "shop.example.com", "/api/login2"), Some(3));
        assert_eq!(pick(&t, "shop.example.com", "/api/loginx/y"), Some(3));
        assert_eq!(pick(&t, "shop.example.com", "/api/orders"), Some(1));
        // nginx: a proxied location ending in `/` redirects its path without the slash.
        assert_eq!(
            t.select(Some(b"shop.example.com"), "/api"),
            Choice::AddSlash
        );
        assert_eq!(pick(&t, "shop.example.com", "/"), Some(0));
    }

    #[test]
    fn hosts_case_insensitive_port_and_trailing_dot_ignored() {
        let t = table();
        assert_eq!(pick(&t, "SHOP.Example.COM:8080", "/api/x"), Some(1));
        assert_eq!(pick(&t, "shop.example.com.", "/api/x"), Some(1));
    }

    #[test]
    fn exact_host_before_longest_wildcard_before_no_host() {
        let t = table();
        assert_eq!(pick(&t, "www.example.com", "/anything"), Some(4));
        assert_eq!(pick(&t, "a.b.example.com", "/"), Some(4));
        assert_eq!(pick(&t, "x.eu.example.com", "/"), Some(5));
        // `*.example.com` is not example.com itself.
        assert_eq!(pick(&t, "example.com", "/static/a.css"), Some(6));
        assert_eq!(pick(&t, "other.org", "/static/a.css"), Some(6));
        assert_eq!(t.select(None, "/static/a.css"), Choice::Route(6));
    }

    #[test]
    fn a_host_with_routes_does_not_fall_to_the_hostless_ones() {
        // As nginx: the server is chosen by name first; its locations only.
        let t = Routes::compile(&[
            route(&["a.test"], &[(Prefix, "/a/")], "a"),
            route(&[], &[(Prefix, "/b/")], "b"),
        ]);
        assert_eq!(pick(&t, "a.test", "/b/x"), None);
        assert_eq!(pick(&t, "z.test", "/b/x"), Some(1));
        assert_eq!(pick(&t, "z.test", "/a/x"), None);
    }

    #[test]
    fn nothing_matches_without_routes_or_paths() {
        let t = Routes::compile(&[]);
        assert!(t.is_empty());
        assert_eq!(pick(&t, "a.test", "/"), None);
        let t = Routes::compile(&[route(&["a.test"], &[(Exact, "/x")], "a")]);
        assert_eq!(pick(&t, "a.test", "/y"), None);
        assert_eq!(pick(&t, "b.test", "/x"), None);
    }

    #[test]
    fn the_first_route_keeps_a_host_and_path_named_twice() {
        let t = Routes::compile(&[
            route(&["a.test"], &[(Prefix, "/x"), (Exact, "/e")], "first"),
            route(&["A.test"], &[(Prefix, "/x"), (Exact, "/e")], "second"),
            route(&["a.test"], &[(Prefix, "/y")], "third"),
        ]);
        assert_eq!(pick(&t, "a.test", "/x1"), Some(0));
        assert_eq!(pick(&t, "a.test", "/e"), Some(0));
        assert_eq!(pick(&t, "a.test", "/y"), Some(2));
    }

    #[test]
    fn paths_are_normalised_as_nginx_does() {
        assert_eq!(normalize("/a/b").as_deref(), Some("/a/b"));
        assert!(matches!(normalize("/a/b"), Some(Cow::Borrowed(_))));
        assert_eq!(normalize("//api///x").as_deref(), Some("/api/x"));
        assert_eq!(normalize("/%61pi/x").as_deref(), Some("/api/x"));
        assert_eq!(normalize("/a/./b/../c").as_deref(), Some("/a/c"));
        assert_eq!(normalize("/a/b/..").as_deref(), Some("/a/"));
        assert_eq!(normalize("/a/%").as_deref(), Some("/a/%"));
        assert_eq!(normalize("/a/%zz").as_deref(), Some("/a/%zz"));
        assert_eq!(normalize("/../etc"), None);
        assert_eq!(normalize("/%ff"), None);
        let t = table();
        assert_eq!(pick(&t, "shop.example.com", "/%61pi/login"), Some(2));
        assert_eq!(pick(&t, "shop.example.com", "/x/../api//login"), Some(2));
    }

    #[test]
    fn an_exact_path_wins_over_the_slash_redirect() {
        let t = Routes::compile(&[
            route(&[], &[(Prefix, "/api/")], "api"),
            route(&[], &[(Exact, "/api")], "bare"),
            route(&[], &[(Exact, "/x/")], "x"),
        ]);
        assert_eq!(t.select(None, "/api"), Choice::Route(1));
        assert_eq!(t.select(None, "/x"), Choice::AddSlash);
        assert_eq!(t.select(None, "/ap"), Choice::None);
    }

    /// Counts this thread's allocations (the lib's tests run on the system allocator).
    struct Counting;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
            // SAFETY: the caller's contract is the system allocator's.
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: as above.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    #[test]
    fn matching_allocates_nothing_for_plain_paths() {
        let t = table();
        let requests = [
            ("SHOP.example.com:8080", "/api/login"),
            ("shop.example.com", "/api/orders/1"),
            ("x.eu.example.com", "/"),
            ("unknown.test", "/static/a.css"),
            ("[::1]:80", "/nothing"),
        ];
        let before = ALLOCATIONS.with(|a| a.get());
        let mut picked = 0;
        for _ in 0..100 {
            for (host, path) in requests {
                if pick(&t, host, path).is_some() {
                    picked += 1;
                }
            }
        }
        let allocations = ALLOCATIONS.with(|a| a.get()) - before;
        assert_eq!((picked, allocations), (400, 0));
        // A path that needs nginx's normalisation is the exception.
        let before = ALLOCATIONS.with(|a| a.get());
        assert_eq!(pick(&t, "shop.example.com", "//api/login"), Some(2));
        assert!(ALLOCATIONS.with(|a| a.get()) > before);
    }

    #[test]
    fn odd_hosts_fall_to_the_hostless_routes() {
        let t = table();
        assert_eq!(pick(&t, "", "/static/x"), Some(6));
        assert_eq!(pick(&t, &"a".repeat(300), "/static/x"), Some(6));
        assert_eq!(t.select(Some(b"\xff\xfe"), "/static/x"), Choice::Route(6));
        assert_eq!(pick(&t, "[::1]:80", "/static/x"), Some(6));
    }
}
