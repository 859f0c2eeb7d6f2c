//! YAML that reads the same in YAML 1.1 as in YAML 1.2.
//!
//! kubectl, Helm and Argo CD turn YAML into JSON with sigs.k8s.io/yaml (go-yaml v2), which
//! follows YAML 1.1: an unquoted `on`, `yes` or `n` is a boolean, `~` null, `0777` an octal
//! number, `1_000` a thousand, `1:20` eighty. serde_yaml, Buoy's reader and writer, follows YAML
//! 1.2, where those are strings, and writes them without quotes. [`to_string`] writes YAML as
//! serde_yaml does, with every such string quoted.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// Words that YAML 1.1 (what kubectl, Helm and Argo CD read: sigs.k8s.io/yaml) turns into
/// booleans when they stand unquoted, as keys or values.
pub(crate) const BOOLEANS: [&str; 22] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
];

/// Numbers in YAML 1.1 (its int and float types, as PyYAML resolves them) and in go-yaml v2
/// (Go's `strconv` with base 0: `0o17`, `1e3`), and the merge key `<<`.
static NUMBER_OR_MERGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)^(?:
          [-+]?0[bB][01_]+ | [-+]?0[oO]?[0-7_]+ | [-+]?(?:0|[1-9][0-9_]*) | [-+]?0[xX][0-9a-fA-F_]+
        | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
        | [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)? | [-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
        | <<
        )$",
    )
    .unwrap_or_else(|e| panic!("YAML 1.1 number pattern: {e}"))
});

/// Whether YAML 1.1 reads `word`, unquoted, as something other than a string: null (``, `~`,
/// `null`), a boolean ([`BOOLEANS`]), a number, or the merge key.
pub(crate) fn reads_as_non_string(word: &str) -> bool {
    matches!(word, "" | "~" | "null" | "Null" | "NULL")
        || BOOLEANS.contains(&word)
        || NUMBER_OR_MERGE.is_match(word)
}

/// A plain scalar that stands for the `n`th string to quote while serde_yaml writes the text:
/// letters and digits only, so written as it is, and of one length, so none is the start of
/// another.
fn placeholder(n: usize) -> String {
    format!("{MARK}{n:08}")
}

const MARK: &str = "buoyyaml11quoted";

/// `value` as serde_yaml writes it, except that every string (key or value) that YAML 1.1 reads
/// as something else ([`reads_as_non_string`]) is single-quoted: `name: 'on'`, not `name: on`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_yaml::Error> {
    let mut value = serde_yaml::to_value(value)?;
    let mut quoted = Vec::new();
    mark(&mut value, &mut quoted);
    let mut text = serde_yaml::to_string(&value)?;
    if text.matches(MARK).count() != quoted.len() {
        return Err(serde::ser::Error::custom(format!(
            "a string contains {MARK}, which stands for quoted strings while writing YAML"
        )));
    }
    for (n, s) in quoted.iter().enumerate() {
        text = text.replacen(&placeholder(n), &format!("'{}'", s.replace('\'', "''")), 1);
    }
    Ok(text)
}

/// Replaces every string to quote with its placeholder, and records it.
fn mark(v: &mut serde_yaml::Value, quoted: &mut Vec<String>) {
    use serde_yaml::Value;
    match v {
        Value::String(s) if reads_as_non_string(s) => {
            quoted.push(std::mem::replace(s, placeholder(quoted.len())));
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| mark(i, quoted)),
        Value::Mapping(map) => {
            for (mut k, mut v) in std::mem::take(map) {
                mark(&mut k, quoted);
                mark(&mut v, quoted);
                map.insert(k, v);
            }
        }
        Value::Tagged(t) => mark(&mut t.value, quoted),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_that_yaml11_reads_as_non_strings() {
        for w in [
            "",
            "~",
            "null",
            "NULL",
            "y",
            "N",
            "yes",
            "On",
            "off",
            "TRUE",
            "0777",
            "0o17",
            "0b101",
            "0x1F",
            "1_000",
            "-12",
            "1:20",
            "190:20:30.15",
            "1.5",
            "1.",
            ".5",
            "1e3",
            "6.8523015e+5",
            ".inf",
            "-.Inf",
            ".NaN",
            "<<",
        ] {
            assert!(reads_as_non_string(w), "{w:?}");
        }
        for w in [
            "web",
            "ON1",
            "yes-no",
            "192.168.60.88",
            "fd00::88",
            "2001:db8::1",
            "15s",
            "100ms",
            "1.2.3",
            "0x",
            "abc:12",
            "12:60",
            "HTTP502",
            "Off-by-one",
            "nan",
            "inf",
        ] {
            assert!(!reads_as_non_string(w), "{w:?}");
        }
    }

    #[test]
    fn to_string_quotes_what_yaml11_misreads_and_writes_the_rest_as_serde_yaml() {
        let v = serde_json::json!({
            "metadata": {"name": "on", "namespace": "off"},
            "spec": {"retry": {"on": ["yes", "y", "n", "1_000", "1:20", "0o17", "it's"]},
                     "hashKeyName": "no", "address": "192.168.60.88", "port": 80, "x": null,
                     "empty": "", "tilde": "~"},
        });
        let text = to_string(&v).unwrap();
        assert_eq!(
            text,
            "metadata:\n  name: 'on'\n  namespace: 'off'\nspec:\n  address: 192.168.60.88\n  \
             empty: ''\n  hashKeyName: 'no'\n  port: 80\n  retry:\n    'on':\n    - 'yes'\n    \
             - 'y'\n    - 'n'\n    - '1_000'\n    - '1:20'\n    - '0o17'\n    - it's\n  \
             tilde: '~'\n  x: null\n"
        );
        // serde_yaml reads back what was written.
        let back: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, v);
        // Without such strings, the text is serde_yaml's own.
        let plain = serde_json::json!({"a": {"b": ["c", 1, true]}, "d": "e f"});
        assert_eq!(
            to_string(&plain).unwrap(),
            serde_yaml::to_string(&plain).unwrap()
        );
        // The placeholder itself cannot be smuggled in.
        assert!(to_string(&serde_json::json!({"a": "on", "b": placeholder(0)})).is_err());
    }
}
