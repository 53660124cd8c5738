//! One-line errors for TOML files the lab reads (experiment specs, model
//! lists): where the parser stopped, as `file:line:col`, its words, and the
//! offending line itself.

use crate::error::LabError;

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A TOML file's parse error in one line: `what` `origin:line:col`, the
/// parser's words, and the offending line itself (which names the key where
/// the parser's message may not).
pub fn toml_error(what: &str, text: &str, origin: &str, e: &toml::de::Error) -> LabError {
    let at = e.span().map(|s| line_col(text, s.start));
    let (place, line) = at.map_or((String::new(), String::new()), |(l, c)| {
        let line: String = text
            .lines()
            .nth(l - 1)
            .unwrap_or("")
            .trim()
            .chars()
            .take(60)
            .collect();
        (format!(":{l}:{c}"), format!(" (line: {line})"))
    });
    LabError::invalid(
        what,
        &format!("{origin}{place}"),
        &format!("{}{line}", e.message().trim()),
    )
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn positions_are_as_a_reader_counts_them() {
        assert_eq!(line_col("ab\ncde\nf", 5), (2, 3));
        assert_eq!(line_col("ab\ncde\nf", 0), (1, 1));
        assert_eq!(line_col("ab\ncde\nf", 99), (3, 2));
    }
}
