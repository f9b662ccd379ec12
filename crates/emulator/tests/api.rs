//! The emulator driven by a plain HTTP client (reqwest, not the project's client crate), with
//! OpenSSL judging the certificates it issues.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::time::Duration;

use certcentral_emulator::{
    ApprovalMode, Emulator, EmulatorConfig, Fault, FaultRule, Route, Settings,
};
use codesign_testkit::{fixture, openssl};
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

const KEY: &str = "emulator-test-key-0123456789";

/// The exact request body of the API page's cURL example.
fn example_body() -> String {
    std::fs::read_to_string(fixture("api-page-example-order.json")).unwrap()
}

fn start(settings: Settings) -> Emulator {
    let mut config = EmulatorConfig::new(KEY);
    config.settings = settings;
    Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn client() -> Client {
    // reqwest is built without a default TLS provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn post(emu: &Emulator, path: &str, body: &str) -> Response {
    client()
        .post(format!("{}{path}", emu.api_base()))
        .header("X-DC-DEVKEY", KEY)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
}

fn get(emu: &Emulator, path: &str) -> Response {
    client()
        .get(format!("{}{path}", emu.api_base()))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .unwrap()
}

fn put(emu: &Emulator, path: &str, body: Value) -> Response {
    client()
        .put(format!("{}{path}", emu.api_base()))
        .header("X-DC-DEVKEY", KEY)
        .json(&body)
        .send()
        .unwrap()
}

fn json_of(r: Response) -> Value {
    r.json().unwrap()
}

/// A valid EV order with a CSR for an HSM key (`cs_provisioning_method: email`).
fn email_order(csr_fixture: &str) -> Value {
    let csr = std::fs::read_to_string(fixture(csr_fixture)).unwrap();
    json!({
        "certificate": { "csr": csr, "signature_hash": "sha256" },
        "cs_provisioning_method": "email",
        "order_validity": { "days": 200 },
        "skip_approval": true,
        "organization": { "id": 123456 },
        "alternative_order_id": "job0001",
    })
}

fn error_codes(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {body}"))
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_api_page_example_is_accepted_in_every_approval_mode() {
    for (mode, status) in [
        (ApprovalMode::AutoApprove, "approved"),
        (ApprovalMode::OneStep, "pending"),
        (ApprovalMode::TwoStep, "submitted"),
    ] {
        let emu = start(Settings {
            approval: mode,
            ..Settings::default()
        });
        let r = post(&emu, "/order/certificate/code_signing_ev", &example_body());
        assert_eq!(r.status(), 201, "{mode:?}");
        let body = json_of(r);
        assert!(body["id"].as_u64().is_some(), "{body}");
        assert_eq!(body["requests"][0]["status"], status, "{mode:?}: {body}");
        assert!(body["requests"][0]["id"].as_u64().is_some());
        assert_eq!(
            body["certificate_id"].is_u64(),
            mode == ApprovalMode::AutoApprove,
            "{body}"
        );
        // The body reached the server as sent.
        let seen = emu.last_request_body(Route::CreateOrder).unwrap();
        assert_eq!(
            seen,
            serde_json::from_str::<Value>(&example_body()).unwrap()
        );
    }
}

#[test]
fn authentication_format_and_product_errors_have_digicert_bodies() {
    let emu = start(Settings::default());
    let r = client()
        .post(format!("{}/order/certificate/code_signing", emu.api_base()))
        .header("X-DC-DEVKEY", "wrong")
        .body(example_body())
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        error_codes(&json_of(r))[0].0,
        "access_denied|invalid_api_key"
    );
    let r = client()
        .get(format!("{}/organization", emu.api_base()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = post(&emu, "/order/certificate/code_signing", "{not json");
    assert_eq!(r.status(), 400);
    assert_eq!(error_codes(&json_of(r))[0].0, "bad_request_format");

    let r = post(&emu, "/order/certificate/ssl_plus", &example_body());
    assert_eq!(r.status(), 404);
    assert_eq!(error_codes(&json_of(r))[0].0, "not_found|product");
    assert_eq!(emu.order_count(), 0);
}

#[test]
fn every_documented_rule_broken_gets_a_400_naming_the_field() {
    let emu = start(Settings {
        rate_limits: false,
        ..Settings::default()
    });
    let base: Value = serde_json::from_str(&example_body()).unwrap();
    let email = email_order("openssl-p384.csr");
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "code_signing_ev",
            json!({"certificate": {"signature_hash": "sha1"}}),
            "certificate.signature_hash",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"certificate": {"server_platform": {"id": 52}}}),
            "certificate.signature_hash is required",
            "required_field_missing",
        ),
        (
            "code_signing_ev",
            json!({"order_validity": {"years": 4}}),
            "order_validity.years",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"order_validity": {"days": 0}}),
            "order_validity.days",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"order_validity": {"custom_expiration_date": "2030-01-01"}}),
            "order_validity.custom_expiration_date",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"order_validity": null, "validity_years": 9}),
            "validity_years",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"order_validity": null, "custom_expiration_date": "09 JUN 2030"}),
            "custom_expiration_date",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"order_validity": null}),
            "order_validity is required",
            "required_field_missing",
        ),
        (
            "code_signing_ev",
            json!({"cs_provisioning_method": null}),
            "cs_provisioning_method is required",
            "required_field_missing",
        ),
        (
            "code_signing_ev",
            json!({"cs_provisioning_method": "carrier_pigeon"}),
            "cs_provisioning_method",
            "invalid_value",
        ),
        (
            "code_signing",
            json!({"cs_provisioning_method": "client_app", "certificate": {"signature_hash": "sha256"}}),
            "certificate.server_platform is required",
            "required_field_missing",
        ),
        (
            "code_signing",
            json!({"cs_provisioning_method": null, "certificate": {"signature_hash": "sha256"}}),
            "certificate.server_platform is required",
            "required_field_missing",
        ),
        (
            "code_signing_ev",
            json!({"cs_provisioning_method": "email"}),
            "certificate.csr is required when cs_provisioning_method is email",
            "required_field_missing",
        ),
        (
            "code_signing",
            json!({"cs_provisioning_method": null, "certificate": {"signature_hash": "sha256", "server_platform": {"id": 55}}}),
            "certificate.csr is required for code_signing with server_platform.id 55",
            "required_field_missing",
        ),
        (
            "code_signing_ev",
            json!({"ship_info": {"name": "x"}}),
            "ship_info.addr1 is required",
            "required_field_missing",
        ),
        (
            "code_signing_ev",
            json!({"ship_info": {"name": "x", "addr1": "a", "city": "c", "state": "s", "zip": "z", "country": "us", "method": "OVERNIGHT"}}),
            "ship_info.method",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"payment_method": "cash"}),
            "payment_method",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"alternative_order_id": "has-dash"}),
            "alternative_order_id",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"alternative_order_id": "a".repeat(65)}),
            "alternative_order_id",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"enable_guest_access": 2}),
            "enable_guest_access",
            "invalid_value",
        ),
        (
            "code_signing_ev",
            json!({"organization": {"id": 999}}),
            "organization.id",
            "not_found|organization",
        ),
        (
            "code_signing_ev",
            json!({"organization": {"name": "New Co"}}),
            "organization.address is required",
            "required_field_missing",
        ),
        (
            "code_signing_ev",
            json!({"organization": null}),
            "organization is required",
            "required_field_missing",
        ),
        (
            "code_signing_ev",
            json!({"container": {"id": 1}}),
            "container.id",
            "not_found|container",
        ),
        (
            "code_signing_ev",
            json!({"custom_fields": [{"metadata_id": 99, "value": "x"}]}),
            "custom_fields[0].metadata_id",
            "not_found|custom_field",
        ),
        (
            "code_signing_ev",
            json!({"skip_approval": "yes"}),
            "skip_approval",
            "invalid_value",
        ),
        (
            "code_signing",
            json!({"subject": {"email": "not-an-address"}}),
            "subject.email",
            "invalid_value",
        ),
    ];
    for (product, patch, path, code) in cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let r = post(
            &emu,
            &format!("/order/certificate/{product}"),
            &body.to_string(),
        );
        // CertCentral answers every `not_found|*` with 404, the rest of the rules with 400.
        let expected = if code.starts_with("not_found|") {
            404
        } else {
            400
        };
        assert_eq!(r.status(), expected, "{path}");
        let errors = error_codes(&json_of(r));
        assert!(
            errors.iter().any(|(c, m)| c == code && m.contains(path)),
            "{path}: {errors:?}"
        );
    }
    // CSR rules, on an email order.
    for (csr, code) in [
        ("openssl-rsa2048.csr", "csr_invalid_key"),
        ("openssl-p521.csr", "csr_invalid_key"),
    ] {
        let r = post(
            &emu,
            "/order/certificate/code_signing_ev",
            &email_order(csr).to_string(),
        );
        assert_eq!(r.status(), 400);
        let errors = error_codes(&json_of(r));
        assert_eq!(errors[0].0, code, "{csr}");
        assert!(errors[0].1.starts_with("certificate.csr"), "{errors:?}");
    }
    let mut garbage = email.clone();
    garbage["certificate"]["csr"] =
        json!("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    let r = post(
        &emu,
        "/order/certificate/code_signing_ev",
        &garbage.to_string(),
    );
    assert_eq!(error_codes(&json_of(r))[0].0, "csr_invalid_cannot_parse");
    // Every error is reported, not only the first.
    let mut many = base.clone();
    many["payment_method"] = json!("cash");
    many["enable_guest_access"] = json!(7);
    many["certificate"]["signature_hash"] = json!("md5");
    let r = post(
        &emu,
        "/order/certificate/code_signing_ev",
        &many.to_string(),
    );
    assert_eq!(error_codes(&json_of(r)).len(), 3);
    assert_eq!(emu.order_count(), 0, "no order was made by a bad request");
    // And the unbroken bodies pass.
    assert_eq!(
        post(
            &emu,
            "/order/certificate/code_signing_ev",
            &base.to_string()
        )
        .status(),
        201
    );
    assert_eq!(
        post(
            &emu,
            "/order/certificate/code_signing_ev",
            &email.to_string()
        )
        .status(),
        201
    );
}

fn wait_issued(emu: &Emulator, order_id: u64) -> Value {
    for _ in 0..10 {
        let order = json_of(get(emu, &format!("/order/certificate/{order_id}")));
        if order["status"] == "issued" {
            return order;
        }
    }
    panic!("order {order_id} not issued after 10 polls");
}

#[test]
fn an_issued_chain_verifies_with_openssl_and_carries_the_csr_key() {
    let emu = start(Settings {
        polls_until_issued: 3,
        ..Settings::default()
    });
    let dir = tempfile::tempdir().unwrap();
    for csr in ["openssl-rsa3072.csr", "openssl-p384.csr"] {
        let r = post(
            &emu,
            "/order/certificate/code_signing_ev",
            &email_order(csr).to_string(),
        );
        assert_eq!(r.status(), 201);
        let created = json_of(r);
        let order_id = created["id"].as_u64().unwrap();
        let cert_id = created["certificate_id"].as_u64().unwrap();
        // Clients must really poll: the first polls say pending.
        let first = json_of(get(&emu, &format!("/order/certificate/{order_id}")));
        assert_eq!(first["status"], "pending");
        assert_eq!(
            get(
                &emu,
                &format!("/certificate/{cert_id}/download/format/pem_all")
            )
            .status(),
            404
        );
        let order = wait_issued(&emu, order_id);
        assert_eq!(order["certificate"]["id"], cert_id);
        assert_eq!(order["product"]["name_id"], "code_signing_ev");
        assert_eq!(order["alternative_order_id"], "job0001");

        let chain = get(
            &emu,
            &format!("/certificate/{cert_id}/download/format/pem_all"),
        )
        .text()
        .unwrap();
        let blocks: Vec<&str> = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .collect();
        assert_eq!(blocks.len(), 3, "leaf, intermediate, root");
        let leaf = dir.path().join("leaf.pem");
        let intermediate = dir.path().join("intermediate.pem");
        let root = dir.path().join("root.pem");
        std::fs::write(&leaf, blocks[0]).unwrap();
        std::fs::write(&intermediate, blocks[1]).unwrap();
        std::fs::write(&root, blocks[2]).unwrap();
        assert_eq!(blocks[2], emu.root_pem());
        let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
        let out = openssl(&[
            "verify",
            "-CAfile",
            &p(&root),
            "-untrusted",
            &p(&intermediate),
            &p(&leaf),
        ]);
        assert!(
            out.status.success(),
            "{csr}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // The leaf's public key is the CSR's.
        let leaf_key = openssl(&["x509", "-in", &p(&leaf), "-noout", "-pubkey"]).stdout;
        let csr_key = openssl(&[
            "req",
            "-in",
            fixture(csr).to_str().unwrap(),
            "-noout",
            "-pubkey",
        ])
        .stdout;
        assert_eq!(leaf_key, csr_key, "{csr}");
        let text =
            String::from_utf8(openssl(&["x509", "-in", &p(&leaf), "-noout", "-text"]).stdout)
                .unwrap();
        assert!(text.contains("Code Signing"), "{text}");
        assert!(text.contains("Digital Signature"), "{text}");
        assert!(
            text.contains(
                "Subject: C = US, ST = Virginia, L = Richmond, O = Example Corp, CN = Example Corp"
            ),
            "{text}"
        );
        let enddate =
            String::from_utf8(openssl(&["x509", "-in", &p(&leaf), "-noout", "-enddate"]).stdout)
                .unwrap();
        let days_ok = openssl(&[
            "x509",
            "-in",
            &p(&leaf),
            "-noout",
            "-checkend",
            &(199 * 86400).to_string(),
        ]);
        let days_over = openssl(&[
            "x509",
            "-in",
            &p(&leaf),
            "-noout",
            "-checkend",
            &(201 * 86400).to_string(),
        ]);
        assert!(
            days_ok.status.success() && !days_over.status.success(),
            "200 days of validity: {enddate}"
        );

        // The other formats.
        let alone = get(
            &emu,
            &format!("/certificate/{cert_id}/download/format/pem_nointermediate"),
        )
        .text()
        .unwrap();
        assert_eq!(alone, blocks[0]);
        let by_order = get(
            &emu,
            &format!("/certificate/download/order/{order_id}/format/pem_all"),
        )
        .text()
        .unwrap();
        assert_eq!(by_order, chain);
        let p7b = dir.path().join("chain.p7b");
        std::fs::write(
            &p7b,
            get(&emu, &format!("/certificate/{cert_id}/download/format/p7b"))
                .text()
                .unwrap(),
        )
        .unwrap();
        let out = openssl(&["pkcs7", "-in", &p(&p7b), "-print_certs", "-noout"]);
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .matches("subject=")
                .count(),
            3
        );
    }
}

#[test]
fn approval_flows_move_through_put_request_status() {
    let emu = start(Settings {
        approval: ApprovalMode::TwoStep,
        polls_until_issued: 0,
        ..Settings::default()
    });
    let created = json_of(post(
        &emu,
        "/order/certificate/code_signing_ev",
        &email_order("openssl-p384.csr").to_string(),
    ));
    let order_id = created["id"].as_u64().unwrap();
    let request_id = created["requests"][0]["id"].as_u64().unwrap();
    assert_eq!(
        json_of(get(&emu, &format!("/order/certificate/{order_id}")))["status"],
        "needs_approval"
    );
    let approve = json!({"status": "approved", "processor_comment": "ok"});
    assert_eq!(
        put(
            &emu,
            &format!("/request/{request_id}/status"),
            approve.clone()
        )
        .status(),
        204
    );
    let order = json_of(get(&emu, &format!("/order/certificate/{order_id}")));
    assert_eq!(
        order["requests"][0]["status"], "pending",
        "first of two approvals"
    );
    assert_eq!(
        put(
            &emu,
            &format!("/request/{request_id}/status"),
            approve.clone()
        )
        .status(),
        204
    );
    let order = wait_issued(&emu, order_id);
    assert_eq!(order["requests"][0]["status"], "approved");
    assert!(order["certificate"]["id"].is_u64());
    let r = put(&emu, &format!("/request/{request_id}/status"), approve);
    assert_eq!(r.status(), 400);

    // Rejection and cancellation.
    let created = json_of(post(
        &emu,
        "/order/certificate/code_signing_ev",
        &email_order("openssl-p384.csr").to_string(),
    ));
    let (order_id, request_id) = (
        created["id"].as_u64().unwrap(),
        created["requests"][0]["id"].as_u64().unwrap(),
    );
    assert_eq!(
        put(
            &emu,
            &format!("/request/{request_id}/status"),
            json!({"status": "rejected"})
        )
        .status(),
        204
    );
    assert_eq!(
        json_of(get(&emu, &format!("/order/certificate/{order_id}")))["status"],
        "rejected"
    );
    let created = json_of(post(
        &emu,
        "/order/certificate/code_signing_ev",
        &email_order("openssl-p384.csr").to_string(),
    ));
    let order_id = created["id"].as_u64().unwrap();
    // The status value is case-sensitive, and only pending or waiting_pickup orders are
    // canceled: this one still needs its approval.
    let cancel = |status: &str| {
        put(
            &emu,
            &format!("/order/certificate/{order_id}/status"),
            json!({"status": status, "note": "x"}),
        )
        .status()
    };
    assert_eq!(cancel("CANCELED"), 400);
    assert_eq!(cancel("canceled"), 400, "needs_approval is not cancelable");
    let request_id = created["requests"][0]["id"].as_u64().unwrap();
    for _ in 0..2 {
        put(
            &emu,
            &format!("/request/{request_id}/status"),
            json!({"status": "approved"}),
        );
    }
    // Approved and not yet polled to issuance: pending, so it can be canceled.
    assert_eq!(cancel("canceled"), 204);
    assert_eq!(
        json_of(get(&emu, &format!("/order/certificate/{order_id}")))["status"],
        "canceled"
    );
    assert_eq!(
        put(
            &emu,
            &format!("/order/certificate/{order_id}/status"),
            json!({"status": "canceled"})
        )
        .status(),
        400
    );

    // An order without a CSR (ship_token) stays at the token step, however often it is polled.
    emu.set_settings(Settings {
        approval: ApprovalMode::AutoApprove,
        polls_until_issued: 0,
        ..Settings::default()
    });
    let token_order = json_of(post(
        &emu,
        "/order/certificate/code_signing_ev",
        &example_body(),
    ));
    let token_order_id = token_order["id"].as_u64().unwrap();
    for _ in 0..5 {
        let order = json_of(get(&emu, &format!("/order/certificate/{token_order_id}")));
        assert_eq!(order["status"], "pending");
        assert!(order["hardware_init_code"].is_string(), "{order}");
    }

    // Listing with filters, and lookup by alternative ID.
    let list = json_of(get(&emu, "/order/certificate?filters[status]=canceled"));
    assert_eq!(list["page"]["total"], 1);
    let list = json_of(get(
        &emu,
        "/order/certificate?filters[product_name_id]=code_signing_ev&limit=2&offset=1",
    ));
    assert_eq!(list["page"]["total"], 4);
    assert_eq!(list["orders"].as_array().unwrap().len(), 2);
    let alt = json_of(get(&emu, "/order/alternate/job0001"));
    assert_eq!(alt["orders"].as_array().unwrap().len(), 3);
    assert!(alt["orders"][0]["order_id"].is_u64());
    assert_eq!(emu.orders_with_alternative_id("job0001"), 3);
}

#[test]
fn organizations_are_created_validated_and_listed() {
    let emu = start(Settings::default());
    let org = json!({
        "name": "New Signing Co", "address": "1 Main St", "city": "Lehi", "state": "UT", "zip": "84043",
        "country": "us", "telephone": "+1 555 0101",
        "organization_contact": {"first_name": "A", "last_name": "B", "email": "a@example.com", "telephone": "+1 555 0102"}
    });
    let r = post(&emu, "/organization", &org.to_string());
    assert_eq!(r.status(), 201);
    let org_id = json_of(r)["id"].as_u64().unwrap();
    let r = post(&emu, "/organization", "{\"name\": \"x\"}");
    assert_eq!(r.status(), 400);
    assert!(
        error_codes(&json_of(r))
            .iter()
            .any(|(_, m)| m == "address is required")
    );

    // Not yet validated for EV code signing: the order is taken (201) and waits, pending,
    // until the validation completes.
    let mut order = email_order("openssl-p384.csr");
    order["organization"]["id"] = json!(org_id);
    order["alternative_order_id"] = json!("waits4validation");
    let r = post(
        &emu,
        "/order/certificate/code_signing_ev",
        &order.to_string(),
    );
    assert_eq!(r.status(), 201);
    let waiting = json_of(r)["id"].as_u64().unwrap();
    for _ in 0..4 {
        assert_eq!(
            json_of(get(&emu, &format!("/order/certificate/{waiting}")))["status"],
            "pending"
        );
    }
    order["alternative_order_id"] = json!("job0001");

    let r = post(
        &emu,
        &format!("/organization/{org_id}/validation"),
        &json!({"validations": [{"type": "ev_cs"}]}).to_string(),
    );
    assert_eq!(r.status(), 400, "verified_users is required for ev_cs");
    let validation = json!({"validations": [{"type": "ev_cs", "verified_users": [{"id": 1}]}]});
    assert_eq!(
        post(
            &emu,
            &format!("/organization/{org_id}/validation"),
            &validation.to_string()
        )
        .status(),
        204
    );
    let status = json_of(get(&emu, &format!("/organization/{org_id}/validation")));
    assert_eq!(
        status["validations"][0],
        json!({"type": "ev_cs", "status": "active"})
    );
    assert_eq!(
        post(
            &emu,
            "/order/certificate/code_signing_ev",
            &order.to_string()
        )
        .status(),
        201
    );
    // OV code signing needs cs, which it still lacks.
    assert_eq!(
        json_of(get(&emu, &format!("/order/certificate/{waiting}")))["status"],
        "issued",
        "issued once its organization's validation completed"
    );
    let mut ov_order = order.clone();
    ov_order["alternative_order_id"] = json!("ovwaits");
    let r = post(
        &emu,
        "/order/certificate/code_signing",
        &ov_order.to_string(),
    );
    assert_eq!(r.status(), 201);
    let ov_waiting = json_of(r)["id"].as_u64().unwrap();
    for _ in 0..4 {
        assert_eq!(
            json_of(get(&emu, &format!("/order/certificate/{ov_waiting}")))["status"],
            "pending",
            "OV code signing waits for a cs validation"
        );
    }

    // An order may create its organization (the API page allows it); issuance waits for the
    // organization's validation.
    let mut with_new_org = email_order("openssl-p384.csr");
    with_new_org["organization"] = org.clone();
    with_new_org["organization"]["name"] = json!("Brand New Co");
    let created = json_of(post(
        &emu,
        "/order/certificate/code_signing_ev",
        &with_new_org.to_string(),
    ));
    let new_org_id = created["organization"]["id"]
        .as_u64()
        .expect("the new organization's id");
    let new_order = created["id"].as_u64().unwrap();
    for _ in 0..4 {
        assert_eq!(
            json_of(get(&emu, &format!("/order/certificate/{new_order}")))["status"],
            "pending"
        );
    }
    assert_eq!(
        post(
            &emu,
            &format!("/organization/{new_org_id}/validation"),
            &validation.to_string()
        )
        .status(),
        204
    );
    let mut issued = false;
    for _ in 0..4 {
        issued |=
            json_of(get(&emu, &format!("/order/certificate/{new_order}")))["status"] == "issued";
    }
    assert!(issued, "issued once the new organization is validated");

    let list = json_of(get(&emu, "/organization"));
    let ids: Vec<u64> = list["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect();
    assert!(ids.contains(&123456) && ids.contains(&org_id));
}

#[test]
fn injected_faults_behave_as_configured() {
    let emu = start(Settings::default());
    let body = email_order("openssl-p384.csr").to_string();
    // 503 twice, without creating anything.
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::Status { status: 503 },
        count: 2,
    });
    assert_eq!(
        post(&emu, "/order/certificate/code_signing_ev", &body).status(),
        503
    );
    let r = post(&emu, "/order/certificate/code_signing_ev", &body);
    assert_eq!(r.status(), 503);
    assert!(json_of(r)["errors"].is_array());
    assert_eq!(emu.order_count(), 0);
    assert_eq!(
        post(&emu, "/order/certificate/code_signing_ev", &body).status(),
        201
    );

    // 429 with and without Retry-After.
    emu.add_fault(FaultRule {
        route: Route::OrderInfo,
        fault: Fault::RateLimited {
            retry_after: Some(3),
        },
        count: 1,
    });
    emu.add_fault(FaultRule {
        route: Route::OrderInfo,
        fault: Fault::RateLimited { retry_after: None },
        count: 1,
    });
    let r = get(&emu, "/order/certificate/1");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    assert_eq!(error_codes(&json_of(r))[0].0, "request_limit_exceeded");
    let r = get(&emu, "/order/certificate/1");
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());

    // Delay.
    emu.add_fault(FaultRule {
        route: Route::ListOrders,
        fault: Fault::Delay { millis: 300 },
        count: 1,
    });
    let started = std::time::Instant::now();
    assert_eq!(get(&emu, "/order/certificate").status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Commit, then drop the connection: the client gets no answer, the order exists.
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::DropAfterCommit,
        count: 1,
    });
    let mut dropped = email_order("openssl-p384.csr");
    dropped["alternative_order_id"] = json!("dropped1");
    let result = client()
        .post(format!(
            "{}/order/certificate/code_signing_ev",
            emu.api_base()
        ))
        .header("X-DC-DEVKEY", KEY)
        .json(&dropped)
        .send();
    assert!(result.is_err(), "no response after the commit: {result:?}");
    assert_eq!(emu.orders_with_alternative_id("dropped1"), 1);
    assert_eq!(
        json_of(get(&emu, "/order/alternate/dropped1"))["orders"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Malformed JSON after the work is done.
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::MalformedJson,
        count: 1,
    });
    let r = post(&emu, "/order/certificate/code_signing_ev", &body);
    assert_eq!(r.status(), 201);
    assert!(serde_json::from_str::<Value>(&r.text().unwrap()).is_err());
    assert_eq!(
        emu.orders_with_alternative_id("job0001"),
        2,
        "the order was made"
    );

    // The inspection surface over HTTP.
    let counts: Value = client()
        .get(format!(
            "{}/_emulator/inspect/orders-by-alternative-id",
            emu.url()
        ))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(counts, json!({"dropped1": 1, "job0001": 2}));
    let last: Value = client()
        .get(format!(
            "{}/_emulator/inspect/last-request/create_order",
            emu.url()
        ))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(last["alternative_order_id"], "job0001");

    // Faults can also be armed over HTTP.
    let r = client()
        .post(format!("{}/_emulator/faults", emu.url()))
        .header("X-DC-DEVKEY", KEY)
        .json(&json!({"route": "organizations", "kind": "status", "status": 500}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&emu, "/organization").status(), 500);
    assert_eq!(get(&emu, "/organization").status(), 200);
}

#[test]
fn the_documented_rate_limit_answers_429_when_exceeded() {
    let emu = start(Settings::default());
    let mut statuses = Vec::new();
    for _ in 0..101 {
        statuses.push(get(&emu, "/organization").status().as_u16());
    }
    assert!(statuses[..100].iter().all(|s| *s == 200));
    assert_eq!(statuses[100], 429);
    emu.set_settings(Settings {
        rate_limits: false,
        ..Settings::default()
    });
    assert_eq!(get(&emu, "/organization").status(), 200);
}

#[test]
fn a_restarted_emulator_with_a_state_file_knows_its_orders() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let mut config = EmulatorConfig::new(KEY);
    config.state_file = Some(state_file.clone());
    config.settings.polls_until_issued = 0;
    let emu = Emulator::start(config.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let created = json_of(post(
        &emu,
        "/order/certificate/code_signing_ev",
        &email_order("openssl-p384.csr").to_string(),
    ));
    let order_id = created["id"].as_u64().unwrap();
    let issued = wait_issued(&emu, order_id);
    let chain = get(
        &emu,
        &format!("/certificate/download/order/{order_id}/format/pem_all"),
    )
    .text()
    .unwrap();
    let root = emu.root_pem();
    emu.stop();
    // The state holds the CA's private keys: the owner's alone, whatever the umask.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "state file mode {mode:o}");

    let emu = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let again = json_of(get(&emu, &format!("/order/certificate/{order_id}")));
    assert_eq!(again["status"], "issued");
    assert_eq!(again["certificate"]["id"], issued["certificate"]["id"]);
    assert_eq!(emu.root_pem(), root, "the CA is kept too");
    let chain_again = get(
        &emu,
        &format!("/certificate/download/order/{order_id}/format/pem_all"),
    )
    .text()
    .unwrap();
    assert_eq!(chain_again, chain);
    assert_eq!(emu.orders_with_alternative_id("job0001"), 1);
    // New orders do not reuse old IDs.
    let next = json_of(post(
        &emu,
        "/order/certificate/code_signing_ev",
        &email_order("openssl-p384.csr").to_string(),
    ));
    assert!(next["id"].as_u64().unwrap() > order_id);
}

#[test]
fn only_loopback_addresses_are_served() {
    let err = Emulator::start(EmulatorConfig::new(KEY), "0.0.0.0:0".parse().unwrap()).unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}

/// The date `days` from today, written `dd MMM YYYY`.
fn dd_mmm_yyyy_in(days: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    let month = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ][usize::from(u8::from(d.month())) - 1];
    format!("{:02} {month} {}", d.day(), d.year())
}

#[test]
fn over_long_orders_are_refused_and_leaves_live_at_most_459_days() {
    let emu = start(Settings {
        polls_until_issued: 1,
        ..Settings::default()
    });
    let over = [
        (json!({"years": 2}), "order_validity.years"),
        (json!({"years": 3}), "order_validity.years"),
        (json!({"days": 460}), "order_validity.days"),
        (
            json!({"custom_expiration_date": dd_mmm_yyyy_in(460)}),
            "order_validity.custom_expiration_date",
        ),
    ];
    for (validity, path) in over {
        let mut body = email_order("openssl-p384.csr");
        body["order_validity"] = validity.clone();
        let r = post(
            &emu,
            "/order/certificate/code_signing_ev",
            &body.to_string(),
        );
        assert_eq!(r.status(), 400, "{validity}");
        let errors = error_codes(&json_of(r));
        assert!(
            errors
                .iter()
                .any(|(_, m)| m.starts_with(path) && m.contains("459 days")),
            "{validity}: {errors:?}"
        );
    }
    for (validity, name) in [
        (json!({"order_validity": {"days": 459}}), "days"),
        (
            json!({"order_validity": null, "validity_days": 459}),
            "deprecated-days",
        ),
        (json!({"order_validity": {"years": 1}}), "years"),
    ] {
        let mut body = email_order("openssl-p384.csr");
        for (k, v) in validity.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body["alternative_order_id"] = json!(format!("cap{}", name.replace('-', "")));
        let r = post(
            &emu,
            "/order/certificate/code_signing_ev",
            &body.to_string(),
        );
        assert_eq!(r.status(), 201, "{validity}");
        let created = json_of(r);
        let order = wait_issued(&emu, created["id"].as_u64().unwrap());
        let cert_id = order["certificate"]["id"].as_u64().unwrap();
        let chain = get(
            &emu,
            &format!("/certificate/{cert_id}/download/format/pem_all"),
        )
        .text()
        .unwrap();
        let leaf = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap()
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leaf.pem");
        std::fs::write(&path, leaf).unwrap();
        // OpenSSL's own reading of the dates: the leaf's life is at most 459 days.
        let dates = openssl(&[
            "x509",
            "-in",
            path.to_str().unwrap(),
            "-noout",
            "-startdate",
            "-enddate",
        ]);
        assert!(dates.status.success());
        let text = String::from_utf8_lossy(&dates.stdout).into_owned();
        let field = |key: &str| {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {text}"));
            let format = time::macros::format_description!(
                "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
            );
            time::PrimitiveDateTime::parse(value, &format)
                .unwrap_or_else(|e| panic!("{value}: {e}"))
        };
        let life = field("notAfter=") - field("notBefore=");
        assert!(
            life <= time::Duration::days(459),
            "{name}: the leaf lives {life} ({text})"
        );
        assert!(life >= time::Duration::days(364), "{name}: {life}");
        // And `openssl x509 -checkend` agrees: valid 458 days from now, not 460.
        let checkend = |days: i64| {
            openssl(&[
                "x509",
                "-in",
                path.to_str().unwrap(),
                "-noout",
                "-checkend",
                &(days * 86_400).to_string(),
            ])
            .status
            .success()
        };
        assert!(!checkend(460), "{name}: still valid in 460 days");
        if name != "years" {
            assert!(checkend(458), "{name}: not valid in 458 days");
        }
    }
}

/// The emulator's own endpoints take the account's API key like the API: without it (or with
/// another) every one of them is refused, and nothing changes.
#[test]
fn admin_endpoints_without_the_api_key_are_refused() {
    let emu = start(Settings::default());
    let http = client();
    let admin = |method: reqwest::Method, path: &str, key: Option<&str>, body: Option<Value>| {
        let mut request = http.request(method, format!("{}/_emulator{path}", emu.url()));
        if let Some(key) = key {
            request = request.header("X-DC-DEVKEY", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().unwrap().status().as_u16()
    };
    let fault = json!({"route": "any", "kind": "status", "status": 503, "count": 1});
    let settings = json!({"approval": "two_step", "polls_until_issued": 9, "issue_delay": 0, "rate_limits": false});
    for key in [None, Some("another-key")] {
        assert_eq!(admin(reqwest::Method::GET, "/settings", key, None), 401);
        assert_eq!(
            admin(
                reqwest::Method::PUT,
                "/settings",
                key,
                Some(settings.clone())
            ),
            401
        );
        assert_eq!(
            admin(reqwest::Method::POST, "/faults", key, Some(fault.clone())),
            401
        );
        assert_eq!(admin(reqwest::Method::GET, "/faults", key, None), 401);
        assert_eq!(admin(reqwest::Method::DELETE, "/faults", key, None), 401);
        assert_eq!(
            admin(
                reqwest::Method::GET,
                "/inspect/last-request/create_order",
                key,
                None
            ),
            401
        );
        assert_eq!(
            admin(
                reqwest::Method::GET,
                "/inspect/orders-by-alternative-id",
                key,
                None
            ),
            401
        );
    }
    // Nothing changed: no fault armed, settings as they were; with the key, the same calls work.
    assert_eq!(
        admin(reqwest::Method::GET, "/settings", Some(KEY), None),
        200
    );
    let order = post(
        &emu,
        "/order/certificate/code_signing_ev",
        &email_order("openssl-p384.csr").to_string(),
    );
    assert_eq!(
        order.status(),
        201,
        "no fault was armed by the refused calls"
    );
    assert_eq!(
        admin(reqwest::Method::POST, "/faults", Some(KEY), Some(fault)),
        204
    );
}

/// `GET /order/certificate/status-changes`: a window is required and at most 7 days; the
/// orders whose status changed in it are listed with their status, and a call moves pending
/// orders towards issuance as a poll of each would.
#[test]
fn status_changes_list_recent_changes_within_seven_days() {
    let emu = start(Settings {
        approval: ApprovalMode::OneStep,
        polls_until_issued: 1,
        ..Settings::default()
    });
    let path = "/order/certificate/status-changes";
    let missing = get(&emu, path);
    assert_eq!(missing.status(), 400);
    assert_eq!(error_codes(&json_of(missing))[0].0, "missing_filter");
    for too_long in [
        "?minutes=10081",
        "?seconds=604801",
        "?minutes=10080&seconds=1",
    ] {
        let answer = get(&emu, &format!("{path}{too_long}"));
        assert_eq!(answer.status(), 400, "{too_long}");
        assert_eq!(error_codes(&json_of(answer))[0].0, "time_frame_too_long");
    }
    assert_eq!(get(&emu, &format!("{path}?seconds=abc")).status(), 400);
    assert_eq!(
        json_of(get(&emu, &format!("{path}?minutes=10080"))),
        json!({ "orders": [] })
    );

    let created = json_of(post(
        &emu,
        "/order/certificate/code_signing_ev",
        &email_order("openssl-p384.csr").to_string(),
    ));
    let order_id = created["id"].as_u64().unwrap();
    let request_id = created["requests"][0]["id"].as_u64().unwrap();
    let listed = |query: &str| -> Vec<Value> {
        json_of(get(&emu, &format!("{path}{query}")))["orders"]
            .as_array()
            .unwrap()
            .clone()
    };
    let changes = listed("?seconds=60");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["order_id"], order_id);
    assert_eq!(changes[0]["status"], "needs_approval");

    let approve = json!({"status": "approved", "processor_comment": "ok"});
    assert_eq!(
        put(&emu, &format!("/request/{request_id}/status"), approve).status(),
        204
    );
    // The call itself counts as a poll: the approved order is issued, and listed as such.
    let changes = listed("?minutes=1");
    assert_eq!(changes[0]["status"], "issued", "{changes:?}");
    assert!(changes[0]["certificate_id"].as_u64().is_some());
    assert_eq!(
        json_of(get(&emu, &format!("/order/certificate/{order_id}")))["status"],
        "issued"
    );
    // The day filter, in Mountain Daylight Time: today's change is found by a range around it.
    let today = time::OffsetDateTime::now_utc().date();
    let range = format!(
        "?filters[status_last_updated]={}...{}",
        today.previous_day().unwrap(),
        today.next_day().unwrap()
    );
    assert_eq!(listed(&range).len(), 1);
    assert_eq!(
        listed("?filters[status_last_updated]=2020-01-01...2020-01-02").len(),
        0
    );
    assert_eq!(
        get(
            &emu,
            &format!("{path}?filters[status_last_updated]=yesterday")
        )
        .status(),
        400
    );
}

fn admin_get(emu: &Emulator, path: &str) -> Response {
    client()
        .get(format!("{}/_emulator{path}", emu.url()))
        .header("X-DC-DEVKEY", KEY)
        .send()
        .unwrap()
}

/// After issuance: the clock set back issues an aged certificate; a reissue for a new key
/// (`reissue_pending`, then issued, the order's certificate replaced, listed among the reissues);
/// revoking one certificate through an approval, and a whole order at once; the CRL that
/// `openssl verify -crl_check` reads; `renewal_of_order_id` checked against the account.
#[test]
fn reissue_revoke_renewal_and_the_clock() {
    let emu = start(Settings {
        polls_until_issued: 0,
        ..Settings::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();

    // An order issued 440 days ago (the clock set back), then the clock put right.
    emu.set_clock_offset(time::Duration::days(-440));
    let mut longest = email_order("openssl-p384.csr");
    longest["order_validity"] = json!({"days": 459});
    let created = json_of(post(
        &emu,
        "/order/certificate/code_signing_ev",
        &longest.to_string(),
    ));
    let order_id = created["id"].as_u64().unwrap();
    let first_cert = wait_issued(&emu, order_id)["certificate"]["id"]
        .as_u64()
        .unwrap();
    emu.set_clock_offset(time::Duration::ZERO);
    let order = json_of(get(&emu, &format!("/order/certificate/{order_id}")));
    let days = order["certificate"]["days_remaining"].as_i64().unwrap();
    assert!((17..=19).contains(&days), "{order}");
    assert_eq!(json_of(admin_get(&emu, "/clock"))["offset_seconds"], 0);

    // A reissue for another key: pending, then issued with a new certificate ID.
    let csr = std::fs::read_to_string(fixture("openssl-rsa3072.csr")).unwrap();
    let reissue_body =
        json!({"certificate": {"csr": csr, "signature_hash": "sha256"}, "skip_approval": true});
    let answer = post(
        &emu,
        &format!("/order/certificate/{order_id}/reissue"),
        &reissue_body.to_string(),
    );
    assert_eq!(answer.status(), 201);
    let answer = json_of(answer);
    let new_cert = answer["certificate_id"].as_u64().unwrap();
    assert_ne!(new_cert, first_cert);
    let listing = json_of(get(&emu, &format!("/order/certificate/{order_id}/reissue")));
    assert_eq!(listing["certificates"][0]["status"], "pending", "{listing}");
    // A second reissue while one is pending is refused, and so is a revoke.
    assert_eq!(
        post(
            &emu,
            &format!("/order/certificate/{order_id}/reissue"),
            &reissue_body.to_string()
        )
        .status(),
        400
    );
    let refused = put(
        &emu,
        &format!("/certificate/{first_cert}/revoke"),
        json!({"comments": "x"}),
    );
    assert_eq!(error_codes(&json_of(refused))[0].0, "reissue_pending");
    let order = wait_issued(&emu, order_id);
    assert_eq!(order["certificate"]["id"], new_cert);
    let listing = json_of(get(&emu, &format!("/order/certificate/{order_id}/reissue")));
    assert_eq!(
        listing["certificates"].as_array().unwrap().len(),
        1,
        "{listing}"
    );
    assert_eq!(listing["certificates"][0]["id"], new_cert);
    assert_eq!(listing["certificates"][0]["status"], "issued");

    // Revoking the new certificate in a one-step account: a request, approved, then revoked.
    emu.set_settings(Settings {
        approval: ApprovalMode::OneStep,
        polls_until_issued: 0,
        ..Settings::default()
    });
    let chain = get(
        &emu,
        &format!("/certificate/{new_cert}/download/format/pem_all"),
    )
    .text()
    .unwrap();
    let blocks: Vec<&str> = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    let (leaf, intermediate, root, crl) = (
        dir.path().join("leaf.pem"),
        dir.path().join("intermediate.pem"),
        dir.path().join("root.pem"),
        dir.path().join("crl.pem"),
    );
    std::fs::write(&leaf, blocks[0]).unwrap();
    std::fs::write(&intermediate, blocks[1]).unwrap();
    std::fs::write(&root, blocks[2]).unwrap();
    let verify = |crl_text: &str| {
        std::fs::write(&crl, crl_text).unwrap();
        openssl(&[
            "verify",
            "-crl_check",
            "-CRLfile",
            &p(&crl),
            "-CAfile",
            &p(&root),
            "-untrusted",
            &p(&intermediate),
            &p(&leaf),
        ])
    };
    let crl_text = admin_get(&emu, "/ca/intermediate.crl").text().unwrap();
    let before = verify(&crl_text);
    assert!(
        before.status.success(),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    let request = put(
        &emu,
        &format!("/certificate/{new_cert}/revoke"),
        json!({"comments": "key retired"}),
    );
    assert_eq!(request.status(), 201);
    let request = json_of(request);
    assert_eq!(
        (request["type"].as_str(), request["status"].as_str()),
        (Some("revoke"), Some("pending"))
    );
    assert_eq!(request["comments"], "key retired");
    let still = verify(&admin_get(&emu, "/ca/intermediate.crl").text().unwrap());
    assert!(still.status.success(), "not revoked before the approval");
    let approve = json!({"status": "approved", "processor_comment": "ok"});
    assert_eq!(
        put(&emu, &format!("/request/{}/status", request["id"]), approve).status(),
        204
    );
    let after = verify(&admin_get(&emu, "/ca/intermediate.crl").text().unwrap());
    let said = String::from_utf8_lossy(&after.stdout).to_string()
        + &String::from_utf8_lossy(&after.stderr);
    assert!(
        !after.status.success() && said.contains("certificate revoked"),
        "{said}"
    );
    assert_eq!(
        error_codes(&json_of(put(
            &emu,
            &format!("/certificate/{new_cert}/revoke"),
            json!({})
        )))[0]
            .0,
        "certificate_already_revoked"
    );

    // A renewal must name an order of the account, of the same product, renewed once.
    emu.set_settings(Settings {
        polls_until_issued: 0,
        ..Settings::default()
    });
    let mut renewal = email_order("openssl-p384.csr");
    renewal["alternative_order_id"] = json!("renewal1");
    renewal["renewal_of_order_id"] = json!(order_id);
    let renewed = post(
        &emu,
        "/order/certificate/code_signing_ev",
        &renewal.to_string(),
    );
    assert_eq!(renewed.status(), 201);
    let renewed_id = json_of(renewed)["id"].as_u64().unwrap();
    let old = json_of(get(&emu, &format!("/order/certificate/{order_id}")));
    assert_eq!(
        (
            old["is_renewed"].as_bool(),
            old["renewed_order_id"].as_u64()
        ),
        (Some(true), Some(renewed_id))
    );
    renewal["alternative_order_id"] = json!("renewal2");
    let twice = post(
        &emu,
        "/order/certificate/code_signing_ev",
        &renewal.to_string(),
    );
    assert_eq!(error_codes(&json_of(twice))[0].0, "order_renewed_already");
    renewal["renewal_of_order_id"] = json!(987_654_321);
    let unknown = post(
        &emu,
        "/order/certificate/code_signing_ev",
        &renewal.to_string(),
    );
    assert_eq!(
        error_codes(&json_of(unknown))[0].0,
        "order_not_eligible_for_renewal"
    );
    let other_product = post(&emu, "/order/certificate/code_signing", &{
        let mut body = email_order("openssl-p384.csr");
        body["alternative_order_id"] = json!("renewal3");
        body["renewal_of_order_id"] = json!(renewed_id);
        body.to_string()
    });
    assert_eq!(
        error_codes(&json_of(other_product))[0].0,
        "order_not_eligible_for_renewal"
    );

    // The whole order at once, skipping approval in an auto-approving account: 204, revoked.
    wait_issued(&emu, renewed_id);
    let revoked = put(
        &emu,
        &format!("/order/certificate/{renewed_id}/revoke"),
        json!({"skip_approval": true}),
    );
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        json_of(get(&emu, &format!("/order/certificate/{renewed_id}")))["status"],
        "revoked"
    );
}
