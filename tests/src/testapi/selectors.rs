//! Label and field selectors of list and watch requests.

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// `labelSelector` and `fieldSelector` together; empty matches everything.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    labels: Vec<Req>,
    fields: Vec<Req>,
}

/// Splits on commas outside parentheses (`a in (x,y),b`).
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(s: &str) -> Option<BTreeSet<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

fn parse_req(part: &str, fields: bool) -> Result<Req, ApiError> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: {part:?}"));
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Req::NotEq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Req::Eq(k.trim().into(), v.trim().into()));
    }
    if fields {
        return Err(bad());
    }
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Req::NotExists(k.trim().into()));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [k] => Ok(Req::Exists(k.to_string())),
        [k, rest] => {
            let rest = rest.trim();
            if let Some(set) = rest.strip_prefix("notin").and_then(parse_set) {
                Ok(Req::NotIn(k.to_string(), set))
            } else if let Some(set) = rest.strip_prefix("in").and_then(parse_set) {
                Ok(Req::In(k.to_string(), set))
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

impl Selector {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, ApiError> {
        let reqs = |s: Option<&str>, f: bool| -> Result<Vec<Req>, ApiError> {
            s.map(split_top)
                .unwrap_or_default()
                .into_iter()
                .map(|p| parse_req(p, f))
                .collect()
        };
        Ok(Selector {
            labels: reqs(labels, false)?,
            fields: reqs(fields, true)?,
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let label = |k: &str| {
            object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let field = |k: &str| field_value(object, k);
        self.labels.iter().all(|r| check(r, &label)) && self.fields.iter().all(|r| check(r, &field))
    }
}

/// A field of `object` by dotted path (`spec.nodeName`), as a string ("" when absent, as the API
/// server's field label conversion does for `spec.nodeName` of unscheduled pods).
fn field_value(object: &Value, path: &str) -> Option<String> {
    let mut v = object;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return Some(String::new()),
        }
    }
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn check(req: &Req, get: &dyn Fn(&str) -> Option<String>) -> bool {
    match req {
        Req::Eq(k, v) => get(k).as_deref() == Some(v),
        Req::NotEq(k, v) => get(k).as_deref() != Some(v),
        Req::In(k, set) => get(k).is_some_and(|x| set.contains(&x)),
        Req::NotIn(k, set) => get(k).is_none_or(|x| !set.contains(&x)),
        Req::Exists(k) => get(k).is_some(),
        Req::NotExists(k) => get(k).is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "a", "labels": {"app": "web", "tier": "fe"}}, "spec": {"nodeName": "n1"}});
        let m = |l: Option<&str>, f: Option<&str>| Selector::parse(l, f).unwrap().matches(&pod);
        assert!(m(Some("app=web"), None));
        assert!(m(Some("app in (web,db),tier"), None));
        assert!(!m(Some("app notin (web)"), None));
        assert!(m(Some("!missing,tier!=be"), None));
        assert!(m(None, Some("spec.nodeName=n1,metadata.namespace=a")));
        assert!(!m(None, Some("metadata.name!=p")));
        assert!(Selector::parse(Some("a b c"), None).is_err());
    }
}
