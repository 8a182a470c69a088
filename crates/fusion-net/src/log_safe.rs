//! Text from the other side of the wire, made safe to log: a peer's
//! strings must not forge log lines (newlines, terminal escapes) or flood
//! the log (megabytes in one field).

use std::fmt;

pub use fusion_core::is_hidden;

/// Longest value logged whole, in bytes; longer ones are cut at a
/// character boundary and say how much was left out.
pub const MAX_LOGGED_BYTES: usize = 512;

/// Displays `text` with control and hiding characters escaped (`\n`,
/// `\u{1b}`, `\u{202e}`, …) and
/// cut after [`MAX_LOGGED_BYTES`]. Wrap every peer-supplied string (a
/// status message, an error's text) in it before it reaches a log line.
#[derive(Clone, Copy, Debug)]
pub struct LogSafe<'a>(pub &'a str);

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut end = self.0.len().min(MAX_LOGGED_BYTES);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        for c in self.0[..end].chars() {
            if is_hidden(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_fmt(format_args!("{c}"))?;
            }
        }
        if end < self.0.len() {
            write!(f, "…(+{} bytes)", self.0.len() - end)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_is_cut() {
        assert_eq!(LogSafe("plain text é").to_string(), "plain text é");
        assert_eq!(
            LogSafe("txt.\u{202e}exe\u{200b}").to_string(),
            "txt.\\u{202e}exe\\u{200b}"
        );
        assert_eq!(
            LogSafe("a\nERROR forged\r\u{1b}[31m").to_string(),
            "a\\nERROR forged\\r\\u{1b}[31m"
        );
        let long = "é".repeat(1000); // 2000 bytes
        let shown = LogSafe(&long).to_string();
        assert!(shown.starts_with("éé"));
        assert!(shown.ends_with("…(+1488 bytes)"), "{shown}");
        assert!(shown.len() < MAX_LOGGED_BYTES + 20);
    }
}
