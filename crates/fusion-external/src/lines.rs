//! Cutting a command's output into log lines: bounded in length, with
//! control characters escaped, so a trainer printing progress bars or
//! binary junk cannot flood memory or forge log lines.

/// Longest line logged; the rest of a longer line is dropped and marked.
pub const MAX_LINE_BYTES: usize = 4096;

/// Splits a byte stream into lines as it arrives.
#[derive(Debug, Default)]
pub struct LineSplitter {
    line: Vec<u8>,
    /// Bytes of the current line dropped past [`MAX_LINE_BYTES`].
    dropped: usize,
}

impl LineSplitter {
    /// Feeds `bytes`, calling `emit` for every line they complete.
    pub fn push(&mut self, bytes: &[u8], emit: &mut impl FnMut(&str)) {
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (body, ends) = match piece.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (piece, false),
            };
            let room = MAX_LINE_BYTES - self.line.len();
            let kept = body.len().min(room);
            self.line.extend_from_slice(&body[..kept]);
            self.dropped += body.len() - kept;
            if ends {
                self.flush(emit);
            }
        }
    }

    /// Emits a last line that had no newline.
    pub fn finish(&mut self, emit: &mut impl FnMut(&str)) {
        if !self.line.is_empty() || self.dropped > 0 {
            self.flush(emit);
        }
    }

    fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        // `\r` ends a progress bar's redraw; only the last state matters.
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches('\r');
        let text = text.rsplit('\r').next().unwrap_or_default();
        let mut out = escape(text);
        if self.dropped > 0 {
            out.push_str(&format!(" … ({} more bytes)", self.dropped));
        }
        emit(&out);
        self.line.clear();
        self.dropped = 0;
    }
}

/// `s` with control and invisible formatting characters (but tab)
/// written as escapes ([`fusion_core::is_hidden`]).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if fusion_core::is_hidden(c) && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&[u8]]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::default();
        let mut emit = |l: &str| lines.push(l.to_owned());
        for p in pieces {
            splitter.push(p, &mut emit);
        }
        splitter.finish(&mut emit);
        lines
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        assert_eq!(
            split(&[b"epoch 1 lo", b"ss 0.5\nepoch 2\n", b"done"]),
            ["epoch 1 loss 0.5", "epoch 2", "done"]
        );
    }

    #[test]
    fn long_lines_are_cut_and_control_characters_escaped() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let lines = split(&[&long, b"\nfake\x1b[31m line\n", "a\u{202e}b\n".as_bytes()]);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(&"x".repeat(MAX_LINE_BYTES)));
        assert!(lines[0].ends_with("(10 more bytes)"), "{}", lines[0]);
        assert_eq!(lines[1], "fake\\u{1b}[31m line");
        assert_eq!(lines[2], "a\\u{202e}b");
    }

    #[test]
    fn a_progress_bar_logs_its_last_state() {
        assert_eq!(split(&[b"10%\r50%\r100%\r\n"]), ["100%"]);
    }
}
