//! `livechat send-test-email ADDRESS`: sends one mail now, through the configured transport,
//! and says what the server answered — the quickest check of an SMTP setup.

use std::process::ExitCode;

use serde_json::json;

use crate::engine::wire::new_id;
use crate::mail::templates::Templates;
use crate::mail::transport::{Mail, SendError, Transport};
use crate::settings::ServerArgs;

pub fn run(args: &ServerArgs, address: &str) -> ExitCode {
    let settings = match args.resolve() {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    if !crate::config::values::is_valid_email(address) {
        eprintln!("error: `{address}` is not an email address");
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return super::fail(e),
    };
    // The SMTP transport runs its connection pool on the runtime it is built in, and must be
    // dropped there too.
    runtime.block_on(async move { send(&settings, address).await })
}

async fn send(settings: &crate::settings::Settings, address: &str) -> ExitCode {
    let transport = match Transport::from_settings(settings) {
        Ok(t) => t,
        Err(e) => return super::fail(e),
    };
    let templates = Templates::new(settings.templates_dir.clone());
    let subject = "livechat test mail".to_string();
    let ctx = json!({
        "subject": subject,
        "public_url": settings.public_url,
        "transport": transport.describe(),
    });
    let (text, html) = match templates.render_pair("mail/test", &ctx) {
        Ok(pair) => pair,
        Err(e) => return super::fail(format!("the test mail template: {e}")),
    };
    let mail = Mail {
        kind: "test".into(),
        to: vec![address.to_string()],
        reply_to: None,
        subject,
        text,
        html,
    };
    let id = new_id("test");
    match transport.send(&settings.mail_from, &mail, &id).await {
        Ok(note) => {
            println!(
                "Sent a test mail to {address} via {}: {note}",
                transport.describe()
            );
            ExitCode::SUCCESS
        }
        Err(SendError::Permanent(e) | SendError::Retry(e) | SendError::RetryAfter(e, _)) => {
            eprintln!("error: sending via {} failed: {e}", transport.describe());
            ExitCode::from(1)
        }
    }
}
