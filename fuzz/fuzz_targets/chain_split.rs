//! The certificate chain splitter (leaf by basicConstraints).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = codesign_kit::order::Chain::from_pem(data);
});
