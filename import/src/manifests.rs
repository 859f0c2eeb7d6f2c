//! Kubernetes objects read from YAML files (MetalLB's and kube-vip's configuration, Services):
//! multi-document streams, and `kind: List` (what `kubectl get -o yaml` prints) opened into its
//! items, each object with the line it starts on and the line of any of its fields, for warnings.
//!
//! The values are serde_yaml's, as everywhere in Buoy. serde_yaml keeps no positions, so the
//! line of a field is found in the text by indentation (block style, as kubectl and humans write
//! it); where that fails (flow style), the line of the nearest enclosing field found is given.

use std::{path::Path, rc::Rc};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    diagnostics::{ImportError, Loc, Warnings},
    syntax,
};

/// One object of an input file.
#[derive(Clone, Debug)]
pub(crate) struct Manifest {
    pub(crate) value: Value,
    /// Where the object starts.
    pub(crate) at: Loc,
    /// The lines of its YAML document.
    lines: Rc<[Line]>,
    /// Its place in the document: `["items", "3"]` for an item of a List, else nothing.
    base: Vec<String>,
}

/// A line of a document that holds something: its number in the file, indentation and text.
#[derive(Clone, Debug)]
struct Line {
    no: usize,
    indent: usize,
    text: String,
}

impl Manifest {
    /// `apiVersion`.
    pub(crate) fn api_version(&self) -> &str {
        self.str(&["apiVersion"]).unwrap_or_default()
    }

    /// `kind`.
    pub(crate) fn kind(&self) -> &str {
        self.str(&["kind"]).unwrap_or_default()
    }

    /// The API group of `apiVersion` (`metallb.io` of `metallb.io/v1beta1`; empty for `v1`).
    pub(crate) fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// `metadata.name`.
    pub(crate) fn name(&self) -> &str {
        self.str(&["metadata", "name"]).unwrap_or_default()
    }

    /// `metadata.namespace`.
    pub(crate) fn namespace(&self) -> Option<&str> {
        self.str(&["metadata", "namespace"])
    }

    /// `Kind name` or `Kind namespace/name`, for messages.
    pub(crate) fn label(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }

    /// The value at `path` (keys, and indexes into arrays).
    pub(crate) fn get(&self, path: &[&str]) -> Option<&Value> {
        let mut v = &self.value;
        for step in path {
            v = match v {
                Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
                Value::Object(map) => map.get(*step)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// The string at `path`.
    pub(crate) fn str(&self, path: &[&str]) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }

    /// The place of the field at `path` (keys, and indexes into arrays): its line, or the line of
    /// the deepest part of the path found, or the object's.
    pub(crate) fn loc(&self, path: &[&str]) -> Loc {
        let steps: Vec<&str> = self
            .base
            .iter()
            .map(String::as_str)
            .chain(path.iter().copied())
            .collect();
        let line = find(&self.lines, &steps, self.at.line);
        Loc {
            file: self.at.file.clone(),
            line,
        }
    }

    /// An error at the field at `path`.
    pub(crate) fn error(&self, path: &[&str], message: impl Into<String>) -> ImportError {
        ImportError::at(
            &self.loc(path),
            format!("{}: {}", self.label(), message.into()),
        )
    }

    /// Warns that the field at `path` is not translated, and why.
    pub(crate) fn warn(&self, warnings: &mut Warnings, path: &[&str], why: impl Into<String>) {
        let directive = if path.is_empty() {
            self.label()
        } else {
            format!("{} {}", self.label(), field_path(path))
        };
        warnings.add(&self.loc(path), &directive, why);
    }

    /// The boolean at `path` (`default` when absent). The words YAML 1.1 reads as booleans count
    /// as such: kubectl sent an unquoted `autoAssign: no` as `false`.
    pub(crate) fn bool_at(&self, path: &[&str], default: bool) -> Result<bool, ImportError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On"
                | "ON" => Ok(true),
                "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off"
                | "OFF" => Ok(false),
                _ => Err(self.error(path, format!("{s:?} is not true or false"))),
            },
            Some(other) => Err(self.error(path, format!("{other} is not true or false"))),
        }
    }

    /// The strings of the list at `path` (empty when absent).
    pub(crate) fn strings_at(&self, path: &[&str]) -> Result<Vec<String>, ImportError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => {
                        let i = i.to_string();
                        let mut at = path.to_vec();
                        at.push(&i);
                        Err(self.error(&at, format!("{other} is not a string")))
                    }
                })
                .collect(),
            Some(other) => Err(self.error(path, format!("{other} is not a list"))),
        }
    }

    /// The value at `path` as a `T` (`None` when absent).
    pub(crate) fn typed_at<T: DeserializeOwned>(
        &self,
        path: &[&str],
    ) -> Result<Option<T>, ImportError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| self.error(path, e.to_string())),
        }
    }

    /// Warns about every field of the mapping at `path` that is not among `known`: fields the
    /// product does not have (its API server drops them), so nothing is translated.
    pub(crate) fn warn_unknown_fields(
        &self,
        warnings: &mut Warnings,
        path: &[&str],
        known: &[&str],
        product: &str,
    ) {
        let Some(Value::Object(map)) = self.get(path) else {
            return;
        };
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            let mut at = path.to_vec();
            at.push(key);
            self.warn(
                warnings,
                &at,
                format!("not a field of {product}'s {}: left out", self.kind()),
            );
        }
    }
}

/// A field's path as the API server prints it: `spec.addresses[1]`,
/// `metadata.annotations[metallb.io/address-pool]`.
fn field_path(path: &[&str]) -> String {
    let mut out = String::new();
    for step in path {
        if step.parse::<usize>().is_ok() || step.contains(['.', '/']) {
            out.push_str(&format!("[{step}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(step);
        }
    }
    out
}

/// Every object of a file, in order; an error with file and line for text that is not YAML.
pub(crate) fn read_file(path: &Path) -> Result<Vec<Manifest>, ImportError> {
    let text = syntax::read(path)?;
    parse(path, &text)
}

/// Every object of `text`, read from `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<Manifest>, ImportError> {
    let file: Rc<Path> = path.into();
    let mut objects = Vec::new();
    for (first, body) in documents(text) {
        let lines: Rc<[Line]> = lines(&body, first).into();
        let Some(start) = lines.first().map(|l| l.no) else {
            continue; // empty, or only comments
        };
        let value: Value = serde_yaml::from_str(&body).map_err(|e| {
            let line = e.location().map_or(first, |l| first + l.line() - 1);
            let at = Loc {
                file: file.clone(),
                line,
            };
            ImportError::at(&at, format!("not YAML: {e}"))
        })?;
        let at = Loc {
            file: file.clone(),
            line: start,
        };
        match &value {
            Value::Null => continue,
            Value::Object(map) => {
                let is_list = map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"));
                match map.get("items") {
                    Some(Value::Array(items)) if is_list => {
                        for (i, item) in items.iter().enumerate() {
                            let base = vec!["items".to_string(), i.to_string()];
                            let steps: Vec<&str> = base.iter().map(String::as_str).collect();
                            let at = Loc {
                                file: file.clone(),
                                line: find(&lines, &steps, start),
                            };
                            objects.push(Manifest {
                                value: item.clone(),
                                at,
                                lines: lines.clone(),
                                base,
                            });
                        }
                    }
                    _ => objects.push(Manifest {
                        value,
                        at,
                        lines,
                        base: Vec::new(),
                    }),
                }
            }
            _ => {
                return Err(ImportError::at(
                    &at,
                    "not a Kubernetes object (a YAML mapping with apiVersion and kind)",
                ));
            }
        }
    }
    Ok(objects)
}

/// The documents of a YAML stream: the number of each one's first line, and its text.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut first = 1;
    let mut body = String::new();
    for (i, line) in text.lines().enumerate() {
        let marker =
            line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line == "...";
        if marker {
            docs.push((first, std::mem::take(&mut body)));
            first = i + 2;
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    docs.push((first, body));
    docs
}

/// The lines of a document that hold something (not blank, not only a comment).
fn lines(body: &str, first: usize) -> Vec<Line> {
    body.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let text = raw.trim_start_matches(' ');
            if text.trim().is_empty() || text.starts_with('#') {
                return None;
            }
            Some(Line {
                no: first + i,
                indent: raw.len() - text.len(),
                text: text.to_string(),
            })
        })
        .collect()
}

/// The line of the field at `steps` in `block` (the lines of one mapping or sequence, the first
/// one at the block's indentation), or `best` (the line of the enclosing field) if not found.
fn find(block: &[Line], steps: &[&str], best: usize) -> usize {
    let (Some(step), Some(head)) = (steps.first(), block.first()) else {
        return best;
    };
    let indent = head.indent;
    let is_item = |l: &Line| l.text == "-" || l.text.starts_with("- ");
    if head.text.starts_with('-') && is_item(head) {
        let Ok(index) = step.parse::<usize>() else {
            return best;
        };
        let Some(at) = (0..block.len())
            .filter(|&i| block[i].indent == indent && is_item(&block[i]))
            .nth(index)
        else {
            return best;
        };
        // The item: the rest of its dash line, and the lines indented under the dash.
        let dash = &block[at];
        let rest = dash.text[1..].trim_start_matches(' ');
        let mut item = Vec::new();
        if !rest.is_empty() {
            item.push(Line {
                no: dash.no,
                indent: indent + (dash.text.len() - rest.len()),
                text: rest.to_string(),
            });
        }
        item.extend(
            block[at + 1..]
                .iter()
                .take_while(|l| l.indent > indent)
                .cloned(),
        );
        return find(&item, &steps[1..], dash.no);
    }
    let Some(at) = block
        .iter()
        .position(|l| l.indent == indent && key_of(&l.text).as_deref() == Some(*step))
    else {
        return best;
    };
    // The value: the lines indented under the key, and a sequence at the key's own indentation
    // (`items:\n- a`, as kubectl writes it).
    let value: Vec<Line> = block[at + 1..]
        .iter()
        .take_while(|l| l.indent > indent || (l.indent == indent && is_item(l)))
        .cloned()
        .collect();
    find(&value, &steps[1..], block[at].no)
}

/// The key of a `key: value` line (plain, single- or double-quoted).
fn key_of(text: &str) -> Option<String> {
    for quote in ['"', '\''] {
        if let Some(rest) = text.strip_prefix(quote) {
            let end = rest.find(quote)?;
            return rest[end + 1..]
                .trim_start()
                .starts_with(':')
                .then(|| rest[..end].to_string());
        }
    }
    let end = text
        .find(": ")
        .or_else(|| text.ends_with(':').then(|| text.len() - 1))?;
    Some(text[..end].trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# MetalLB
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: production
  namespace: metallb-system
spec:
  addresses:
  - 192.168.10.0/24
  - \"192.168.11.1-192.168.11.9\"

  serviceAllocation:
    priority: 50
    namespaceSelectors:
      - matchLabels: {team: web}
      -
        matchLabels:
          'team': api
---
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: web
- apiVersion: v1
  kind: Service
  metadata:
    name: api
    annotations:
      metallb.io/address-pool: production
";

    #[test]
    fn objects_and_the_lines_of_their_fields() {
        let objects = parse(Path::new("m.yaml"), TEXT).unwrap();
        let names: Vec<(String, usize)> = objects.iter().map(|o| (o.label(), o.at.line)).collect();
        assert_eq!(
            names,
            [
                ("IPAddressPool metallb-system/production".to_string(), 2),
                ("Service web".to_string(), 24),
                ("Service api".to_string(), 28)
            ]
        );
        let pool = &objects[0];
        let line = |path: &[&str]| pool.loc(path).line;
        assert_eq!(line(&["spec", "addresses", "0"]), 9);
        assert_eq!(line(&["spec", "addresses", "1"]), 10);
        assert_eq!(line(&["spec", "serviceAllocation", "priority"]), 13);
        assert_eq!(
            line(&["spec", "serviceAllocation", "namespaceSelectors", "1"]),
            16
        );
        assert_eq!(
            line(&[
                "spec",
                "serviceAllocation",
                "namespaceSelectors",
                "1",
                "matchLabels",
                "team"
            ]),
            18
        );
        // Flow style: the nearest enclosing field.
        assert_eq!(
            line(&[
                "spec",
                "serviceAllocation",
                "namespaceSelectors",
                "0",
                "matchLabels",
                "team"
            ]),
            15
        );
        // Not there: the enclosing field, or the object.
        assert_eq!(line(&["spec", "autoAssign"]), 7);
        assert_eq!(line(&["status"]), 2);
        let api = &objects[2];
        assert_eq!(
            api.loc(&["metadata", "annotations", "metallb.io/address-pool"])
                .line,
            33
        );
        assert_eq!(api.str(&["metadata", "name"]), Some("api"));
        assert_eq!(
            pool.get(&["spec", "addresses", "1"]),
            Some(&Value::from("192.168.11.1-192.168.11.9"))
        );
    }

    #[test]
    fn what_is_not_yaml_or_not_an_object_fails_with_its_line() {
        let e = parse(Path::new("m.yaml"), "kind: A\n---\nkind: B\nspec: [\n").unwrap_err();
        assert!(e.to_string().starts_with("m.yaml:"), "{e}");
        assert!(e.to_string().contains("not YAML"), "{e}");
        let e = parse(Path::new("m.yaml"), "kind: A\n---\n# x\n- a\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.yaml:4: not a Kubernetes object (a YAML mapping with apiVersion and kind)"
        );
    }
}
