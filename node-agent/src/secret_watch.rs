//! The Secrets of HTTPS listeners' certificates in cluster mode, each watched by name (a
//! `metadata.name` field selector, which RBAC allows on a Role naming the Secret): a renewal
//! (cert-manager) reaches the handshakes within a second or two, where the VRRP passwords'
//! periodic reads ([`crate::refresh`]) would take a minute. A watch that fails keeps the last
//! certificate read and retries with the watches' backoff; a deleted Secret keeps it too, and
//! both are said on the listener.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event, watcher},
    },
};
use tokio::{sync::Notify, task::AbortHandle};

use crate::{metrics::WatchMetrics, refresh::Fetched, watch::watch_backoff};

/// A Secret by (`namespace`, `name`).
type Key = (String, String);
type Entries = Arc<Mutex<BTreeMap<Key, Fetched<Secret>>>>;

/// The wanted Secrets, each kept current by its own watch.
pub(crate) struct SecretWatch {
    client: Client,
    entries: Entries,
    tasks: Mutex<BTreeMap<Key, AbortHandle>>,
    changed: Arc<Notify>,
    watches: WatchMetrics,
}

impl SecretWatch {
    /// Watches nothing yet; `changed` is notified when a watched Secret or its error changes,
    /// `watches` counts the failures (kind `Secret`).
    pub(crate) fn new(client: Client, changed: Arc<Notify>, watches: &WatchMetrics) -> Self {
        watches.started("Secret");
        SecretWatch {
            client,
            entries: Arc::default(),
            tasks: Mutex::default(),
            changed,
            watches: watches.clone(),
        }
    }

    /// Watches exactly `keys`: new ones from now, others forgotten. On a tokio runtime.
    pub(crate) fn want(&self, keys: &BTreeSet<Key>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|k, handle| {
            let keep = keys.contains(k);
            if !keep {
                handle.abort();
            }
            keep
        });
        lock(&self.entries).retain(|k, _| keys.contains(k));
        for key in keys {
            if tasks.contains_key(key) {
                continue;
            }
            let handle = tokio::spawn(watch_one(
                self.client.clone(),
                key.clone(),
                self.entries.clone(),
                self.changed.clone(),
                self.watches.clone(),
            ))
            .abort_handle();
            tasks.insert(key.clone(), handle);
        }
    }

    /// What is known now of every wanted Secret (one not listed yet is absent).
    pub(crate) fn snapshot(&self) -> BTreeMap<Key, Fetched<Secret>> {
        lock(&self.entries).clone()
    }
}

impl Drop for SecretWatch {
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

fn lock(entries: &Entries) -> std::sync::MutexGuard<'_, BTreeMap<Key, Fetched<Secret>>> {
    entries.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one watch event means for the entry: a new value, or why there is none now.
fn apply(entry: &mut Fetched<Secret>, event: Result<Event<Secret>, String>, listed: &mut bool) {
    match event {
        Ok(Event::Apply(s) | Event::InitApply(s)) => {
            *listed = true;
            entry.value = Some(s);
            entry.error = None;
            entry.at = Some(SystemTime::now());
        }
        Ok(Event::Init) => *listed = false,
        Ok(Event::InitDone) if !*listed => entry.error = Some("not found".to_string()),
        Ok(Event::InitDone) => {}
        Ok(Event::Delete(_)) => entry.error = Some("deleted".to_string()),
        Err(e) => entry.error = Some(e),
    }
}

async fn watch_one(
    client: Client,
    key: Key,
    entries: Entries,
    changed: Arc<Notify>,
    watches: WatchMetrics,
) {
    let api: Api<Secret> = Api::namespaced(client, &key.0);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", key.1));
    let mut stream = watcher(api, config).backoff(watch_backoff()).boxed();
    let mut listed = false;
    while let Some(event) = stream.next().await {
        if event.is_err() {
            watches.failed("Secret");
        }
        let updated = {
            let mut all = lock(&entries);
            let entry = all.entry(key.clone()).or_default();
            let before = (entry.value.clone(), entry.error.clone());
            apply(entry, event.map_err(|e| e.to_string()), &mut listed);
            (entry.value.clone(), entry.error.clone()) != before
        };
        if updated {
            changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(v: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("tls".into());
        s.metadata.resource_version = Some(v.into());
        s
    }

    #[test]
    fn a_missing_or_deleted_secret_keeps_the_last_value_and_says_why() {
        let mut e = Fetched::default();
        let mut listed = false;
        apply(&mut e, Ok(Event::Init), &mut listed);
        apply(&mut e, Ok(Event::InitDone), &mut listed);
        assert_eq!(
            (e.value.is_none(), e.error.as_deref()),
            (true, Some("not found"))
        );
        apply(&mut e, Ok(Event::Apply(secret("1"))), &mut listed);
        assert!(e.value.is_some() && e.error.is_none());
        apply(&mut e, Ok(Event::Delete(secret("1"))), &mut listed);
        assert_eq!(e.error.as_deref(), Some("deleted"));
        assert!(e.value.is_some(), "the last certificate read is kept");
        apply(&mut e, Err("forbidden".into()), &mut listed);
        assert_eq!(e.error.as_deref(), Some("forbidden"));
        apply(&mut e, Ok(Event::Init), &mut listed);
        apply(&mut e, Ok(Event::InitApply(secret("2"))), &mut listed);
        apply(&mut e, Ok(Event::InitDone), &mut listed);
        assert_eq!(e.error, None);
        assert_eq!(
            e.value.and_then(|s| s.metadata.resource_version).as_deref(),
            Some("2")
        );
    }
}
