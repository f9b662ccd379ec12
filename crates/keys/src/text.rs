//! Text from outside (paths, labels, subjects, a CA's messages) made safe to show on a terminal.

/// Whether a character must not reach a terminal as it is: control characters, and the Unicode
/// format characters that reorder or hide text (bidirectional controls such as U+202E, zero-width
/// characters, the byte order mark). Shown raw, they can fake an output line or make `gpj.exe`
/// look like `exe.jpg`.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `text` with every unsafe character written as a `\u{..}` escape; with `keep_line_breaks`,
/// newlines and tabs stay (for messages whose own lines are ours).
///
/// ```
/// use codesign_keys::text::escape_unsafe;
///
/// assert_eq!(escape_unsafe("a\u{202e}b\nc", false), "a\\u{202e}b\\u{000a}c");
/// assert_eq!(escape_unsafe("a\nb", true), "a\nb");
/// ```
pub fn escape_unsafe(text: &str, keep_line_breaks: bool) -> String {
    let unsafe_here =
        |c: char| is_unsafe_char(c) && !(keep_line_breaks && (c == '\n' || c == '\t'));
    if !text.chars().any(unsafe_here) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if unsafe_here(c) {
                format!("\\u{{{:04x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A path for a message, escaped as [`escape_unsafe`] text (line breaks too).
pub fn shown_path(path: &std::path::Path) -> String {
    escape_unsafe(&path.to_string_lossy(), false)
}

/// Lower-case hex of bytes (fingerprints, CKA_IDs, serial numbers).
///
/// ```
/// assert_eq!(codesign_keys::text::hex(&[0x01, 0xab]), "01ab");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}
