//! The subject parser; what parses must format and parse back to the same subject.
#![no_main]
use codesign_kit::keys::SubjectDn;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(dn) = text.parse::<SubjectDn>()
    {
        let again: SubjectDn = dn.to_string().parse().expect("a formatted subject parses");
        assert_eq!(again, dn);
    }
});
