//! Small value types of the config whose checks belong to parsing: a bad duration, colour,
//! address or template is reported by serde with the exact span of the value.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use super::schema::Text;

/// A minijinja template that compiled when the config was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// A template known to be valid (used for built-in defaults).
    pub fn literal(s: &str) -> Self {
        Template(s.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Checks that `source` compiles as a minijinja template.
    pub fn parse(source: &str) -> Result<Self, String> {
        let env = minijinja::Environment::new();
        match env.template_from_str(source) {
            Ok(_) => Ok(Template(source.to_string())),
            Err(e) => Err(format!(
                "template does not compile: {}",
                e.detail().unwrap_or("syntax error")
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Template::parse(&s).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, or a table of strings by language like { en = \"…\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Template::parse(v).map(Text::Plain).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((lang, text)) = map.next_entry::<String, Template>()? {
                    out.insert(lang, text);
                }
                if out.is_empty() {
                    return Err(de::Error::custom(
                        "a text by language needs at least one language",
                    ));
                }
                Ok(Text::PerLanguage(out))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

/// A duration written like `90s`, `10m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl DurationValue {
    pub const fn from_secs(secs: u64) -> Self {
        DurationValue(Duration::from_secs(secs))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match humantime::parse_duration(s.trim()) {
            Ok(v) if v.is_zero() => Err(de::Error::custom(format!(
                "invalid duration `{s}`: must be longer than zero"
            ))),
            Ok(v) => Ok(DurationValue(v)),
            Err(_) => Err(de::Error::custom(format!(
                "invalid duration `{s}`: write a number and a unit, like `90s`, `10m` or `1h 30m`"
            ))),
        }
    }
}

/// A size in bytes written like `10MB`, `500KB` or `2GiB` (a plain number is bytes); more
/// than zero, at most 1 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The largest size a setting takes.
    pub const MAX: u64 = 1 << 30;

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit_size: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            _ => return None,
        };
        number.parse::<u64>().ok()?.checked_mul(unit_size)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match ByteSize::parse(&s) {
            Some(n) if n > 0 && n <= ByteSize::MAX => Ok(ByteSize(n)),
            _ => Err(de::Error::custom(format!(
                "invalid size `{s}`: write a number and a unit from 1B to 1GiB, like `10MB` or `512KiB`"
            ))),
        }
    }
}

/// A CSS hex colour: `#rgb` or `#rrggbb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Color(pub String);

impl<'de> Deserialize<'de> for Color {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let hex = s.strip_prefix('#').unwrap_or("");
        if (hex.len() == 3 || hex.len() == 6) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Color(s))
        } else {
            Err(de::Error::custom(format!(
                "invalid colour `{s}`: write a hex colour like `#0b6efd` or `#06f`"
            )))
        }
    }
}

/// An email address, checked when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(pub Spanned<String>);

impl Email {
    pub fn as_str(&self) -> &str {
        self.0.get_ref()
    }
}

/// Whether `s` is an address mail can be sent to (`local@domain`, no display name).
pub fn is_valid_email(s: &str) -> bool {
    s.parse::<lettre::Address>().is_ok()
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<String>::deserialize(d)?;
        if is_valid_email(s.get_ref()) {
            Ok(Email(s))
        } else {
            Err(de::Error::custom(format!(
                "invalid email address `{}`",
                s.get_ref()
            )))
        }
    }
}

/// A string that may hold `${NAME}` references to environment variables, so secrets stay
/// out of git. Resolved when the bundle is validated and again when it is used.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct EnvString(pub Spanned<String>);

impl EnvString {
    pub fn raw(&self) -> &str {
        self.0.get_ref()
    }

    /// The names of the variables referenced, in order.
    pub fn references(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = self.raw();
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let inner = &after[..end];
                    out.push(inner.split_once(":-").map_or(inner, |(name, _)| name));
                    rest = &after[end + 1..];
                }
                None => break,
            }
        }
        out
    }

    /// Replaces every `${NAME}` with the variable's value, and `${NAME:-default}` with the
    /// value or, when it is unset or empty, the default. Names the first unset variable.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = self.raw();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err("unclosed `${` (write `${NAME}`)".to_string());
            };
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            match (
                env(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable `{name}` is not set")),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOOK").then(|| "https://hooks.example/x".to_string())
    }

    #[test]
    fn env_string_resolves_and_names_the_missing_variable() {
        let s = EnvString(Spanned::new(0..0, "${HOOK}?a=${NOPE}".into()));
        assert_eq!(s.references(), vec!["HOOK", "NOPE"]);
        assert_eq!(
            s.resolve(&env).unwrap_err(),
            "environment variable `NOPE` is not set"
        );
        let ok = EnvString(Spanned::new(0..0, "x${HOOK}y".into()));
        assert_eq!(ok.resolve(&env).unwrap(), "xhttps://hooks.example/xy");
        let defaulted = EnvString(Spanned::new(0..0, "${NOPE:-}|${HOOK:-d}".into()));
        assert_eq!(defaulted.references(), vec!["NOPE", "HOOK"]);
        assert_eq!(defaulted.resolve(&env).unwrap(), "|https://hooks.example/x");
    }

    #[test]
    fn template_syntax_errors_are_reported() {
        assert!(Template::parse("Hello {{ name }}").is_ok());
        assert!(Template::parse("Hello {{ name").is_err());
    }
}
