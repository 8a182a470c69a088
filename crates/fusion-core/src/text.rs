//! Which characters may not be shown as they are: the one rule for every
//! log line made from text Fusion did not write (a peer's strings, a
//! user's trainer output).

/// Whether `c` could forge or hide text where it is shown: a control
/// character (newline, escape, NUL, …), or an invisible formatting one
/// that reorders or hides what follows (bidirectional overrides and
/// isolates, zero-width spaces and joiners, the byte-order mark).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}
