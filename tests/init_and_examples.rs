//! `livechat init` through the real binary, and the bundles it writes and that
//! `examples/bots` holds, loaded through the library. The example must use every key and
//! every kind of value the schema has, so it stays a complete reference that runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use livechat::config::schema::*;
use livechat::config::{self, Bundle};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

fn livechat(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livechat"))
        .args(args)
        .env_remove("LIVECHAT_CONFIG")
        .env_remove("LIVECHAT_BOTS_DIR")
        .output()
        .expect("the livechat binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Loads a bundle the way the server does, with an empty environment; panics with every
/// error rendered as `file:line:col` when it does not load.
fn load(dir: &Path) -> Bundle {
    match config::load_dir(dir, &|_| None) {
        Ok(Ok(bundle)) => bundle,
        Ok(Err(diags)) => panic!(
            "{}",
            diags
                .iter()
                .map(|d| d.render(&dir.display().to_string()))
                .collect::<String>()
        ),
        Err(e) => panic!("{e}"),
    }
}

/// Every file of `dir` (not recursing) with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).unwrap())
        })
        .collect()
}

const STARTER_FILES: [&str; 3] = ["agents.toml", "responses.toml", "support.toml"];

#[test]
fn init_writes_a_valid_bundle_and_never_overwrites_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not-yet").join("bots");

    let out = livechat(&["init".as_ref(), &dir]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for file in STARTER_FILES {
        assert!(dir.join(file).is_file(), "{file} missing");
        assert!(
            stdout.contains(&dir.join(file).display().to_string()),
            "{stdout}"
        );
    }
    let shown = dir.display().to_string();
    assert!(
        stdout.contains(&format!("livechat validate {shown}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("livechat serve --bots-dir {shown}")),
        "{stdout}"
    );

    let bundle = load(&dir);
    assert_eq!(bundle.bots.keys().collect::<Vec<_>>(), ["support"]);
    assert!(!bundle.roster.agents.is_empty() && !bundle.roster.teams.is_empty());
    assert!(!bundle.responses.responses.is_empty());
    assert_eq!(language_gaps(&bundle), Vec::<String>::new());
    let pristine = fs::read_to_string(dir.join("agents.toml")).unwrap();

    // The admin edits a file; a second init must refuse and leave everything alone.
    let edited = format!("{pristine}\n# my own team goes here\n");
    fs::write(dir.join("agents.toml"), &edited).unwrap();
    let before = snapshot(&dir);
    let out = livechat(&["init".as_ref(), &dir]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&dir.join("agents.toml").display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(snapshot(&dir), before, "a refused init changed files");

    // One file missing, the others present: still refused, and the missing one not written.
    fs::remove_file(dir.join("responses.toml")).unwrap();
    let before = snapshot(&dir);
    let out = livechat(&["init".as_ref(), &dir]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(snapshot(&dir), before, "a refused init changed files");

    // --force puts the starter files back as they were written first.
    let out = livechat(&["init".as_ref(), &dir, "--force".as_ref()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(dir.join("agents.toml")).unwrap(),
        pristine
    );
    assert!(dir.join("responses.toml").is_file());
    assert_eq!(load(&dir).bots.keys().collect::<Vec<_>>(), ["support"]);
}

#[test]
fn init_into_a_path_that_is_a_file_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bots");
    fs::write(&file, "not a directory").unwrap();
    let out = livechat(&["init".as_ref(), &file]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).starts_with("error: "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a directory");
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots")
}

/// The example bundle, copied to a temporary directory first so that loading it (which
/// takes the bundle lock, creating a lock file) leaves the source tree untouched.
fn load_examples() -> (tempfile::TempDir, Bundle) {
    let tmp = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(examples_dir()).unwrap() {
        let entry = entry.unwrap();
        // `tests/` holds the bundle's test cases, not bots.
        if entry.path().is_file() {
            fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    let bundle = load(tmp.path());
    (tmp, bundle)
}

#[test]
fn the_example_bundle_loads() {
    let (_tmp, bundle) = load_examples();
    assert_eq!(
        bundle.bots.keys().collect::<Vec<_>>(),
        ["afterhours", "sales", "support"]
    );
    assert_eq!(language_gaps(&bundle), Vec::<String>::new());
}

#[test]
fn the_example_bundle_uses_every_feature() {
    let (_tmp, b) = load_examples();
    let bots: Vec<&Bot> = b.bots.values().collect();
    let steps: Vec<&Step> = bots.iter().flat_map(|bot| &bot.steps).collect();
    let chats: Vec<&LiveChat> = bots.iter().flat_map(|bot| bot.live_chat.values()).collect();
    let forms: Vec<&OfflineForm> = bots
        .iter()
        .flat_map(|bot| bot.offline_form.values())
        .collect();
    let hooks: Vec<&Webhook> = bots.iter().flat_map(|bot| bot.webhook.values()).collect();

    // Every value of every enumeration appears somewhere.
    all_used(bots.iter().map(|bot| bot.header.widget.position));
    all_used(steps.iter().filter_map(|s| s.ask.as_ref()).map(|a| a.kind));
    all_used(steps.iter().flat_map(|s| &s.buttons).map(|b| *b.get_ref()));
    all_used(chats.iter().flat_map(|c| &c.modes).map(|m| *m.get_ref()));
    all_used(chats.iter().flat_map(|c| &c.collect).map(|f| *f.get_ref()));
    all_used(chats.iter().map(|c| c.assignment));
    all_used(chats.iter().map(|c| c.button.style));
    all_used(forms.iter().flat_map(|f| &f.fields).map(|f| f.kind));
    all_used(hooks.iter().map(|h| h.kind));
    all_used(b.roster.agents.iter().map(|a| a.role));

    // The support desk: topic choices set a variable that routes to two teams, automatic
    // assignment, opening hours, an offline form.
    let support = &b.bots["support"];
    let start = &support.steps[0];
    let topics: BTreeSet<&str> = start
        .choices
        .iter()
        .filter_map(|c| c.set.get("topic").map(String::as_str))
        .collect();
    assert_eq!(topics, BTreeSet::from(["billing", "technical"]));
    let desk = &support.live_chat["desk"];
    assert_eq!(desk.assignment, Assignment::Auto);
    assert_ne!(desk.offer_timeout.get(), std::time::Duration::from_secs(30));
    let teams: BTreeSet<&str> = desk
        .route
        .iter()
        .map(|r| r.team.get_ref().as_str())
        .collect();
    assert_eq!(teams, BTreeSet::from(["billing", "technical"]));
    assert!(desk.route.iter().any(|r| r.when.contains_key("topic")));
    assert!(desk.hours.is_some() && desk.offline_form.is_some());

    // Sales: name and email, a scheduling link, text and video.
    let sales = &b.bots["sales"];
    let collect: Vec<CollectField> = sales.live_chat["sales"]
        .collect
        .iter()
        .map(|f| *f.get_ref())
        .collect();
    assert_eq!(collect, [CollectField::Name, CollectField::Email]);
    assert!(sales.steps.iter().any(|s| s.link.is_some()));
    let asked: BTreeSet<&str> = sales
        .steps
        .iter()
        .filter_map(|s| s.ask.as_ref().map(|a| a.var.get_ref().as_str()))
        .collect();
    assert!(
        asked.contains("name") && asked.contains("email"),
        "{asked:?}"
    );

    // After hours: closed but for a short window, so the offline form is what shows.
    let oncall = &b.bots["afterhours"].live_chat["oncall"];
    let hours = oncall.hours.as_ref().expect("afterhours has hours");
    assert_eq!(
        hours
            .open
            .iter()
            .map(|o| o.get_ref().as_str())
            .collect::<Vec<_>>(),
        ["mon-fri 07:30-08:00"]
    );
    assert!(oncall.offline_form.is_some());

    // Routing on every kind of condition.
    let when_keys: BTreeSet<&str> = chats
        .iter()
        .flat_map(|c| &c.route)
        .flat_map(|r| r.when.keys().map(String::as_str))
        .collect();
    for key in ["topic", "page_url", "language", "country"] {
        assert!(when_keys.contains(key), "no route uses `{key}`");
    }
    assert!(
        chats
            .iter()
            .flat_map(|c| &c.route)
            .flat_map(|r| r.when.values())
            .any(|v| matches!(v, OneOrMany::Many(_)))
    );

    // Texts given per language, and plain.
    let texts: Vec<&Text> = steps.iter().filter_map(|s| s.say.as_ref()).collect();
    assert!(texts.iter().any(|t| matches!(t, Text::PerLanguage(_))));
    assert!(texts.iter().any(|t| matches!(t, Text::Plain(_))));

    // Webhook URLs are `${VAR:-}`: off without the environment, the value with it.
    for hook in &hooks {
        assert!(hook.url.raw().contains(":-}"), "{}", hook.url.raw());
        assert_eq!(hook.url.resolve(&|_| None).unwrap(), "");
        let set = |_: &str| Some("https://hooks.example.com/x".to_string());
        assert_eq!(
            hook.url.resolve(&set).unwrap(),
            "https://hooks.example.com/x"
        );
    }
    assert!(hooks.iter().any(|h| h.secret.is_some()));
}

/// The example writes every key of the schema at least once.
#[test]
fn the_example_bundle_writes_every_key() {
    let mut keys = BTreeSet::new();
    let mut files = 0;
    for entry in fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let table: toml::Table = fs::read_to_string(&path).unwrap().parse().unwrap();
            collect_keys(&toml::Value::Table(table), &mut keys);
            files += 1;
        }
    }
    assert!(files >= 5, "agents, responses and three bots");
    let missing: Vec<String> = schema_keys()
        .into_iter()
        .filter(|(_, key)| !keys.contains(*key))
        .map(|(ty, key)| format!("{ty}.{key}"))
        .collect();
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "keys the example never writes"
    );
}

/// `docs/config.md` names every key and every enumerated value of the schema.
#[test]
fn the_reference_documents_every_key_and_value() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md"))
        .expect("docs/config.md exists");
    let mut missing: Vec<String> = schema_keys()
        .into_iter()
        .filter(|(_, key)| !doc.contains(&format!("`{key}`")))
        .map(|(ty, key)| format!("key {ty}.{key}"))
        .collect();
    for (ty, value) in schema_values() {
        if !doc.contains(&format!("\"{value}\"")) && !doc.contains(&format!("`{value}`")) {
            missing.push(format!("value {ty}::{value}"));
        }
    }
    assert_eq!(missing, Vec::<String>::new(), "missing from docs/config.md");
}

fn collect_keys(value: &toml::Value, keys: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                keys.insert(k.clone());
                collect_keys(v, keys);
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect_keys(v, keys)),
        _ => {}
    }
}

/// Asserts that `used` holds every variant of the enumeration `T`.
fn all_used<T: DeserializeOwned + Debug>(used: impl IntoIterator<Item = T>) {
    let used: BTreeSet<String> = used.into_iter().map(|v| format!("{v:?}")).collect();
    let (name, variants) = enum_variants::<T>();
    assert_eq!(
        used.len(),
        variants.len(),
        "{name}: the example uses only {used:?} of {variants:?}"
    );
}

// --- The schema's own key lists, read from its serde derives ---------------------------

/// A deserializer that answers nothing but records the field or variant names that a
/// derived `Deserialize` asks for, so the tests follow `schema.rs` without a copied list.
struct Probe<'a>(&'a mut Option<(&'static str, &'static [&'static str])>);

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some((name, fields));
        Err(de::Error::custom("probe"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some((name, variants));
        Err(de::Error::custom("probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        identifier ignored_any
    }
}

fn names<T: DeserializeOwned>() -> (&'static str, &'static [&'static str]) {
    let mut seen = None;
    let _ = T::deserialize(Probe(&mut seen));
    seen.unwrap_or_else(|| {
        panic!(
            "{} is not a derived struct or enum",
            std::any::type_name::<T>()
        )
    })
}

fn enum_variants<T: DeserializeOwned>() -> (&'static str, &'static [&'static str]) {
    names::<T>()
}

/// (type, key) for every key of every table in the schema.
fn schema_keys() -> Vec<(&'static str, &'static str)> {
    let tables = [
        names::<BotHeader>(),
        names::<Widget>(),
        names::<Step>(),
        names::<Choice>(),
        names::<Ask>(),
        names::<Link>(),
        names::<LiveChat>(),
        names::<ButtonStyle>(),
        names::<Route>(),
        names::<Hours>(),
        names::<OfflineForm>(),
        names::<FormField>(),
        names::<Webhook>(),
        names::<Roster>(),
        names::<Team>(),
        names::<Agent>(),
        names::<Responses>(),
        names::<Response>(),
        ("Bot", &BOT_COLLECTION_KEYS[..]),
    ];
    tables
        .iter()
        .flat_map(|(ty, keys)| keys.iter().map(move |k| (*ty, *k)))
        .collect()
}

/// (type, value) for every value of every enumeration in the schema.
fn schema_values() -> Vec<(&'static str, &'static str)> {
    let enums = [
        names::<WidgetPosition>(),
        names::<AskKind>(),
        names::<FlowButton>(),
        names::<ChatMode>(),
        names::<CollectField>(),
        names::<Assignment>(),
        names::<ButtonKind>(),
        names::<FieldKind>(),
        names::<WebhookKind>(),
        names::<Role>(),
    ];
    enums
        .iter()
        .flat_map(|(ty, values)| values.iter().map(move |v| (*ty, *v)))
        .collect()
}

// --- Per-language texts -------------------------------------------------------------------

/// Every text given per language in a bot that does not give exactly the bot's
/// `languages`. The library accepts such texts (a missing language falls back to another);
/// the bundles in this repository are held to the stricter rule that docs/config.md
/// recommends.
fn language_gaps(b: &Bundle) -> Vec<String> {
    let mut gaps = Vec::new();
    for (id, bot) in &b.bots {
        let languages: BTreeSet<&str> = bot
            .header
            .languages
            .iter()
            .map(|l| l.get_ref().as_str())
            .collect();
        let mut texts: Vec<(String, &Text)> = Vec::new();
        let widget = &bot.header.widget;
        texts.push(("widget.title".into(), &widget.title));
        texts.push(("widget.launcher".into(), &widget.launcher));
        texts.extend(
            widget
                .subtitle
                .iter()
                .map(|t| ("widget.subtitle".into(), t)),
        );
        for step in &bot.steps {
            let at = format!("step {}", step.id.get_ref());
            texts.extend(step.say.iter().map(|t| (at.clone(), t)));
            texts.extend(step.choices.iter().map(|c| (at.clone(), &c.label)));
            texts.extend(step.link.iter().map(|l| (at.clone(), &l.label)));
            texts.extend(step.ask.iter().map(|a| (at.clone(), &a.retry_message)));
        }
        for (name, chat) in &bot.live_chat {
            let at = format!("live_chat.{name}");
            for text in [
                &chat.button.label,
                &chat.name_prompt,
                &chat.email_prompt,
                &chat.welcome_message,
                &chat.handoff_message,
                &chat.assigned_message,
                &chat.takeover_message,
                &chat.video_message,
                &chat.timeout_message,
                &chat.offline_message,
            ] {
                texts.push((at.clone(), text));
            }
        }
        for (name, form) in &bot.offline_form {
            let at = format!("offline_form.{name}");
            texts.push((at.clone(), &form.title));
            texts.push((at.clone(), &form.thank_you));
            texts.extend(form.intro.iter().map(|t| (at.clone(), t)));
            texts.extend(form.fields.iter().map(|f| (at.clone(), &f.label)));
        }
        for (at, text) in texts {
            if let Text::PerLanguage(map) = text {
                let given: BTreeSet<&str> = map.keys().map(String::as_str).collect();
                if given != languages {
                    gaps.push(format!(
                        "{id}: {at} gives {given:?}, the bot speaks {languages:?}"
                    ));
                }
            }
        }
    }
    gaps
}
