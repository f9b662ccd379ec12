//! The client over real HTTP on loopback against the emulator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::time::{Duration, Instant};

use certcentral::model::{
    CertificateDetails, ContainerRef, CustomField, OrderValidity, OrganizationRef, PaymentMethod,
    ProvisioningMethod, ServerPlatform, ShipInfo, ShipMethod, SignatureHash, Subject,
};
use certcentral::{
    ApiErrorKind, ApiKey, BaseUrl, CertCentralError, Client, ClientConfig, DownloadFormat,
    OrderProgress, OrderRequest, OrderStatus, Product, RequestDecision, RetryPolicy,
    ValidatedOrder,
};
use certcentral_emulator::{
    ApprovalMode, Emulator, EmulatorConfig, Fault, FaultRule, Route, Settings,
};
use codesign_testkit::fixture;
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "client-test-key-RECOGNIZABLE-7f3a";

fn emulator(settings: Settings) -> Emulator {
    let mut config = EmulatorConfig::new(KEY);
    config.settings = settings;
    Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn client_for(emu: &Emulator, key: &str) -> Client {
    let mut config = ClientConfig::new(
        BaseUrl::parse(&emu.api_base()).unwrap(),
        ApiKey::new(SecretString::from(key)).unwrap(),
    );
    config.timeout = Duration::from_secs(5);
    config.retry = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
    };
    Client::new(config).unwrap()
}

fn csr(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// A full EV order for an HSM key: every documented field that the emulator accepts together.
fn full_request() -> OrderRequest {
    OrderRequest {
        certificate: Some(CertificateDetails {
            csr: Some(csr("openssl-p384.csr")),
            signature_hash: Some(SignatureHash::Sha256),
            server_platform: Some(ServerPlatform { id: -1 }),
            organization_units: Some(vec!["Release Engineering".into()]),
            unknown: Default::default(),
        }),
        auto_renew: Some(0),
        additional_emails: Some(vec!["pki@example.com".into()]),
        renewal_of_order_id: None,
        skip_approval: Some(true),
        organization: Some(OrganizationRef {
            id: Some(123456),
            ..Default::default()
        }),
        container: Some(ContainerRef { id: 654321 }),
        order_validity: Some(OrderValidity {
            years: Some(1),
            ..Default::default()
        }),
        validity_years: None,
        validity_days: None,
        custom_expiration_date: None,
        cs_provisioning_method: Some(ProvisioningMethod::Email),
        ship_info: None,
        subject: None,
        custom_fields: Some(vec![CustomField {
            metadata_id: 12,
            value: "cost-center-42".into(),
        }]),
        payment_method: Some(PaymentMethod::Balance),
        alternative_order_id: Some("fullorder1".into()),
        enable_guest_access: Some(0),
        comments: Some("Message for the approver".into()),
        custom_renewal_message: Some("Renew this please.".into()),
        unknown: Default::default(),
    }
}

fn validated(request: OrderRequest) -> ValidatedOrder {
    ValidatedOrder::new(Product::CodeSigningEv, request, None).unwrap()
}

#[test]
fn the_api_page_example_round_trips_and_validates() {
    let text = std::fs::read_to_string(fixture("api-page-example-order.json")).unwrap();
    let original: Value = serde_json::from_str(&text).unwrap();
    let request = OrderRequest::from_json(&text).unwrap();
    assert_eq!(
        request.to_json(),
        original,
        "serializes back to the same JSON"
    );
    assert_eq!(
        request.ship_info.as_ref().unwrap().method,
        Some(ShipMethod::Expedited)
    );
    let order = ValidatedOrder::new(Product::CodeSigningEv, request.clone(), None).unwrap();
    // Validation only adds the alternative order ID.
    let mut sent = order.request().to_json();
    sent.as_object_mut().unwrap().remove("alternative_order_id");
    assert_eq!(sent, original);
    assert_eq!(order.alternative_order_id().len(), 32);
}

#[tokio::test]
async fn every_field_reaches_the_server_as_the_docs_name_it() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    let order = validated(full_request());
    let placed = client.place_order(&order).await.unwrap();
    assert!(!placed.recovered);
    assert!(placed.certificate_id.is_some(), "auto-approved");
    let seen = emu.last_request_body(Route::CreateOrder).unwrap();
    assert_eq!(seen, order.request().to_json());
    let expected_keys = [
        "certificate",
        "auto_renew",
        "additional_emails",
        "skip_approval",
        "organization",
        "container",
        "order_validity",
        "cs_provisioning_method",
        "custom_fields",
        "payment_method",
        "alternative_order_id",
        "enable_guest_access",
        "comments",
        "custom_renewal_message",
    ];
    for key in expected_keys {
        assert!(seen.get(key).is_some(), "{key} missing from {seen}");
    }
    assert_eq!(seen["certificate"]["signature_hash"], "sha256");
    assert_eq!(seen["certificate"]["server_platform"]["id"], -1);
    assert_eq!(
        seen["certificate"]["organization_units"][0],
        "Release Engineering"
    );
    assert_eq!(seen["order_validity"]["years"], 1);
    assert_eq!(seen["custom_fields"][0]["metadata_id"], 12);

    // The deprecated and the ship_token fields too (the example body, as sent).
    let example = OrderRequest::from_json(
        &std::fs::read_to_string(fixture("api-page-example-order.json")).unwrap(),
    )
    .unwrap();
    let order = validated(example);
    client.place_order(&order).await.unwrap();
    let seen = emu.last_request_body(Route::CreateOrder).unwrap();
    assert_eq!(seen["ship_info"]["method"], "EXPEDITED");
    assert_eq!(seen["ship_info"]["addr2"], "Floor 74");
    let mut deprecated = full_request();
    deprecated.order_validity = None;
    deprecated.validity_years = Some(1);
    deprecated.alternative_order_id = None;
    let order = validated(deprecated);
    client.place_order(&order).await.unwrap();
    assert_eq!(
        emu.last_request_body(Route::CreateOrder).unwrap()["validity_years"],
        1
    );
}

#[tokio::test]
async fn a_503_then_201_orders_once() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::Status { status: 503 },
        count: 1,
    });
    let order = validated(full_request());
    let placed = client.place_order(&order).await.unwrap();
    assert!(!placed.recovered);
    assert_eq!(emu.orders_with_alternative_id("fullorder1"), 1);
    assert_eq!(emu.order_count(), 1);
}

#[tokio::test]
async fn a_dropped_connection_after_the_commit_ends_with_exactly_one_order() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::DropAfterCommit,
        count: 1,
    });
    let order = validated(full_request());
    let placed = client.place_order(&order).await.unwrap();
    assert!(
        placed.recovered,
        "found through the alternative ID, not ordered again"
    );
    assert_eq!(emu.orders_with_alternative_id("fullorder1"), 1);
    assert_eq!(emu.order_count(), 1);
    // Placing the same order again (a restart after a crash) finds it too.
    let again = client.place_order(&order).await.unwrap();
    assert_eq!(again.order_id, placed.order_id);
    assert!(again.recovered);
    assert_eq!(emu.order_count(), 1);
}

#[tokio::test]
async fn an_unreadable_answer_after_the_commit_is_recovered() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::MalformedJson,
        count: 1,
    });
    let placed = client
        .place_order(&validated(full_request()))
        .await
        .unwrap();
    assert!(placed.recovered);
    assert_eq!(emu.order_count(), 1);
}

#[tokio::test]
async fn a_new_order_is_sent_without_a_lookup_but_every_resend_looks_first() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    let lookups = || emu.requests_seen(Route::OrdersByAlternativeId);
    let placed = client
        .place_new_order(&validated(full_request()))
        .await
        .unwrap();
    assert!(!placed.recovered);
    assert_eq!(lookups(), 0, "a new order is sent at once");
    assert_eq!(emu.order_count(), 1);

    // The connection drops after the order is made: the re-send looks first, and finds it.
    let mut second = full_request();
    second.alternative_order_id = Some("neworder2".to_string());
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::DropAfterCommit,
        count: 1,
    });
    let placed = client.place_new_order(&validated(second)).await.unwrap();
    assert!(placed.recovered);
    assert_eq!(lookups(), 1);
    assert_eq!(emu.orders_with_alternative_id("neworder2"), 1);
    assert_eq!(emu.order_count(), 2);

    // place_order looks before its first send too.
    let mut third = full_request();
    third.alternative_order_id = Some("neworder3".to_string());
    client.place_order(&validated(third)).await.unwrap();
    assert_eq!(lookups(), 2);
    assert_eq!(emu.order_count(), 3);
}

#[tokio::test]
async fn a_429_is_retried_after_the_wait() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::RateLimited {
            retry_after: Some(1),
        },
        count: 1,
    });
    let started = Instant::now();
    client
        .place_order(&validated(full_request()))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(emu.order_count(), 1);
    // Without Retry-After: backoff, then success; GETs retry the same way, and on 5xx.
    emu.add_fault(FaultRule {
        route: Route::OrderInfo,
        fault: Fault::RateLimited { retry_after: None },
        count: 1,
    });
    emu.add_fault(FaultRule {
        route: Route::OrderInfo,
        fault: Fault::Status { status: 500 },
        count: 2,
    });
    let order = client
        .find_order_by_alternative_id("fullorder1")
        .await
        .unwrap()
        .unwrap();
    let info = client.order_info(order.order_id).await.unwrap();
    assert_eq!(info.id, order.order_id);
}

#[tokio::test]
async fn retries_run_out_with_the_last_failure_kept() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::Status { status: 503 },
        count: 50,
    });
    let err = client
        .place_order(&validated(full_request()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CertCentralError::GaveUp { attempts: 5, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(emu.order_count(), 0);
}

#[tokio::test]
async fn a_400_with_two_error_codes_surfaces_both() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    let mut request = full_request();
    request.organization = Some(OrganizationRef {
        id: Some(999),
        ..Default::default()
    });
    request.container = Some(ContainerRef { id: 1 });
    let err = client.place_order(&validated(request)).await.unwrap_err();
    let CertCentralError::Api {
        status,
        kind,
        errors,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*status, *kind), (404, ApiErrorKind::NotFound));
    let codes: Vec<&str> = errors.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["not_found|organization", "not_found|container"]);
    let text = err.to_string();
    assert!(
        text.contains("not_found|organization") && text.contains("not_found|container"),
        "{text}"
    );
    assert_eq!(err.api_codes(), codes);
}

#[tokio::test]
async fn the_api_key_appears_in_no_output_or_error() {
    let emu = emulator(Settings::default());
    let wrong = "wrong-key-RECOGNIZABLE-91c2";
    let client = client_for(&emu, wrong);
    let err = client
        .place_order(&validated(full_request()))
        .await
        .unwrap_err();
    let CertCentralError::Api { kind, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*kind, ApiErrorKind::Unauthorized);
    for text in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
        assert!(!text.contains(wrong) && !text.contains(KEY), "{text}");
    }
    let good = client_for(&emu, KEY);
    assert!(!format!("{good:?}").contains(KEY));
    // A transport failure names no key either.
    let dead = Emulator::start(EmulatorConfig::new(KEY), "127.0.0.1:0".parse().unwrap()).unwrap();
    let dead_client = client_for(&dead, KEY);
    dead.stop();
    let err = dead_client
        .order_info(certcentral::OrderId(1))
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(KEY), "{err:?}");
}

#[tokio::test]
async fn orders_are_followed_to_the_certificate() {
    let emu = emulator(Settings {
        approval: ApprovalMode::TwoStep,
        polls_until_issued: 2,
        ..Settings::default()
    });
    let client = client_for(&emu, KEY);
    let placed = client
        .place_order(&validated(full_request()))
        .await
        .unwrap();
    let request_id = placed.requests[0].id;
    assert_eq!(
        client.check_order(placed.order_id).await.unwrap(),
        OrderProgress::Pending(OrderStatus::NeedsApproval)
    );
    client
        .update_request_status(request_id, RequestDecision::Approve, "first")
        .await
        .unwrap();
    client
        .update_request_status(request_id, RequestDecision::Approve, "second")
        .await
        .unwrap();
    let cert = client
        .wait_for_issuance(placed.order_id, Duration::from_secs(10))
        .await
        .unwrap();
    let chain = client.download_chain(cert).await.unwrap();
    assert_eq!(chain.cas.len(), 2);
    // JSON calls ask for JSON; downloads ask as DigiCert's examples do, not for JSON.
    assert_eq!(
        emu.last_accept(Route::OrderInfo),
        Some(Some("application/json".to_string()))
    );
    let download_accept = emu.last_accept(Route::Download).unwrap();
    assert!(
        download_accept
            .as_deref()
            .is_none_or(|a| !a.contains("json")),
        "{download_accept:?}"
    );
    let leaf_alone = client
        .download(cert, DownloadFormat::PemNoIntermediate)
        .await
        .unwrap();
    let leaf_chain = certcentral::Chain::from_pem(&leaf_alone).unwrap();
    assert_eq!(leaf_chain.leaf, chain.leaf);
    let by_order = client
        .download_by_order(placed.order_id, DownloadFormat::PemAll)
        .await
        .unwrap();
    assert_eq!(
        certcentral::Chain::from_pem(&by_order).unwrap().leaf,
        chain.leaf
    );
    let p7b = client.download(cert, DownloadFormat::P7b).await.unwrap();
    assert!(String::from_utf8_lossy(&p7b).starts_with("-----BEGIN PKCS7-----"));

    // A rejected order fails the wait; a canceled one too.
    let mut second = full_request();
    second.alternative_order_id = Some("second1".into());
    let placed = client.place_order(&validated(second)).await.unwrap();
    client
        .update_request_status(placed.requests[0].id, RequestDecision::Reject, "no")
        .await
        .unwrap();
    let err = client
        .wait_for_issuance(placed.order_id, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, CertCentralError::OrderFailed { .. }), "{err}");
    let mut third = full_request();
    third.alternative_order_id = Some("third1".into());
    let placed = client.place_order(&validated(third)).await.unwrap();
    let err = client
        .wait_for_issuance(placed.order_id, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CertCentralError::StillPending { .. }),
        "{err}"
    );
    // Only a pending (approved, not yet issued) order is canceled, as the docs say.
    let err = client
        .cancel_order(placed.order_id, "not needed")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs_approval"), "{err}");
    for comment in ["first", "second"] {
        client
            .update_request_status(placed.requests[0].id, RequestDecision::Approve, comment)
            .await
            .unwrap();
    }
    client
        .cancel_order(placed.order_id, "not needed")
        .await
        .unwrap();
    assert_eq!(
        client.check_order(placed.order_id).await.unwrap(),
        OrderProgress::Failed(OrderStatus::Canceled)
    );
    let err = client
        .order_info(certcentral::OrderId(42))
        .await
        .unwrap_err();
    assert_eq!(err.api_codes(), ["not_found|order"]);
}

#[tokio::test]
async fn organizations_are_created_validated_and_listed() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    let id = client
        .create_organization(&json!({
            "name": "Signing Co", "address": "1 Main St", "city": "Lehi", "state": "UT", "zip": "84043",
            "country": "us", "telephone": "+1 555 0101",
            "organization_contact": {"first_name": "A", "last_name": "B", "email": "a@example.com", "telephone": "+1 555 0102"}
        }))
        .await
        .unwrap();
    client
        .submit_validation(id, &["cs", "ev_cs"], &json!([{"id": 7}]))
        .await
        .unwrap();
    let validations = client.organization_validations(id).await.unwrap();
    let kinds: Vec<&str> = validations
        .validations
        .iter()
        .map(|v| v.kind.as_str())
        .collect();
    assert_eq!(kinds, ["cs", "ev_cs"]);
    let orgs = client.list_organizations().await.unwrap();
    assert!(orgs.organizations.iter().any(|o| o.id == id));
}

/// One body per rule, each breaking it; the clean body passes.
#[test]
fn every_validation_rule_is_enforced_before_anything_is_sent() {
    type Patch = fn(&mut OrderRequest);
    let cases: Vec<(Product, Patch, &str)> = vec![
        (
            Product::CodeSigningEv,
            |r| {
                r.certificate.as_mut().unwrap().signature_hash =
                    Some(SignatureHash::Other("sha1".into()))
            },
            "certificate.signature_hash",
        ),
        (
            Product::CodeSigningEv,
            |r| r.certificate.as_mut().unwrap().signature_hash = None,
            "certificate.signature_hash",
        ),
        (
            Product::CodeSigningEv,
            |r| r.certificate = None,
            "certificate",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.order_validity = Some(OrderValidity {
                    years: Some(4),
                    ..Default::default()
                })
            },
            "order_validity.years",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.order_validity = Some(OrderValidity {
                    years: Some(0),
                    ..Default::default()
                })
            },
            "order_validity.years",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.order_validity = Some(OrderValidity {
                    days: Some(5000),
                    ..Default::default()
                })
            },
            "order_validity.days",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.order_validity = Some(OrderValidity {
                    custom_expiration_date: Some("2030-01-01".into()),
                    ..Default::default()
                })
            },
            "order_validity.custom_expiration_date",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.order_validity = Some(OrderValidity {
                    custom_expiration_date: Some("01 JAN 2001".into()),
                    ..Default::default()
                })
            },
            "order_validity.custom_expiration_date",
        ),
        (
            Product::CodeSigningEv,
            |r| r.order_validity = Some(OrderValidity::default()),
            "order_validity.years",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.order_validity = None;
                r.validity_years = Some(5);
            },
            "validity_years",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.order_validity = None;
                r.custom_expiration_date = Some("09 JUN 2030".into());
            },
            "custom_expiration_date",
        ),
        (
            Product::CodeSigningEv,
            |r| r.order_validity = None,
            "order_validity",
        ),
        (
            Product::CodeSigning,
            |r| {
                r.cs_provisioning_method = Some(ProvisioningMethod::ClientApp);
                r.certificate.as_mut().unwrap().server_platform = None;
            },
            "certificate.server_platform",
        ),
        (
            Product::CodeSigning,
            |r| {
                r.cs_provisioning_method = None;
                r.certificate.as_mut().unwrap().server_platform = None;
            },
            "certificate.server_platform",
        ),
        (
            Product::CodeSigningEv,
            |r| r.certificate.as_mut().unwrap().csr = None,
            "certificate.csr",
        ),
        (
            Product::CodeSigning,
            |r| {
                r.cs_provisioning_method = None;
                let c = r.certificate.as_mut().unwrap();
                c.csr = None;
                c.server_platform = Some(ServerPlatform { id: 55 });
            },
            "certificate.csr",
        ),
        (
            Product::CodeSigningEv,
            |r| r.certificate.as_mut().unwrap().csr = Some("not pem".into()),
            "certificate.csr",
        ),
        (
            Product::CodeSigningEv,
            |r| r.cs_provisioning_method = None,
            "cs_provisioning_method",
        ),
        (
            Product::CodeSigningEv,
            |r| r.cs_provisioning_method = Some(ProvisioningMethod::Other("pigeon".into())),
            "cs_provisioning_method",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.ship_info = Some(ShipInfo {
                    name: Some("x".into()),
                    method: Some(ShipMethod::Standard),
                    ..Default::default()
                })
            },
            "ship_info.addr1",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.ship_info = Some(ShipInfo {
                    name: Some("x".into()),
                    addr1: Some("a".into()),
                    city: Some("c".into()),
                    state: Some("s".into()),
                    zip: Some("z".into()),
                    country: Some("us".into()),
                    method: Some(ShipMethod::Other("OVERNIGHT".into())),
                    ..Default::default()
                })
            },
            "ship_info.method",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.ship_info = Some(ShipInfo {
                    name: Some("x".into()),
                    addr1: Some("a".into()),
                    city: Some("c".into()),
                    state: Some("s".into()),
                    zip: Some("z".into()),
                    country: Some("us".into()),
                    ..Default::default()
                })
            },
            "ship_info.method",
        ),
        (
            Product::CodeSigningEv,
            |r| r.alternative_order_id = Some("has-dash".into()),
            "alternative_order_id",
        ),
        (
            Product::CodeSigningEv,
            |r| r.alternative_order_id = Some("a".repeat(65)),
            "alternative_order_id",
        ),
        (
            Product::CodeSigningEv,
            |r| r.payment_method = Some(PaymentMethod::Other("cash".into())),
            "payment_method",
        ),
        (
            Product::CodeSigningEv,
            |r| r.enable_guest_access = Some(2),
            "enable_guest_access",
        ),
        (
            Product::CodeSigningEv,
            |r| r.organization = None,
            "organization",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.organization = Some(OrganizationRef {
                    id: Some(0),
                    ..Default::default()
                })
            },
            "organization.id",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.organization = Some(OrganizationRef {
                    name: Some("New Co".into()),
                    ..Default::default()
                })
            },
            "organization.address",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.organization = Some(OrganizationRef {
                    name: Some("New Co".into()),
                    ..Default::default()
                })
            },
            "organization.organization_contact",
        ),
        (
            Product::CodeSigning,
            |r| {
                r.subject = Some(Subject {
                    email: Some("not-an-address".into()),
                })
            },
            "subject.email",
        ),
        (
            Product::CodeSigningEv,
            |r| {
                r.unknown.insert("skip_aproval".into(), json!(true));
            },
            "skip_aproval",
        ),
        (Product::Other("ssl_plus".into()), |_| {}, "product"),
    ];
    for (product, patch, path) in cases {
        let mut request = full_request();
        patch(&mut request);
        let errors = ValidatedOrder::new(product.clone(), request, None).unwrap_err();
        assert!(
            errors.iter().any(|e| e.path == path),
            "{product}/{path}: {errors}"
        );
        assert!(errors.to_string().contains(path));
    }
    // The clean body passes; a subject.email on EV is a warning, not an error.
    let mut ev_with_email = full_request();
    ev_with_email.subject = Some(Subject {
        email: Some("a@example.com".into()),
    });
    let order = ValidatedOrder::new(Product::CodeSigningEv, ev_with_email, None).unwrap();
    assert!(order.warnings().iter().any(|w| w.contains("subject.email")));
    let mut two_forms = full_request();
    two_forms.order_validity = Some(OrderValidity {
        years: Some(1),
        days: Some(30),
        ..Default::default()
    });
    let order = ValidatedOrder::new(Product::CodeSigningEv, two_forms, None).unwrap();
    assert!(order.warnings().iter().any(|w| w.contains("overrides")));
    // That a refused order sends nothing is seen from the server's side, with a client that
    // validates before it sends: `crates/cli/tests/order_cli.rs`,
    // `a_validation_failure_exits_1_naming_every_path_and_sends_nothing`. Here nothing can send:
    // only a `ValidatedOrder` can be placed.

    // Every problem at once.
    let mut many = full_request();
    many.payment_method = Some(PaymentMethod::Other("cash".into()));
    many.enable_guest_access = Some(9);
    many.order_validity = None;
    let errors = ValidatedOrder::new(Product::CodeSigningEv, many, None).unwrap_err();
    assert_eq!(errors.0.len(), 3, "{errors}");
}

#[test]
fn a_csr_check_supplied_by_the_caller_is_applied() {
    struct Refuse;
    impl certcentral::CsrCheck for Refuse {
        fn check(&self, _: &str) -> Result<(), Vec<String>> {
            Err(vec![
                "this key is RSA-2048".into(),
                "the signature does not verify".into(),
            ])
        }
    }
    let errors =
        ValidatedOrder::new(Product::CodeSigningEv, full_request(), Some(&Refuse)).unwrap_err();
    let csr_errors: Vec<&str> = errors
        .iter()
        .filter(|e| e.path == "certificate.csr")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        csr_errors,
        ["this key is RSA-2048", "the signature does not verify"]
    );
}

fn organization(name: &str) -> Value {
    json!({
        "name": name, "address": "1 Main St", "city": "Lehi", "state": "UT", "zip": "84043",
        "country": "us", "telephone": "+1 555 0101",
        "organization_contact": {"first_name": "A", "last_name": "B", "email": "a@example.com", "telephone": "+1 555 0102"}
    })
}

/// Creating an organization is a POST that is not safe to repeat: an answer lost after the
/// emulator created it must not lead to a second organization.
#[tokio::test]
async fn an_organization_whose_answer_was_lost_is_created_once() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    let named = |orgs: certcentral::response::Organizations, name: &str| -> Vec<_> {
        orgs.organizations
            .into_iter()
            .filter(|o| o.name == name)
            .map(|o| o.id)
            .collect()
    };
    // One of that name exists already: it must not be taken for the new one.
    let older = client
        .create_organization(&organization("Lost Answer Co"))
        .await
        .unwrap();
    emu.add_fault(FaultRule {
        route: Route::CreateOrganization,
        fault: Fault::DropAfterCommit,
        count: 1,
    });
    let id = client
        .create_organization(&organization("Lost Answer Co"))
        .await
        .unwrap();
    assert_ne!(id, older);
    let ids = named(client.list_organizations().await.unwrap(), "Lost Answer Co");
    assert_eq!(ids.len(), 2, "one older, one new, no third: {ids:?}");
    assert!(ids.contains(&id));
    assert_eq!(emu.requests_seen(Route::CreateOrganization), 2);

    // A 503 before anything is created: created once on the retry.
    emu.add_fault(FaultRule {
        route: Route::CreateOrganization,
        fault: Fault::Status { status: 503 },
        count: 1,
    });
    let third = client
        .create_organization(&organization("Retried Co"))
        .await
        .unwrap();
    assert_eq!(
        named(client.list_organizations().await.unwrap(), "Retried Co"),
        [third]
    );
}

/// An alternative order ID already carried by another order (another CSR, another product) is
/// refused instead of being reported as this order; the same order again is found.
#[tokio::test]
async fn an_alternative_order_id_taken_by_another_order_is_refused() {
    let emu = emulator(Settings::default());
    let client = client_for(&emu, KEY);
    let with = |product: Product, csr_file: &str| {
        let mut request = full_request();
        request.certificate.as_mut().unwrap().csr = Some(csr(csr_file));
        request.alternative_order_id = Some("takenId01".into());
        ValidatedOrder::new(product, request, None).unwrap()
    };
    let first = client
        .place_order(&with(Product::CodeSigningEv, "openssl-p384.csr"))
        .await
        .unwrap();
    assert!(!first.recovered);
    for (product, csr_file, says) in [
        (
            Product::CodeSigningEv,
            "openssl-rsa3072.csr",
            "it was ordered with another CSR",
        ),
        (
            Product::CodeSigning,
            "openssl-p384.csr",
            "it is a code_signing_ev order, not code_signing",
        ),
    ] {
        let err = client
            .place_order(&with(product, csr_file))
            .await
            .unwrap_err();
        assert!(
            matches!(err, CertCentralError::AlternativeIdTaken { .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("takenId01") && text.contains(says), "{text}");
    }
    let again = client
        .place_order(&with(Product::CodeSigningEv, "openssl-p384.csr"))
        .await
        .unwrap();
    assert!(again.recovered);
    assert_eq!(again.order_id, first.order_id);
    assert_eq!(emu.order_count(), 1);
}

/// A shared buffer the log subscriber writes into.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A Retry-After far longer than the client waits is said, with both figures, not waited out in
/// silence.
#[tokio::test]
async fn a_long_retry_after_is_capped_and_said() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let emu = emulator(Settings::default());
    let mut config = ClientConfig::new(
        BaseUrl::parse(&emu.api_base()).unwrap(),
        ApiKey::new(SecretString::from(KEY)).unwrap(),
    );
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(1),
    };
    let client = Client::new(config).unwrap();
    emu.add_fault(FaultRule {
        route: Route::Organizations,
        fault: Fault::RateLimited {
            retry_after: Some(100_000),
        },
        count: 1,
    });
    let started = Instant::now();
    client.list_organizations().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    let said = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        said.contains("listing organizations")
            && said.contains("every request of this client waits 1 s")
            && said.contains("Retry-After asked for 100000 s; the client waits at most 1 s"),
        "{said}"
    );
}

/// Free text is bounded: a runaway comment or custom field value is refused by path before
/// anything is sent.
#[test]
fn strings_of_the_body_are_bounded() {
    let mut request = full_request();
    request.comments = Some("x".repeat(1025));
    request.custom_fields.as_mut().unwrap()[0].value = "v".repeat(256);
    let errors = ValidatedOrder::new(Product::CodeSigningEv, request, None).unwrap_err();
    let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        said.contains(&"comments: must be at most 1024 characters; got 1025".to_string()),
        "{said:?}"
    );
    assert!(
        said.contains(
            &"custom_fields[0].value: must be at most 255 characters; got 256".to_string()
        ),
        "{said:?}"
    );
    let mut request = full_request();
    request.comments = Some("é".repeat(1024));
    assert!(ValidatedOrder::new(Product::CodeSigningEv, request, None).is_ok());
}

/// An answer slower than the client's timeout, from a server that commits the order and then
/// takes its time: the client gives up on the answer, looks the order up by its alternative ID
/// before any re-send, and finds the committed order. One order, one POST.
#[tokio::test]
async fn a_late_answer_to_a_committed_order_is_found_not_ordered_again() {
    let emu = emulator(Settings::default());
    let mut config = ClientConfig::new(
        BaseUrl::parse(&emu.api_base()).unwrap(),
        ApiKey::new(SecretString::from(KEY)).unwrap(),
    );
    config.timeout = Duration::from_millis(300);
    config.retry = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(1),
    };
    let client = Client::new(config).unwrap();
    // The handler runs and commits; the answer comes 2 s later, long after the client gave up.
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::DelayAfterCommit { millis: 2_000 },
        count: 1,
    });
    let mut request = full_request();
    request.alternative_order_id = Some("lateanswer1".into());
    let placed = client.place_order(&validated(request)).await.unwrap();
    assert!(placed.recovered, "found by its alternative ID: {placed:?}");
    assert_eq!(emu.order_count(), 1, "no second order");
    assert_eq!(emu.requests_seen(Route::CreateOrder), 1, "one POST");
    // Looked up before the first send and again before any re-send.
    assert!(emu.requests_seen(Route::OrdersByAlternativeId) >= 2);
    assert_eq!(
        emu.orders_with_alternative_id("lateanswer1"),
        1,
        "one order carries the alternative ID"
    );
}

/// Many orders waiting at once are watched through one status-changes request a round: while
/// none changes, no order is asked about; once approved, each is asked about when the listing
/// shows it changed. Polling each order every round (as one waiting order is) would cost some
/// hundred order-info requests here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiting_orders_are_watched_through_status_changes() {
    let emu = emulator(Settings {
        approval: ApprovalMode::OneStep,
        polls_until_issued: 1,
        ..Settings::default()
    });
    let client = client_for(&emu, KEY);
    let waiting = 12;
    let mut placed = Vec::new();
    for n in 0..waiting {
        let mut request = full_request();
        request.alternative_order_id = Some(format!("watched{n}"));
        placed.push(client.place_order(&validated(request)).await.unwrap());
    }
    let waiters: Vec<_> = placed
        .iter()
        .map(|p| {
            let client = client.clone();
            let order_id = p.order_id;
            tokio::spawn(async move {
                client
                    .wait_for_issuance(order_id, Duration::from_secs(30))
                    .await
            })
        })
        .collect();
    // Two seconds of waiting with rounds of at most 100 ms: every order is asked about once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked_while_unchanged = emu.requests_seen(Route::OrderInfo);
    assert_eq!(asked_while_unchanged, waiting as u64);
    assert!(emu.requests_seen(Route::StatusChanges) >= 5);

    for order in &placed {
        client
            .update_request_status(order.requests[0].id, RequestDecision::Approve, "ok")
            .await
            .unwrap();
    }
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    // Approved (needs_approval -> pending), then issued: at most two more asks per order.
    let asked = emu.requests_seen(Route::OrderInfo);
    assert!(
        asked <= 3 * waiting as u64,
        "{asked} order-info requests for {waiting} orders"
    );
    // One order waiting alone is polled as before: no listing is asked for it.
    let listings = emu.requests_seen(Route::StatusChanges);
    let mut alone = full_request();
    alone.alternative_order_id = Some("alone".into());
    let alone = client.place_order(&validated(alone)).await.unwrap();
    client
        .update_request_status(alone.requests[0].id, RequestDecision::Approve, "ok")
        .await
        .unwrap();
    client
        .wait_for_issuance(alone.order_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(emu.requests_seen(Route::StatusChanges), listings);
}

/// Every call's future can be spawned onto a multi-threaded runtime (it is `Send`): a library
/// whose calls must be driven with `block_on` would be a trap.
#[test]
fn every_call_can_be_spawned() {
    fn spawnable<T: Send + 'static>(_: T) {}
    fn sendable<T: Send>(_: &T) {}
    let client = Client::new(ClientConfig::new(
        BaseUrl::parse("http://127.0.0.1:9/services/v2").unwrap(),
        ApiKey::new(SecretString::from(KEY)).unwrap(),
    ))
    .unwrap();
    let order = validated(full_request());
    let organization = json!({ "name": "Example Corp" });
    sendable(&client.place_order(&order));
    sendable(&client.place_new_order(&order));
    sendable(&client.create_organization(&organization));
    sendable(&client.wait_for_issuance(certcentral::OrderId(1), Duration::ZERO));
    sendable(&client.download_chain(certcentral::CertificateId(1)));
    sendable(&client.status_changes(Duration::from_secs(60)));
    let owned = client.clone();
    spawnable(async move {
        owned
            .wait_for_issuance(certcentral::OrderId(1), Duration::ZERO)
            .await
    });
}

/// A reissue whose answer comes after the client gave up (the server made it) is found in the
/// order's reissue list by its CSR, not asked for twice; it is followed to issuance, the order's
/// certificate replaced. Revoking it: a request that waits (201) in a one-step account; at once
/// (204) with skip_approval in an auto-approving one; again: already revoked.
#[tokio::test]
async fn a_reissue_is_made_once_and_a_revoke_says_how_it_ended() {
    let emu = emulator(Settings {
        polls_until_issued: 0,
        ..Settings::default()
    });
    let mut config = ClientConfig::new(
        BaseUrl::parse(&emu.api_base()).unwrap(),
        ApiKey::new(SecretString::from(KEY)).unwrap(),
    );
    config.timeout = Duration::from_millis(300);
    config.retry = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(1),
    };
    let client = Client::new(config).unwrap();
    let placed = client
        .place_order(&validated(full_request()))
        .await
        .unwrap();
    let first = client
        .wait_for_issuance(placed.order_id, Duration::from_secs(10))
        .await
        .unwrap();

    emu.add_fault(FaultRule {
        route: Route::Reissue,
        fault: Fault::DelayAfterCommit { millis: 2_000 },
        count: 1,
    });
    let csr = csr("openssl-rsa3072.csr");
    let reissued = client
        .reissue(
            placed.order_id,
            &csr,
            json!({ "skip_approval": true }),
            false,
        )
        .await
        .unwrap();
    assert!(
        reissued.recovered,
        "found in the reissue list: {reissued:?}"
    );
    let listed = client.list_reissues(placed.order_id).await.unwrap();
    assert_eq!(listed.certificates.len(), 1, "one reissue: {listed:?}");
    let second = client
        .wait_for_issuance(placed.order_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_ne!(second, first);
    assert_eq!(Some(second), reissued.certificate_id);
    let chain = client.download_chain(second).await.unwrap();
    let leaf_key = openssl_pubkey_of_cert(&chain.leaf);
    assert_eq!(leaf_key, openssl_pubkey_of_csr("openssl-rsa3072.csr"));

    emu.set_settings(Settings {
        approval: ApprovalMode::OneStep,
        polls_until_issued: 0,
        ..Settings::default()
    });
    let requested = client
        .revoke(
            certcentral::RevokeTarget::Certificate(second),
            "key retired",
            false,
        )
        .await
        .unwrap();
    assert!(
        matches!(&requested, certcentral::Revocation::Requested(r) if r.status == "pending"),
        "{requested:?}"
    );
    emu.set_settings(Settings {
        polls_until_issued: 0,
        ..Settings::default()
    });
    let order = certcentral::RevokeTarget::Order(placed.order_id);
    assert_eq!(
        client.revoke(order, "retired", true).await.unwrap(),
        certcentral::Revocation::Revoked
    );
    assert_eq!(
        client.check_order(placed.order_id).await.unwrap(),
        OrderProgress::Failed(OrderStatus::Revoked)
    );
    assert_eq!(
        client.revoke(order, "retired", true).await.unwrap(),
        certcentral::Revocation::AlreadyRevoked
    );
}

fn openssl_pubkey_of_cert(der: &[u8]) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("client-test-leaf-{}.der", std::process::id()));
    std::fs::write(&path, der).unwrap();
    let key = codesign_testkit::openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        path.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ])
    .stdout;
    let _ = std::fs::remove_file(&path);
    key
}

fn openssl_pubkey_of_csr(name: &str) -> Vec<u8> {
    codesign_testkit::openssl(&[
        "req",
        "-in",
        fixture(name).to_str().unwrap(),
        "-noout",
        "-pubkey",
    ])
    .stdout
}
