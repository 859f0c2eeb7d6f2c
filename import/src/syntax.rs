//! What the keepalived and nginx readers share: reading files and `include` globs.
//!
//! No maintained, widely used crate parses keepalived.conf, and the nginx parsers on crates.io
//! either reject directives outside their fixed AST (so they cannot report them as untranslated)
//! or are young single-purpose crates; both formats are small, so they are read by hand here, with
//! a line number on every token and `include` resolved the way each program does it.

use std::path::{Path, PathBuf};

use crate::diagnostics::{ImportError, Loc};

/// Include nesting deeper than this is refused (no real configuration comes near it; cycles are
/// caught before, by path).
const MAX_INCLUDE_DEPTH: usize = 16;

/// The error for an `include` at `at` of `file` while `stack` (the files being read, outermost
/// first) is open, if that makes a cycle or nests too deeply.
pub(crate) fn check_include(at: &Loc, file: &Path, stack: &[PathBuf]) -> Result<(), ImportError> {
    let canonical = canonical(file);
    if stack.contains(&canonical) {
        return Err(ImportError::at(
            at,
            format!("include cycle: {} is already being read", file.display()),
        ));
    }
    if stack.len() >= MAX_INCLUDE_DEPTH {
        return Err(ImportError::at(at, "includes nested too deeply"));
    }
    Ok(())
}

/// The path that identifies a file for cycle detection.
pub(crate) fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The whole text of an input file.
pub(crate) fn read(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The files an `include` pattern names, sorted (as glob(3) returns them). `base` is the directory
/// that relative patterns are resolved against. A pattern without wildcards names its file whether
/// or not it exists (the caller reports a missing one).
pub(crate) fn expand(pattern: &str, base: &Path) -> Vec<PathBuf> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    if !has_wildcard(pattern) {
        return vec![full];
    }
    let mut found = vec![PathBuf::new()];
    for component in full.components() {
        let part = component.as_os_str().to_string_lossy().to_string();
        if !has_wildcard(&part) {
            for f in &mut found {
                f.push(component.as_os_str());
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir.as_path()
            }) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                // glob(3) skips hidden files unless the pattern itself starts with a dot.
                .filter(|n| !n.starts_with('.') || part.starts_with('.'))
                .filter(|n| glob_match(&part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.is_file());
    found
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shell-style matching of one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches(&p, &n)
}

fn matches(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| matches(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && matches(&p[1..], &n[1..]),
        Some('[') => {
            let Some(close) = p.iter().skip(2).position(|&c| c == ']').map(|i| i + 2) else {
                return n.first() == Some(&'[') && matches(&p[1..], &n[1..]);
            };
            let Some(&c) = n.first() else { return false };
            let mut set = &p[1..close];
            let negate = matches!(set.first(), Some('!' | '^'));
            if negate {
                set = &set[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && matches(&p[close + 1..], &n[1..])
        }
        Some(&c) => n.first() == Some(&c) && matches(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_shell() {
        assert!(glob_match("*.conf", "a.conf"));
        assert!(!glob_match("*.conf", "a.conf.bak"));
        assert!(glob_match("vi_?.conf", "vi_1.conf"));
        assert!(glob_match("[ab]*", "beta"));
        assert!(!glob_match("[!ab]*", "beta"));
        assert!(glob_match("[0-9].conf", "7.conf"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
    }

    #[test]
    fn expands_sorted_and_relative() {
        let dir = std::env::temp_dir().join(format!("buoy-glob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).ok();
        for f in ["b.conf", "a.conf", ".hidden.conf", "c.txt"] {
            std::fs::write(dir.join("conf.d").join(f), "").ok();
        }
        let found = expand("conf.d/*.conf", &dir);
        std::fs::remove_dir_all(&dir).ok();
        let names: Vec<_> = found
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect();
        assert_eq!(names, ["a.conf", "b.conf"]);
        assert_eq!(expand("/etc/x.conf", &dir), [PathBuf::from("/etc/x.conf")]);
    }
}
