//! Parsing one file of the bundle into the schema types, keeping every error with its span.
//!
//! Serde stops at the first error of whatever it deserializes, so the collections of a file
//! (`[[step]]`, `[live_chat.*]`, `[[agent]]`, …) are deserialized one item at a time: one
//! broken step does not hide the errors of the others.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diagnostic::Diagnostic;
use super::schema::{
    BOT_COLLECTION_KEYS, Bot, BotHeader, LiveChat, OfflineForm, Response, Responses, Roster, Step,
    Webhook,
};

/// One file being loaded: its name, its text and the errors found so far.
pub struct FileCtx<'a> {
    pub file: &'a str,
    pub source: &'a str,
    pub diags: Vec<Diagnostic>,
}

impl<'a> FileCtx<'a> {
    pub fn new(file: &'a str, source: &'a str) -> Self {
        FileCtx {
            file,
            source,
            diags: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::at(self.file, self.source, span, message));
    }

    /// Deserializes one value, turning a serde error into a diagnostic at its span.
    /// `extra_keys` are keys handled elsewhere that a "did you mean" may still suggest.
    fn de<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        extra_keys: &[&str],
    ) -> Option<T> {
        let fallback = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or(fallback);
                let message = friendly_message(e.message(), extra_keys);
                self.error(span, message);
                None
            }
        }
    }
}

/// Rewrites serde's messages in the words of a config file: "key", "did you mean".
fn friendly_message(message: &str, extra_keys: &[&str]) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let mut expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        expected.extend_from_slice(extra_keys);
        return match did_you_mean(name, &expected) {
            Some(best) => format!("unknown key `{name}`; did you mean `{best}`?"),
            None if expected.is_empty() => {
                format!("unknown key `{name}`; no keys are allowed here")
            }
            None => format!(
                "unknown key `{name}`; expected one of {}",
                expected
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        return match did_you_mean(name, &expected) {
            Some(best) => format!("unknown value `{name}`; did you mean `{best}`?"),
            None => format!(
                "unknown value `{name}`; expected {}",
                expected
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        };
    }
    if let Some(field) = message.strip_prefix("missing field `") {
        let field = field.trim_end_matches('`');
        return format!("missing required key `{field}`");
    }
    message.replace("invalid type: ", "wrong type: found ")
}

/// The candidate closest to `name`, if it is close enough to be a likely typo: a few
/// edits away (a swapped pair counts as one), or sharing a long prefix.
pub fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let budget = (name.chars().count() / 3).max(1);
    let by_edits = candidates
        .iter()
        .map(|c| (strsim::osa_distance(name, c), *c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    by_edits.or_else(|| {
        candidates
            .iter()
            .map(|c| (strsim::jaro_winkler(name, c), *c))
            .filter(|(score, _)| *score > 0.85)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c)
    })
}

/// Parses the document, reporting syntax errors; `None` when nothing usable came out.
fn parse_document<'s>(ctx: &mut FileCtx<'s>) -> Option<Spanned<DeTable<'s>>> {
    let (root, errors) = DeTable::parse_recoverable(ctx.source);
    let failed = !errors.is_empty();
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        ctx.error(span, format!("TOML syntax error: {}", e.message().trim()));
    }
    (!failed).then_some(root)
}

type Entries<'s> = Vec<(Spanned<std::borrow::Cow<'s, str>>, Spanned<DeValue<'s>>)>;

/// Splits the top-level keys named in `keys` out of `root`; returns (taken, rest).
fn split_keys<'s>(root: DeTable<'s>, keys: &[&str]) -> (Entries<'s>, DeTable<'s>) {
    let mut taken = Vec::new();
    let mut rest = DeTable::new();
    for (k, v) in root {
        if keys.contains(&k.get_ref().as_ref()) {
            taken.push((k, v));
        } else {
            rest.insert(k, v);
        }
    }
    (taken, rest)
}

/// `[[name]]`: each element deserialized on its own.
fn array_items<T: DeserializeOwned>(
    ctx: &mut FileCtx<'_>,
    key: &str,
    value: Spanned<DeValue<'_>>,
) -> Vec<T> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| ctx.de::<T>(item.clone(), &[]))
            .collect(),
        other => {
            ctx.error(
                span,
                format!(
                    "`{key}` must be a list of tables (`[[{key}]]`), not a {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}

/// `[name.ID]`: each entry deserialized on its own, keyed by ID.
fn table_items<T: DeserializeOwned>(
    ctx: &mut FileCtx<'_>,
    key: &str,
    value: Spanned<DeValue<'_>>,
) -> BTreeMap<String, T> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(entries) => {
            let mut out = BTreeMap::new();
            for (id, item) in entries {
                if let Some(v) = ctx.de::<T>(item, &[]) {
                    out.insert(id.get_ref().to_string(), v);
                }
            }
            out
        }
        other => {
            ctx.error(
                span,
                format!(
                    "`{key}` must be a table of named entries (`[{key}.NAME]`), not a {}",
                    other.type_str()
                ),
            );
            BTreeMap::new()
        }
    }
}

/// Loads a bot file. Errors go to `ctx`; the bot is returned only if the file had none.
pub fn parse_bot(ctx: &mut FileCtx<'_>) -> Option<Bot> {
    let before = ctx.diags.len();
    let root = parse_document(ctx)?;
    let span = root.span();
    let (collections, rest) = split_keys(root.into_inner(), &BOT_COLLECTION_KEYS);
    let header = ctx.de::<BotHeader>(
        Spanned::new(span, DeValue::Table(rest)),
        &BOT_COLLECTION_KEYS,
    );
    let (mut steps, mut live_chat, mut offline_form, mut webhook) = (
        Vec::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
    );
    for (key, value) in collections {
        match key.get_ref().as_ref() {
            "step" => steps = array_items::<Step>(ctx, "step", value),
            "live_chat" => live_chat = table_items::<LiveChat>(ctx, "live_chat", value),
            "offline_form" => offline_form = table_items::<OfflineForm>(ctx, "offline_form", value),
            "webhook" => webhook = table_items::<Webhook>(ctx, "webhook", value),
            _ => unreachable!("split_keys only takes the collection keys"),
        }
    }
    let bot = Bot {
        header: header?,
        steps,
        live_chat,
        offline_form,
        webhook,
    };
    (ctx.diags.len() == before).then_some(bot)
}

/// Loads `agents.toml`.
pub fn parse_roster(ctx: &mut FileCtx<'_>) -> Option<Roster> {
    let before = ctx.diags.len();
    let root = parse_document(ctx)?;
    let span = root.span();
    let (collections, rest) = split_keys(root.into_inner(), &["team", "agent"]);
    // Whatever is left must be empty; deserializing it reports unknown keys with a hint.
    ctx.de::<Roster>(Spanned::new(span, DeValue::Table(rest)), &[]);
    let mut roster = Roster::default();
    for (key, value) in collections {
        if key.get_ref() == "team" {
            roster.teams = array_items(ctx, "team", value);
        } else {
            roster.agents = array_items(ctx, "agent", value);
        }
    }
    (ctx.diags.len() == before).then_some(roster)
}

/// Loads `responses.toml`.
pub fn parse_responses(ctx: &mut FileCtx<'_>) -> Option<Responses> {
    let before = ctx.diags.len();
    let root = parse_document(ctx)?;
    let span = root.span();
    let (collections, rest) = split_keys(root.into_inner(), &["response"]);
    ctx.de::<Responses>(Spanned::new(span, DeValue::Table(rest)), &[]);
    let mut responses = Responses::default();
    for (_, value) in collections {
        responses.responses = array_items::<Response>(ctx, "response", value);
    }
    (ctx.diags.len() == before).then_some(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(src: &str) -> (Option<Bot>, Vec<Diagnostic>) {
        let mut ctx = FileCtx::new("bot.toml", src);
        let bot = parse_bot(&mut ctx);
        let mut diags = ctx.diags;
        crate::config::diagnostic::sort(&mut diags);
        (bot, diags)
    }

    #[test]
    fn a_minimal_bot_loads_with_defaults() {
        let (bot, diags) = bot("name = \"Support\"\n[[step]]\nid = \"start\"\nsay = \"Hi\"\n");
        assert_eq!(diags, vec![]);
        let bot = bot.unwrap();
        assert_eq!(bot.header.name.get_ref(), "Support");
        assert_eq!(bot.steps.len(), 1);
        assert_eq!(bot.header.widget.color.0, "#0b6efd");
    }

    #[test]
    fn errors_in_separate_items_are_all_reported_with_positions() {
        let src = "name = \"S\"\n\
                   [widget]\ncolr = \"#fff\"\n\
                   [[step]]\nid = \"a\"\nsya = \"hi\"\n\
                   [[step]]\nid = \"b\"\nend = \"yes\"\n\
                   [live_chat.desk]\naccept_timeout = \"ninety\"\n";
        let (bot, diags) = bot(src);
        assert!(bot.is_none());
        let got: Vec<(usize, usize, &str)> = diags
            .iter()
            .map(|d| (d.line, d.column, d.message.as_str()))
            .collect();
        assert_eq!(got.len(), 4, "{got:#?}");
        assert_eq!(got[0].0, 3);
        assert!(got[0].2.contains("did you mean `color`"), "{got:#?}");
        assert_eq!((got[1].0, got[1].1), (6, 1));
        assert!(got[1].2.contains("did you mean `say`"), "{got:#?}");
        assert_eq!(got[2].0, 9);
        assert!(got[2].2.starts_with("wrong type"), "{got:#?}");
        assert_eq!(got[3].0, 11);
        assert!(got[3].2.contains("invalid duration `ninety`"), "{got:#?}");
    }

    #[test]
    fn unknown_top_level_key_suggests_a_collection() {
        let (_, diags) = bot("name = \"S\"\n[[stpe]]\nid = \"a\"\n");
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].message.contains("did you mean `step`"),
            "{diags:?}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (_, diags) = bot("name = \"S\"\nwidget = {\n");
        assert!(!diags.is_empty());
        assert!(diags[0].message.starts_with("TOML syntax error"));
        assert_eq!(diags[0].line, 2);
    }
}
