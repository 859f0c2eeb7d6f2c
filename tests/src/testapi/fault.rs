//! Injected failures: for a while, the server answers the requests that match with an error
//! status instead of serving them, as an overloaded (429) or failing (500) API server does, and
//! ends the open watches that match when the failure starts, so clients re-list into the errors.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;

use super::error::ApiError;

/// A failure to answer with: [`crate::testapi::TestApi::fail_requests`].
///
/// ```
/// # use std::time::{Duration, Instant};
/// use buoy_tests::testapi::FailWith;
/// let overloaded = FailWith::status(429).until(Instant::now() + Duration::from_secs(2));
/// let broken_writes = FailWith::status(500).method(http::Method::PATCH).path_contains("/virtualips/");
/// # let _ = (overloaded, broken_writes);
/// ```
#[derive(Clone, Debug)]
pub struct FailWith {
    /// The HTTP status. 429 and 503 come with `Retry-After: 1`, as the API server's priority and
    /// fairness sends them.
    pub status: u16,
    /// Until when; None: until [`crate::testapi::TestApi::clear_failures`].
    pub until: Option<Instant>,
    /// Only requests with this method; None: any.
    pub method: Option<Method>,
    /// Only requests whose path and query contain this (`/configmaps`, `watch=true`); None: any.
    pub path_contains: Option<String>,
}

/// Seconds a client is told to wait (`Retry-After`, `details.retryAfterSeconds`).
const RETRY_AFTER_SECONDS: u64 = 1;

impl FailWith {
    /// Every request, until cleared.
    pub fn status(status: u16) -> Self {
        FailWith {
            status,
            until: None,
            method: None,
            path_contains: None,
        }
    }

    pub fn until(mut self, until: Instant) -> Self {
        self.until = Some(until);
        self
    }

    /// For `d` from now.
    pub fn lasting(self, d: Duration) -> Self {
        self.until(Instant::now() + d)
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    pub fn path_contains(mut self, part: &str) -> Self {
        self.path_contains = Some(part.to_string());
        self
    }

    /// Whether it is in force at `now` for a request (`path` with its query).
    pub fn applies(&self, method: &Method, path: &str, now: Instant) -> bool {
        self.until.is_none_or(|u| now < u)
            && self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }

    /// `Retry-After` in seconds, for the statuses a client should retry later.
    pub fn retry_after(&self) -> Option<u64> {
        matches!(self.status, 429 | 503).then_some(RETRY_AFTER_SECONDS)
    }

    /// The error, with the reason and message the API server gives for the status.
    pub fn error(&self) -> ApiError {
        let (reason, message) = match self.status {
            429 => (
                "TooManyRequests",
                "Too many requests, please try again later.",
            ),
            500 => (
                "InternalError",
                "Internal error occurred: injected by the test",
            ),
            503 => ("ServiceUnavailable", "the server is currently unavailable"),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted",
            ),
            400 => ("BadRequest", "injected by the test"),
            401 => ("Unauthorized", "Unauthorized"),
            403 => ("Forbidden", "forbidden: injected by the test"),
            404 => (
                "NotFound",
                "the server could not find the requested resource",
            ),
            409 => ("Conflict", "injected by the test"),
            _ => ("InternalError", "injected by the test"),
        };
        let mut err = ApiError::new(self.status, reason, message);
        if let Some(secs) = self.retry_after() {
            err.details = json!({"retryAfterSeconds": secs});
        } else if self.status == 500 {
            err.details = json!({"causes": [{"message": "injected by the test"}]});
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_deadline() {
        let now = Instant::now();
        let all = FailWith::status(500);
        assert!(all.applies(&Method::GET, "/api/v1/nodes", now));
        let patches = FailWith::status(500)
            .method(Method::PATCH)
            .path_contains("/configmaps");
        assert!(patches.applies(&Method::PATCH, "/api/v1/namespaces/a/configmaps/c", now));
        assert!(!patches.applies(&Method::GET, "/api/v1/namespaces/a/configmaps/c", now));
        assert!(!patches.applies(&Method::PATCH, "/api/v1/namespaces/a/secrets/c", now));
        let watches = FailWith::status(500).path_contains("watch=true");
        assert!(watches.applies(&Method::GET, "/api/v1/nodes?watch=true", now));
        let brief = FailWith::status(429).until(now + Duration::from_secs(1));
        assert!(brief.applies(&Method::GET, "/", now));
        assert!(!brief.applies(&Method::GET, "/", now + Duration::from_secs(1)));
    }

    #[test]
    fn statuses_as_the_api_server_sends_them() {
        let s = FailWith::status(429).error().status();
        assert_eq!(
            (&s["code"], &s["reason"], &s["details"]["retryAfterSeconds"]),
            (&json!(429), &json!("TooManyRequests"), &json!(1))
        );
        assert_eq!(FailWith::status(429).retry_after(), Some(1));
        let s = FailWith::status(500).error().status();
        assert_eq!(
            (&s["code"], &s["reason"]),
            (&json!(500), &json!("InternalError"))
        );
        assert_eq!(FailWith::status(500).retry_after(), None);
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["status"], "Failure");
    }
}
