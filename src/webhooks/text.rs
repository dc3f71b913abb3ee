//! Untrusted text made inert for each tool, and kept within each tool's limits.
//!
//! Everything a visitor typed (name, email, page, messages, form answers) passes through
//! here before it lands in a payload. Each tool gets its own escaper; the clipping helpers
//! count characters *after* escaping, so an escape is never cut in half.

/// One character's escape into `out`.
pub(crate) type Escape = fn(char, &mut String);

/// Text that needs no escaping (plain-text fields of Slack and Teams' `TextRun`s).
pub(crate) fn verbatim(c: char, out: &mut String) {
    out.push(c);
}

/// Slack `mrkdwn`: `&`, `<` and `>` are the control characters (`<!channel>`, `<@U…>`,
/// `<https://…|label>`); Slack documents escaping exactly these three as entities.
pub(crate) fn slack_mrkdwn(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// Google Chat card text: a small HTML subset (`<a href>`, `<b>`, `<font>`…), so the
/// HTML specials become entities and a newline becomes `<br>`.
pub(crate) fn chat_html(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\n' => out.push_str("<br>"),
        c => out.push(c),
    }
}

/// Teams MessageCard text: HTML specials as entities, and the Markdown characters that
/// make emphasis, links, code and headings backslash-escaped.
pub(crate) fn teams_markdown(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '`' | '~' | '#' | '|' => {
            out.push('\\');
            out.push(c);
        }
        '\n' => out.push_str("\n\n"),
        c => out.push(c),
    }
}

/// Characters dropped from untrusted text before anything else: control characters other
/// than the newline, and the bidirectional overrides and isolates that can make text read
/// differently from what it is.
fn dropped(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` with the dropped characters gone and tabs as spaces.
fn tidy(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars()
        .filter(|c| !dropped(*c))
        .map(|c| if c == '\t' { ' ' } else { c })
}

/// `s` on one line: runs of whitespace (newlines included) become one space.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` tidied and escaped, at most `max` characters long. When it had to be cut, the
/// result ends with `…` (within `max`) and the flag is true.
pub(crate) fn clip(s: &str, max: usize, escape: Escape) -> (String, bool) {
    let s = s.trim();
    let mut full = String::with_capacity(s.len());
    let mut piece = String::new();
    let mut len = 0;
    let budget = max.saturating_sub(1);
    let mut cut_at = None;
    for c in tidy(s) {
        piece.clear();
        escape(c, &mut piece);
        let n = piece.chars().count();
        if cut_at.is_none() && len + n > budget {
            cut_at = Some(full.len());
        }
        len += n;
        full.push_str(&piece);
    }
    if len <= max {
        return (full, false);
    }
    full.truncate(cut_at.unwrap_or(0));
    let kept = full.trim_end().len();
    full.truncate(kept);
    if max > 0 {
        full.push('…');
    }
    (full, true)
}

/// The characters a payload may still spend on untrusted text, so the sum of many
/// fields stays under a tool's size limit. Records whether anything was cut or dropped.
#[derive(Debug)]
pub(crate) struct Budget {
    left: usize,
    /// Something was shortened or left out: the payload says so and points to the console.
    pub cut: bool,
}

/// Below this, a piece of text is left out rather than shown as a stub.
const SMALLEST_PIECE: usize = 24;

impl Budget {
    pub fn new(chars: usize) -> Self {
        Budget {
            left: chars,
            cut: false,
        }
    }

    /// `s` escaped and clipped to `max` characters and to what is left; `None` when it is
    /// empty or nothing useful is left.
    pub fn take(&mut self, s: &str, max: usize, escape: Escape) -> Option<String> {
        if s.trim().is_empty() {
            return None;
        }
        let limit = max.min(self.left);
        if limit < SMALLEST_PIECE.min(max) {
            self.cut = true;
            return None;
        }
        let (out, cut) = clip(s, limit, escape);
        self.cut |= cut;
        self.left -= out.chars().count();
        // Nothing but dropped characters: an empty text is invalid in some tools.
        (!out.is_empty()).then_some(out)
    }

    /// The most recent `lines` (most recent last) that fit in `max` characters together
    /// with a separator of `sep` characters after each, each escaped; empty lines are
    /// skipped. Older lines that do not fit are left out (then the flag is true, and `cut`
    /// set), since the latest choices say most about what the visitor wants.
    pub fn recent(
        &mut self,
        lines: &[String],
        max: usize,
        sep: usize,
        escape: Escape,
    ) -> (Vec<String>, bool) {
        let mut room = max.min(self.left);
        let mut out = Vec::new();
        let mut left_out = false;
        for line in lines.iter().rev().filter(|l| !l.trim().is_empty()) {
            if room < SMALLEST_PIECE + sep {
                self.cut = true;
                left_out = true;
                break;
            }
            let (text, cut) = clip(line, room - sep, escape);
            self.cut |= cut;
            if text.is_empty() {
                continue;
            }
            let n = text.chars().count();
            room -= n + sep;
            self.left -= n;
            out.push(text);
        }
        out.reverse();
        (out, left_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_ends_in_an_ellipsis_within_the_limit() {
        assert_eq!(clip("hello", 5, verbatim), ("hello".to_string(), false));
        let (out, cut) = clip("hello world", 8, verbatim);
        assert_eq!(out, "hello w…");
        assert!(cut);
        assert_eq!(out.chars().count(), 8);
        // Multi-byte characters are counted as characters, never split.
        let (out, _) = clip("ééééé", 3, verbatim);
        assert_eq!(out, "éé…");
    }

    #[test]
    fn an_escape_is_never_cut_in_half() {
        let (out, cut) = clip("ab<cd", 6, slack_mrkdwn);
        assert!(cut);
        assert_eq!(out, "ab…", "`&lt;` does not fit in the 5 left");
        let (out, cut) = clip("a<b", 6, slack_mrkdwn);
        assert_eq!((out.as_str(), cut), ("a&lt;b", false));
    }

    #[test]
    fn control_and_bidi_characters_are_dropped() {
        let (out, _) = clip("a\u{202E}b\u{0007}c\r\nd\te", 100, verbatim);
        assert_eq!(out, "abc\nd e");
        assert_eq!(one_line("  Ana \n  Lima\t "), "Ana Lima");
    }

    #[test]
    fn each_escaper_neutralises_its_tools_syntax() {
        let hostile = "<!channel> *bold* <https://evil|click> & [x](y)";
        let (s, _) = clip(hostile, 1000, slack_mrkdwn);
        assert_eq!(
            s,
            "&lt;!channel&gt; *bold* &lt;https://evil|click&gt; &amp; [x](y)"
        );
        let (g, _) = clip("<a href=\"x\">hi</a>\nnext", 1000, chat_html);
        assert_eq!(g, "&lt;a href=&quot;x&quot;&gt;hi&lt;/a&gt;<br>next");
        let (t, _) = clip("*b* _i_ [l](u) <at>", 1000, teams_markdown);
        assert_eq!(t, "\\*b\\* \\_i\\_ \\[l\\]\\(u\\) &lt;at&gt;");
    }

    #[test]
    fn the_budget_is_shared_and_records_cuts() {
        let mut b = Budget::new(40);
        assert_eq!(b.take("   ", 10, verbatim), None);
        assert_eq!(b.take("\u{7}\u{202E}", 10, verbatim), None);
        assert_eq!(b.take("0123456789", 100, verbatim).unwrap().len(), 10);
        assert!(!b.cut);
        let second = b.take(&"x".repeat(100), 100, verbatim).unwrap();
        assert_eq!(second.chars().count(), 30);
        assert!(b.cut);
        assert_eq!(b.take("more", 100, verbatim), None, "nothing left");
    }

    #[test]
    fn recent_lines_keep_the_latest_and_their_order() {
        let lines: Vec<String> = (1..=10)
            .map(|i| format!("line number {i:02} ....."))
            .collect();
        let mut b = Budget::new(1000);
        let (kept, left_out) = b.recent(&lines, 63, 1, verbatim);
        assert!(left_out);
        assert_eq!(kept, ["line number 09 .....", "line number 10 ....."]);
        assert_eq!(kept.join("\n").chars().count(), 41);
        assert!(b.cut);
        let mut b = Budget::new(1000);
        let lines = ["a".into(), "".into(), "\u{7}".into(), "b".into()];
        let (all, left_out) = b.recent(&lines, 60, 1, verbatim);
        assert_eq!(all, ["a", "b"]);
        assert!(!left_out);
        assert!(!b.cut);
    }
}
