//! The writes of the Services phase: the VirtualIPs that carry Services' addresses (applied
//! when they differ, deleted when no Service needs them), the Services' `status.loadBalancer`,
//! and their Events.

use buoy_crds::VirtualIP;
use k8s_openapi::api::core::v1::Service;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use tracing::{debug, info, warn};

use super::{Pass, gone};

/// The field manager of Services' VirtualIPs: not [`super::FIELD_MANAGER`], whose applies of a
/// VirtualIP's metadata (priorities, finalizer) name no spec and would drop what this one owns.
const SERVICES_FIELD_MANAGER: &str = "buoy-operator/services";
use crate::plan::Plan;

impl Pass {
    /// Applies the Services phase; returns whether every write succeeded.
    pub(super) async fn apply_services(&mut self, plan: &Plan) -> bool {
        let sp = &plan.services;
        let mut ok = true;
        let params = PatchParams::apply(SERVICES_FIELD_MANAGER).force();
        for (ns, name) in &sp.changed {
            let Some(body) = sp.vips.get(&buoy_crds::contract::key(Some(ns), Some(name))) else {
                continue;
            };
            let api: Api<VirtualIP> = Api::namespaced(self.client.clone(), ns);
            match api.patch(name, &params, &Patch::Apply(body)).await {
                Ok(_) => {
                    self.metrics
                        .writes
                        .with_label_values(&["service_virtualip"])
                        .inc();
                    info!(virtualip = %name, namespace = %ns, "applied a Service's VirtualIP");
                }
                Err(e) => {
                    warn!(virtualip = %name, namespace = %ns, error = %e, "cannot apply a Service's VirtualIP");
                    ok = false;
                }
            }
        }
        for (ns, name) in &sp.stale {
            let api: Api<VirtualIP> = Api::namespaced(self.client.clone(), ns);
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {
                    self.metrics
                        .writes
                        .with_label_values(&["service_virtualip_delete"])
                        .inc();
                    info!(virtualip = %name, namespace = %ns, "deleted a VirtualIP no Service needs");
                }
                Err(e) if gone(&e) => {}
                Err(e) => {
                    warn!(virtualip = %name, namespace = %ns, error = %e, "cannot delete a Service's VirtualIP");
                    ok = false;
                }
            }
        }
        for st in &sp.statuses {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &st.namespace);
            match api
                .patch_status(&st.name, &PatchParams::default(), &Patch::Merge(st.patch()))
                .await
            {
                Ok(_) => {
                    self.metrics
                        .writes
                        .with_label_values(&["service_status"])
                        .inc();
                }
                Err(e) if gone(&e) => {}
                Err(e) => {
                    warn!(service = %st.name, namespace = %st.namespace, error = %e, "cannot write a Service's status");
                    ok = false;
                }
            }
        }
        for e in &sp.events {
            let mut reference = Service::default();
            reference.metadata.name = Some(e.name.clone());
            reference.metadata.namespace = Some(e.namespace.clone());
            reference.metadata.uid = e.uid.clone();
            let ev = Event {
                type_: if e.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: e.reason.into(),
                note: Some(e.message.clone()),
                action: "AssignAddress".into(),
                secondary: None,
            };
            let recorder = self.recorders.of(&super::event_id(&reference));
            if let Err(err) = recorder.publish(&ev, &reference.object_ref(&())).await {
                debug!(error = %err, "cannot publish event");
            }
        }
        self.memory.service_addresses = sp.given.clone();
        self.memory.service_told = sp.told.clone();
        ok
    }
}
