//! Random input, not only seed files: CertCentral's answers (any JSON shaped from its field
//! names, and any bytes), chain bundles (every order of a real chain, and damaged ones), and plans
//! (built from the plan's own fields with hostile values). Nothing panics; what is accepted holds
//! together: a chain passes the path check only in the order it was issued, an accepted plan has
//! as many jobs as it asks for, each with its own label.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::collections::BTreeSet;
use std::path::Path;

use codesign_kit::order::Chain;
use codesign_kit::order::response::{
    AlternateOrders, ApiErrorBody, ExpiringReport, OrderCreated, OrderInfo, OrderList,
    OrganizationValidations, Organizations, ReissueList, RevokeRequest, StatusChanges,
};
use codesign_kit::pipeline::Plan;
use codesign_testkit::workspace_root;
use proptest::prelude::*;
use serde_json::Value;

/// Every answer type the client reads, parsed from `bytes`: each may refuse, none may panic.
/// An order info that parses survives its own serialization unchanged.
fn parse_every_answer(bytes: &[u8]) {
    let _ = serde_json::from_slice::<OrderCreated>(bytes);
    let _ = serde_json::from_slice::<AlternateOrders>(bytes);
    let _ = serde_json::from_slice::<ApiErrorBody>(bytes);
    let _ = serde_json::from_slice::<Organizations>(bytes);
    let _ = serde_json::from_slice::<OrganizationValidations>(bytes);
    let _ = serde_json::from_slice::<OrderList>(bytes);
    let _ = serde_json::from_slice::<ExpiringReport>(bytes);
    let _ = serde_json::from_slice::<StatusChanges>(bytes);
    let _ = serde_json::from_slice::<ReissueList>(bytes);
    let _ = serde_json::from_slice::<RevokeRequest>(bytes);
    if let Ok(info) = serde_json::from_slice::<OrderInfo>(bytes) {
        let again: OrderInfo = serde_json::from_value(serde_json::to_value(&info).unwrap())
            .expect("an order info reads back what it writes");
        assert_eq!(again, info);
    }
}

/// Keys CertCentral's answers use, and some others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "id", "status", "certificate", "certificate_id", "order_id", "orders", "errors",
            "code", "message", "requests", "organizations", "organization", "page", "total",
            "limit", "offset", "expiring_orders", "days_expiring", "order_count", "valid_till",
            "valid_from", "days_remaining", "date_created", "date_issued", "product", "name_id",
            "name", "validations", "type", "serial_number", "cs_provisioning_method",
            "hardware_init_code", "order_valid_till", "alternative_order_id", "date",
        ])
        .prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
    ]
}

/// JSON values up to four levels deep, objects keyed by [`key`].
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            "issued",
            "pending",
            "needs_approval",
            "canceled",
            "2026-11-29",
            "2026-11-29T17:27:23+00:00",
            ""
        ])
        .prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The real chain of the fuzz corpus (leaf, intermediate, root), PEM block by block.
fn chain_blocks() -> Vec<String> {
    let text =
        std::fs::read_to_string(workspace_root().join("fuzz/corpus/chain_split/pem_all")).unwrap();
    let end = "-----END CERTIFICATE-----";
    let blocks: Vec<String> = text
        .split_inclusive(end)
        .filter(|block| block.contains(end))
        .map(|block| format!("{}\n", block.trim_start()))
        .collect();
    assert_eq!(blocks.len(), 3, "leaf, intermediate, root");
    blocks
}

/// A plan from the plan's own fields, each either valid or hostile; valid choices weigh more, so
/// that whole plans are accepted too.
fn plan_text() -> impl Strategy<Value = (String, u64)> {
    let product = prop_oneof![
        4 => Just("code_signing_ev".to_string()),
        4 => Just("code_signing".to_string()),
        1 => Just("code-signing".to_string()),
        1 => "[a-z_ -]{0,20}",
    ];
    let body = prop_oneof![
        12 => Just("body.json".to_string()),
        1 => Just("../../etc/passwd".to_string()),
        1 => Just("/etc/shadow".to_string()),
        1 => Just(String::new()),
        1 => "[a-z./\\\\:\0-\x1f]{0,30}",
    ];
    let label = prop_oneof![
        6 => "[a-z]{1,6}-\\{n\\}",
        3 => "[a-z]{1,6}-\\{n:03\\}",
        1 => Just("fixed".to_string()),
        1 => Just("{n}{n}".to_string()),
        1 => Just("a/../b-{n}".to_string()),
        1 => Just("x".repeat(300)),
        1 => ".{0,40}",
    ];
    let place = prop_oneof![
        6 => Just("directory = \"keys\"".to_string()),
        1 => Just("directory = \"../outside\"".to_string()),
        4 => Just("token = \"pkcs11:token=T?module-path=/usr/lib/softhsm/libsofthsm2.so\"".to_string()),
        1 => Just("token = \"pkcs11:token=%ZZ\"".to_string()),
        1 => Just(String::new()),
        1 => Just("directory = \"k\"\ntoken = \"pkcs11:token=T\"".to_string()),
    ];
    let count = prop_oneof![
        4 => Just(None),
        8 => (0u32..50).prop_map(Some),
        1 => Just(Some(2_000_000)),
    ];
    let algorithm = prop_oneof![
        8 => prop::sample::select(vec!["p256", "p384", "rsa3072", "rsa4096"]).prop_map(str::to_string),
        1 => prop::sample::select(vec!["rsa2048", "ed25519", ""]).prop_map(str::to_string),
        1 => "[a-z0-9]{0,8}",
    ];
    let subject = prop_oneof![
        8 => Just("CN=Example Corp,C=US".to_string()),
        1 => Just("CN=".to_string()),
        1 => Just("CN=a\\,b,ZZ=1".to_string()),
        1 => ".{0,40}",
    ];
    let group = (count, algorithm, label, subject, place);
    (product, body, prop::collection::vec(group, 0..4)).prop_map(|(product, body, groups)| {
        let mut text = format!(
            "[order]\nproduct = {}\nbody = {}\n",
            toml_string(&product),
            toml_string(&body)
        );
        let mut jobs = 0u64;
        for (count, algorithm, label, subject, place) in groups {
            text.push_str("\n[[keys]]\n");
            if let Some(count) = count {
                text.push_str(&format!("count = {count}\n"));
            }
            jobs += u64::from(count.unwrap_or(1));
            text.push_str(&format!(
                "algorithm = {}\nlabel = {}\nsubject = {}\n{place}\n",
                toml_string(&algorithm),
                toml_string(&label),
                toml_string(&subject)
            ));
        }
        (text, jobs)
    })
}

/// A plan directory holding `body.json`, for the plans that name it.
fn plan_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("body.json"),
            r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
                "order_validity": {"years": 1}, "organization": {"id": 123456}}"#,
        )
        .unwrap();
        dir
    })
    .path()
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_json_answer_is_read_or_refused(value in json()) {
        parse_every_answer(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn any_bytes_as_an_answer_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        parse_every_answer(&bytes);
    }

    #[test]
    fn a_chain_passes_the_path_check_only_in_issued_order(
        order in Just(vec![0usize, 1, 2]).prop_shuffle(),
        keep in 1usize..=3,
    ) {
        let blocks = chain_blocks();
        let picked: Vec<usize> = order.into_iter().take(keep).collect();
        let bundle: String = picked.iter().map(|i| blocks[*i].as_str()).collect();
        let issued_order = picked.iter().enumerate().all(|(place, i)| place == *i);
        match Chain::from_pem(bundle.as_bytes()) {
            Ok(chain) => prop_assert_eq!(
                chain.ensure_path_order().is_ok(),
                issued_order,
                "{:?}", picked
            ),
            // Only a bundle without the leaf is refused outright.
            Err(_) => prop_assert!(!picked.contains(&0), "{:?}", picked),
        }
    }

    #[test]
    fn a_damaged_chain_is_refused_or_read_never_a_panic(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let whole: String = chain_blocks().concat();
        let mut bytes = whole.into_bytes();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        bytes.truncate(cut.index(bytes.len()) + 1);
        if let Ok(chain) = Chain::from_pem(&bytes) {
            let _ = chain.ensure_path_order();
        }
    }

    #[test]
    fn a_random_plan_is_refused_by_name_or_holds_together((text, jobs) in plan_text()) {
        match Plan::parse(&text, plan_dir(), Path::new("plan.toml")) {
            Ok(plan) => {
                prop_assert_eq!(plan.len(), jobs, "{}", text);
                if jobs <= 2_000 {
                    let labels: BTreeSet<String> = plan.jobs().map(|j| j.label).collect();
                    prop_assert_eq!(labels.len() as u64, jobs, "labels repeat: {}", text);
                }
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains("plan.toml"), "{}: {}", text, message);
            }
        }
    }
}

/// The plans above are not all refused: the property on accepted plans is exercised.
#[test]
fn random_plans_are_sometimes_accepted() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let accepted = (0..400)
        .filter(|_| {
            let (text, _) = plan_text().new_tree(&mut runner).unwrap().current();
            Plan::parse(&text, plan_dir(), Path::new("plan.toml")).is_ok()
        })
        .count();
    assert!(accepted >= 10, "only {accepted} of 400 plans accepted");
}
