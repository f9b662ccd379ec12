//! The EC point decoder and the r||s -> DER signature converter.
#![no_main]
use codesign_kit::keys::pkcs11::{decode_ec_point, ecdsa_raw_to_der};
use codesign_kit::keys::policy::NamedCurve;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for curve in [NamedCurve::P256, NamedCurve::P384] {
        let _ = decode_ec_point(data, &curve);
        let _ = ecdsa_raw_to_der(data, &curve);
    }
});
