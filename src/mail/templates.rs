//! Templates for mail and pages: embedded in the binary, each replaceable by a file of the
//! same name under `templates_dir`. HTML templates escape every value; undefined values are
//! errors, so a typo in an override shows up instead of rendering blank.

use std::path::PathBuf;
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

/// The built-in templates, by name.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "mail/base.html",
        include_str!("../../templates/mail/base.html"),
    ),
    (
        "mail/offline_form.html",
        include_str!("../../templates/mail/offline_form.html"),
    ),
    (
        "mail/offline_form.txt",
        include_str!("../../templates/mail/offline_form.txt"),
    ),
    (
        "mail/invite.html",
        include_str!("../../templates/mail/invite.html"),
    ),
    (
        "mail/invite.txt",
        include_str!("../../templates/mail/invite.txt"),
    ),
    (
        "mail/transcript.html",
        include_str!("../../templates/mail/transcript.html"),
    ),
    (
        "mail/transcript.txt",
        include_str!("../../templates/mail/transcript.txt"),
    ),
    (
        "mail/missed_request.html",
        include_str!("../../templates/mail/missed_request.html"),
    ),
    (
        "mail/missed_request.txt",
        include_str!("../../templates/mail/missed_request.txt"),
    ),
    (
        "mail/new_request.html",
        include_str!("../../templates/mail/new_request.html"),
    ),
    (
        "mail/new_request.txt",
        include_str!("../../templates/mail/new_request.txt"),
    ),
    (
        "mail/test.html",
        include_str!("../../templates/mail/test.html"),
    ),
    (
        "mail/test.txt",
        include_str!("../../templates/mail/test.txt"),
    ),
    (
        "pages/base.html",
        include_str!("../../templates/pages/base.html"),
    ),
    (
        "pages/contact.html",
        include_str!("../../templates/pages/contact.html"),
    ),
    (
        "pages/contact_sent.html",
        include_str!("../../templates/pages/contact_sent.html"),
    ),
    (
        "pages/set_password.html",
        include_str!("../../templates/pages/set_password.html"),
    ),
    (
        "pages/chat.html",
        include_str!("../../templates/pages/chat.html"),
    ),
    (
        "pages/console.html",
        include_str!("../../templates/pages/console.html"),
    ),
    (
        "pages/landing.html",
        include_str!("../../templates/pages/landing.html"),
    ),
    (
        "pages/demo.html",
        include_str!("../../templates/pages/demo.html"),
    ),
];

#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl Templates {
    /// The built-in templates, with files under `overrides` taking their place.
    pub fn new(overrides: Option<PathBuf>) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_loader(move |name| {
            if let Some(dir) = &overrides {
                // Names are ours (`mail/x.html`), never a visitor's, but stay inside the dir.
                if !name.contains("..") {
                    match std::fs::read_to_string(dir.join(name)) {
                        Ok(text) => return Ok(Some(text)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(minijinja::Error::new(
                                minijinja::ErrorKind::InvalidOperation,
                                format!("cannot read the template override {name}: {e}"),
                            ));
                        }
                    }
                }
            }
            Ok(BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| text.to_string()))
        });
        Templates { env: Arc::new(env) }
    }

    pub fn render(&self, name: &str, ctx: impl Serialize) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(minijinja::value::Serde(&ctx))
    }

    /// Renders `NAME.txt` and `NAME.html` with the same values.
    pub fn render_pair(
        &self,
        name: &str,
        ctx: &serde_json::Value,
    ) -> Result<(String, String), minijinja::Error> {
        Ok((
            self.render(&format!("{name}.txt"), ctx)?,
            self.render(&format!("{name}.html"), ctx)?,
        ))
    }

    /// Checks that every built-in template (or its override) compiles.
    pub fn check(&self) -> Result<(), String> {
        for (name, _) in BUILT_IN {
            self.env
                .get_template(name)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_built_in_template_compiles() {
        Templates::new(None).check().unwrap();
    }

    #[test]
    fn html_escapes_visitor_text_and_plain_text_does_not() {
        let t = Templates::new(None);
        let ctx = json!({
            "subject": "s", "public_url": "http://x", "bot": {"name": "Support"},
            "form": {"title": "Contact"}, "page_url": null, "at": "now",
            "console_url": null, "reply_to": null,
            "fields": [{"label": "Message", "value": "<script>alert(1)</script> & co"}],
        });
        let (text, html) = t.render_pair("mail/offline_form", &ctx).unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
        assert!(html.contains("&amp; co"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(text.contains("<script>alert(1)</script> & co"), "{text}");
    }

    #[test]
    fn an_override_replaces_the_built_in_and_undefined_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mail")).unwrap();
        std::fs::write(dir.path().join("mail/test.txt"), "custom {{ transport }}").unwrap();
        std::fs::write(dir.path().join("mail/test.html"), "{{ nope }}").unwrap();
        let t = Templates::new(Some(dir.path().to_path_buf()));
        assert_eq!(
            t.render("mail/test.txt", json!({"transport": "smtp"}))
                .unwrap(),
            "custom smtp"
        );
        assert!(
            t.render("mail/test.html", json!({"transport": "smtp"}))
                .is_err()
        );
    }
}
