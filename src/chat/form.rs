//! Checking an offline-form submission against its `[offline_form.*]` definition. Used by
//! the state machine (the form shown in the widget) and by the no-JavaScript contact page.

use std::collections::BTreeMap;

use crate::config::schema::{Bot, FieldKind, OfflineForm};
use crate::config::values::is_valid_email;

use super::flow::{valid_phone, vars_json};
use super::text::render;

/// The subject of the mail a submitted offline form sends: the form's `subject` rendered
/// with `bot.name`, the conversation's variables (`vars`; empty for the contact page) and
/// the submitted fields by name, a field winning over a variable of the same name.
pub fn mail_subject(
    bot: &Bot,
    form: &OfflineForm,
    vars: &BTreeMap<String, String>,
    values: &BTreeMap<String, String>,
) -> String {
    let mut all = vars.clone();
    all.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut ctx = vars_json(bot, &all);
    if let (serde_json::Value::Object(map), Some(name)) = (&mut ctx, all.get("name")) {
        map.insert("visitor".into(), serde_json::json!({ "name": name }));
    }
    render(form.subject.as_str(), &ctx)
}

/// One field that does not fit, with a message for the visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The submitted values, trimmed, with empty optional fields left out; or every field that
/// does not fit. Names that are not fields of the form are refused: a visitor cannot add
/// data (or choose where it goes).
pub fn validate_form(
    form: &OfflineForm,
    values: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut clean = BTreeMap::new();
    for name in values.keys() {
        if !form.fields.iter().any(|f| f.name.get_ref() == name) {
            errors.push(FieldError {
                field: name.clone(),
                message: "is not a field of this form".into(),
            });
        }
    }
    for field in &form.fields {
        let name = field.name.get_ref();
        let value = values.get(name).map(|v| v.trim()).unwrap_or("");
        let problem = if value.is_empty() {
            field.required.then_some("is required".to_string())
        } else if value.chars().count() > field.max as usize {
            Some(format!("is longer than {} characters", field.max))
        } else {
            match field.kind {
                FieldKind::Email if !is_valid_email(value) => {
                    Some("is not an email address".to_string())
                }
                FieldKind::Phone if !valid_phone(value) => {
                    Some("is not a phone number".to_string())
                }
                FieldKind::Select
                    if !field.options.is_empty() && !field.options.iter().any(|o| o == value) =>
                {
                    Some("is not one of the options".to_string())
                }
                _ => None,
            }
        };
        match problem {
            Some(message) => errors.push(FieldError {
                field: name.clone(),
                message,
            }),
            None if !value.is_empty() => {
                clean.insert(name.clone(), value.to_string());
            }
            None => {}
        }
    }
    if errors.is_empty() {
        Ok(clean)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::flow::tests::bot;

    #[test]
    fn the_mail_subject_sees_variables_and_fields_and_fields_win() {
        let b = bot(r#"
name = "Night"
[offline_form.f]
email_to = ["oncall@acme.example"]
subject = "[{{ bot.name }}] {{ urgency }}: {{ topic }} from {{ email }}"
fields = [
  { name = "email", label = "Email", type = "email", required = true },
  { name = "topic", label = "Topic" },
]
"#);
        let vars = BTreeMap::from([
            ("urgency".to_string(), "outage".to_string()),
            ("topic".to_string(), "from the flow".to_string()),
        ]);
        let values = BTreeMap::from([
            ("email".to_string(), "kim@x.example".to_string()),
            ("topic".to_string(), "API".to_string()),
        ]);
        let form = &b.offline_form["f"];
        assert_eq!(
            mail_subject(&b, form, &vars, &values),
            "[Night] outage: API from kim@x.example"
        );
        assert_eq!(
            mail_subject(&b, form, &BTreeMap::new(), &values),
            "[Night] : API from kim@x.example"
        );
    }

    fn form() -> OfflineForm {
        let b = bot(r#"
name = "B"
[offline_form.contact]
email_to = ["desk@acme.example"]
fields = [
  { name = "name", label = "Name", required = true, max = 5 },
  { name = "email", label = "Email", type = "email", required = true },
  { name = "phone", label = "Phone", type = "phone" },
  { name = "topic", label = "Topic", type = "select", options = ["a", "b"] },
  { name = "message", label = "Message", type = "textarea" },
]
"#);
        b.offline_form["contact"].clone()
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_good_submission_is_trimmed_and_empty_optionals_dropped() {
        let got = validate_form(
            &form(),
            &values(&[
                ("name", " Ana "),
                ("email", "ana@x.example"),
                ("phone", ""),
                ("topic", "b"),
            ]),
        )
        .unwrap();
        assert_eq!(
            got,
            values(&[("name", "Ana"), ("email", "ana@x.example"), ("topic", "b")])
        );
    }

    #[test]
    fn every_bad_field_is_reported() {
        let errs = validate_form(
            &form(),
            &values(&[
                ("name", "Anastasia"),
                ("email", "nope"),
                ("phone", "12"),
                ("topic", "c"),
                ("to", "evil@x.example"),
            ]),
        )
        .unwrap_err();
        let got: Vec<(&str, &str)> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("to", "is not a field of this form"),
                ("name", "is longer than 5 characters"),
                ("email", "is not an email address"),
                ("phone", "is not a phone number"),
                ("topic", "is not one of the options"),
            ]
        );
        let errs = validate_form(&form(), &values(&[])).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs.iter().all(|e| e.message == "is required"));
    }
}
