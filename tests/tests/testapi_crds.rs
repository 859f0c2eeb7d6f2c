//! Buoy's own CRDs load into the Kubernetes API test server, which then rejects every bad example
//! of buoy-crds' validation tests (crds/tests/bad_examples.yaml) with the same field paths and
//! messages as standalone validation, and accepts the valid objects.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[path = "../../crds/tests/bad_examples/mod.rs"]
mod bad_examples;

use buoy_tests::testapi::{TestApi, buoy_crds};
use kube::Client;
use serde_json::Value;

async fn post(client: &Client, uri: &str, body: &Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap())
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "VirtualIP" => "virtualips",
        "UpstreamPool" => "upstreampools",
        "AddressPool" => "addresspools",
        "BGPPeer" => "bgppeers",
        other => panic!("unknown kind {other}"),
    }
}

#[tokio::test]
async fn buoy_crds_reject_every_bad_example_at_its_path() {
    let api = TestApi::start().await.unwrap();
    let client = api.client().unwrap();
    let crds = buoy_crds().unwrap();
    assert_eq!(crds.len(), 4);
    for crd in &crds {
        let (code, body) = post(
            &client,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            crd,
        )
        .await;
        assert_eq!(code, 201, "{body}");
    }

    // Strict field validation, as kubectl asks for it: unknown fields are errors, not pruned.
    // AddressPools and BGPPeers are cluster-scoped.
    let uri = |kind: &str| match kind {
        "AddressPool" | "BGPPeer" => format!(
            "/apis/buoy.io/v1alpha1/{}?fieldValidation=Strict",
            plural(kind)
        ),
        _ => format!(
            "/apis/buoy.io/v1alpha1/namespaces/default/{}?fieldValidation=Strict",
            plural(kind)
        ),
    };
    for kind in ["VirtualIP", "UpstreamPool", "AddressPool", "BGPPeer"] {
        let (code, body) = post(&client, &uri(kind), &bad_examples::valid(kind)).await;
        assert_eq!(code, 201, "the valid {kind} is rejected: {body}");
    }
    let cases = bad_examples::cases();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (code, body) = post(&client, &uri(&case.kind), &case.object).await;
        let actual: Vec<(String, String)> = body
            .pointer("/details/causes")
            .and_then(Value::as_array)
            .map(|causes| {
                causes
                    .iter()
                    .map(|c| {
                        (
                            c["field"].as_str().unwrap_or("").to_string(),
                            c["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if code != 422 {
            failures.push(format!("{}: HTTP {code}: {body}", case.name));
        } else if let Some(m) = bad_examples::mismatch(case, &actual) {
            failures.push(m);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
