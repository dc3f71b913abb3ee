//! A config error that points at its source: `file:line:col: message`, the line, a caret.

use std::fmt::Write as _;
use std::ops::Range;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file's name inside the bundle, like `support.toml`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
    /// The source line the error is on (empty when the error is about the whole file).
    #[serde(skip)]
    pub source_line: String,
    /// How many characters the caret underlines.
    #[serde(skip)]
    pub width: usize,
}

impl Diagnostic {
    /// An error at byte range `span` of `source`.
    pub fn at(file: &str, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let start = floor_char_boundary(source, span.start.min(source.len()));
        let end = floor_char_boundary(source, span.end.min(source.len()).max(start));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let source_line = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let width = source[start..end.min(line_end)].chars().count().max(1);
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
            source_line,
            width,
        }
    }

    /// An error about a whole file (it cannot be read, it is not UTF-8, …).
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: message.into(),
            source_line: String::new(),
            width: 1,
        }
    }

    /// Renders like rustc: `dir/file:line:col: message`, then the line and a caret.
    pub fn render(&self, dir: &str) -> String {
        let path = if dir.is_empty() {
            self.file.clone()
        } else {
            format!("{}/{}", dir.trim_end_matches('/'), self.file)
        };
        let mut out = format!("{path}:{}:{}: {}\n", self.line, self.column, self.message);
        if !self.source_line.is_empty() {
            let number = self.line.to_string();
            let pad = " ".repeat(number.len());
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{number} | {}", self.source_line);
            // Tabs keep their width so the caret lines up under the source.
            let lead: String = self
                .source_line
                .chars()
                .take(self.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(out, "{pad} | {lead}{}", "^".repeat(self.width));
        }
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Orders diagnostics by file, then position, and drops exact repeats.
pub fn sort(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.column, a.message.as_str()).cmp(&(
            b.file.as_str(),
            b.line,
            b.column,
            b.message.as_str(),
        ))
    });
    diags.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column_in_characters() {
        let src = "name = \"x\"\nwidget = { colör = 1 }\n";
        let start = src.find("colör").unwrap();
        let d = Diagnostic::at("bot.toml", src, start..start + "colör".len(), "unknown key");
        assert_eq!((d.line, d.column, d.width), (2, 12, 5));
        let text = d.render("bots");
        assert!(
            text.starts_with("bots/bot.toml:2:12: unknown key\n"),
            "{text}"
        );
        assert!(text.contains("2 | widget = { colör = 1 }\n"), "{text}");
        assert!(text.ends_with("  |            ^^^^^\n"), "{text}");
    }
}
