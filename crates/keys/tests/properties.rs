//! Property tests of the parsers and converters: what is written can be read back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use codesign_keys::pkcs11::{ObjectType, Pkcs11Uri, decode_ec_point, ecdsa_raw_to_der};
use codesign_keys::policy::NamedCurve;
use codesign_keys::{DnAttribute, SubjectDn};
use p256::ecdsa::signature::Signer;
use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};

/// A value valid for `attr`: any text without control characters within its length, or the
/// attribute's own alphabet.
fn value_for(attr: DnAttribute) -> BoxedStrategy<String> {
    match attr {
        DnAttribute::Country => "[A-Z]{2}".boxed(),
        DnAttribute::SerialNumber => "[A-Za-z0-9 '()+,./:=?-]{1,64}".boxed(),
        DnAttribute::EmailAddress => "[a-z0-9._%+-]{1,20}@[a-z0-9-]{1,20}\\.[a-z]{2,6}".boxed(),
        other => proptest::collection::vec(
            any::<char>().prop_filter("no control", |c| !c.is_control()),
            1..=other.max_len().min(40),
        )
        .prop_map(|chars| chars.into_iter().collect())
        .boxed(),
    }
}

fn subject() -> impl Strategy<Value = Vec<(DnAttribute, String)>> {
    // CN first, then any subset of the other attributes in a shuffled order.
    let others: Vec<DnAttribute> = DnAttribute::ALL
        .into_iter()
        .filter(|a| *a != DnAttribute::CommonName)
        .collect();
    (
        value_for(DnAttribute::CommonName),
        proptest::sample::subsequence(others.clone(), 0..=others.len()).prop_shuffle(),
    )
        .prop_flat_map(|(cn, attrs)| {
            let values: Vec<BoxedStrategy<(DnAttribute, String)>> = attrs
                .into_iter()
                .map(|a| value_for(a).prop_map(move |v| (a, v)).boxed())
                .collect();
            (Just(cn), values)
        })
        .prop_map(|(cn, mut rest)| {
            rest.insert(0, (DnAttribute::CommonName, cn));
            rest
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn subjects_round_trip_through_their_string_form(entries in subject()) {
        let dn = SubjectDn::from_entries(entries).unwrap();
        let text = dn.to_string();
        let back: SubjectDn = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
        prop_assert_eq!(back, dn);
    }

    #[test]
    fn subject_parsing_never_panics(text in ".{0,80}") {
        let _ = text.parse::<SubjectDn>();
    }

    #[test]
    fn uris_round_trip_through_their_string_form(
        token in proptest::option::of(".{0,20}"),
        serial in proptest::option::of("[ -~]{0,16}"),
        object in proptest::option::of(".{0,20}"),
        id in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        object_type in proptest::option::of(prop_oneof![
            Just(ObjectType::Private), Just(ObjectType::Public), Just(ObjectType::Cert),
            Just(ObjectType::SecretKey), Just(ObjectType::Data)
        ]),
        slot_id in proptest::option::of(any::<u64>()),
        vendor in proptest::collection::vec(("x-[a-z]{1,6}", ".{0,10}"), 0..3),
        module_path in proptest::option::of(".{0,30}"),
        pin_source in proptest::option::of(".{0,30}"),
        pin_value in proptest::option::of(".{0,12}"),
    ) {
        let uri = Pkcs11Uri {
            token, serial, object, id, object_type, slot_id, vendor, module_path, pin_source,
            pin_value: pin_value.map(SecretString::from),
            ..Default::default()
        };
        let text = uri.to_uri_string(true);
        let back: Pkcs11Uri = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
        prop_assert_eq!(&back, &uri);
        prop_assert_eq!(
            back.pin_value.as_ref().map(|p| p.expose_secret().to_string()),
            uri.pin_value.as_ref().map(|p| p.expose_secret().to_string())
        );
    }

    #[test]
    fn uri_parsing_never_panics(text in "pkcs11:.{0,80}") {
        let _ = text.parse::<Pkcs11Uri>();
    }

    #[test]
    fn ec_points_decode_what_was_encoded(seed in any::<[u8; 32]>(), wrapped in any::<bool>(), p384 in any::<bool>()) {
        let (point, curve) = if p384 {
            let mut wide = [1u8; 48];
            wide[16..].copy_from_slice(&seed);
            let Ok(key) = p384::ecdsa::SigningKey::from_slice(&wide) else { return Ok(()) };
            (key.verifying_key().to_sec1_point(false).as_bytes().to_vec(), NamedCurve::P384)
        } else {
            let Ok(key) = p256::ecdsa::SigningKey::from_slice(&seed) else { return Ok(()) };
            (key.verifying_key().to_sec1_point(false).as_bytes().to_vec(), NamedCurve::P256)
        };
        let value = if wrapped {
            [&[0x04, point.len() as u8][..], &point].concat()
        } else {
            point.clone()
        };
        prop_assert_eq!(decode_ec_point(&value, &curve).unwrap(), point);
    }

    #[test]
    fn ec_point_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = decode_ec_point(&bytes, &NamedCurve::P256);
        let _ = decode_ec_point(&bytes, &NamedCurve::P384);
    }

    #[test]
    fn signature_der_of_raw_of_der_is_the_same(seed in any::<[u8; 32]>(), message in proptest::collection::vec(any::<u8>(), 0..64)) {
        let Ok(key) = p256::ecdsa::SigningKey::from_slice(&seed) else { return Ok(()) };
        let signature: p256::ecdsa::Signature = key.sign(&message);
        let der = signature.to_der().as_bytes().to_vec();
        let raw = p256::ecdsa::Signature::from_der(&der).unwrap().to_bytes();
        prop_assert_eq!(ecdsa_raw_to_der(&raw, &NamedCurve::P256).unwrap(), der);
    }

    #[test]
    fn raw_signature_conversion_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = ecdsa_raw_to_der(&bytes, &NamedCurve::P256);
        let _ = ecdsa_raw_to_der(&bytes, &NamedCurve::P384);
    }

    #[test]
    fn csr_inspection_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = codesign_keys::csr::inspect(&bytes);
    }
}
