//! Where mail goes: an SMTP server (lettre), or `.eml` files in the data directory when no
//! SMTP server is configured, so a new install works and loses nothing.

use std::path::{Path, PathBuf};

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::settings::{Settings, Smtp, SmtpSecurity};

/// A mail ready to send: what the outbox stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// What the mail is (`offline_form`, `invite`, `transcript`, `missed_request`, `test`).
    pub kind: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (server down, temporary refusal).
    #[error("{0}")]
    Retry(String),
    /// Worth trying again, and the other side said not before this long.
    #[error("{0}")]
    RetryAfter(String, std::time::Duration),
    /// Will never work as it is (a bad address, a permanent refusal).
    #[error("{0}")]
    Permanent(String),
}

#[derive(Clone)]
pub enum Transport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        description: String,
    },
    Files(PathBuf),
}

impl Transport {
    pub fn from_settings(settings: &Settings) -> Result<Transport, String> {
        match &settings.smtp {
            None => Ok(Transport::Files(settings.data_dir.join("mail"))),
            Some(smtp) => smtp_transport(smtp),
        }
    }

    /// For logs: where mail goes.
    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp { description, .. } => description.clone(),
            Transport::Files(dir) => format!("files in {}", dir.display()),
        }
    }

    /// Sends one mail. `message_id` is stable per outbox entry, so a receiver can tell a
    /// repeat (after a crash between sending and recording) from a new mail.
    pub async fn send(
        &self,
        from: &str,
        mail: &Mail,
        message_id: &str,
    ) -> Result<String, SendError> {
        let message = build(from, mail, message_id)?;
        match self {
            Transport::Smtp { transport, .. } => match transport.send(message).await {
                Ok(response) => Ok(format!("accepted: {}", response.code())),
                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                Err(e) => Err(SendError::Retry(e.to_string())),
            },
            Transport::Files(dir) => {
                let path = write_file(dir, message_id, &message.formatted())
                    .map_err(|e| SendError::Retry(format!("cannot write the mail file: {e}")))?;
                tracing::info!("mail written to {}", path.display());
                Ok(format!("written to {}", path.display()))
            }
        }
    }
}

fn smtp_transport(smtp: &Smtp) -> Result<Transport, String> {
    let tls =
        || TlsParameters::new(smtp.host.clone()).map_err(|e| format!("TLS for {}: {e}", smtp.host));
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(smtp.timeout));
    builder = match smtp.security {
        SmtpSecurity::Starttls => builder.tls(Tls::Required(tls()?)),
        SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls()?)),
        SmtpSecurity::None => builder.tls(Tls::None),
    };
    if let Some(user) = &smtp.username {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            smtp.password.clone().unwrap_or_default(),
        ));
    }
    let security = match smtp.security {
        SmtpSecurity::Starttls => "STARTTLS",
        SmtpSecurity::Tls => "TLS",
        SmtpSecurity::None => "no encryption",
    };
    Ok(Transport::Smtp {
        transport: builder.build(),
        description: format!("SMTP {}:{} ({security})", smtp.host, smtp.port),
    })
}

/// Removes line breaks, so no value can start a header of its own.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

fn mailbox(s: &str) -> Result<Mailbox, SendError> {
    one_line(s)
        .parse::<Mailbox>()
        .map_err(|e| SendError::Permanent(format!("invalid address `{s}`: {e}")))
}

/// Builds the MIME message: plain text with an HTML alternative.
pub fn build(from: &str, mail: &Mail, message_id: &str) -> Result<Message, SendError> {
    let mut builder = Message::builder()
        .from(mailbox(from)?)
        .subject(one_line(&mail.subject))
        .message_id(Some(format!("<{}@livechat>", one_line(message_id))));
    for to in &mail.to {
        builder = builder.to(mailbox(to)?);
    }
    if let Some(reply_to) = &mail.reply_to {
        builder = builder.reply_to(mailbox(reply_to)?);
    }
    let body = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(mail.text.clone()),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(mail.html.clone()),
        );
    let mut message = builder
        .multipart(body)
        .map_err(|e| SendError::Permanent(format!("cannot build the mail: {e}")))?;
    message.headers_mut().insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Livechat-Kind"),
        one_line(&mail.kind),
    ));
    Ok(message)
}

/// Removes the mail files the file transport wrote for these outbox items, if any; answers
/// how many it removed.
pub fn remove_mail_files(dir: &Path, outbox_ids: &[String]) -> usize {
    let mut removed = 0;
    for id in outbox_ids {
        let path = dir.join(format!("{}.eml", file_stem(id)));
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove the mail file {}: {e}", path.display()),
        }
    }
    removed
}

/// The name of an outbox item's mail file, without `.eml`.
fn file_stem(message_id: &str) -> String {
    message_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

fn write_file(dir: &Path, message_id: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = file_stem(message_id);
    let path = dir.join(format!("{name}.eml"));
    let tmp = dir.join(format!(".{name}.eml.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(subject: &str, to: &str) -> Mail {
        Mail {
            kind: "test".into(),
            to: vec![to.into()],
            reply_to: Some("visitor@example.com".into()),
            subject: subject.into(),
            text: "hello".into(),
            html: "<p>hello</p>".into(),
        }
    }

    #[test]
    fn no_value_can_add_a_header() {
        let m = mail("Hi\r\nBcc: evil@example.com", "team@acme.example");
        let built = build("Acme <support@acme.example>", &m, "o_1").unwrap();
        let text = String::from_utf8(built.formatted()).unwrap();
        let headers = &text[..text.find("\r\n\r\n").unwrap()];
        assert!(
            !headers
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{headers}"
        );
        assert!(headers.contains("Message-ID: <o_1@livechat>"), "{headers}");
    }

    #[test]
    fn non_ascii_subjects_are_encoded() {
        let built = build(
            "support@acme.example",
            &mail("Grüße von Zoë", "team@acme.example"),
            "o_2",
        )
        .unwrap();
        let text = String::from_utf8(built.formatted()).unwrap();
        let subject = text.lines().find(|l| l.starts_with("Subject:")).unwrap();
        assert!(
            subject.is_ascii() && subject.contains("=?utf-8?"),
            "{subject}"
        );
    }
}
