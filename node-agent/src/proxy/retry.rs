//! When a failed attempt goes to the next backend: nginx's `proxy_next_upstream` decision table.

use buoy_crds::RetryOn;

/// How an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection could not be made (the request was never sent).
    Connect,
    /// The connection broke, or the backend answered nothing usable, after the request was sent
    /// (nginx's `error` too).
    Broken,
    Timeout,
    /// An empty or malformed response header.
    InvalidHeader,
    /// A response with this status, before any byte of it reached the client.
    Status(u16),
}

impl Failure {
    /// Whether the backend may have acted on the request.
    fn request_sent(self) -> bool {
        !matches!(self, Failure::Connect)
    }

    /// Whether this counts as a failure for the passive check (nginx counts error, timeout,
    /// invalid_header always, and statuses only when they are listed in proxy_next_upstream).
    pub(crate) fn counts_against_backend(self, on: &[RetryOn]) -> bool {
        match self {
            Failure::Status(code) => {
                status_condition(code).is_some_and(|c| on.contains(&c) && c != RetryOn::Http429)
            }
            _ => true,
        }
    }
}

fn status_condition(code: u16) -> Option<RetryOn> {
    match code {
        500 => Some(RetryOn::Http500),
        502 => Some(RetryOn::Http502),
        503 => Some(RetryOn::Http503),
        504 => Some(RetryOn::Http504),
        429 => Some(RetryOn::Http429),
        _ => None,
    }
}

/// Methods nginx treats as non-idempotent (never retried once sent, unless allowed).
pub(crate) fn idempotent(method: &str) -> bool {
    !matches!(method, "POST" | "LOCK" | "PATCH")
}

/// The retry policy of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub on: Vec<RetryOn>,
    pub non_idempotent: bool,
}

/// Whether attempt number `attempt` (1 for the first) that failed with `failure` is retried.
/// `response_started`: bytes of a response already went to the client (never retried).
pub(crate) fn should_retry(
    policy: &RetryPolicy,
    attempt: u32,
    method: &str,
    failure: Failure,
    response_started: bool,
) -> bool {
    if response_started || attempt >= policy.attempts {
        return false;
    }
    let allowed = match failure {
        // nginx `error` covers both failing to connect and a connection that broke.
        Failure::Connect | Failure::Broken => policy.on.contains(&RetryOn::ConnectFailure),
        Failure::Timeout => policy.on.contains(&RetryOn::Timeout),
        Failure::InvalidHeader => policy.on.contains(&RetryOn::InvalidHeader),
        Failure::Status(code) => status_condition(code).is_some_and(|c| policy.on.contains(&c)),
    };
    allowed && (!failure.request_sent() || idempotent(method) || policy.non_idempotent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> RetryPolicy {
        // proxy_next_upstream http_502 http_504 error timeout invalid_header; two servers.
        RetryPolicy {
            attempts: 2,
            on: vec![
                RetryOn::Http502,
                RetryOn::Http504,
                RetryOn::ConnectFailure,
                RetryOn::Timeout,
                RetryOn::InvalidHeader,
            ],
            non_idempotent: false,
        }
    }

    #[test]
    fn decision_table() {
        let p = seed();
        let cases: &[(u32, &str, Failure, bool, bool)] = &[
            (1, "GET", Failure::Connect, false, true),
            (1, "GET", Failure::Broken, false, true),
            (1, "GET", Failure::Timeout, false, true),
            (1, "GET", Failure::InvalidHeader, false, true),
            (1, "GET", Failure::Status(502), false, true),
            (1, "GET", Failure::Status(504), false, true),
            (1, "GET", Failure::Status(500), false, false), // not listed
            (1, "GET", Failure::Status(503), false, false),
            (1, "GET", Failure::Status(404), false, false),
            (2, "GET", Failure::Connect, false, false), // attempts exhausted
            (1, "GET", Failure::Timeout, true, false),  // response already started
            (1, "POST", Failure::Connect, false, true), // never sent: safe to retry
            (1, "POST", Failure::Timeout, false, false),
            (1, "POST", Failure::Status(502), false, false),
            (1, "PATCH", Failure::Broken, false, false),
            (1, "LOCK", Failure::InvalidHeader, false, false),
            (1, "PUT", Failure::Timeout, false, true),
            (1, "DELETE", Failure::Status(502), false, true),
        ];
        for &(attempt, method, failure, started, expected) in cases {
            assert_eq!(
                should_retry(&p, attempt, method, failure, started),
                expected,
                "{attempt} {method} {failure:?} started={started}"
            );
        }
        let allow = RetryPolicy {
            non_idempotent: true,
            ..seed()
        };
        assert!(should_retry(&allow, 1, "POST", Failure::Timeout, false));
        let none = RetryPolicy {
            on: vec![],
            ..seed()
        };
        assert!(!should_retry(&none, 1, "GET", Failure::Connect, false));
    }

    #[test]
    fn which_failures_count_against_a_backend() {
        let on = seed().on;
        assert!(Failure::Connect.counts_against_backend(&on));
        assert!(Failure::Timeout.counts_against_backend(&on));
        assert!(Failure::Status(502).counts_against_backend(&on));
        assert!(!Failure::Status(500).counts_against_backend(&on));
        assert!(!Failure::Status(429).counts_against_backend(&[RetryOn::Http429]));
    }
}
