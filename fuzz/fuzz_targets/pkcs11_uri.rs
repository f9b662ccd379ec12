//! The PKCS#11 URI parser; what parses must format and parse back to the same URI.
#![no_main]
use codesign_kit::keys::pkcs11::Pkcs11Uri;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(uri) = text.parse::<Pkcs11Uri>()
    {
        let again: Pkcs11Uri = uri.to_uri_string(true).parse().expect("a formatted URI parses");
        assert_eq!(again, uri);
    }
});
