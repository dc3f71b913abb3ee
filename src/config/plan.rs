//! The plan: what installing a bundle changes against the live one, one change a line:
//! `+ bot sales`, `- team night`, `~ agent ana@acme.example: max_chats 3 → 5`.
//!
//! Pure: two bundles in, a plan out. Bundles are compared by meaning (the parsed schema,
//! defaults filled in), so moving a comment changes nothing; a file whose text changed
//! without any change in meaning still gets a line, so an apply never looks like a no-op.
//! Values are shown as written: a `${VAR}` is never resolved, and a webhook URL or secret
//! written out literally is never printed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Debug};

use serde::{Serialize, Serializer};

use super::schema::{
    Agent, Bot, Choice, FormField, LiveChat, OfflineForm, OneOrMany, Response, Route, Step, Team,
    Text, Webhook,
};
use super::values::{DurationValue, EnvString};
use super::{AGENTS_FILE, Bundle, RESPONSES_FILE, bot_id};

/// Values longer than this (in characters) are shortened with `…`.
const MAX_VALUE_CHARS: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Change,
    Remove,
}

impl Op {
    fn sign(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Change => "~",
            Op::Remove => "-",
        }
    }
}

/// What a change is about: the things a bundle holds, and (for a change in text only) a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bot,
    Agent,
    Team,
    Response,
    File,
}

impl Kind {
    /// The order of the summary.
    const ALL: [Kind; 5] = [
        Kind::Bot,
        Kind::Agent,
        Kind::Team,
        Kind::Response,
        Kind::File,
    ];

    fn noun(self) -> &'static str {
        match self {
            Kind::Bot => "bot",
            Kind::Agent => "agent",
            Kind::Team => "team",
            Kind::Response => "response",
            Kind::File => "file",
        }
    }
}

/// One thing added, removed or changed. A change lists what changed in it, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub op: Op,
    pub kind: Kind,
    /// The bot's id, the team's id, the agent's email, the response's shortcut, the file name.
    pub id: String,
    pub details: Vec<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = format!("{} {} {}", self.op.sign(), self.kind.noun(), self.id);
        if self.details.is_empty() {
            return f.write_str(&head);
        }
        for (i, detail) in self.details.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{head}: {detail}")?;
        }
        Ok(())
    }
}

/// Every change from one bundle to another: bots first, then agents, teams, responses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    /// What installing `new` changes where `old` is live.
    pub fn between(old: &Bundle, new: &Bundle) -> Plan {
        let mut changes = Vec::new();
        diff_things(
            &mut changes,
            Kind::Bot,
            keyed(&old.bots),
            keyed(&new.bots),
            bot_node,
        );
        diff_things(
            &mut changes,
            Kind::Agent,
            agents(old),
            agents(new),
            agent_node,
        );
        diff_things(&mut changes, Kind::Team, teams(old), teams(new), team_node);
        diff_things(
            &mut changes,
            Kind::Response,
            responses(old),
            responses(new),
            response_node,
        );
        let text_only = files_changed_in_text_only(old, new, &changes);
        changes.extend(text_only);
        Plan { changes }
    }

    /// Whether nothing at all changes, not even a file's text.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// One line per change, as `Display` prints them.
    pub fn lines(&self) -> Vec<String> {
        self.changes
            .iter()
            .flat_map(|c| {
                c.to_string()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Counts by kind, like `+1 bot, ~2 agents, -1 team`, or `no changes`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for kind in Kind::ALL {
            for op in [Op::Add, Op::Change, Op::Remove] {
                let n = self
                    .changes
                    .iter()
                    .filter(|c| c.kind == kind && c.op == op)
                    .count();
                if n > 0 {
                    let plural = if n == 1 { "" } else { "s" };
                    parts.push(format!("{}{n} {}{plural}", op.sign(), kind.noun()));
                }
            }
        }
        if parts.is_empty() {
            "no changes".to_string()
        } else {
            parts.join(", ")
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        Ok(())
    }
}

/// A plan serializes as its lines.
impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.lines())
    }
}

fn agents(b: &Bundle) -> Vec<(String, &Agent)> {
    first_by_key(&b.roster.agents, |a| a.email.as_str().to_string())
}

fn teams(b: &Bundle) -> Vec<(String, &Team)> {
    first_by_key(&b.roster.teams, |t| t.id.get_ref().clone())
}

fn responses(b: &Bundle) -> Vec<(String, &Response)> {
    first_by_key(&b.responses.responses, |r| r.shortcut.get_ref().clone())
}

fn keyed<T>(map: &BTreeMap<String, T>) -> Vec<(String, &T)> {
    map.iter().map(|(k, v)| (k.clone(), v)).collect()
}

/// Items by key, in their order; a repeated key (refused by validation) keeps the first.
fn first_by_key<T>(items: &[T], key: impl Fn(&T) -> String) -> Vec<(String, &T)> {
    let mut seen = BTreeSet::new();
    items
        .iter()
        .map(|item| (key(item), item))
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

/// Adds a change for every thing of `kind` that is only in `old`, only in `new`, or differs.
fn diff_things<T: PartialEq>(
    out: &mut Vec<Change>,
    kind: Kind,
    old: Vec<(String, &T)>,
    new: Vec<(String, &T)>,
    node: fn(&T) -> Node,
) {
    let old: BTreeMap<String, &T> = old.into_iter().collect();
    let new: BTreeMap<String, &T> = new.into_iter().collect();
    let ids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for id in ids {
        let change = |op, details| Change {
            op,
            kind,
            id: id.clone(),
            details,
        };
        match (old.get(id), new.get(id)) {
            (Some(_), None) => out.push(change(Op::Remove, Vec::new())),
            (None, Some(_)) => out.push(change(Op::Add, Vec::new())),
            (Some(o), Some(n)) if o != n => {
                let mut details = Vec::new();
                diff_nodes(&mut details, "", "", &node(o), &node(n));
                if details.is_empty() {
                    // Every setting is listed in the nodes below; this is a safety net.
                    details.push("changed".to_string());
                }
                out.push(change(Op::Change, details));
            }
            _ => {}
        }
    }
}

/// Files whose text differs although nothing they hold changed: comments, formatting, or a
/// value written out that equals its default.
fn files_changed_in_text_only(old: &Bundle, new: &Bundle, changes: &[Change]) -> Vec<Change> {
    let touched = |file: &str| {
        changes.iter().any(|c| match (file, c.kind) {
            (AGENTS_FILE, kind) => matches!(kind, Kind::Agent | Kind::Team),
            (RESPONSES_FILE, kind) => kind == Kind::Response,
            (_, Kind::Bot) => c.id == bot_id(file),
            _ => false,
        })
    };
    let files: BTreeSet<&String> = old.sources.keys().chain(new.sources.keys()).collect();
    files
        .into_iter()
        .filter(|file| old.sources.get(*file) != new.sources.get(*file) && !touched(file))
        .map(|file| {
            let (op, detail) = match (
                old.sources.contains_key(file),
                new.sources.contains_key(file),
            ) {
                (false, _) => (Op::Add, "no change in meaning"),
                (_, false) => (Op::Remove, "no change in meaning"),
                _ => (Op::Change, "comments or formatting only"),
            };
            Change {
                op,
                kind: Kind::File,
                id: file.clone(),
                details: vec![detail.to_string()],
            }
        })
        .collect()
}

/// A thing's settings as a tree, to compare field by field and print what differs.
enum Node {
    /// A value as it is shown; a secret one is compared but never shown.
    Leaf { shown: String, secret: bool },
    /// The fields of a struct: a change is named by its path, like `widget.color`.
    Fields(Vec<(&'static str, Node)>),
    /// Named entries, like the steps of a bot: `+ step faq`, `step human: goto bye → end`.
    Items {
        noun: &'static str,
        /// Whether the order of the entries means something (steps run in order).
        ordered: bool,
        entries: Vec<(String, Node)>,
    },
}

const NONE: &str = "(none)";

/// Appends a line per difference. `ctx` names the entry (`step human: `), `path` the field.
fn diff_nodes(out: &mut Vec<String>, ctx: &str, path: &str, old: &Node, new: &Node) {
    match (old, new) {
        (Node::Fields(o), Node::Fields(n)) if same_keys(o, n) => {
            for ((key, o), (_, n)) in o.iter().zip(n) {
                let path = match (path, *key) {
                    ("", key) => key.to_string(),
                    (path, "") => path.to_string(),
                    (path, key) => format!("{path}.{key}"),
                };
                diff_nodes(out, ctx, &path, o, n);
            }
        }
        (
            Node::Items {
                noun,
                ordered,
                entries: o,
            },
            Node::Items { entries: n, .. },
        ) => diff_items(out, ctx, noun, *ordered, o, n),
        _ => {
            if render(old, true) == render(new, true) {
                return;
            }
            let name = if path.is_empty() {
                String::new()
            } else {
                format!("{path} ")
            };
            if is_secret(old) || is_secret(new) {
                out.push(format!("{ctx}{name}changed (value hidden)"));
            } else {
                let (o, n) = (shorten(&render(old, false)), shorten(&render(new, false)));
                if o == n {
                    out.push(format!("{ctx}{name}changed"));
                } else {
                    out.push(format!("{ctx}{name}{o} → {n}"));
                }
            }
        }
    }
}

fn same_keys(a: &[(&str, Node)], b: &[(&str, Node)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((x, _), (y, _))| x == y)
}

fn diff_items(
    out: &mut Vec<String>,
    ctx: &str,
    noun: &str,
    ordered: bool,
    old: &[(String, Node)],
    new: &[(String, Node)],
) {
    let find = |list: &'_ [(String, Node)], id: &str| -> Option<usize> {
        list.iter().position(|(k, _)| k == id)
    };
    for (id, o) in old {
        match find(new, id) {
            None => out.push(format!("{ctx}- {noun} {id}")),
            Some(i) => diff_nodes(out, &format!("{ctx}{noun} {id}: "), "", o, &new[i].1),
        }
    }
    for (id, _) in new {
        if find(old, id).is_none() {
            out.push(format!("{ctx}+ {noun} {id}"));
        }
    }
    if ordered {
        let kept = |a: &[(String, Node)], b: &[(String, Node)]| -> Vec<String> {
            a.iter()
                .filter(|(k, _)| find(b, k).is_some())
                .map(|(k, _)| k.clone())
                .collect()
        };
        let (o, n) = (kept(old, new), kept(new, old));
        if o != n {
            out.push(format!(
                "{ctx}order of {noun}s {} → {}",
                o.join(", "),
                n.join(", ")
            ));
        }
    }
}

fn is_secret(node: &Node) -> bool {
    matches!(node, Node::Leaf { secret: true, .. })
}

/// A node on one line, for when it is compared whole; secrets only when `reveal` (to compare).
fn render(node: &Node, reveal: bool) -> String {
    match node {
        Node::Leaf { secret: true, .. } if !reveal => "(hidden)".to_string(),
        Node::Leaf { shown, .. } => shown.clone(),
        Node::Fields(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k} = {}", render(v, reveal)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Node::Items { entries, .. } => {
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k} {}", render(v, reveal)))
                .collect();
            format!("[{}]", inner.join(", "))
        }
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_VALUE_CHARS {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX_VALUE_CHARS - 1).collect();
        format!("{head}…")
    }
}

// ---- Building the nodes: every setting of the schema is listed here. ----

fn leaf(shown: impl Into<String>) -> Node {
    Node::Leaf {
        shown: shown.into(),
        secret: false,
    }
}

fn quoted(s: &str) -> Node {
    leaf(format!("{s:?}"))
}

/// An enum value the way it is written in TOML: `GoogleChat` → `google_chat`.
fn word_str(v: impl Debug) -> String {
    let mut out = String::new();
    for (i, c) in format!("{v:?}").chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn word(v: impl Debug) -> Node {
    leaf(word_str(v))
}

fn text_str(t: &Text) -> String {
    match t {
        Text::Plain(t) => format!("{:?}", t.as_str()),
        Text::PerLanguage(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(lang, t)| format!("{lang} = {:?}", t.as_str()))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

fn text(t: &Text) -> Node {
    leaf(text_str(t))
}

fn opt<T>(v: Option<&T>, node: impl Fn(&T) -> Node) -> Node {
    v.map_or_else(|| leaf(NONE), node)
}

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> Node {
    leaf(format!(
        "[{}]",
        items.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

fn duration(d: &DurationValue) -> Node {
    leaf(humantime::format_duration(d.get()).to_string())
}

/// As written: a `${VAR}` reference is shown, a value written out is a secret.
fn env_string(s: &EnvString) -> Node {
    Node::Leaf {
        shown: s.raw().to_string(),
        secret: !s.raw().contains("${"),
    }
}

fn bot_node(bot: &Bot) -> Node {
    let h = &bot.header;
    let w = &h.widget;
    Node::Fields(vec![
        ("name", quoted(h.name.get_ref())),
        (
            "allowed_origins",
            list(h.allowed_origins.iter().map(|s| s.get_ref().as_str())),
        ),
        (
            "languages",
            list(h.languages.iter().map(|s| s.get_ref().as_str())),
        ),
        ("handoff_phrases", leaf(phrases(&h.handoff_phrases))),
        (
            "widget",
            Node::Fields(vec![
                ("title", text(&w.title)),
                ("color", leaf(w.color.0.clone())),
                ("position", word(w.position)),
                ("launcher", text(&w.launcher)),
                ("subtitle", opt(w.subtitle.as_ref(), text)),
                ("avatar_url", opt(w.avatar_url.as_ref(), |s| quoted(s))),
                ("auto_open", opt(w.auto_open.as_ref(), duration)),
            ]),
        ),
        (
            "attachments",
            Node::Fields(vec![
                ("enabled", leaf(h.attachments.enabled.to_string())),
                (
                    "types",
                    leaf(format!(
                        "[{}]",
                        h.attachments
                            .types
                            .iter()
                            .map(word_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                ),
                (
                    "max_size",
                    leaf(format!("{}B", h.attachments.max_size.get())),
                ),
                (
                    "conversation_total",
                    leaf(format!("{}B", h.attachments.conversation_total.get())),
                ),
            ]),
        ),
        (
            "step",
            Node::Items {
                noun: "step",
                ordered: true,
                entries: bot
                    .steps
                    .iter()
                    .map(|s| (s.id.get_ref().clone(), step_node(s)))
                    .collect(),
            },
        ),
        (
            "live_chat",
            named("live_chat", &bot.live_chat, live_chat_node),
        ),
        (
            "offline_form",
            named("offline_form", &bot.offline_form, offline_form_node),
        ),
        ("webhook", named("webhook", &bot.webhook, webhook_node)),
    ])
}

fn named<T>(noun: &'static str, map: &BTreeMap<String, T>, node: fn(&T) -> Node) -> Node {
    Node::Items {
        noun,
        ordered: false,
        entries: map.iter().map(|(k, v)| (k.clone(), node(v))).collect(),
    }
}

/// Entries known by their place in a list: `choice 2`, `route 1`.
fn numbered<T>(noun: &'static str, items: &[T], node: fn(&T) -> Node) -> Node {
    Node::Items {
        noun,
        ordered: false,
        entries: items
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1).to_string(), node(v)))
            .collect(),
    }
}

/// Where a step leads: `goto bye`, `end`, or on to the next step.
fn flow(step: &Step) -> String {
    match (&step.goto, step.end) {
        (Some(g), false) => format!("goto {}", g.get_ref()),
        (Some(g), true) => format!("goto {}, end", g.get_ref()),
        (None, true) => "end".to_string(),
        (None, false) => "next step".to_string(),
    }
}

fn step_node(s: &Step) -> Node {
    Node::Fields(vec![
        ("say", opt(s.say.as_ref(), text)),
        ("choice", numbered("choice", &s.choices, choice_node)),
        (
            "ask",
            opt(s.ask.as_ref(), |a| {
                Node::Fields(vec![
                    ("var", leaf(a.var.get_ref().clone())),
                    ("type", word(a.kind)),
                    ("retry_message", text(&a.retry_message)),
                    ("max", leaf(a.max.to_string())),
                ])
            }),
        ),
        (
            "link",
            opt(s.link.as_ref(), |l| {
                Node::Fields(vec![("label", text(&l.label)), ("url", quoted(&l.url))])
            }),
        ),
        (
            "live_chat",
            opt(s.live_chat.as_ref(), |l| leaf(l.get_ref().clone())),
        ),
        (
            "buttons",
            leaf(format!(
                "[{}]",
                s.buttons
                    .iter()
                    .map(|b| word_str(b.get_ref()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
        // No key: shown as `step human: goto bye → end`.
        ("", leaf(flow(s))),
    ])
}

fn choice_node(c: &Choice) -> Node {
    let set: Vec<String> = c.set.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    Node::Fields(vec![
        ("label", text(&c.label)),
        ("value", opt(c.value.as_ref(), |v| quoted(v))),
        ("set", leaf(format!("{{{}}}", set.join(", ")))),
        ("goto", opt(c.goto.as_ref(), |g| leaf(g.get_ref().clone()))),
    ])
}

fn live_chat_node(l: &LiveChat) -> Node {
    Node::Fields(vec![
        (
            "modes",
            leaf(format!(
                "[{}]",
                l.modes
                    .iter()
                    .map(|m| word_str(m.get_ref()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
        (
            "button",
            Node::Fields(vec![
                ("label", text(&l.button.label)),
                ("style", word(l.button.style)),
            ]),
        ),
        (
            "collect",
            leaf(format!(
                "[{}]",
                l.collect
                    .iter()
                    .map(|c| word_str(c.get_ref()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
        ("name_prompt", text(&l.name_prompt)),
        ("email_prompt", text(&l.email_prompt)),
        ("welcome_message", text(&l.welcome_message)),
        ("handoff_message", text(&l.handoff_message)),
        ("assigned_message", text(&l.assigned_message)),
        ("takeover_message", text(&l.takeover_message)),
        ("video_message", text(&l.video_message)),
        ("timeout_message", text(&l.timeout_message)),
        ("offline_message", text(&l.offline_message)),
        ("accept_timeout", duration(&l.accept_timeout)),
        ("idle_timeout", duration(&l.idle_timeout)),
        (
            "offline_form",
            opt(l.offline_form.as_ref(), |f| leaf(f.get_ref().clone())),
        ),
        (
            "notify",
            list(l.notify.iter().map(|n| n.get_ref().as_str())),
        ),
        ("assignment", word(l.assignment)),
        ("offer_timeout", duration(&l.offer_timeout)),
        ("route", numbered("route", &l.route, route_node)),
        (
            "hours",
            opt(l.hours.as_ref(), |h| {
                Node::Fields(vec![
                    ("timezone", leaf(h.timezone.get_ref().clone())),
                    ("open", list(h.open.iter().map(|o| o.get_ref().as_str()))),
                ])
            }),
        ),
    ])
}

fn route_node(r: &Route) -> Node {
    let when: Vec<String> = r
        .when
        .iter()
        .map(|(k, v)| match v {
            OneOrMany::One(s) => format!("{k} = {s:?}"),
            OneOrMany::Many(_) => format!("{k} = {:?}", v.values()),
        })
        .collect();
    Node::Fields(vec![
        ("when", leaf(format!("{{{}}}", when.join(", ")))),
        ("team", leaf(r.team.get_ref().clone())),
    ])
}

fn offline_form_node(f: &OfflineForm) -> Node {
    Node::Fields(vec![
        ("title", text(&f.title)),
        ("intro", opt(f.intro.as_ref(), text)),
        (
            "field",
            Node::Items {
                noun: "field",
                ordered: true,
                entries: f
                    .fields
                    .iter()
                    .map(|x| (x.name.get_ref().clone(), form_field_node(x)))
                    .collect(),
            },
        ),
        ("email_to", list(f.email_to.iter().map(|e| e.as_str()))),
        ("subject", quoted(f.subject.as_str())),
        ("thank_you", text(&f.thank_you)),
    ])
}

fn form_field_node(f: &FormField) -> Node {
    Node::Fields(vec![
        ("label", text(&f.label)),
        ("type", word(f.kind)),
        ("required", leaf(f.required.to_string())),
        ("max", leaf(f.max.to_string())),
        ("options", list(f.options.iter().map(String::as_str))),
    ])
}

fn webhook_node(w: &Webhook) -> Node {
    Node::Fields(vec![
        ("kind", word(w.kind)),
        ("url", env_string(&w.url)),
        ("secret", opt(w.secret.as_ref(), env_string)),
    ])
}

fn team_node(t: &Team) -> Node {
    Node::Fields(vec![
        ("name", opt(t.name.as_ref(), |n| quoted(n))),
        ("bots", list(t.bots.iter().map(|b| b.get_ref().as_str()))),
    ])
}

fn agent_node(a: &Agent) -> Node {
    Node::Fields(vec![
        ("name", quoted(&a.name)),
        ("role", word(a.role)),
        ("max_chats", leaf(a.max_chats.get_ref().to_string())),
        (
            "teams",
            list(a.teams.get_ref().iter().map(|t| t.get_ref().as_str())),
        ),
    ])
}

fn response_node(r: &Response) -> Node {
    Node::Fields(vec![
        ("text", quoted(r.text.as_str())),
        ("bots", list(r.bots.iter().map(|b| b.get_ref().as_str()))),
    ])
}

/// `handoff_phrases` as one line: `["a", "b"]`, or `{ en = ["a"], es = ["b"] }`.
fn phrases(p: &crate::config::schema::HandoffPhrases) -> String {
    use crate::config::schema::HandoffPhrases;
    let quoted = |list: &Vec<String>| {
        let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", items.join(", "))
    };
    match p {
        HandoffPhrases::Any(list) => quoted(list),
        HandoffPhrases::PerLanguage(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(lang, list)| format!("{lang} = {}", quoted(list)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::{self, FileCtx};
    use crate::config::{Sources, hash_sources};

    /// A bundle parsed but not validated: the plan must not depend on validation rules.
    fn bundle(files: &[(&str, &str)]) -> Bundle {
        let sources: Sources = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut b = Bundle::empty();
        for (file, text) in &sources {
            let mut ctx = FileCtx::new(file, text);
            match file.as_str() {
                AGENTS_FILE => b.roster = load::parse_roster(&mut ctx).unwrap(),
                RESPONSES_FILE => b.responses = load::parse_responses(&mut ctx).unwrap(),
                _ => {
                    let bot = load::parse_bot(&mut ctx).unwrap();
                    b.bots.insert(bot_id(file).to_string(), bot);
                }
            }
            assert_eq!(ctx.diags, vec![], "{file}");
        }
        b.hash = hash_sources(&sources);
        b.sources = sources;
        b
    }

    const SUPPORT: &str = r#"name = "Acme Support"

[[step]]
id = "start"
say = "Hi!"

[[step]]
id = "human"
live_chat = "desk"
goto = "bye"

[[step]]
id = "bye"
say = "Bye."

[live_chat.desk]
accept_timeout = "90s"

[webhook.slack]
kind = "slack"
url = "${SLACK_HOOK}"
"#;

    const AGENTS: &str = r#"[[team]]
id = "support"
bots = ["support"]

[[team]]
id = "night"
bots = ["support"]

[[agent]]
name = "Ana Lima"
email = "ana@acme.example"
max_chats = 3
teams = ["support"]
"#;

    fn lines(old: &Bundle, new: &Bundle) -> Vec<String> {
        Plan::between(old, new).lines()
    }

    #[test]
    fn added_removed_and_changed_things_each_get_a_line_and_count_in_the_summary() {
        let old = bundle(&[("support.toml", SUPPORT), (AGENTS_FILE, AGENTS)]);
        let agents = AGENTS
            .replace("max_chats = 3", "max_chats = 5")
            .replace("[[team]]\nid = \"night\"\nbots = [\"support\"]\n\n", "");
        let new = bundle(&[
            ("support.toml", SUPPORT),
            ("sales.toml", "name = \"Sales\"\n[[step]]\nid = \"a\"\n"),
            (AGENTS_FILE, &agents),
        ]);
        let plan = Plan::between(&old, &new);
        assert_eq!(
            plan.lines(),
            vec![
                "+ bot sales",
                "~ agent ana@acme.example: max_chats 3 → 5",
                "- team night",
            ]
        );
        assert_eq!(plan.summary(), "+1 bot, ~1 agent, -1 team");
        assert_eq!(
            plan.to_string(),
            "+ bot sales\n~ agent ana@acme.example: max_chats 3 → 5\n- team night\n"
        );
        assert_eq!(
            serde_json::to_value(&plan).unwrap(),
            serde_json::json!(plan.lines())
        );
        // And back again: the same things the other way round.
        assert_eq!(
            lines(&new, &old),
            vec![
                "- bot sales",
                "~ agent ana@acme.example: max_chats 5 → 3",
                "+ team night",
            ]
        );
    }

    #[test]
    fn identical_bundles_have_an_empty_plan() {
        let b = bundle(&[("support.toml", SUPPORT), (AGENTS_FILE, AGENTS)]);
        let plan = Plan::between(&b, &b.clone());
        assert!(plan.is_empty());
        assert_eq!(plan.summary(), "no changes");
        assert_eq!(plan.to_string(), "");
    }

    #[test]
    fn changes_inside_a_bot_name_the_step_action_or_field() {
        let old = bundle(&[("support.toml", SUPPORT)]);
        let edited = SUPPORT
            .replace("goto = \"bye\"", "end = true")
            .replace("accept_timeout = \"90s\"", "accept_timeout = \"2m\"")
            .replace(
                "name = \"Acme Support\"",
                "name = \"Acme Help\"\n[widget]\ncolor = \"#ff0000\"",
            )
            .replace(
                "say = \"Bye.\"",
                "say = \"Bye.\"\n\n[[step]]\nid = \"faq\"\nsay = \"FAQ\"",
            );
        let new = bundle(&[("support.toml", &edited)]);
        assert_eq!(
            lines(&old, &new),
            vec![
                "~ bot support: name \"Acme Support\" → \"Acme Help\"",
                "~ bot support: widget.color #0b6efd → #ff0000",
                "~ bot support: step human: goto bye → end",
                "~ bot support: + step faq",
                "~ bot support: live_chat desk: accept_timeout 1m 30s → 2m",
            ]
        );
        assert_eq!(Plan::between(&old, &new).summary(), "~1 bot");
    }

    #[test]
    fn reordering_steps_is_a_change() {
        let old = bundle(&[(
            "b.toml",
            "name = \"B\"\n[[step]]\nid = \"a\"\n[[step]]\nid = \"z\"\n",
        )]);
        let new = bundle(&[(
            "b.toml",
            "name = \"B\"\n[[step]]\nid = \"z\"\n[[step]]\nid = \"a\"\n",
        )]);
        assert_eq!(
            lines(&old, &new),
            vec!["~ bot b: order of steps a, z → z, a"]
        );
    }

    #[test]
    fn choices_are_compared_one_by_one() {
        let src = |goto: &str| {
            format!(
                "name = \"B\"\n[[step]]\nid = \"a\"\nchoices = [{{ label = \"Yes\", goto = \"a\" }}, {{ label = \"No\", goto = \"{goto}\" }}]\n[[step]]\nid = \"b\"\n"
            )
        };
        let old = bundle(&[("b.toml", &src("a"))]);
        let new = bundle(&[("b.toml", &src("b"))]);
        assert_eq!(
            lines(&old, &new),
            vec!["~ bot b: step a: choice 2: goto a → b"]
        );
    }

    #[test]
    fn webhook_urls_are_compared_as_written_and_literal_secrets_never_shown() {
        let old = bundle(&[("support.toml", SUPPORT)]);
        let renamed = SUPPORT.replace("${SLACK_HOOK}", "${SLACK_SUPPORT_HOOK}");
        let new = bundle(&[("support.toml", &renamed)]);
        assert_eq!(
            lines(&old, &new),
            vec!["~ bot support: webhook slack: url ${SLACK_HOOK} → ${SLACK_SUPPORT_HOOK}"]
        );

        let secret_a = "https://hooks.slack.example/services/T000/SECRET-A";
        let secret_b = "https://hooks.slack.example/services/T000/SECRET-B";
        let a = bundle(&[("support.toml", &SUPPORT.replace("${SLACK_HOOK}", secret_a))]);
        let b = bundle(&[("support.toml", &SUPPORT.replace("${SLACK_HOOK}", secret_b))]);
        let got = lines(&a, &b);
        assert_eq!(
            got,
            vec!["~ bot support: webhook slack: url changed (value hidden)"]
        );
        let from_env = lines(&old, &a).join("\n");
        assert!(!from_env.contains("SECRET"), "{from_env}");
        assert!(from_env.contains("(value hidden)"), "{from_env}");
    }

    #[test]
    fn a_change_in_text_only_is_still_shown() {
        let old = bundle(&[("support.toml", SUPPORT), (AGENTS_FILE, AGENTS)]);
        let commented = format!("# The support bot\n{SUPPORT}");
        // `max_chats = 3` is the default: writing it out changes nothing.
        let defaults = AGENTS.replace("max_chats = 3\n", "");
        let new = bundle(&[
            ("support.toml", &commented),
            (AGENTS_FILE, &defaults),
            (RESPONSES_FILE, ""),
        ]);
        let plan = Plan::between(&old, &new);
        assert_eq!(
            plan.lines(),
            vec![
                "~ file agents.toml: comments or formatting only",
                "+ file responses.toml: no change in meaning",
                "~ file support.toml: comments or formatting only",
            ]
        );
        assert!(!plan.is_empty());
        assert_eq!(plan.summary(), "+1 file, ~2 files");
    }

    #[test]
    fn long_texts_are_shortened_and_a_hidden_difference_still_reported() {
        let long = "x".repeat(80);
        let old = bundle(&[(
            "b.toml",
            &format!("name = \"B\"\n[[step]]\nid = \"a\"\nsay = \"{long}1\"\n"),
        )]);
        let new = bundle(&[(
            "b.toml",
            &format!("name = \"B\"\n[[step]]\nid = \"a\"\nsay = \"{long}2\"\n"),
        )]);
        assert_eq!(lines(&old, &new), vec!["~ bot b: step a: say changed"]);
        let short = bundle(&[(
            "b.toml",
            "name = \"B\"\n[[step]]\nid = \"a\"\nsay = \"Hi\"\n",
        )]);
        let got = lines(&short, &old);
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("~ bot b: step a: say \"Hi\" → \"xxx"),
            "{got:?}"
        );
        assert!(got[0].ends_with('…'), "{got:?}");
    }
}
