//! Property tests across crates: the order model round-trips generated bodies, and the client's
//! validator and the emulator (written apart) agree on every generated body: on the verdict, and
//! on every problem reported, by its JSON path, with up to three rules broken at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::sync::OnceLock;

use certcentral_emulator::{Emulator, EmulatorConfig, Settings};
use codesign_kit::KeysCsrCheck;
use codesign_kit::order::{OrderRequest, Product, ValidatedOrder};
use codesign_testkit::fixture;
use proptest::prelude::*;
use serde_json::{Value, json};

const KEY: &str = "properties-key";

fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        let mut config = EmulatorConfig::new(KEY);
        config.settings = Settings {
            rate_limits: false,
            ..Settings::default()
        };
        Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
    })
}

fn http() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::blocking::Client::new()
    })
}

fn date_in(days: i64, iso: bool) -> String {
    let date = (time::OffsetDateTime::now_utc() + time::Duration::days(days)).date();
    if iso {
        format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        )
    } else {
        const MONTHS: [&str; 12] = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        format!(
            "{:02} {} {:04}",
            date.day(),
            MONTHS[u8::from(date.month()) as usize - 1],
            date.year()
        )
    }
}

fn csr(name: &str) -> Value {
    json!(std::fs::read_to_string(fixture(name)).unwrap())
}

fn new_org() -> Value {
    json!({"name": "New Co", "address": "1 Main St", "city": "Lehi", "state": "UT", "zip": "84043",
           "country": "us", "telephone": "+1 555 0101",
           "organization_contact": {"first_name": "A", "last_name": "B", "email": "a@example.com", "telephone": "+1 555 0102"}})
}

/// The rules a generated body may break (at most one each), by number; 0 breaks none.
const BREAKS: u8 = 25;

/// Breaks rule `n` of a valid body.
fn break_rule(product: &Product, body: &mut Value, n: u8) {
    let obj = body.as_object_mut().unwrap();
    match n {
        1 => obj["certificate"]["signature_hash"] = json!("sha1"),
        2 => {
            obj["certificate"]
                .as_object_mut()
                .unwrap()
                .remove("signature_hash");
        }
        3 => {
            obj.insert("cs_provisioning_method".into(), json!("pigeon"));
        }
        4 => {
            if *product == Product::CodeSigningEv {
                obj.remove("cs_provisioning_method");
            } else {
                obj.insert("cs_provisioning_method".into(), json!("client_app"));
                obj["certificate"]
                    .as_object_mut()
                    .unwrap()
                    .remove("server_platform");
            }
        }
        5 => {
            obj.insert("cs_provisioning_method".into(), json!("client_app"));
            obj["certificate"]
                .as_object_mut()
                .unwrap()
                .remove("server_platform");
        }
        6 => {
            obj.insert("cs_provisioning_method".into(), json!("email"));
            obj["certificate"].as_object_mut().unwrap().remove("csr");
        }
        7 => {
            if *product == Product::CodeSigning {
                obj.remove("cs_provisioning_method");
                obj["certificate"]["server_platform"] = json!({"id": 55});
                obj["certificate"].as_object_mut().unwrap().remove("csr");
            } else {
                obj["certificate"]["signature_hash"] = json!("md5");
            }
        }
        8 => obj["certificate"]["csr"] = csr("openssl-rsa2048.csr"),
        9 => obj["organization"] = json!({"id": 0}),
        10 => obj["organization"] = json!({"name": "New Co", "city": "Lehi"}),
        11 => {
            obj.remove("validity_years");
            obj.remove("custom_expiration_date");
            obj.insert("order_validity".into(), json!({"years": 4}));
        }
        12 => {
            obj.remove("validity_years");
            obj.remove("custom_expiration_date");
            obj.insert("order_validity".into(), json!({"days": 5000}));
        }
        13 => {
            obj.remove("validity_years");
            obj.remove("custom_expiration_date");
            obj.insert(
                "order_validity".into(),
                json!({"custom_expiration_date": date_in(100, true)}),
            );
        }
        14 => {
            obj.remove("order_validity");
            obj.remove("validity_years");
            obj.remove("custom_expiration_date");
        }
        15 => {
            obj.remove("order_validity");
            obj.remove("custom_expiration_date");
            obj.insert("validity_years".into(), json!(0));
        }
        16 => {
            obj.insert("ship_info".into(), json!({"name": "E", "city": "Richmond", "state": "va", "zip": "69662", "country": "us", "method": "STANDARD"}));
        }
        17 => {
            obj.insert("ship_info".into(), json!({"name": "E", "addr1": "3", "city": "R", "state": "va", "zip": "6", "country": "us", "method": "OVERNIGHT"}));
        }
        18 => {
            obj.insert("payment_method".into(), json!("cash"));
        }
        19 => {
            obj.insert("alternative_order_id".into(), json!("bad-id"));
        }
        20 => {
            obj.insert("enable_guest_access".into(), json!(2));
        }
        21 => {
            if *product == Product::CodeSigning {
                obj.insert("subject".into(), json!({"email": "nope"}));
            } else {
                obj.insert("payment_method".into(), json!("gold"));
            }
        }
        22 => {
            obj.insert(
                "custom_fields".into(),
                json!([{"metadata_id": 0, "value": "x"}]),
            );
        }
        23 => {
            obj.insert("container".into(), json!({"id": 0}));
        }
        24 => {
            obj.insert("auto_renew".into(), json!(-1));
        }
        25 => {
            obj.insert("renewal_of_order_id".into(), json!(0));
        }
        _ => {}
    }
}

/// A valid body with random valid choices, then up to three rules broken (none in about 40%).
fn body() -> impl Strategy<Value = (Product, Value)> {
    let product = prop_oneof![Just(Product::CodeSigning), Just(Product::CodeSigningEv)];
    let method = prop_oneof![
        Just(None),
        Just(Some("ship_token")),
        Just(Some("client_app")),
        Just(Some("email"))
    ];
    let validity = prop_oneof![
        (1i64..=3).prop_map(|y| json!({"order_validity": {"years": y}})),
        prop_oneof![Just(1i64), Just(30), Just(400), Just(1095)]
            .prop_map(|d| json!({"order_validity": {"days": d}})),
        Just(json!({"order_validity": {"custom_expiration_date": date_in(200, false)}})),
        Just(json!({"order_validity": {"years": 2, "days": 90}})),
        (1i64..=3).prop_map(|y| json!({"validity_years": y})),
        Just(json!({"custom_expiration_date": date_in(100, true)})),
    ];
    let extras = (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some("balance")),
            Just(Some("card")),
            Just(Some("profile"))
        ],
        prop_oneof![Just(None), Just(Some(0i64)), Just(Some(1))],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    );
    let breaking = prop_oneof![
        4 => Just(Vec::new()),
        6 => proptest::collection::vec(1..=BREAKS, 1..=3),
    ];
    (product, method, any::<bool>(), any::<bool>(), validity, extras, breaking).prop_map(
        |(product, method, with_csr, new_organization, validity, extras, breaking)| {
            let (ship, with_alt, payment, guest, with_fields, with_container, with_email) = extras;
            // EV needs a provisioning method.
            let method = match (&product, method) {
                (Product::CodeSigningEv, None) => Some("email"),
                (_, m) => m,
            };
            let mut certificate = json!({"signature_hash": "sha256"});
            if matches!(method, None | Some("client_app")) || with_csr {
                certificate["server_platform"] = json!({"id": -1});
            }
            if method == Some("email") || with_csr {
                certificate["csr"] = csr("openssl-p384.csr");
            }
            let organization = if new_organization { new_org() } else { json!({"id": 123456}) };
            let mut body = json!({"certificate": certificate, "organization": organization, "skip_approval": true});
            for (k, v) in validity.as_object().unwrap() {
                body[k] = v.clone();
            }
            if let Some(m) = method {
                body["cs_provisioning_method"] = json!(m);
            }
            if ship {
                body["ship_info"] = json!({"name": "E", "addr1": "360 Taylor", "addr2": "Floor 74", "city": "Richmond",
                                           "state": "va", "zip": "69662", "country": "us", "method": "EXPEDITED"});
            }
            if with_alt {
                body["alternative_order_id"] = json!("abc123XYZ");
            }
            if let Some(p) = payment {
                body["payment_method"] = json!(p);
            }
            if let Some(g) = guest {
                body["enable_guest_access"] = json!(g);
            }
            if with_fields {
                body["custom_fields"] = json!([{"metadata_id": 12, "value": "123456"}]);
            }
            if with_container {
                body["container"] = json!({"id": 654321});
            }
            if with_email {
                body["subject"] = json!({"email": "signer@example.com"});
            }
            for rule in breaking {
                break_rule(&product, &mut body, rule);
            }
            (product, body)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn order_bodies_round_trip_through_the_typed_model((_, body) in body()) {
        let request = OrderRequest::from_json(&body.to_string()).unwrap();
        prop_assert_eq!(request.to_json(), body);
    }

    #[test]
    fn the_validator_and_the_emulator_agree((product, body) in body()) {
        let request = OrderRequest::from_json(&body.to_string()).unwrap();
        let client_verdict = ValidatedOrder::new(product.clone(), request, Some(&KeysCsrCheck));
        let emu = emulator();
        let response = http()
            .post(format!("{}/order/certificate/{}", emu.api_base(), product.as_str()))
            .header("X-DC-DEVKEY", KEY)
            .json(&body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let server_said = response.text().unwrap();
        prop_assert!(
            client_verdict.is_ok() == (status == 201),
            "{product} {body}\nclient: {:?}\nemulator: {status} {server_said}",
            client_verdict.map(|_| ()).map_err(|e| e.to_string())
        );
        // Every problem, by its JSON path: the client reports what CertCentral would.
        prop_assert_eq!(
            client_paths(&client_verdict),
            emulator_paths(status, &server_said),
            "{} {}\nemulator: {}",
            product,
            body,
            server_said
        );
    }
}

#[test]
fn the_generated_bodies_hold_both_valid_and_invalid_orders() {
    // Otherwise the agreement above could hold trivially.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut valid, mut invalid, mut several) = (0, 0, 0);
    for _ in 0..300 {
        let (product, body) = body().new_tree(&mut runner).unwrap().current();
        let request = OrderRequest::from_json(&body.to_string()).unwrap();
        match ValidatedOrder::new(product, request, Some(&KeysCsrCheck)) {
            Ok(_) => valid += 1,
            Err(errors) => {
                invalid += 1;
                if errors.iter().count() >= 2 {
                    several += 1;
                }
            }
        }
    }
    // ...and the comparison of reported problems could hold with one problem a body.
    assert!(
        valid >= 60 && invalid >= 60 && several >= 40,
        "valid {valid}, invalid {invalid}, with several problems {several}"
    );
}

/// The JSON paths the client's validator names, sorted.
fn client_paths(
    verdict: &Result<ValidatedOrder, codesign_kit::order::ValidationErrors>,
) -> Vec<String> {
    let mut paths: Vec<String> = match verdict {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.path.clone()).collect(),
    };
    paths.sort();
    paths.dedup();
    paths
}

/// The JSON paths the emulator's errors name (each message starts with its path), sorted.
fn emulator_paths(status: u16, answer: &str) -> Vec<String> {
    if status == 201 {
        return Vec::new();
    }
    let body: Value = serde_json::from_str(answer).unwrap();
    let mut paths: Vec<String> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let message = e["message"].as_str().unwrap();
            message
                .split([' ', ':'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    paths.sort();
    paths.dedup();
    paths
}
