//! The provisioning plan (TOML).
#![no_main]
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // Relative body files resolve under a directory that does not exist: no file is read.
        let _ = codesign_kit::pipeline::Plan::parse(text, Path::new("/nonexistent-fuzz-dir"), Path::new("plan.toml"));
    }
});
