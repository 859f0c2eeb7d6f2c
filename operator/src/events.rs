//! Events, published with one kube-runtime [`Recorder`] per object they regard. A `Recorder`
//! expires its cache of recent Events by walking all of it on every publish, under one lock:
//! shared by every VirtualIP, n Events cost O(n²) and waited on each other. Its cache is keyed
//! by the object an Event regards, so per-object recorders aggregate a repeated Event into a
//! series exactly as one shared recorder does.

use std::collections::{HashMap, HashSet};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

/// The recorders, by the uid of the object their Events regard.
pub(crate) struct Recorders {
    client: Client,
    reporter: Reporter,
    by_object: HashMap<String, Recorder>,
}

impl Recorders {
    pub(crate) fn new(client: Client, reporter: Reporter) -> Recorders {
        Recorders {
            client,
            reporter,
            by_object: HashMap::new(),
        }
    }

    /// The recorder of the object `id` (its uid, or `namespace/name` before it has one).
    pub(crate) fn of(&mut self, id: &str) -> Recorder {
        if let Some(r) = self.by_object.get(id) {
            return r.clone();
        }
        let r = Recorder::new(self.client.clone(), self.reporter.clone());
        self.by_object.insert(id.to_string(), r.clone());
        r
    }

    /// Forgets the recorders of objects that are gone (not in `live`).
    pub(crate) fn retain(&mut self, live: &HashSet<&str>) {
        self.by_object.retain(|id, _| live.contains(id.as_str()));
    }

    /// How many objects have a recorder.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_object.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::api::{Api, ListParams};
    use kube::runtime::events::{Event, EventType, Reporter};

    use super::Recorders;

    fn vip(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("buoy.io/v1alpha1".into()),
            kind: Some("VirtualIP".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn an_objects_repeated_event_becomes_a_series_and_gone_objects_are_forgotten() {
        let api = buoy_tests::testapi::TestApi::start().await.unwrap();
        let client = api.client().unwrap();
        let mut r = Recorders::new(
            client.clone(),
            Reporter {
                controller: "buoy-operator".into(),
                instance: Some("test".into()),
            },
        );
        let ev = Event {
            type_: EventType::Normal,
            reason: "VirtualRouterIDAllocated".into(),
            note: Some("virtual router ID 1".into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        for name in ["a", "b", "a", "a"] {
            r.of(&format!("uid-{name}"))
                .publish(&ev, &vip(name))
                .await
                .unwrap();
        }
        let events: Api<K8sEvent> = Api::namespaced(client, "default");
        let mut seen: Vec<(String, Option<i32>)> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| {
                let regarding = e.regarding.and_then(|o| o.name).unwrap_or_default();
                (regarding, e.series.map(|s| s.count))
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![("a".to_string(), Some(3)), ("b".to_string(), None)]
        );
        assert_eq!(r.len(), 2);
        r.retain(&HashSet::from(["uid-b"]));
        assert_eq!(r.len(), 1);
    }
}
