//! The browser side, embedded in the binary: the widget script visitors' pages load, the
//! full-page chat, and the agent console. Plain JavaScript, no build step; sent compressed
//! and cacheable (`compressed::Asset`).

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::compressed::Asset;
use super::error::AppError;
use super::page::page;

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static WIDGET_JS_ASSET: Asset = Asset::new(JS, WIDGET_JS);
static WIDGET_CALL_ASSET: Asset = Asset::new(JS, WIDGET_CALL_JS);
static WIDGET_CSS_ASSET: Asset = Asset::new(CSS, include_str!("../../assets/widget.css"));
static CONSOLE_CSS_ASSET: Asset = Asset::new(CSS, include_str!("../../assets/console.css"));

const WIDGET_JS: &str = include_str!("../../assets/widget.js");
/// The widget's video calls, fetched by the widget only when a call is offered or starts.
const WIDGET_CALL_JS: &str = include_str!("../../assets/widget-call.js");

/// The widget's URL that may be cached for a year, for the snippet on customers' pages:
/// `/widget.js?v=<version>`. A new release has a new version.
pub fn widget_js_path() -> String {
    format!("/widget.js?v={}", WIDGET_JS_ASSET.version())
}

/// Whether the query names the asset's current version (`v=…`): only then is the answer
/// immutable. An old version's URL gets today's file, cached briefly.
fn versioned(query: &Option<String>, asset: &Asset) -> bool {
    query.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.strip_prefix("v=") == Some(asset.version()))
    })
}

pub async fn widget_js(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let asset = &WIDGET_JS_ASSET;
    asset.respond(&headers, versioned(&query, asset))
}

pub async fn widget_call_js(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let asset = &WIDGET_CALL_ASSET;
    asset.respond(&headers, versioned(&query, asset))
}

pub async fn widget_css(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let asset = &WIDGET_CSS_ASSET;
    asset.respond(&headers, versioned(&query, asset))
}

/// The agent console's ES modules (`assets/console/`), by file name: served at
/// `/console/js/{name}`, where their relative imports (`./lists.js`) resolve. A module
/// missing here is a 404 in the browser; the tests below catch that first.
const CONSOLE_MODULES: &[(&str, &str)] = &[
    (
        "actions.js",
        include_str!("../../assets/console/actions.js"),
    ),
    ("alerts.js", include_str!("../../assets/console/alerts.js")),
    ("api.js", include_str!("../../assets/console/api.js")),
    ("app.js", include_str!("../../assets/console/app.js")),
    (
        "attachments.js",
        include_str!("../../assets/console/attachments.js"),
    ),
    ("call.js", include_str!("../../assets/console/call.js")),
    ("canned.js", include_str!("../../assets/console/canned.js")),
    (
        "composer.js",
        include_str!("../../assets/console/composer.js"),
    ),
    (
        "contact.js",
        include_str!("../../assets/console/contact.js"),
    ),
    (
        "conversation.js",
        include_str!("../../assets/console/conversation.js"),
    ),
    (
        "details.js",
        include_str!("../../assets/console/details.js"),
    ),
    ("dom.js", include_str!("../../assets/console/dom.js")),
    ("events.js", include_str!("../../assets/console/events.js")),
    (
        "figures.js",
        include_str!("../../assets/console/figures.js"),
    ),
    ("format.js", include_str!("../../assets/console/format.js")),
    ("links.js", include_str!("../../assets/console/links.js")),
    ("lists.js", include_str!("../../assets/console/lists.js")),
    (
        "notifications.js",
        include_str!("../../assets/console/notifications.js"),
    ),
    (
        "privacy.js",
        include_str!("../../assets/console/privacy.js"),
    ),
    ("reads.js", include_str!("../../assets/console/reads.js")),
    (
        "reports.js",
        include_str!("../../assets/console/reports.js"),
    ),
    ("resume.js", include_str!("../../assets/console/resume.js")),
    (
        "sections.js",
        include_str!("../../assets/console/sections.js"),
    ),
    (
        "session.js",
        include_str!("../../assets/console/session.js"),
    ),
    ("sound.js", include_str!("../../assets/console/sound.js")),
    ("state.js", include_str!("../../assets/console/state.js")),
    ("stream.js", include_str!("../../assets/console/stream.js")),
    (
        "visitors.js",
        include_str!("../../assets/console/visitors.js"),
    ),
];

/// `CONSOLE_MODULES` as assets, in the same order. Their URLs carry no version (they
/// import each other by relative path), so browsers revalidate them by `ETag`.
static CONSOLE_ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    CONSOLE_MODULES
        .iter()
        .map(|(_, body)| Asset::new(JS, body))
        .collect()
});

/// `GET /console/js/{name}`: one module of the agent console. An unknown name answers
/// like any unknown path.
pub async fn console_module(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match CONSOLE_MODULES.iter().position(|(file, _)| *file == name) {
        Some(i) => CONSOLE_ASSETS[i].respond(&headers, false),
        None => {
            AppError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
        }
    }
}

pub async fn console_css(headers: HeaderMap) -> Response {
    CONSOLE_CSS_ASSET.respond(&headers, false)
}

/// `GET /chat/{bot}`: the chat as a page of its own (a link to share, or a fallback).
pub async fn chat_page(State(state): State<AppState>, Path(bot_id): Path<String>) -> Response {
    let bundle = state.live.load().bundle.clone();
    let Some(bot) = bundle.bots.get(&bot_id) else {
        return AppError::unknown_bot(&bot_id).into_response();
    };
    page(
        &state,
        StatusCode::OK,
        "pages/chat.html",
        json!({
            "lang": crate::chat::flow::default_language(bot),
            "color": bot.header.widget.color.0,
            "bot": bot_id,
            "bot_name": bot.header.name.get_ref(),
        }),
    )
}

/// `GET /console`: the agent console.
pub async fn console(State(state): State<AppState>) -> Response {
    page(&state, StatusCode::OK, "pages/console.html", json!({}))
}

#[cfg(test)]
mod tests {
    use super::{CONSOLE_MODULES, WIDGET_CALL_JS, WIDGET_JS};

    /// Small modules stay small: a file past 400 lines wants splitting by what it does.
    #[test]
    fn every_console_module_is_under_400_lines() {
        for (name, body) in CONSOLE_MODULES {
            let lines = body.lines().count();
            assert!(lines <= 400, "assets/console/{name} has {lines} lines");
        }
    }

    /// The table and the folder agree, and every module a module imports is in the table:
    /// a forgotten entry fails here, not in an agent's browser.
    #[test]
    fn every_console_import_is_embedded() {
        let names: Vec<&str> = CONSOLE_MODULES.iter().map(|(name, _)| *name).collect();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/console");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.ends_with(".js"))
            .collect();
        on_disk.sort();
        assert_eq!(
            on_disk,
            names,
            "the files of {} and CONSOLE_MODULES",
            dir.display()
        );
        let mut imports = 0;
        for (name, body) in CONSOLE_MODULES {
            for target in module_imports(body) {
                imports += 1;
                let file = target.strip_prefix("./").unwrap_or_else(|| {
                    panic!("{name} imports `{target}`: only `./x.js` is served")
                });
                assert!(
                    names.contains(&file),
                    "{name} imports `{target}`, which is not in CONSOLE_MODULES"
                );
            }
        }
        assert!(
            imports >= 19,
            "only {imports} imports found: is the parser blind?"
        );
        assert!(names.contains(&"app.js"), "the entry the page loads");
    }

    /// The `from "…"` of each `import`/`export … from` statement (which may span lines),
    /// and bare `import "…"`.
    fn module_imports(body: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut statement = String::new();
        for line in body.lines() {
            let line = line.trim();
            if statement.is_empty()
                && !(line.starts_with("import ") || line.starts_with("export {"))
            {
                continue;
            }
            statement.push_str(line);
            statement.push(' ');
            if !line.ends_with(';') {
                continue;
            }
            let spec = statement
                .rsplit_once(" from ")
                .map(|(_, spec)| spec)
                .or_else(|| statement.strip_prefix("import "))
                .unwrap()
                .trim()
                .trim_end_matches(';');
            found.push(spec.trim_matches(|c| c == '\'' || c == '"').to_string());
            statement.clear();
        }
        found
    }

    /// Served as a script browsers run as a module; an unknown name answers like any
    /// unknown path.
    #[tokio::test]
    async fn console_modules_are_served_by_name() {
        use axum::extract::Path;
        use axum::http::{StatusCode, header};

        let res = super::console_module(Path("lists.js".to_string()), Default::default()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=300");
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(body.starts_with(b"/* The lists on the left"));

        for name in ["nope.js", "lists", "../assets.rs", "app.js/"] {
            let res = super::console_module(Path(name.to_string()), Default::default()).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{name}");
            assert_eq!(
                res.headers()[header::CONTENT_TYPE],
                "application/json",
                "{name}"
            );
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], "not_found", "{name}");
        }
    }

    #[test]
    fn imports_are_found_across_lines() {
        let body = "import { a } from './a.js';\nimport {\n  b, c,\n} from \"./b.js\";\n\
                    import './c.js';\nexport { d } from './d.js';\nconst x = 'import y from z';\n";
        assert_eq!(
            module_imports(body),
            ["./a.js", "./b.js", "./c.js", "./d.js"]
        );
    }

    /// The widget's built-in texts: one object per language, a text per name. A language
    /// missing a name would show English there; one with a name of its own, nothing.
    #[test]
    fn every_widget_language_has_every_text() {
        // The widget's own texts, and its calls' (widget-call.js): the same languages.
        for (script, at_least) in [(WIDGET_JS, 28), (WIDGET_CALL_JS, 15)] {
            let table = &script[script.find("const STR = {").unwrap()..];
            let table = &table[..table.find("\n  };").unwrap()];
            // (language, its names): a language starts on a line `    xx: {`, each text is
            // a line `      name: "…",`.
            let mut languages: Vec<(String, Vec<String>)> = Vec::new();
            for line in table.lines().skip(1) {
                if let Some(code) = line
                    .strip_prefix("    ")
                    .and_then(|l| l.strip_suffix(": {"))
                {
                    languages.push((code.to_string(), Vec::new()));
                } else if let Some((name, _)) = line
                    .strip_prefix("      ")
                    .and_then(|l| l.split_once(": \""))
                {
                    languages.last_mut().unwrap().1.push(name.to_string());
                }
            }
            let english = languages[0].1.clone();
            assert!(english.len() >= at_least, "{english:?}");
            for (code, names) in &languages {
                assert_eq!(names, &english, "the widget's `{code}` texts");
            }
            let codes: Vec<&str> = languages.iter().map(|(c, _)| c.as_str()).collect();
            assert_eq!(codes, ["en", "de", "es", "fr", "it", "nl", "pt"]);
        }
    }
}
