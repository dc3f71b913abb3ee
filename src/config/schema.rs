//! The config bundle's schema: these serde types are the one source of truth for what a
//! bundle may say. `docs/config.md` documents every key here; keep the two in step.
//!
//! Fields that other parts of the bundle refer to, or that validation reports on, are
//! `Spanned` so an error can point at `file:line:col`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::contacts::ContactField;
use super::values::{ByteSize, Color, DurationValue, Email, EnvString, Template};

/// One bot: the file `bots/<id>.toml`. Its id is the file name.
///
/// The collections (`step`, `live_chat`, `offline_form`, `webhook`) are loaded item by item
/// so that one broken step does not hide the errors of the next; see `load.rs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bot {
    pub header: BotHeader,
    pub steps: Vec<Step>,
    pub live_chat: BTreeMap<String, LiveChat>,
    pub offline_form: BTreeMap<String, OfflineForm>,
    pub webhook: BTreeMap<String, Webhook>,
}

/// Keys of a bot file whose values are collections, loaded item by item.
pub const BOT_COLLECTION_KEYS: [&str; 4] = ["step", "live_chat", "offline_form", "webhook"];

/// The top-level scalar settings of a bot file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotHeader {
    /// Shown to visitors and agents.
    pub name: Spanned<String>,
    /// Origins allowed to embed the widget; empty means any origin.
    #[serde(default)]
    pub allowed_origins: Vec<Spanned<String>>,
    /// Languages the bot speaks; the first is the default. Texts may be given per language.
    #[serde(default = "default_languages")]
    pub languages: Vec<Spanned<String>>,
    /// Widget appearance.
    #[serde(default)]
    pub widget: Widget,
    /// Files visitors and agents send in a chat (`[attachments]`).
    #[serde(default)]
    pub attachments: Attachments,
    /// Typed at any step while the bot leads, any of these starts the bot's Live Chat
    /// action: one list for every language, or a list per language.
    #[serde(default)]
    pub handoff_phrases: HandoffPhrases,
    /// `[[contact_field]]`: customer details kept per visitor beyond name and email.
    #[serde(default, rename = "contact_field")]
    pub contact_fields: Vec<ContactField>,
}

impl BotHeader {
    /// The contact field declared as `name`.
    pub fn contact_field(&self, name: &str) -> Option<&ContactField> {
        self.contact_fields
            .iter()
            .find(|f| f.name.get_ref() == name)
    }
}

/// `[attachments]` of a bot file: whether files may be sent in its chats, which kinds, and
/// how large.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachments {
    /// Whether visitors and agents may send files at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The kinds allowed, as told by the file's content (default all of them).
    #[serde(default = "all_attachment_kinds")]
    pub types: Vec<AttachmentKind>,
    /// The largest file (default `10MB`).
    #[serde(default = "default_attachment_size")]
    pub max_size: ByteSize,
    /// All files of one conversation together (default `50MB`).
    #[serde(default = "default_conversation_total")]
    pub conversation_total: ByteSize,
}

impl Default for Attachments {
    fn default() -> Self {
        Attachments {
            enabled: true,
            types: all_attachment_kinds(),
            max_size: default_attachment_size(),
            conversation_total: default_conversation_total(),
        }
    }
}

/// `handoff_phrases`: `["live agent", …]`, or `{ en = ["live agent"], es = ["agente"] }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum HandoffPhrases {
    Any(Vec<String>),
    PerLanguage(BTreeMap<String, Vec<String>>),
}

impl Default for HandoffPhrases {
    fn default() -> Self {
        HandoffPhrases::Any(Vec::new())
    }
}

impl HandoffPhrases {
    /// Whether any phrase is given at all.
    pub fn is_empty(&self) -> bool {
        match self {
            HandoffPhrases::Any(list) => list.is_empty(),
            HandoffPhrases::PerLanguage(map) => map.values().all(Vec::is_empty),
        }
    }

    /// Whether `text` holds a phrase of one of `languages` (a tag matches its primary
    /// subtag's list too), ignoring case, punctuation and spacing.
    pub fn matches(&self, text: &str, languages: &[&str]) -> bool {
        let said = normalize(text);
        let hit = |list: &Vec<String>| {
            list.iter()
                .map(|p| normalize(p))
                .any(|p| !p.is_empty() && format!(" {said} ").contains(&format!(" {p} ")))
        };
        match self {
            HandoffPhrases::Any(list) => hit(list),
            HandoffPhrases::PerLanguage(map) => map.iter().any(|(lang, list)| {
                languages.iter().any(|l| {
                    let primary = l.split(['-', '_']).next().unwrap_or(l);
                    lang.eq_ignore_ascii_case(l) || lang.eq_ignore_ascii_case(primary)
                }) && hit(list)
            }),
        }
    }
}

fn yes() -> bool {
    true
}

fn all_attachment_kinds() -> Vec<AttachmentKind> {
    vec![
        AttachmentKind::Image,
        AttachmentKind::Audio,
        AttachmentKind::Video,
        AttachmentKind::Pdf,
        AttachmentKind::File,
    ]
}

fn default_attachment_size() -> ByteSize {
    ByteSize(10_000_000)
}

fn default_conversation_total() -> ByteSize {
    ByteSize(50_000_000)
}

/// What a file is, decided from its first bytes: a raster image (PNG, JPEG, GIF, WebP), audio,
/// video, a PDF, or any other file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    Image,
    Audio,
    Video,
    Pdf,
    File,
}

/// Lowercase words separated by single spaces, punctuation dropped.
fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn default_languages() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "en".to_string())]
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widget {
    #[serde(default = "default_title")]
    pub title: Text,
    #[serde(default = "default_color")]
    pub color: Color,
    #[serde(default)]
    pub position: WidgetPosition,
    /// The launcher bubble's label.
    #[serde(default = "default_launcher")]
    pub launcher: Text,
    /// Shown above the first message, like a subtitle.
    #[serde(default)]
    pub subtitle: Option<Text>,
    /// An avatar image shown beside the bot's messages.
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// Open the widget by itself after this long on the page (absent: never).
    #[serde(default)]
    pub auto_open: Option<DurationValue>,
}

impl Default for Widget {
    fn default() -> Self {
        Widget {
            title: default_title(),
            color: default_color(),
            position: WidgetPosition::default(),
            launcher: default_launcher(),
            subtitle: None,
            avatar_url: None,
            auto_open: None,
        }
    }
}

fn default_title() -> Text {
    Text::Plain(Template::literal("Chat with us"))
}
fn default_launcher() -> Text {
    Text::Plain(Template::literal("Chat"))
}
fn default_color() -> Color {
    Color("#0b6efd".into())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WidgetPosition {
    Left,
    #[default]
    Right,
}

/// A string shown to people: one text, or one per language (`{ en = "…", de = "…" }`).
/// Texts are minijinja templates. (Deserialized by hand in `values.rs`, so that a template
/// error inside keeps its message and position.)
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    Plain(Template),
    PerLanguage(BTreeMap<String, Template>),
}

impl Text {
    /// The text for `language`, falling back to the first one given.
    pub fn for_language(&self, language: &str) -> &str {
        match self {
            Text::Plain(t) => t.as_str(),
            Text::PerLanguage(map) => map
                .get(language)
                .or_else(|| map.values().next())
                .map(|t| t.as_str())
                .unwrap_or(""),
        }
    }

    /// Every template in this text, with its language (None for a plain text).
    pub fn templates(&self) -> Vec<(Option<&str>, &Template)> {
        match self {
            Text::Plain(t) => vec![(None, t)],
            Text::PerLanguage(map) => map.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
        }
    }
}

/// One step of the conversation flow. Steps run in file order unless one says where to go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: Spanned<String>,
    /// What the bot says.
    #[serde(default)]
    pub say: Option<Text>,
    /// Buttons the visitor picks from; each may set variables and jump.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// A question whose answer is collected into a variable.
    #[serde(default)]
    pub ask: Option<Ask>,
    /// A link button (for example a scheduling page).
    #[serde(default)]
    pub link: Option<Link>,
    /// The Live Chat action this step starts (a key of `[live_chat.*]`).
    #[serde(default)]
    pub live_chat: Option<Spanned<String>>,
    /// Navigation buttons offered with this step.
    #[serde(default)]
    pub buttons: Vec<Spanned<FlowButton>>,
    /// Where to go after this step (default: the next step in the file).
    #[serde(default)]
    pub goto: Option<Spanned<String>>,
    /// End the conversation after this step.
    #[serde(default)]
    pub end: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub label: Text,
    /// The value recorded for this choice (default: the label).
    #[serde(default)]
    pub value: Option<String>,
    /// Variables to set when picked.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub goto: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    /// The variable the answer is stored in (`name` and `email` also fill the visitor's profile).
    pub var: Spanned<String>,
    #[serde(default, rename = "type")]
    pub kind: AskKind,
    /// Shown when the answer does not fit `type`; the question is asked again.
    #[serde(default = "default_retry_message")]
    pub retry_message: Text,
    /// Answers longer than this are refused.
    #[serde(default = "default_ask_max")]
    pub max: u32,
}

fn default_retry_message() -> Text {
    Text::Plain(Template::literal(
        "Sorry, that doesn't look right. Please try again.",
    ))
}
fn default_ask_max() -> u32 {
    500
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AskKind {
    #[default]
    Text,
    Email,
    Phone,
    Number,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub label: Text,
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowButton {
    /// Go on to the next step without answering.
    Skip,
    /// Return to the previous step.
    Back,
}

/// A Live Chat action: how a conversation is handed from the bot to a person.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveChat {
    #[serde(default = "default_modes")]
    pub modes: Vec<Spanned<ChatMode>>,
    #[serde(default)]
    pub button: ButtonStyle,
    /// Asked before connecting, in this order.
    #[serde(default)]
    pub collect: Vec<Spanned<CollectField>>,
    #[serde(default = "default_name_prompt")]
    pub name_prompt: Text,
    #[serde(default = "default_email_prompt")]
    pub email_prompt: Text,
    #[serde(default = "default_welcome")]
    pub welcome_message: Text,
    #[serde(default = "default_handoff")]
    pub handoff_message: Text,
    #[serde(default = "default_assigned")]
    pub assigned_message: Text,
    #[serde(default = "default_takeover")]
    pub takeover_message: Text,
    #[serde(default = "default_video")]
    pub video_message: Text,
    #[serde(default = "default_timeout_message")]
    pub timeout_message: Text,
    #[serde(default = "default_offline_message")]
    pub offline_message: Text,
    /// Nobody accepts within this → the timeout path.
    #[serde(default = "default_accept_timeout")]
    pub accept_timeout: DurationValue,
    /// The visitor is silent this long → the chat ends by itself.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: DurationValue,
    /// The offline form shown on timeout or when nobody is online; absent: the flow goes on.
    #[serde(default)]
    pub offline_form: Option<Spanned<String>>,
    /// Webhooks (keys of `[webhook.*]`) told of new requests, timeouts and offline messages.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
    /// Addresses mailed when a request of this action starts ringing (the new-request
    /// mail, through the outbox). Only these: a visitor can never choose one.
    #[serde(default)]
    pub notify_email: Vec<Email>,
    /// `ring`: every eligible agent rings, first accept wins. `auto`: offered to the
    /// least-loaded eligible agent, then the next after `offer_timeout`.
    #[serde(default)]
    pub assignment: Assignment,
    #[serde(default = "default_offer_timeout")]
    pub offer_timeout: DurationValue,
    /// Routing rules: the first that matches names the team that rings.
    #[serde(default)]
    pub route: Vec<Route>,
    /// Opening hours; outside them the offline path is taken at once.
    #[serde(default)]
    pub hours: Option<Hours>,
}

fn default_modes() -> Vec<Spanned<ChatMode>> {
    vec![Spanned::new(0..0, ChatMode::Text)]
}
fn default_name_prompt() -> Text {
    Text::Plain(Template::literal("May I have your name?"))
}
fn default_email_prompt() -> Text {
    Text::Plain(Template::literal(
        "And your email address, in case we get cut off?",
    ))
}
fn default_welcome() -> Text {
    Text::Plain(Template::literal("Let me find someone for you."))
}
fn default_handoff() -> Text {
    Text::Plain(Template::literal("Connecting you to our team…"))
}
fn default_assigned() -> Text {
    Text::Plain(Template::literal("{{ agent.name }} has joined the chat."))
}
fn default_takeover() -> Text {
    Text::Plain(Template::literal(
        "{{ agent.name }} has taken over the conversation.",
    ))
}
fn default_video() -> Text {
    Text::Plain(Template::literal(
        "Video call accepted — allow your camera to start.",
    ))
}
fn default_timeout_message() -> Text {
    Text::Plain(Template::literal("Sorry, nobody is free right now."))
}
fn default_offline_message() -> Text {
    Text::Plain(Template::literal("We're offline at the moment."))
}
fn default_accept_timeout() -> DurationValue {
    DurationValue::from_secs(90)
}
fn default_idle_timeout() -> DurationValue {
    DurationValue::from_secs(600)
}
fn default_offer_timeout() -> DurationValue {
    DurationValue::from_secs(30)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatMode {
    Text,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectField {
    Name,
    Email,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    #[default]
    Ring,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonStyle {
    #[serde(default = "default_button_label")]
    pub label: Text,
    #[serde(default)]
    pub style: ButtonKind,
}

impl Default for ButtonStyle {
    fn default() -> Self {
        ButtonStyle {
            label: default_button_label(),
            style: ButtonKind::default(),
        }
    }
}

fn default_button_label() -> Text {
    Text::Plain(Template::literal("Talk to a person"))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonKind {
    #[default]
    Primary,
    Secondary,
}

/// `{ when = { topic = "billing" }, team = "billing" }`: all `when` keys must match.
/// Keys are collected variables or `page_url` (a `*` glob), `language`, `country`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub when: BTreeMap<String, OneOrMany>,
    pub team: Spanned<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `hours = { timezone = "Europe/Berlin", open = ["mon-fri 08:00-18:00", "sat 10:00-14:00"] }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    pub timezone: Spanned<String>,
    pub open: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineForm {
    #[serde(default = "default_form_title")]
    pub title: Text,
    /// A line of text above the fields.
    #[serde(default)]
    pub intro: Option<Text>,
    pub fields: Vec<FormField>,
    /// Who receives submissions. Only these addresses: a visitor can never choose one.
    pub email_to: Vec<Email>,
    #[serde(default = "default_subject")]
    pub subject: Template,
    #[serde(default = "default_thank_you")]
    pub thank_you: Text,
}

fn default_form_title() -> Text {
    Text::Plain(Template::literal("Leave us a message"))
}
fn default_subject() -> Template {
    Template::literal("New offline message")
}
fn default_thank_you() -> Text {
    Text::Plain(Template::literal(
        "Thanks — we'll get back to you by email.",
    ))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    pub name: Spanned<String>,
    pub label: Text,
    #[serde(default, rename = "type")]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    /// Longest accepted answer, in characters.
    #[serde(default = "default_field_max")]
    pub max: u32,
    /// For `type = "select"`: the options offered.
    #[serde(default)]
    pub options: Vec<String>,
}

fn default_field_max() -> u32 {
    1000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    #[default]
    Text,
    Email,
    Phone,
    Textarea,
    Select,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub kind: WebhookKind,
    /// Usually `${ENV_VAR}`: webhook URLs are secrets.
    pub url: EnvString,
    /// For `kind = "generic"`: the HMAC-SHA256 key the body is signed with.
    #[serde(default)]
    pub secret: Option<EnvString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    Slack,
    GoogleChat,
    Teams,
    Generic,
}

/// `agents.toml`: the roster.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    #[serde(default, rename = "team")]
    pub teams: Vec<Team>,
    #[serde(default, rename = "agent")]
    pub agents: Vec<Agent>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub id: Spanned<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The bots (chat interfaces) this team serves.
    #[serde(default)]
    pub bots: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub name: String,
    pub email: Email,
    #[serde(default)]
    pub role: Role,
    /// Parallel conversations this agent holds at most.
    #[serde(default = "default_max_chats")]
    pub max_chats: Spanned<u32>,
    pub teams: Spanned<Vec<Spanned<String>>>,
}

impl Agent {
    /// The ids of the agent's teams, in the order the roster lists them.
    pub fn team_ids(&self) -> impl Iterator<Item = &str> {
        self.teams.get_ref().iter().map(|t| t.get_ref().as_str())
    }
}

fn default_max_chats() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Agent,
    Admin,
}

/// `responses.toml`: canned responses ("text blocks"), found with `#` in the console.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Responses {
    #[serde(default, rename = "response")]
    pub responses: Vec<Response>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub shortcut: Spanned<String>,
    pub text: Template,
    /// Offered only in these bots' conversations (empty: all).
    #[serde(default)]
    pub bots: Vec<Spanned<String>>,
}
