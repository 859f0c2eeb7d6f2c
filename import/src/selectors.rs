//! Several label selectors, any of which may match (MetalLB's `nodeSelectors` and
//! `namespaceSelectors`), as the one selector an AddressPool has: exactly when they can be
//! written as one, else the caller keeps the first and says what is lost.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// What several selectors, any of which may match, come to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AnyOf {
    /// One of them is empty (`{}`), which matches everything.
    Everything,
    /// One selector that matches exactly what any of them matches.
    One(LabelSelector),
    /// No single selector does: they are returned without duplicates.
    Several(Vec<LabelSelector>),
}

/// The selector matching what any of `selectors` matches (none: nothing is said of `Several`).
pub(crate) fn any_of(selectors: &[LabelSelector]) -> AnyOf {
    let mut distinct: Vec<LabelSelector> = Vec::new();
    for s in selectors {
        if is_empty(s) {
            return AnyOf::Everything;
        }
        if !distinct.contains(s) {
            distinct.push(s.clone());
        }
    }
    if distinct.len() == 1 {
        return AnyOf::One(distinct.remove(0));
    }
    // `{matchLabels: {team: web}}` or `team In [web]` on one key for all: `team In [web, api]`.
    let single: Option<Vec<(String, Vec<String>)>> = distinct.iter().map(one_key_in).collect();
    if let Some(single) = single
        && let Some((key, _)) = single.first()
        && single.iter().all(|(k, _)| k == key)
    {
        let mut values: Vec<String> = single.iter().flat_map(|(_, v)| v.clone()).collect();
        values.sort();
        values.dedup();
        return AnyOf::One(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.clone(),
                operator: "In".into(),
                values: Some(values),
            }]),
            match_labels: None,
        });
    }
    AnyOf::Several(distinct)
}

/// `{}` (or lists that are there but empty): matches everything.
fn is_empty(s: &LabelSelector) -> bool {
    s.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// The key and values of a selector that asks for one label to have one of some values.
fn one_key_in(s: &LabelSelector) -> Option<(String, Vec<String>)> {
    let labels = s.match_labels.clone().unwrap_or_default();
    let expressions = s.match_expressions.clone().unwrap_or_default();
    match (labels.len(), expressions.as_slice()) {
        (1, []) => labels.into_iter().next().map(|(k, v)| (k, vec![v])),
        (0, [e]) if e.operator == "In" => Some((e.key.clone(), e.values.clone()?)),
        _ => None,
    }
}

/// A selector for messages, as compact JSON.
pub(crate) fn show(s: &LabelSelector) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(json: serde_json::Value) -> LabelSelector {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn selectors_on_one_key_merge_into_in_and_others_do_not() {
        let web = sel(serde_json::json!({"matchLabels": {"team": "web"}}));
        let api = sel(serde_json::json!({"matchExpressions": [
            {"key": "team", "operator": "In", "values": ["api", "db"]}]}));
        assert_eq!(any_of(std::slice::from_ref(&web)), AnyOf::One(web.clone()));
        assert_eq!(any_of(&[web.clone(), web.clone()]), AnyOf::One(web.clone()));
        assert_eq!(
            any_of(&[web.clone(), api.clone()]),
            AnyOf::One(sel(serde_json::json!({"matchExpressions": [
                {"key": "team", "operator": "In", "values": ["api", "db", "web"]}]})))
        );
        assert_eq!(
            any_of(&[web.clone(), sel(serde_json::json!({}))]),
            AnyOf::Everything
        );
        let zone = sel(serde_json::json!({"matchLabels": {"zone": "a"}}));
        assert_eq!(
            any_of(&[web.clone(), zone.clone(), web.clone()]),
            AnyOf::Several(vec![web.clone(), zone])
        );
        let two = sel(serde_json::json!({"matchLabels": {"team": "web", "zone": "a"}}));
        assert_eq!(
            any_of(&[web.clone(), two.clone()]),
            AnyOf::Several(vec![web, two])
        );
        assert_eq!(any_of(&[]), AnyOf::Several(vec![]));
    }
}
