//! Rendering the texts of a bot (minijinja templates) with a conversation's variables.
//!
//! Templates were compiled once when the config was loaded, so an error here is rare (a
//! filter that fails on the data, say). A visitor must still see something: a render error
//! falls back to the raw text. A variable that is not set renders as nothing, so that
//! `Hello {{ name }}` still reads well before the visitor gave a name.

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::config::schema::Text;

/// Renders `template` with `ctx` (a JSON object of variables); never fails.
pub fn render(template: &str, ctx: &serde_json::Value) -> String {
    if !template.contains("{{") && !template.contains("{%") && !template.contains("{#") {
        return template.to_string();
    }
    let mut env = Environment::new();
    // Chainable: `{{ agent.name }}` without an `agent` is empty, not an error.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.render_str(template, to_value(ctx))
        .unwrap_or_else(|_| template.to_string())
}

/// Renders a bot text in `language` (falling back to the text's first language).
pub fn render_text(text: &Text, language: &str, ctx: &serde_json::Value) -> String {
    render(text.for_language(language), ctx)
}

/// JSON to a minijinja value (this crate builds minijinja without its `serde` feature).
fn to_value(json: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => items.iter().map(to_value).collect(),
        J::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<std::collections::BTreeMap<String, Value>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn variables_are_substituted() {
        let ctx = json!({"name": "Ana", "agent": {"name": "Bea"}, "n": 3, "ok": true});
        assert_eq!(render("Hi {{ name }}!", &ctx), "Hi Ana!");
        assert_eq!(render("{{ agent.name }} joined", &ctx), "Bea joined");
        assert_eq!(render("{% if ok %}{{ n + 1 }}{% endif %}", &ctx), "4");
    }

    #[test]
    fn missing_variables_render_empty() {
        let ctx = json!({});
        assert_eq!(render("Hi {{ name }}!", &ctx), "Hi !");
        assert_eq!(render("{{ agent.name }} joined", &ctx), " joined");
    }

    #[test]
    fn render_errors_fall_back_to_the_raw_text() {
        let ctx = json!({"x": "a"});
        // Does not compile.
        assert_eq!(render("Hi {{ name", &ctx), "Hi {{ name");
        // Compiles, fails at run time (unknown filter).
        assert_eq!(render("{{ x | nope }}", &ctx), "{{ x | nope }}");
    }

    #[test]
    fn html_is_not_escaped_here() {
        // Clients render texts as text; escaping is theirs, so `<` stays `<`.
        let ctx = json!({"name": "<b>"});
        assert_eq!(render("{{ name }}", &ctx), "<b>");
    }
}
