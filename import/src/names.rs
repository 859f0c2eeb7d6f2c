//! Kubernetes names from keepalived's and nginx's: lower case, `-` for what a DNS name refuses.

/// Lower case, `_` and other characters outside a DNS label turned into `-`.
pub(crate) fn dns_name(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    let out: String = out.chars().take(63).collect();
    let out = out.trim_end_matches(['-', '.']).to_string();
    if out.is_empty() {
        "imported".into()
    } else {
        out
    }
}

/// A DNS label (no dots), for listener and VirtualIP names.
pub(crate) fn dns_label(s: &str) -> String {
    dns_name(&s.replace('.', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns_names() {
        assert_eq!(dns_name("test_web"), "test-web");
        assert_eq!(dns_name("LVS_DEVEL"), "lvs-devel");
        assert_eq!(dns_name("__x__"), "x");
        assert_eq!(dns_label("api.example.com"), "api-example-com");
        assert_eq!(dns_name("___"), "imported");
    }
}
