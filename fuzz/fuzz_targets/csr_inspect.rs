//! CSR inspection (PEM and DER): parse, verify, judge; never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = codesign_kit::keys::csr::inspect(data);
});
