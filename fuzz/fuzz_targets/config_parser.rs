//! The configuration lexer and parser: any text gives a Config or a `file:line` error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match pounce::config::load_text(data, Path::new("/nonexistent/fuzz.conf"), Path::new("/nonexistent")) {
        Ok(_) => {}
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty());
        }
    }
});
