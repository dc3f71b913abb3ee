//! Which of the bot's languages a visitor gets.

use crate::chat::flow;
use crate::config::schema::Bot;

/// The bot language for a visitor's preference: exact, else by its primary subtag
/// (`de-AT` → `de`), else the bot's first language.
pub fn pick_language(bot: &Bot, wanted: Option<&str>) -> String {
    wanted
        .and_then(|w| match_language(bot, w))
        .unwrap_or_else(|| flow::default_language(bot).to_string())
}

/// The bot language that is `wanted`, or its primary subtag; `None` if the bot has neither.
fn match_language(bot: &Bot, wanted: &str) -> Option<String> {
    let wanted = wanted.trim();
    if wanted.is_empty() {
        return None;
    }
    let langs = || bot.header.languages.iter().map(|l| l.get_ref());
    let primary = wanted.split(['-', '_']).next().unwrap_or(wanted);
    langs()
        .find(|l| l.eq_ignore_ascii_case(wanted))
        .or_else(|| langs().find(|l| l.eq_ignore_ascii_case(primary)))
        .cloned()
}

/// The visitor's language from a browser's `Accept-Language` list: the most preferred tag
/// (by `q`, then order) that the bot speaks, else the most preferred tag at all (kept as the
/// visitor's language, and [`pick_language`] then falls back to the bot's first). Tags
/// with `q=0` and `*` are never chosen.
pub fn preferred_language(bot: &Bot, accept: &str) -> Option<String> {
    let tags = ranked(accept);
    tags.iter()
        .find(|(_, tag)| match_language(bot, tag).is_some())
        .or(tags.first())
        .map(|(_, tag)| tag.to_string())
}

/// The first language of a browser's `Accept-Language` list (by `q`, then order), whether
/// or not the bot speaks it: what routing looks at.
pub fn first_language(accept: &str) -> Option<String> {
    ranked(accept).first().map(|(_, tag)| tag.to_string())
}

/// The tags of an `Accept-Language` list, most preferred first (`q=0` and `*` left out).
fn ranked(accept: &str) -> Vec<(f32, &str)> {
    let mut tags: Vec<(f32, &str)> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let tag = pieces.next()?.trim();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            (!tag.is_empty() && tag != "*" && q > 0.0).then_some((q, tag))
        })
        .collect();
    // Stable: equal weights keep the browser's order.
    tags.sort_by(|a, b| b.0.total_cmp(&a.0));
    tags
}
