//! The fuzz targets' checks, run in CI on every seed (`fuzz/corpus/TARGET/`) and every input that
//! once crashed a target (`fuzz/regressions/TARGET/`). The same checks as `fuzz/fuzz_targets/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::{Path, PathBuf};

use codesign_kit::keys::SubjectDn;
use codesign_kit::keys::pkcs11::{Pkcs11Uri, decode_ec_point, ecdsa_raw_to_der};
use codesign_kit::keys::policy::NamedCurve;
use codesign_kit::order::response::{
    AlternateOrders, ApiErrorBody, ExpiringReport, OrderCreated, OrderInfo, OrderList,
    OrganizationValidations, Organizations, ReissueList, RevokeRequest, StatusChanges,
};

fn check(target: &str, data: &[u8]) {
    match target {
        "csr_inspect" => {
            let _ = codesign_kit::keys::csr::inspect(data);
        }
        "dn_parse" => {
            if let Ok(text) = std::str::from_utf8(data)
                && let Ok(dn) = text.parse::<SubjectDn>()
            {
                assert_eq!(dn.to_string().parse::<SubjectDn>().unwrap(), dn);
            }
        }
        "pkcs11_uri" => {
            if let Ok(text) = std::str::from_utf8(data)
                && let Ok(uri) = text.parse::<Pkcs11Uri>()
            {
                assert_eq!(uri.to_uri_string(true).parse::<Pkcs11Uri>().unwrap(), uri);
            }
        }
        "ec_point_signature" => {
            for curve in [NamedCurve::P256, NamedCurve::P384] {
                let _ = decode_ec_point(data, &curve);
                let _ = ecdsa_raw_to_der(data, &curve);
            }
        }
        "certcentral_responses" => {
            let _ = serde_json::from_slice::<OrderCreated>(data);
            let _ = serde_json::from_slice::<OrderInfo>(data);
            let _ = serde_json::from_slice::<AlternateOrders>(data);
            let _ = serde_json::from_slice::<ApiErrorBody>(data);
            let _ = serde_json::from_slice::<Organizations>(data);
            let _ = serde_json::from_slice::<OrganizationValidations>(data);
            let _ = serde_json::from_slice::<OrderList>(data);
            let _ = serde_json::from_slice::<ExpiringReport>(data);
            let _ = serde_json::from_slice::<StatusChanges>(data);
            let _ = serde_json::from_slice::<ReissueList>(data);
            let _ = serde_json::from_slice::<RevokeRequest>(data);
            if let Ok(text) = std::str::from_utf8(data) {
                let _ = codesign_kit::order::OrderRequest::from_json(text);
            }
        }
        "chain_split" => {
            let _ = codesign_kit::order::Chain::from_pem(data);
        }
        "plan_toml" => {
            if let Ok(text) = std::str::from_utf8(data) {
                let _ = codesign_kit::pipeline::Plan::parse(
                    text,
                    Path::new("/nonexistent-fuzz-dir"),
                    Path::new("plan.toml"),
                );
            }
        }
        other => panic!("unknown fuzz target {other}"),
    }
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_seed_and_regression_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for folder in ["fuzz_targets", "corpus", "regressions"] {
        assert!(
            root.join(folder).is_dir(),
            "fuzz/{folder} is missing: the fuzz inputs are part of the test suite"
        );
    }
    // Every target of `fuzz/fuzz_targets/` is checked here (an unknown one panics in `check`).
    let mut targets: Vec<String> = inputs(&root.join("fuzz_targets"))
        .iter()
        .filter_map(|p| {
            p.extension()
                .is_some_and(|e| e == "rs")
                .then(|| p.file_stem())
                .flatten()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    targets.sort();
    assert_eq!(targets.len(), 7, "{targets:?}");
    let mut total = 0;
    for target in &targets {
        let seeds = inputs(&root.join("corpus").join(target));
        assert!(!seeds.is_empty(), "{target} has no seed corpus");
        for input in seeds
            .iter()
            .chain(&inputs(&root.join("regressions").join(target)))
        {
            check(target, &std::fs::read(input).unwrap());
            total += 1;
        }
    }
    assert!(total >= 20, "{total} inputs");
}
