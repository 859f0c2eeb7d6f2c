//! Values the node's plan needs but must never wait for: backend host names (DNS) and the
//! Secrets holding VRRP passwords (the API server). Each wanted key gets a task that fetches it
//! with a timeout and again when it is due (a record's TTL; a Secret's refresh interval); a
//! failure keeps the last good value and is retried with backoff. Planning reads a snapshot and
//! is told when one changes. One slow or broken key never holds up another, nor the agent.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::{sync::Notify, task::AbortHandle};

/// What is known of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched<V> {
    /// The last value fetched, kept through later failures.
    pub value: Option<V>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    /// When `value` was fetched.
    pub at: Option<SystemTime>,
}

impl<V> Default for Fetched<V> {
    fn default() -> Self {
        Fetched {
            value: None,
            error: None,
            at: None,
        }
    }
}

/// A fetch: the value and when to fetch again, or why it failed.
pub(crate) type FetchResult<V> = Result<(V, Duration), String>;
type FetchFn<K, V> =
    dyn Fn(K) -> Pin<Box<dyn Future<Output = FetchResult<V>> + Send>> + Send + Sync;

/// First retry after a failure; doubled per failure up to [`MAX_RETRY`].
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(1);
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(30);

/// How long to wait after the `failures`-th failure in a row (1, 2, 4 … 30 s).
pub(crate) fn retry_after(failures: u32) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_RETRY)
}

/// Keeps the values of the keys wanted fresh.
pub struct Refresher<K, V> {
    entries: Arc<Mutex<BTreeMap<K, Fetched<V>>>>,
    tasks: Mutex<BTreeMap<K, AbortHandle>>,
    fetch: Arc<FetchFn<K, V>>,
    timeout: Duration,
    changed: Arc<Notify>,
}

impl<K, V> Refresher<K, V>
where
    K: Ord + Clone + Debug + Send + Sync + 'static,
    V: Clone + PartialEq + Send + Sync + 'static,
{
    /// A refresher that fetches with `fetch` (each attempt cut after `timeout`) and notifies
    /// `changed` when a value or an error changes.
    pub fn new<F, Fut>(fetch: F, timeout: Duration, changed: Arc<Notify>) -> Self
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = FetchResult<V>> + Send + 'static,
    {
        Refresher {
            entries: Arc::default(),
            tasks: Mutex::default(),
            fetch: Arc::new(move |k| Box::pin(fetch(k))),
            timeout,
            changed,
        }
    }

    /// Keeps exactly `keys` fresh: new ones are fetched at once, others forgotten. Call it on
    /// a tokio runtime.
    pub fn want(&self, keys: impl IntoIterator<Item = K>) {
        let keys: std::collections::BTreeSet<K> = keys.into_iter().collect();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|k, handle| {
            let keep = keys.contains(k);
            if !keep {
                handle.abort();
            }
            keep
        });
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keys.contains(k));
        for key in keys {
            if tasks.contains_key(&key) {
                continue;
            }
            let handle = tokio::spawn(keep_fresh(
                key.clone(),
                self.fetch.clone(),
                self.entries.clone(),
                self.timeout,
                self.changed.clone(),
            ))
            .abort_handle();
            tasks.insert(key, handle);
        }
    }

    /// What is known now of every wanted key (a key not fetched yet is absent).
    pub fn snapshot(&self) -> BTreeMap<K, Fetched<V>> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl<K, V> Drop for Refresher<K, V> {
    fn drop(&mut self) {
        for handle in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            handle.abort();
        }
    }
}

async fn keep_fresh<K, V>(
    key: K,
    fetch: Arc<FetchFn<K, V>>,
    entries: Arc<Mutex<BTreeMap<K, Fetched<V>>>>,
    timeout: Duration,
    changed: Arc<Notify>,
) where
    K: Ord + Clone + Debug,
    V: Clone + PartialEq,
{
    let mut failures = 0u32;
    loop {
        let result = match tokio::time::timeout(timeout, fetch(key.clone())).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        let wait = match &result {
            Ok((_, next)) => {
                failures = 0;
                *next
            }
            Err(_) => {
                failures += 1;
                retry_after(failures)
            }
        };
        let updated = {
            let mut all = entries.lock().unwrap_or_else(|e| e.into_inner());
            let entry = all.entry(key.clone()).or_default();
            let before = (entry.value.clone(), entry.error.clone());
            match result {
                Ok((value, _)) => {
                    entry.value = Some(value);
                    entry.error = None;
                    entry.at = Some(SystemTime::now());
                }
                Err(e) => entry.error = Some(e),
            }
            (entry.value.clone(), entry.error.clone()) != before
        };
        if updated {
            changed.notify_one();
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn retries_back_off_to_thirty_seconds() {
        let waits: Vec<u64> = (1..=8).map(|f| retry_after(f).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_after(u32::MAX), MAX_RETRY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_keeps_the_last_good_value_and_one_slow_key_holds_up_no_other() {
        let calls = Arc::new(AtomicU32::new(0));
        let changed = Arc::new(Notify::new());
        let c = calls.clone();
        let r: Refresher<String, u32> = Refresher::new(
            move |k: String| {
                let n = if k == "good" {
                    c.fetch_add(1, Ordering::SeqCst)
                } else {
                    0
                };
                async move {
                    match (k.as_str(), n) {
                        ("slow", _) => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            Ok((0, Duration::from_secs(1)))
                        }
                        (_, 0) => Ok((7, Duration::from_secs(10))),
                        _ => Err("refused".to_string()),
                    }
                }
            },
            Duration::from_secs(2),
            changed.clone(),
        );
        r.want(["good".to_string(), "slow".to_string()]);
        changed.notified().await;
        let now = r.snapshot();
        assert_eq!(now["good"].value, Some(7));
        assert!(!now.contains_key("slow"), "the slow key is not known yet");
        // The slow one times out; the good one fails at its refresh but keeps its value.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let now = r.snapshot();
        assert_eq!(now["slow"].error.as_deref(), Some("no answer within 2s"));
        assert_eq!(now["good"].value, Some(7));
        assert_eq!(now["good"].error.as_deref(), Some("refused"));
        // Unwanted keys are forgotten.
        r.want(["good".to_string()]);
        assert_eq!(r.snapshot().len(), 1);
    }
}
