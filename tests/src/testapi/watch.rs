//! Watches: ADDED/MODIFIED/DELETED from a resourceVersion (replayed from the bounded history),
//! the initial state as synthetic ADDED events, `sendInitialEvents` streaming lists ending with
//! the `k8s.io/initial-events-end` bookmark, periodic BOOKMARKs when asked, 410 Gone as an ERROR
//! event for a compacted version, `timeoutSeconds`, and the end of the watch when an injected
//! failure that matches it starts.

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::resources::ResourceType;
use super::selectors::Selector;
use super::server::Shared;
use super::store::{Event, EventType, Store};

pub struct WatchParams {
    pub resource_version: Option<String>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    /// `Some(includeObject)` when the client asked for Tables (`kubectl get -w`).
    pub table: Option<String>,
    /// The request's path and query: an injected failure that matches it ends the watch.
    pub path: String,
}

struct Watch {
    rt: ResourceType,
    version: String,
    namespace: Option<String>,
    selector: Selector,
    table: Option<String>,
    tx: mpsc::Sender<Bytes>,
}

impl Watch {
    /// Sends an object event, as a one-row Table when the client asked for Tables.
    async fn send_object(&self, kind: &str, object: Value) -> bool {
        let object = match &self.table {
            Some(include) => {
                let rv = object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                super::table::table(&self.rt, &self.version, &[object], &rv, include)
            }
            None => object,
        };
        self.send(kind, object).await
    }

    async fn send(&self, kind: &str, object: Value) -> bool {
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn bookmark(&self, rv: u64, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(&self.version), "metadata": meta});
        self.send("BOOKMARK", obj).await
    }

    /// Sends an event if it concerns this watch; a MODIFIED that moves an object in or out of the
    /// selector becomes ADDED or DELETED, as on a real server.
    async fn event(&self, ev: &Event) -> bool {
        if ev.key != self.rt.key() || self.namespace.as_ref().is_some_and(|n| *n != ev.namespace) {
            return true;
        }
        let now = self.selector.matches(&ev.object);
        let kind = match ev.kind {
            EventType::Modified => {
                let before = ev.old.as_ref().is_some_and(|o| self.selector.matches(o));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return true,
                }
            }
            other if now => other.as_str(),
            _ => return true,
        };
        self.send_object(kind, Store::present(&self.rt, &ev.object, &self.version))
            .await
    }
}

/// Starts a watch; the returned channel carries the response body's lines.
pub fn start(
    shared: &Arc<Shared>,
    rt: ResourceType,
    version: String,
    namespace: Option<String>,
    selector: Selector,
    params: WatchParams,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let (tx, rx) = mpsc::channel(256);
    let from = match params.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(rv) if params.send_initial_events => {
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            None
        }
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let (initial, backlog, mut events, start_rv) = {
        let store = shared.lock();
        let initial = match from {
            None => store.list(&rt, namespace.as_deref(), &selector),
            Some(_) => Vec::new(),
        };
        let backlog = match from {
            Some(from) => store.events_since(&rt.key(), from),
            None => Ok(Vec::new()),
        };
        // Subscribed under the lock: no event falls between the snapshot and the live stream.
        (
            initial,
            backlog,
            store.subscribe(),
            store.resource_version(),
        )
    };
    let watch = Watch {
        rt,
        version,
        namespace,
        selector,
        table: params.table.clone(),
        tx,
    };
    let interval = shared.bookmark_interval;
    // Subscribed with the failure in force seen: only one that starts later ends the watch.
    let mut failure = shared.failure.subscribe();
    tokio::spawn(async move {
        let backlog = match backlog {
            Ok(b) => b,
            Err(gone) => {
                watch.send("ERROR", gone.status()).await;
                return;
            }
        };
        for obj in &initial {
            if !watch
                .send_object("ADDED", Store::present(&watch.rt, obj, &watch.version))
                .await
            {
                return;
            }
        }
        if params.send_initial_events && params.bookmarks && !watch.bookmark(start_rv, true).await {
            return;
        }
        let mut last = start_rv;
        for ev in &backlog {
            if !watch.event(ev).await {
                return;
            }
        }
        let deadline = params.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last {
                            continue;
                        }
                        last = ev.rv;
                        if !watch.event(&ev).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // This watch fell behind: end it; the client resumes from its last version.
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if params.bookmarks => {
                    if !watch.bookmark(last, false).await {
                        return;
                    }
                }
                _ = timeout => return,
                _ = watch.tx.closed() => return,
                changed = failure.changed() => {
                    // An injected failure cuts the watches it matches, as an overloaded server
                    // drops its connections: clients watch or list again, into the errors.
                    let cut = changed.is_err()
                        || failure.borrow_and_update().as_ref().is_some_and(|f| {
                            f.applies(&Method::GET, &params.path, std::time::Instant::now())
                        });
                    if cut {
                        return;
                    }
                }
            }
        }
    });
    Ok(rx)
}
