//! Checks across the bundle that no single file's schema can make: references between
//! files and sections, duplicates, reachability, secrets that must be set.
//!
//! Every check reports at the span of the offending value, so an admin sees
//! `file:line:col` for each problem; all problems of a bundle are reported at once.
//!
//! A step that cannot be reached from the first step is an error; which steps a visitor
//! can reach is decided by the successor rule of `graph.rs`, the one the flow runs by.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::contacts::{self, ContactKind};
use super::graph;
use super::hours::OpeningHours;
use super::load::did_you_mean;
use super::schema::{Bot, ChatMode, CollectField, FieldKind, LiveChat, OfflineForm, Webhook};
use super::{AGENTS_FILE, Bundle, Diagnostic, Env, RESPONSES_FILE, Sources};

/// Every semantic error of a bundle whose files all parsed.
pub fn validate(bundle: &Bundle, env: Env<'_>) -> Vec<Diagnostic> {
    let mut out = Report {
        sources: &bundle.sources,
        diags: Vec::new(),
    };
    let bots: Vec<&str> = bundle.bots.keys().map(String::as_str).collect();
    let teams: Vec<&str> = bundle
        .roster
        .teams
        .iter()
        .map(|t| t.id.get_ref().as_str())
        .collect();
    for (id, bot) in &bundle.bots {
        let serving: Vec<&str> = bundle
            .roster
            .teams
            .iter()
            .filter(|t| t.bots.iter().any(|b| b.get_ref() == id))
            .map(|t| t.id.get_ref().as_str())
            .collect();
        check_bot(&mut out, id, bot, &teams, &serving, env);
    }
    check_roster(&mut out, bundle, &bots);
    check_responses(&mut out, bundle, &bots);
    out.diags
}

/// Collects diagnostics, finding each file's text for positions.
struct Report<'a> {
    sources: &'a Sources,
    diags: Vec<Diagnostic>,
}

impl Report<'_> {
    fn source(&self, file: &str) -> &str {
        self.sources.get(file).map_or("", String::as_str)
    }

    fn error(&mut self, file: &str, span: Range<usize>, message: impl Into<String>) {
        let d = Diagnostic::at(file, self.source(file), span, message);
        self.diags.push(d);
    }

    /// The 1-based line of byte offset `at` in `file`.
    fn line(&self, file: &str, at: usize) -> usize {
        let source = self.source(file);
        source.as_bytes()[..at.min(source.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Reports every repeat of a key after its first occurrence, at the repeat. Items are
    /// (key, the text as written, span); `message` gets the text and the first's line.
    fn duplicates<'t, K: Ord>(
        &mut self,
        file: &str,
        items: impl IntoIterator<Item = (K, &'t str, Range<usize>)>,
        message: impl Fn(&str, usize) -> String,
    ) {
        let mut seen: BTreeMap<K, Range<usize>> = BTreeMap::new();
        for (key, text, span) in items {
            match seen.get(&key) {
                Some(first) => {
                    let line = self.line(file, first.start);
                    self.error(file, span, message(text, line));
                }
                None => {
                    seen.insert(key, span);
                }
            }
        }
    }
}

/// `message`, with "; did you mean `x`?" when a candidate is close to `name`.
fn with_hint(message: String, name: &str, candidates: &[&str]) -> String {
    match did_you_mean(name, candidates) {
        Some(best) => format!("{message}; did you mean `{best}`?"),
        None => message,
    }
}

/// Bot ids appear in URLs (`/chat/{bot}`): `[a-z0-9][a-z0-9_-]*`.
fn is_valid_bot_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Variable names: `[a-z_][a-z0-9_]*`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `*`, or `scheme://host[:port]` with scheme http or https and nothing after: the form
/// of a browser's `Origin` header.
fn is_origin(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (host_ok, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let Some((addr, after)) = v6.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            let addr_ok = !addr.is_empty()
                && addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
            (addr_ok, port)
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (is_host_name(host), Some(port)),
            None => (is_host_name(rest), None),
        },
    };
    host_ok && port.is_none_or(is_port)
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_port(port: &str) -> bool {
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|n| n > 0)
}

/// The span of the value at the table path `keys` in `source`, for the few values the
/// schema keeps no span of; `None` if the document does not have it.
fn locate(source: &str, keys: &[&str]) -> Option<Range<usize>> {
    let root = DeTable::parse(source).ok()?;
    let mut span = root.span();
    let root = DeValue::Table(root.into_inner());
    let mut current = &root;
    for key in keys {
        let DeValue::Table(table) = current else {
            return None;
        };
        let (_, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *key)?;
        span = value.span();
        current = value.get_ref();
    }
    Some(span)
}

/// `serving`: the teams whose `bots` list this bot.
fn check_bot(
    out: &mut Report<'_>,
    id: &str,
    bot: &Bot,
    teams: &[&str],
    serving: &[&str],
    env: Env<'_>,
) {
    let file = format!("{id}.toml");
    let file = file.as_str();
    if !is_valid_bot_id(id) {
        out.diags.push(Diagnostic::file(
            file,
            format!(
                "invalid bot id `{id}` (the file name): it is used in URLs, so use lowercase \
                 letters, digits, `-` and `_`, starting with a letter or digit"
            ),
        ));
    }
    for origin in &bot.header.allowed_origins {
        if !is_origin(origin.get_ref()) {
            out.error(
                file,
                origin.span(),
                format!(
                    "invalid origin `{}`: write scheme://host[:port] without a path, like \
                     `https://acme.example` or `http://localhost:8080`, or `*` for any",
                    origin.get_ref()
                ),
            );
        }
    }
    check_handoff_phrases(out, file, bot);
    check_contact_fields(out, file, bot);
    check_steps(out, file, bot);
    for (name, live_chat) in &bot.live_chat {
        check_live_chat(out, file, bot, name, live_chat, teams, serving);
    }
    for (name, form) in &bot.offline_form {
        check_offline_form(out, file, name, form);
    }
    for (name, webhook) in &bot.webhook {
        check_webhook(out, file, name, webhook, env);
    }
}

fn check_steps(out: &mut Report<'_>, file: &str, bot: &Bot) {
    let steps = &bot.steps;
    if steps.is_empty() {
        out.diags.push(Diagnostic::file(
            file,
            "this bot has no steps: add at least one `[[step]]`, the first is where every \
             conversation starts",
        ));
        return;
    }
    out.duplicates(
        file,
        steps.iter().map(|s| {
            (
                s.id.get_ref().as_str(),
                s.id.get_ref().as_str(),
                s.id.span(),
            )
        }),
        |id, line| format!("duplicate step id `{id}`: already used on line {line}"),
    );
    let ids: Vec<&str> = steps.iter().map(|s| s.id.get_ref().as_str()).collect();
    let live_chats: Vec<&str> = bot.live_chat.keys().map(String::as_str).collect();
    for step in steps {
        let gotos = step
            .goto
            .iter()
            .chain(step.choices.iter().filter_map(|c| c.goto.as_ref()));
        for goto in gotos {
            let target = goto.get_ref();
            if !ids.contains(&target.as_str()) {
                let message = format!("goto target `{target}` is not a step of this bot");
                out.error(file, goto.span(), with_hint(message, target, &ids));
            }
        }
        if let Some(live_chat) = &step.live_chat {
            let name = live_chat.get_ref();
            if !bot.live_chat.contains_key(name) {
                let message = format!(
                    "live chat `{name}` is not defined in this bot (no `[live_chat.{name}]`)"
                );
                out.error(
                    file,
                    live_chat.span(),
                    with_hint(message, name, &live_chats),
                );
            }
        }
        let waits: Vec<&str> = [
            (!step.choices.is_empty()).then_some("`choices`"),
            step.ask.as_ref().map(|_| "`ask`"),
            step.live_chat.as_ref().map(|_| "`live_chat`"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if waits.len() > 1 {
            out.error(
                file,
                step.id.span(),
                format!(
                    "step `{}` has {}: a step waits for the visitor in one way only, so split \
                     it into separate steps",
                    step.id.get_ref(),
                    join_and(&waits)
                ),
            );
        }
        if let Some(ask) = &step.ask
            && let Some(field) = contacts::field_of_var(ask.var.get_ref())
        {
            if bot.header.contact_field(field).is_none() {
                out.error(file, ask.var.span(), undeclared_contact(field, bot));
            }
        } else if let Some(ask) = &step.ask
            && !is_identifier(ask.var.get_ref())
        {
            out.error(
                file,
                ask.var.span(),
                format!(
                    "invalid variable name `{}`: use lowercase letters, digits and `_`, \
                     starting with a letter or `_`",
                    ask.var.get_ref()
                ),
            );
        }
    }
    check_reachable(out, file, bot);
}

/// `[[contact_field]]`: names unique and usable as keys, not the built-in ones; a select
/// has options and only a select has them.
fn check_contact_fields(out: &mut Report<'_>, file: &str, bot: &Bot) {
    let fields = &bot.header.contact_fields;
    out.duplicates(
        file,
        fields.iter().map(|f| {
            (
                f.name.get_ref().as_str(),
                f.name.get_ref().as_str(),
                f.name.span(),
            )
        }),
        |name, line| format!("duplicate contact field `{name}` (first declared on line {line})"),
    );
    for f in fields {
        let name = f.name.get_ref();
        if !is_identifier(name) {
            out.error(
                file,
                f.name.span(),
                format!(
                    "invalid contact field name `{name}`: use lowercase letters, digits and \
                     `_`, starting with a letter or `_`"
                ),
            );
        } else if name == "name" || name == "email" {
            out.error(
                file,
                f.name.span(),
                format!(
                    "contact field `{name}` is built in: every visitor has a name and an \
                     email, so leave it out of `[[contact_field]]`"
                ),
            );
        }
        match (f.kind, f.options.is_empty()) {
            (ContactKind::Select, true) => out.error(
                file,
                f.name.span(),
                format!("contact field `{name}` is a select without `options`"),
            ),
            (kind, false) if kind != ContactKind::Select => out.error(
                file,
                f.name.span(),
                format!(
                    "contact field `{name}` has `options`, but only `type = \"select\"` \
                     offers them"
                ),
            ),
            _ => {}
        }
    }
    for step in &bot.steps {
        for choice in &step.choices {
            for (var, value) in &choice.set {
                let Some(field) = contacts::field_of_var(var) else {
                    continue;
                };
                match bot.header.contact_field(field) {
                    None => out.error(
                        file,
                        step.id.span(),
                        format!(
                            "step `{}` sets `{var}`: {}",
                            step.id.get_ref(),
                            undeclared_contact(field, bot)
                        ),
                    ),
                    Some(f) => {
                        if let Err(why) = f.check(value) {
                            out.error(
                                file,
                                step.id.span(),
                                format!(
                                    "step `{}` sets `{var}` to `{value}`, which {why}",
                                    step.id.get_ref()
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn undeclared_contact(field: &str, bot: &Bot) -> String {
    let declared: Vec<&str> = bot
        .header
        .contact_fields
        .iter()
        .map(|f| f.name.get_ref().as_str())
        .collect();
    with_hint(
        format!(
            "contact field `{field}` is not declared in this bot (no `[[contact_field]]` with `name = \"{field}\"`)"
        ),
        field,
        &declared,
    )
}

fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn check_reachable(out: &mut Report<'_>, file: &str, bot: &Bot) {
    let entry = bot.steps[0].id.get_ref();
    let reached = graph::reachable(bot);
    for (step, _) in bot.steps.iter().zip(reached).filter(|(_, r)| !r) {
        out.error(
            file,
            step.id.span(),
            format!(
                "step `{}` is unreachable: no path from the first step `{entry}` leads here",
                step.id.get_ref()
            ),
        );
    }
}

fn check_live_chat(
    out: &mut Report<'_>,
    file: &str,
    bot: &Bot,
    name: &str,
    live_chat: &LiveChat,
    teams: &[&str],
    serving: &[&str],
) {
    if let Some(form) = &live_chat.offline_form {
        let form_name = form.get_ref();
        if !bot.offline_form.contains_key(form_name) {
            let forms: Vec<&str> = bot.offline_form.keys().map(String::as_str).collect();
            let message = format!(
                "offline form `{form_name}` is not defined in this bot (no `[offline_form.{form_name}]`)"
            );
            out.error(file, form.span(), with_hint(message, form_name, &forms));
        }
    }
    let webhooks: Vec<&str> = bot.webhook.keys().map(String::as_str).collect();
    for hook in &live_chat.notify {
        let hook_name = hook.get_ref();
        if !bot.webhook.contains_key(hook_name) {
            let message = format!(
                "webhook `{hook_name}` is not defined in this bot (no `[webhook.{hook_name}]`)"
            );
            out.error(file, hook.span(), with_hint(message, hook_name, &webhooks));
        }
    }
    for route in &live_chat.route {
        let team = route.team.get_ref();
        if !teams.contains(&team.as_str()) {
            let message = format!("team `{team}` is not defined in {AGENTS_FILE}");
            out.error(file, route.team.span(), with_hint(message, team, teams));
        } else if !serving.contains(&team.as_str()) {
            // Its agents could neither see nor accept the request: it could only time out.
            let bot_id = file.strip_suffix(".toml").unwrap_or(file);
            out.error(
                file,
                route.team.span(),
                format!(
                    "team `{team}` does not serve this bot: add \"{bot_id}\" to its `bots` in {AGENTS_FILE}"
                ),
            );
        }
    }
    out.duplicates(
        file,
        live_chat.collect.iter().map(|c| {
            (
                collect_name(*c.get_ref()),
                collect_name(*c.get_ref()),
                c.span(),
            )
        }),
        |field, line| format!("duplicate `collect` entry `{field}`: already listed on line {line}"),
    );
    if live_chat.modes.is_empty() {
        let path = ["live_chat", name, "modes"];
        let message = "`modes` is empty: list at least one of `text` and `video`";
        match locate(out.source(file), &path) {
            Some(span) => out.error(file, span, message),
            None => out.diags.push(Diagnostic::file(file, message)),
        }
    }
    out.duplicates(
        file,
        live_chat
            .modes
            .iter()
            .map(|m| (mode_name(*m.get_ref()), mode_name(*m.get_ref()), m.span())),
        |mode, line| format!("duplicate mode `{mode}`: already listed on line {line}"),
    );
    if let Some(hours) = &live_chat.hours
        && let Err(errors) = OpeningHours::parse(hours)
    {
        for (span, message) in errors {
            out.error(file, span, message);
        }
    }
}

fn collect_name(field: CollectField) -> &'static str {
    match field {
        CollectField::Name => "name",
        CollectField::Email => "email",
    }
}

fn mode_name(mode: ChatMode) -> &'static str {
    match mode {
        ChatMode::Text => "text",
        ChatMode::Video => "video",
    }
}

fn check_offline_form(out: &mut Report<'_>, file: &str, name: &str, form: &OfflineForm) {
    out.duplicates(
        file,
        form.fields.iter().map(|f| {
            (
                f.name.get_ref().as_str(),
                f.name.get_ref().as_str(),
                f.name.span(),
            )
        }),
        |field, line| {
            format!("duplicate field `{field}` in form `{name}`: already used on line {line}")
        },
    );
    for field in &form.fields {
        if field.kind == FieldKind::Select && field.options.is_empty() {
            out.error(
                file,
                field.name.span(),
                format!(
                    "field `{}` has `type = \"select\"` but no `options` to choose from",
                    field.name.get_ref()
                ),
            );
        }
    }
}

fn check_webhook(out: &mut Report<'_>, file: &str, name: &str, webhook: &Webhook, env: Env<'_>) {
    let url = &webhook.url;
    match url.resolve(env) {
        Ok(resolved) => {
            let lower = resolved.to_ascii_lowercase();
            let has_scheme = ["http://", "https://"]
                .iter()
                .any(|s| lower.starts_with(s) && lower.len() > s.len());
            // The resolved value is a secret: never echo it.
            if !resolved.is_empty() && !has_scheme {
                out.error(
                    file,
                    url.0.span(),
                    format!(
                        "webhook `{name}` url must start with http:// or https:// (or be \
                         empty, which switches the webhook off)"
                    ),
                );
            }
        }
        Err(message) => {
            // Name the variable in the `${NAME:-}` form that makes it optional.
            let unset = message
                .strip_prefix("environment variable `")
                .and_then(|rest| rest.strip_suffix("` is not set"));
            let hint = unset.map_or(String::new(), |var| {
                format!(" (write `${{{var}:-}}` to switch the webhook off while it is unset)")
            });
            out.error(
                file,
                url.0.span(),
                format!("webhook `{name}` url: {message}{hint}"),
            );
        }
    }
    if let Some(secret) = &webhook.secret
        && let Err(message) = secret.resolve(env)
    {
        out.error(
            file,
            secret.0.span(),
            format!("webhook `{name}` secret: {message}"),
        );
    }
}

fn check_roster(out: &mut Report<'_>, bundle: &Bundle, bots: &[&str]) {
    let file = AGENTS_FILE;
    let roster = &bundle.roster;
    out.duplicates(
        file,
        roster.teams.iter().map(|t| {
            (
                t.id.get_ref().as_str(),
                t.id.get_ref().as_str(),
                t.id.span(),
            )
        }),
        |id, line| format!("duplicate team id `{id}`: already defined on line {line}"),
    );
    for team in &roster.teams {
        for bot in &team.bots {
            missing_bot(out, file, bot, bots);
        }
    }
    out.duplicates(
        file,
        roster.agents.iter().map(|a| {
            (
                a.email.as_str().to_lowercase(),
                a.email.as_str(),
                a.email.0.span(),
            )
        }),
        |email, line| {
            format!(
                "duplicate agent email `{email}`: already used on line {line} (emails are \
                 compared ignoring case)"
            )
        },
    );
    let teams: Vec<&str> = roster
        .teams
        .iter()
        .map(|t| t.id.get_ref().as_str())
        .collect();
    for agent in &roster.agents {
        if *agent.max_chats.get_ref() < 1 {
            out.error(
                file,
                agent.max_chats.span(),
                "`max_chats` must be at least 1",
            );
        }
        if agent.teams.get_ref().is_empty() {
            out.error(
                file,
                agent.teams.span(),
                format!(
                    "agent `{}` has no team, so no chat can ever reach them: add at least one \
                     to `teams`",
                    agent.name
                ),
            );
        }
        for team in agent.teams.get_ref() {
            let id = team.get_ref();
            if !teams.contains(&id.as_str()) {
                let message = format!("team `{id}` is not defined in {AGENTS_FILE}");
                out.error(file, team.span(), with_hint(message, id, &teams));
            }
        }
    }
}

fn check_responses(out: &mut Report<'_>, bundle: &Bundle, bots: &[&str]) {
    let file = RESPONSES_FILE;
    let responses = &bundle.responses.responses;
    out.duplicates(
        file,
        responses.iter().map(|r| {
            (
                r.shortcut.get_ref().as_str(),
                r.shortcut.get_ref().as_str(),
                r.shortcut.span(),
            )
        }),
        |shortcut, line| format!("duplicate shortcut `{shortcut}`: already used on line {line}"),
    );
    for response in responses {
        for bot in &response.bots {
            missing_bot(out, file, bot, bots);
        }
    }
}

fn missing_bot(out: &mut Report<'_>, file: &str, bot: &Spanned<String>, bots: &[&str]) {
    let id = bot.get_ref();
    if !bots.contains(&id.as_str()) {
        let message = format!("bot `{id}` does not exist (there is no `{id}.toml` in this bundle)");
        out.error(file, bot.span(), with_hint(message, id, bots));
    }
}

/// `handoff_phrases`: only with a Live Chat action to start, in languages the bot speaks,
/// and never an empty phrase (which every message would hold).
fn check_handoff_phrases(out: &mut Report<'_>, file: &str, bot: &Bot) {
    use crate::config::schema::HandoffPhrases;
    let phrases = &bot.header.handoff_phrases;
    if phrases.is_empty() {
        return;
    }
    if bot.live_chat.is_empty() {
        out.diags.push(Diagnostic::file(
            file,
            "`handoff_phrases` needs a `[live_chat.NAME]` action to start".to_string(),
        ));
    }
    let lists: Vec<(Option<&String>, &Vec<String>)> = match phrases {
        HandoffPhrases::Any(list) => vec![(None, list)],
        HandoffPhrases::PerLanguage(map) => map.iter().map(|(l, v)| (Some(l), v)).collect(),
    };
    for (lang, list) in lists {
        if let Some(lang) = lang
            && !bot.header.languages.iter().any(|l| l.get_ref() == lang)
        {
            out.diags.push(Diagnostic::file(
                file,
                format!("`handoff_phrases` in `{lang}`, which is not one of the bot's `languages`"),
            ));
        }
        if list.iter().any(|p| !p.chars().any(char::is_alphanumeric)) {
            out.diags.push(Diagnostic::file(
                file,
                "`handoff_phrases` holds an empty phrase: every message would match it".to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sources;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOOK_URL" => Some("https://hooks.example/abc".into()),
            "NOT_A_URL" => Some("hooks.example/abc".into()),
            _ => None,
        }
    }

    fn load(files: &[(&str, &str)]) -> Result<Bundle, Vec<Diagnostic>> {
        let sources: Sources = files
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
        Bundle::from_sources(sources, &env)
    }

    /// `file:line:col: message` for every error of the bundle.
    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        match load(files) {
            Ok(_) => Vec::new(),
            Err(diags) => diags
                .iter()
                .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
                .collect(),
        }
    }

    const FLOW: &str = r#"name = "Flow"
[[step]]
id = "start"
choices = [
  { label = "A", goto = "a" },
  { label = "B" },
]
goto = "b"

[[step]]
id = "a"
say = "a"
end = true
goto = "start"

[[step]]
id = "b"
ask = { var = "topic" }

[[step]]
id = "c"
live_chat = "desk"

[live_chat.desk]
"#;

    #[test]
    fn successors_follow_the_documented_flow_semantics() {
        let bundle = load(&[("flow.toml", FLOW)]).expect("valid flow");
        let bot = &bundle.bots["flow"];
        // A choice without goto takes the step's goto.
        assert_eq!(graph::successors(bot, 0), vec![1, 2]);
        // `end = true` wins over `goto`.
        assert_eq!(graph::successors(bot, 1), Vec::<usize>::new());
        // An ask step continues at the next step, and so does a live chat step; the last
        // step has nowhere to go.
        assert_eq!(graph::successors(bot, 2), vec![3]);
        assert_eq!(graph::successors(bot, 3), Vec::<usize>::new());
    }

    #[test]
    fn choices_without_goto_fall_through_to_the_next_step() {
        let src = "name = \"F\"\n[[step]]\nid = \"s\"\nchoices = [{ label = \"x\" }]\n\
                   [[step]]\nid = \"t\"\nend = true\n[[step]]\nid = \"u\"\n";
        assert_eq!(
            errors(&[("f.toml", src)]),
            vec!["f.toml:9:6: step `u` is unreachable: no path from the first step `s` leads here"]
        );
    }

    #[test]
    fn a_step_reached_only_by_skip_is_reachable() {
        // Every choice jumps past `t`; only the skip button leads to it.
        let src = "name = \"F\"\n[[step]]\nid = \"s\"\nchoices = [{ label = \"x\", goto = \"u\" }]\n\
                   buttons = [\"skip\"]\n[[step]]\nid = \"t\"\n[[step]]\nid = \"u\"\n";
        assert_eq!(errors(&[("f.toml", src)]), Vec::<String>::new());
        // Without the button `t` is out of reach again.
        let no_skip = src.replace("buttons = [\"skip\"]\n", "");
        assert_eq!(
            errors(&[("f.toml", &no_skip)]),
            vec!["f.toml:6:6: step `t` is unreachable: no path from the first step `s` leads here"]
        );
    }

    #[test]
    fn a_step_after_an_end_is_unreachable_unless_something_jumps_there() {
        let src = "name = \"F\"\n[[step]]\nid = \"s\"\nend = true\n[[step]]\nid = \"t\"\n";
        assert_eq!(errors(&[("f.toml", src)]).len(), 1);
        let jump = "name = \"F\"\n[[step]]\nid = \"s\"\nchoices = [{ label = \"x\", goto = \"u\" }]\n\
                    end = true\n[[step]]\nid = \"t\"\n[[step]]\nid = \"u\"\n";
        // `end = true` stops even a step with choices: `u` and `t` are both unreachable.
        assert_eq!(errors(&[("f.toml", jump)]).len(), 2);
        let jump = jump.replace("end = true\n", "");
        // Now `s` leads to `u` only; `t` sits between and nothing leads to it.
        assert_eq!(
            errors(&[("f.toml", &jump)]),
            vec!["f.toml:6:6: step `t` is unreachable: no path from the first step `s` leads here"]
        );
    }

    #[test]
    fn references_get_a_did_you_mean_only_when_close() {
        let src = "name = \"F\"\n[[step]]\nid = \"greeting\"\ngoto = \"greting\"\n\
                   [[step]]\nid = \"x\"\ngoto = \"zzz\"\n";
        assert_eq!(
            errors(&[("f.toml", src)]),
            vec![
                "f.toml:4:8: goto target `greting` is not a step of this bot; did you mean `greeting`?",
                "f.toml:6:6: step `x` is unreachable: no path from the first step `greeting` leads here",
                "f.toml:7:8: goto target `zzz` is not a step of this bot",
            ]
        );
    }

    #[test]
    fn webhook_urls_resolve_from_the_environment() {
        let bot = |url: &str| {
            format!(
                "name = \"F\"\n[[step]]\nid = \"s\"\n[webhook.w]\nkind = \"slack\"\nurl = \"{url}\"\n"
            )
        };
        assert!(errors(&[("f.toml", &bot("${HOOK_URL}"))]).is_empty());
        assert!(errors(&[("f.toml", &bot("${UNSET_URL:-}"))]).is_empty());
        assert!(errors(&[("f.toml", &bot("https://fixed.example/x"))]).is_empty());
        assert_eq!(
            errors(&[("f.toml", &bot("${UNSET_URL}"))]),
            vec![
                "f.toml:6:7: webhook `w` url: environment variable `UNSET_URL` is not set \
                 (write `${UNSET_URL:-}` to switch the webhook off while it is unset)"
            ]
        );
        let not_url = errors(&[("f.toml", &bot("${NOT_A_URL}"))]);
        assert_eq!(not_url.len(), 1);
        assert!(not_url[0].contains("must start with http:// or https://"));
        assert!(
            !not_url[0].contains("hooks.example"),
            "the secret is echoed: {not_url:?}"
        );
    }

    #[test]
    fn origins() {
        for ok in [
            "*",
            "https://acme.example",
            "http://localhost:8080",
            "https://sub.acme.example:443",
            "http://127.0.0.1:3000",
            "http://[::1]:8080",
        ] {
            assert!(is_origin(ok), "{ok}");
        }
        for bad in [
            "acme.example",
            "https://acme.example/",
            "https://acme.example/chat",
            "ftp://acme.example",
            "https://",
            "https://acme..example",
            "https://acme.example:0",
            "https://acme.example:99999",
            "https://acme.example:",
            "https://user@acme.example",
            "https://*.acme.example",
            "https://acme.example?x=1",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }

    #[test]
    fn bot_ids_and_variable_names() {
        assert!(is_valid_bot_id("support"));
        assert!(is_valid_bot_id("2nd-line_bot"));
        assert!(!is_valid_bot_id("Support"));
        assert!(!is_valid_bot_id("-x"));
        assert!(!is_valid_bot_id("a b"));
        assert!(!is_valid_bot_id(""));
        assert!(is_identifier("topic"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("first-name"));
        assert!(!is_identifier("Name"));
    }
}
