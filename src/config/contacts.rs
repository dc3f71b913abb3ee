//! Contact fields: the customer details a bot keeps about its visitors beyond name and
//! email (company, plan, order number). Declared per bot as `[[contact_field]]`; a flow
//! writes one through the variable `contact.<name>` (an `ask`'s `var`, a choice's `set`),
//! and agents edit them in the console. What a value of each type may be is decided here,
//! once, for the flow, the API and validation alike.

use serde::Deserialize;
use toml::Spanned;

use super::values::is_valid_email;

/// The prefix of flow variables that write a contact field: `contact.company`.
pub const VAR_PREFIX: &str = "contact.";

/// The longest value of any contact field, in characters.
pub const MAX_LEN: usize = 500;

/// `[[contact_field]]` of a bot file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactField {
    /// The key in the API, in exports and in `contact.<name>`.
    pub name: Spanned<String>,
    /// What agents see beside the value.
    pub label: String,
    #[serde(default, rename = "type")]
    pub kind: ContactKind,
    /// For `type = "select"`: the values allowed, in the order offered.
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    #[default]
    Text,
    Email,
    Number,
    Url,
    Date,
    Select,
}

impl ContactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Text => "text",
            ContactKind::Email => "email",
            ContactKind::Number => "number",
            ContactKind::Url => "url",
            ContactKind::Date => "date",
            ContactKind::Select => "select",
        }
    }
}

impl ContactField {
    /// The value as kept (trimmed), or why it does not fit this field. An empty value
    /// clears the field and always fits.
    pub fn check(&self, value: &str) -> Result<String, String> {
        let v = value.trim();
        if v.is_empty() {
            return Ok(String::new());
        }
        if v.chars().count() > MAX_LEN {
            return Err(format!("is longer than {MAX_LEN} characters"));
        }
        if v.chars().any(char::is_control) {
            return Err("holds control characters".into());
        }
        let fits = match self.kind {
            ContactKind::Text => true,
            ContactKind::Email => is_valid_email(v),
            ContactKind::Number => v.parse::<f64>().is_ok_and(f64::is_finite),
            ContactKind::Url => is_web_url(v),
            ContactKind::Date => v.len() == 10 && v.parse::<jiff::civil::Date>().is_ok(),
            ContactKind::Select => self.options.iter().any(|o| o == v),
        };
        if fits {
            Ok(v.to_string())
        } else {
            Err(match self.kind {
                ContactKind::Select => format!("is not one of {}", self.options.join(", ")),
                ContactKind::Date => "is not a date (YYYY-MM-DD)".into(),
                ContactKind::Url => "is not an http:// or https:// address".into(),
                kind => format!("is not a valid {}", kind.as_str()),
            })
        }
    }
}

/// `http://` or `https://`, a host, no spaces.
fn is_web_url(v: &str) -> bool {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !r.contains(char::is_whitespace)
    })
}

/// The field a flow variable writes (`contact.company` → `company`), if it is one.
pub fn field_of_var(var: &str) -> Option<&str> {
    var.strip_prefix(VAR_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: ContactKind, options: &[&str]) -> ContactField {
        ContactField {
            name: Spanned::new(0..0, "f".into()),
            label: "F".into(),
            kind,
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn each_type_takes_its_values_and_refuses_others() {
        let ok = |k, opts: &[&str], v: &str| field(k, opts).check(v);
        assert_eq!(ok(ContactKind::Text, &[], "  Acme  "), Ok("Acme".into()));
        assert_eq!(ok(ContactKind::Text, &[], ""), Ok(String::new()));
        assert!(ok(ContactKind::Text, &[], "a\u{7}b").is_err());
        assert!(ok(ContactKind::Text, &[], &"x".repeat(501)).is_err());
        assert!(ok(ContactKind::Email, &[], "ana@acme.example").is_ok());
        assert!(ok(ContactKind::Email, &[], "ana").is_err());
        assert!(ok(ContactKind::Number, &[], "-12.5").is_ok());
        assert!(ok(ContactKind::Number, &[], "12 seats").is_err());
        assert!(ok(ContactKind::Number, &[], "inf").is_err());
        assert!(ok(ContactKind::Url, &[], "https://acme.example/x").is_ok());
        assert!(ok(ContactKind::Url, &[], "javascript:alert(1)").is_err());
        assert!(ok(ContactKind::Date, &[], "2026-12-02").is_ok());
        assert!(ok(ContactKind::Date, &[], "2026-13-02").is_err());
        assert!(ok(ContactKind::Select, &["Free", "Pro"], "Pro").is_ok());
        assert_eq!(
            ok(ContactKind::Select, &["Free", "Pro"], "Gold"),
            Err("is not one of Free, Pro".into())
        );
    }

    #[test]
    fn contact_variables_name_their_field() {
        assert_eq!(field_of_var("contact.company"), Some("company"));
        assert_eq!(field_of_var("company"), None);
    }
}
