//! Measures Buoy's production code against the house's rules (`docs/architecture.md`): file
//! and function sizes, visibility, and the floors of each crate, where a module may use modules
//! of lower floors and of its own room only. Parsed with syn, so that strings, comments and
//! `#[cfg(test)]` modules are told apart from code.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use syn::{spanned::Spanned, visit::Visit};

/// Lines above which a file is big.
pub const FILE_LINES: usize = 800;
/// Lines above which a production function is long.
pub const FN_LINES: usize = 100;

/// A crate's source directory, and its rooms by floor: a module path prefix (`vrrp::machine`,
/// `proxy`) and its floor. A module belongs to the room of its longest matching prefix; a
/// module in no room is on floor 0. Uses within a room, or down to a lower floor, are fine;
/// anything else runs up or sideways.
pub struct Crate {
    pub name: &'static str,
    pub src: &'static str,
    pub rooms: &'static [(&'static str, u32)],
}

/// Buoy's crates and their floors. Lower floors know nothing of higher ones: the protocol and
/// proxy engines know nothing of where their configuration comes from, and the sources
/// (files, cluster) nothing of each other.
pub const CRATES: &[Crate] = &[
    Crate {
        name: "buoy-crds",
        src: "crds/src",
        rooms: &[],
    },
    Crate {
        name: "buoy-import",
        src: "import/src",
        rooms: &[
            // What every part uses: places, warnings and errors; the options; DNS names.
            ("diagnostics", 5),
            ("options", 5),
            ("names", 5),
            // Reading files and their includes; a VirtualIP being built; the Secrets of PEM files.
            ("syntax", 10),
            ("draft", 10),
            ("certificates", 10),
            // keepalived and nginx, each on its own: parsing, then translating, then merging
            // the files; neither knows the other.
            ("keepalived::parse", 20),
            ("nginx::parse", 20),
            ("keepalived::values", 25),
            ("nginx::values", 25),
            ("nginx::untranslated", 25),
            ("keepalived::defs", 28),
            ("nginx::config", 28),
            ("nginx::tls", 29),
            ("keepalived::instance", 30),
            ("nginx::settings", 30),
            ("nginx::upstream", 30),
            ("keepalived::translate", 35),
            ("nginx::server", 35),
            ("nginx::translate", 40),
            ("keepalived::merge", 40),
            ("nginx::merge", 40),
            ("keepalived", 45),
            ("nginx", 45),
            // Kubernetes objects read from YAML; address ranges; label selectors merged.
            ("manifests", 15),
            ("ranges", 10),
            ("selectors", 10),
            // Where the two halves meet, the objects and their YAML, and the import on top.
            ("listeners", 50),
            ("objects", 60),
            // Services handed over to Buoy; MetalLB's and kube-vip's configurations, each on
            // its own.
            ("services", 62),
            ("metallb::pool", 63),
            ("metallb::l2", 64),
            ("metallb::bgp", 64),
            ("metallb::services", 64),
            ("kubevip::services", 64),
            ("metallb", 66),
            ("kubevip", 66),
            ("yaml", 65),
            ("pipeline", 70),
        ],
    },
    Crate {
        name: "buoy-vrrp",
        src: "vrrp/src",
        rooms: &[
            ("packet", 5),
            ("track", 5),
            ("machine", 10),
            ("fault", 10),
            ("receive", 15),
            ("announce", 15),
            // The machine with what is decided beside it.
            ("router", 20),
        ],
    },
    Crate {
        name: "buoy-agent",
        src: "node-agent/src",
        rooms: &[
            // Host IO and small services (the sans-IO cores are crates of their own: buoy-vrrp,
            // buoy-import).
            ("net", 20),
            ("dns", 20),
            // The HTTP(S) GET probe client, shared by the proxy's health checks and the
            // VIPs' `track.httpGet`.
            ("probe", 20),
            ("refresh", 15),
            ("metrics", 15),
            // The engines: neither uses the other. VRRP's IO shell: the socket, what instances
            // share, the instance; its metrics read the instances' counters.
            ("vrrp::socket", 22),
            ("vrrp::host", 25),
            ("vrrp", 30),
            ("vrrp::metrics", 32),
            ("proxy", 30),
            // BGP: the announcer (sans-IO), FRR's configuration and state, the speaker
            // driving FRR.
            ("bgp", 30),
            // Desired state into engine configuration.
            ("config", 40),
            // Offline validation of manifests (`buoy-agent check`, `kubectl buoy check`).
            ("check", 42),
            ("endpoints", 40),
            ("node", 45),
            // A VIP's `track.httpGet` probe, run beside its instance (the proxy's rise/fall).
            ("track", 45),
            // Running a node's configuration, and reporting on it.
            ("agent", 50),
            ("admin", 55),
            // Where desired state comes from.
            ("watch", 55),
            ("secret_watch", 56),
            ("source", 60),
            ("files", 65),
            ("cluster", 65),
            ("runner", 70),
            // The binary's commands (not part of the library).
            ("cli", 90),
        ],
    },
    Crate {
        name: "buoy-operator",
        src: "operator/src",
        rooms: &[
            // Pure helpers.
            ("conditions", 10),
            ("selection", 10),
            ("allocate", 10),
            ("applied", 10),
            ("daemonset", 20),
            // The plan's rooms, in the order its phases run; `plan` itself runs them. The
            // Services phase comes first: the world names its settings and records.
            ("plan::services", 20),
            ("plan::world", 21),
            ("plan::addresses", 22),
            ("plan::router_ids", 23),
            ("plan::served", 24),
            ("plan::conflicts", 25),
            ("plan::priorities", 25),
            ("plan::daemonsets", 25),
            ("plan::upstreampool", 25),
            ("plan::bgppeers", 25),
            ("plan::virtualip_conditions", 26),
            ("plan::virtualip", 27),
            ("plan", 30),
            // The IO shells.
            ("leader", 40),
            ("telemetry", 40),
            ("events", 40),
            ("controller", 50),
            // The process, wired from its flags (`main.rs` only parses them).
            ("app", 60),
        ],
    },
    Crate {
        name: "kubectl-buoy",
        src: "kubectl-buoy/src",
        rooms: &[
            // How kubectl prints: ages and aligned tables.
            ("age", 5),
            ("table", 5),
            // The client from kubectl's flags.
            ("connect", 10),
            // The commands that ask the API server, neither using the other.
            ("status", 20),
            ("events", 20),
        ],
    },
];

/// One source file's figures.
#[derive(Debug, Default)]
pub struct FileFigures {
    pub path: PathBuf,
    pub lines: usize,
    /// Production functions over [`FN_LINES`]: name and lines.
    pub long_fns: Vec<(String, usize)>,
    pub public: usize,
    pub restricted: usize,
    /// Uses that run up or sideways: the module used.
    pub upward: Vec<String>,
}

/// The figures of every crate.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<FileFigures>,
}

impl Report {
    /// Files over [`FILE_LINES`].
    pub fn big_files(&self) -> Vec<&FileFigures> {
        self.files.iter().filter(|f| f.lines > FILE_LINES).collect()
    }

    /// Production functions over [`FN_LINES`], with their file.
    pub fn long_fns(&self) -> Vec<(&Path, &str, usize)> {
        self.files
            .iter()
            .flat_map(|f| {
                f.long_fns
                    .iter()
                    .map(|(n, l)| (f.path.as_path(), n.as_str(), *l))
            })
            .collect()
    }

    /// Uses that run up or sideways, with their file.
    pub fn upward(&self) -> Vec<(&Path, &str)> {
        self.files
            .iter()
            .flat_map(|f| f.upward.iter().map(|u| (f.path.as_path(), u.as_str())))
            .collect()
    }

    /// `pub` and restricted (`pub(crate)`, `pub(super)`, `pub(in …)`) items.
    pub fn visibility(&self) -> (usize, usize) {
        self.files
            .iter()
            .fold((0, 0), |(p, r), f| (p + f.public, r + f.restricted))
    }

    /// The figures, one per line.
    pub fn summary(&self) -> String {
        let (public, restricted) = self.visibility();
        format!(
            "files over {FILE_LINES} lines: {}\nproduction functions over {FN_LINES} lines: {}\n`pub` items: {public}; restricted (`pub(crate)`, `pub(super)`): {restricted}\nuses from a lower floor to a higher one or sideways: {}",
            self.big_files().len(),
            self.long_fns().len(),
            self.upward().len()
        )
    }

    /// Every file, function and use counted.
    pub fn details(&self) -> String {
        let mut out = String::new();
        for f in self.big_files() {
            let _ = writeln!(out, "big file: {} ({} lines)", f.path.display(), f.lines);
        }
        for (path, name, lines) in self.long_fns() {
            let _ = writeln!(out, "long fn: {}: {name} ({lines} lines)", path.display());
        }
        for (path, used) in self.upward() {
            let _ = writeln!(out, "upward: {} uses {used}", path.display());
        }
        out
    }
}

/// The module path of a file under `src` (`net/mod.rs` → `net`, `vrrp/machine.rs` →
/// `vrrp::machine`, `lib.rs` → ``).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The room (its prefix) and floor of a module path.
fn room<'a>(rooms: &'a [(&'a str, u32)], module: &[String]) -> (&'a str, u32) {
    let joined = module.join("::");
    rooms
        .iter()
        .filter(|(prefix, _)| joined == *prefix || joined.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(("", 0), |(p, f)| (*p, *f))
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        (a.path().is_ident("cfg") && {
            let text = a.meta.to_token_stream_string();
            text.contains("test") && !text.contains("not")
        }) || a.path().is_ident("test")
            || a.path().segments.last().is_some_and(|s| s.ident == "test")
    })
}

trait MetaText {
    fn to_token_stream_string(&self) -> String;
}

impl MetaText for syn::Meta {
    fn to_token_stream_string(&self) -> String {
        quote::ToTokens::to_token_stream(self).to_string()
    }
}

struct Visitor<'a> {
    rooms: &'a [(&'a str, u32)],
    module: Vec<String>,
    /// Nested inline modules (`mod x { … }`) add to the file's module path.
    inline: Vec<String>,
    figures: FileFigures,
}

impl Visitor<'_> {
    fn here(&self) -> Vec<String> {
        self.module.iter().chain(&self.inline).cloned().collect()
    }

    fn function(&mut self, name: String, span: proc_macro2::Span) {
        let lines = span.end().line.saturating_sub(span.start().line) + 1;
        if lines > FN_LINES {
            self.figures.long_fns.push((name, lines));
        }
    }

    /// A path used in code or in a `use`: where it leads, if inside the crate.
    fn used(&mut self, segments: &[String]) {
        let here = self.here();
        let target: Vec<String> = match segments.first().map(String::as_str) {
            Some("crate") => segments[1..].to_vec(),
            Some("super") => {
                let mut base = here.clone();
                let mut rest = segments;
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                base
            }
            _ => return,
        };
        let (from_room, from_floor) = room(self.rooms, &here);
        let (to_room, to_floor) = room(self.rooms, &target);
        if to_room.is_empty() || to_room == from_room {
            return;
        }
        if to_floor >= from_floor {
            let used =
                format!("{to_room} (floor {to_floor}) from {from_room} (floor {from_floor})");
            if !self.figures.upward.contains(&used) {
                self.figures.upward.push(used);
            }
        }
    }
}

fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut full = prefix.clone();
            if n.ident != "self" {
                full.push(n.ident.to_string());
            }
            out.push(full);
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            full.push(r.ident.to_string());
            out.push(full);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Visitor<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if is_test_only(&m.attrs) {
            return;
        }
        self.visit_visibility(&m.vis);
        if let Some((_, items)) = &m.content {
            self.inline.push(m.ident.to_string());
            for item in items {
                self.visit_item(item);
            }
            self.inline.pop();
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if is_test_only(&f.attrs) {
            return;
        }
        self.function(f.sig.ident.to_string(), f.span());
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_test_only(&f.attrs) {
            return;
        }
        self.function(f.sig.ident.to_string(), f.span());
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if is_test_only(&i.attrs) {
            return;
        }
        syn::visit::visit_item_impl(self, i);
    }

    fn visit_visibility(&mut self, v: &'ast syn::Visibility) {
        match v {
            syn::Visibility::Public(_) => self.figures.public += 1,
            syn::Visibility::Restricted(_) => self.figures.restricted += 1,
            syn::Visibility::Inherited => {}
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if is_test_only(&u.attrs) {
            return;
        }
        self.visit_visibility(&u.vis);
        let mut paths = Vec::new();
        use_paths(&u.tree, &mut Vec::new(), &mut paths);
        for p in paths {
            self.used(&p);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.used(&segments);
        syn::visit::visit_path(self, p);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Measures every crate of [`CRATES`] under the workspace `root`.
pub fn measure(root: &Path) -> Result<Report> {
    let mut report = Report::default();
    for krate in CRATES {
        let src = root.join(krate.src);
        let mut files = Vec::new();
        rust_files(&src, &mut files)?;
        files.sort();
        for file in files {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let ast = syn::parse_file(&text).with_context(|| format!("{}", file.display()))?;
            let mut visitor = Visitor {
                rooms: krate.rooms,
                module: module_of(&src, &file),
                inline: Vec::new(),
                figures: FileFigures {
                    path: file.strip_prefix(root).unwrap_or(&file).to_path_buf(),
                    lines: text.lines().count(),
                    ..FileFigures::default()
                },
            };
            visitor.visit_file(&ast);
            report.files.push(visitor.figures);
        }
    }
    Ok(report)
}

/// The figures by crate name, for tests that hold one crate to a rule.
pub fn by_crate(report: &Report) -> BTreeMap<&'static str, Vec<&FileFigures>> {
    let mut out: BTreeMap<&'static str, Vec<&FileFigures>> = BTreeMap::new();
    for f in &report.files {
        if let Some(k) = CRATES.iter().find(|k| f.path.starts_with(k.src)) {
            out.entry(k.name).or_default().push(f);
        }
    }
    out
}
