//! `livechat try BOT [DIR]`: talk to a bot in the terminal through the same core as
//! `livechat test`. Reads standard input line by line (a script when it is not a terminal);
//! `:save FILE` writes the session as a test case.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::bottest::case::{Action, parse_duration, parse_time};
use crate::bottest::{Session, Setup};
use crate::chat::conversation::{Author, EventData, FlowStep, OfflineReason};
use crate::config::{self, Bundle};

#[derive(Debug, Args)]
pub struct TryArgs {
    /// The bot's id (its file name without `.toml`).
    pub bot: String,
    /// The bundle directory [default: the current directory].
    pub dir: Option<PathBuf>,
}

const HELP: &str = "\
Type a message, or the number of a choice. Commands:
  :skip  :back               the Skip and Back buttons
  :submit FIELD=VALUE …      send the offline form shown
  :accept EMAIL              an agent accepts the request
  :nobody                    nobody accepts: the clock runs to the accept timeout
  :time +3m                  time passes (timers due meanwhile fire)
  :lang de  :set topic=billing  :page URL  :country DE  :online EMAIL,…  :time 2026-01-05T10:00:00+01:00
                             start again from the first step with that setting
  :save FILE                 write this session as a test case
  :quit
";

/// One action of the session and what followed it, for `:save`.
struct Recorded {
    action: Action,
    after: Vec<(String, String)>,
}

struct Try<'b> {
    bundle: &'b Bundle,
    bot_id: String,
    setup: Setup,
    session: Session<'b>,
    log: Vec<Recorded>,
    /// What the numbers typed pick: choice labels, then the Live Chat button.
    numbered: Vec<String>,
}

pub fn run(args: TryArgs) -> ExitCode {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let bundle = match config::load_dir(&dir, &config::process_env) {
        Ok(Ok(bundle)) => bundle,
        Ok(Err(diags)) => return super::apply::refused(&dir.display().to_string(), &diags),
        Err(e) => return super::fail(e),
    };
    let setup = Setup::default();
    let session = match Session::start(&bundle, &args.bot, &setup) {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let mut t = Try {
        bundle: &bundle,
        bot_id: args.bot.clone(),
        setup,
        session,
        log: Vec::new(),
        numbered: Vec::new(),
    };
    let interactive = io::stdin().is_terminal();
    let mut out = io::stdout().lock();
    if interactive {
        let _ = writeln!(
            out,
            "Talking to `{}`. :help for commands, :quit to leave.",
            t.bot_id
        );
    }
    let shown = t.show();
    let _ = out.write_all(shown.as_bytes());
    let mut failed = false;
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            let _ = write!(out, "> ");
            let _ = out.flush();
        }
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim().to_string();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !interactive {
            let _ = writeln!(out, "> {line}");
        }
        match t.command(&line) {
            Ok(Some(text)) => {
                let _ = out.write_all(text.as_bytes());
            }
            Ok(None) => break,
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                // A script that goes wrong fails; a person just tries again.
                failed |= !interactive;
            }
        }
    }
    let _ = out.flush();
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

impl<'b> Try<'b> {
    /// Runs one line; `Ok(None)` to stop.
    fn command(&mut self, line: &str) -> Result<Option<String>, String> {
        let Some(cmd) = line.strip_prefix(':') else {
            let action = match line.parse::<usize>() {
                Ok(n) if n >= 1 && n <= self.numbered.len() => {
                    Action::Click(self.numbered[n - 1].clone())
                }
                _ => Action::Type(line.to_string()),
            };
            return self.act(action).map(Some);
        };
        let (name, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let arg = arg.trim();
        match name {
            "quit" | "q" | "exit" => Ok(None),
            "help" => Ok(Some(HELP.to_string())),
            "skip" => self.act(Action::Skip).map(Some),
            "back" => self.act(Action::Back).map(Some),
            "nobody" => self.act(Action::NobodyAccepts).map(Some),
            "accept" if !arg.is_empty() => self.act(Action::Accept(arg.to_lowercase())).map(Some),
            "click" if !arg.is_empty() => self.act(Action::Click(arg.to_string())).map(Some),
            "submit" => self.act(Action::Submit(fields(arg)?)).map(Some),
            "time" if arg.starts_with('+') => {
                self.act(Action::Wait(parse_duration(&arg[1..])?)).map(Some)
            }
            "time" => {
                self.setup.time = Some(parse_time(arg)?);
                self.restart().map(Some)
            }
            "lang" if !arg.is_empty() => {
                self.setup.language = Some(arg.to_string());
                self.restart().map(Some)
            }
            "page" if !arg.is_empty() => {
                self.setup.page_url = Some(arg.to_string());
                self.restart().map(Some)
            }
            "country" if !arg.is_empty() => {
                self.setup.country = Some(arg.to_uppercase());
                self.restart().map(Some)
            }
            "online" => {
                let emails = arg
                    .split(',')
                    .map(|e| e.trim().to_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect();
                self.setup.online = Some(emails);
                self.restart().map(Some)
            }
            "set" => {
                let (k, v) = arg
                    .split_once('=')
                    .ok_or_else(|| "write :set NAME=VALUE".to_string())?;
                self.setup
                    .vars
                    .insert(k.trim().to_string(), v.trim().to_string());
                self.restart().map(Some)
            }
            "save" if !arg.is_empty() => {
                std::fs::write(arg, self.as_case())
                    .map_err(|e| format!("cannot write {arg}: {e}"))?;
                Ok(Some(format!("saved {} steps to {arg}\n", self.log.len())))
            }
            _ => Err(format!("unknown command `:{name}` (:help lists them)")),
        }
    }

    /// Starts over with the setup as it is now; the steps so far are dropped.
    fn restart(&mut self) -> Result<String, String> {
        if self.setup.time.is_none() {
            self.setup.time = Some(self.session.now);
        }
        self.session = Session::start(self.bundle, &self.bot_id, &self.setup)?;
        self.log.clear();
        Ok(format!("(started again)\n{}", self.show()))
    }

    fn act(&mut self, action: Action) -> Result<String, String> {
        self.session.act(&action)?;
        self.log.push(Recorded {
            after: observed(&self.session),
            action,
        });
        Ok(self.show())
    }

    /// What the last action made the widget show, and where a request went.
    fn show(&mut self) -> String {
        let s = &self.session;
        let mut out = String::new();
        self.numbered.clear();
        for e in &s.recent {
            match e {
                EventData::MessageCreated(m) => match m.author {
                    Author::Bot | Author::System => {
                        let _ = writeln!(out, "bot: {}", m.text);
                    }
                    Author::Agent => {
                        let _ =
                            writeln!(out, "{}: {}", m.name.as_deref().unwrap_or("agent"), m.text);
                    }
                    Author::Visitor => {}
                },
                EventData::LivechatRequested { action, team } => {
                    let _ = writeln!(
                        out,
                        "  → Live Chat `{action}`, routed to {}",
                        team.as_deref()
                            .map_or("every team serving the bot".into(), |t| format!(
                                "team `{t}`"
                            ))
                    );
                }
                EventData::LivechatRinging { agents, .. } => {
                    let list: Vec<&str> = agents.iter().map(String::as_str).collect();
                    let _ = writeln!(
                        out,
                        "  → rings {}",
                        if list.is_empty() {
                            "nobody".into()
                        } else {
                            list.join(", ")
                        }
                    );
                }
                EventData::LivechatOffline { reason, form, .. } => {
                    let why = match reason {
                        OfflineReason::Closed => "closed (outside the opening hours)",
                        OfflineReason::NoAgents => "nobody available",
                    };
                    let _ = writeln!(
                        out,
                        "  → offline: {why}{}",
                        form.as_deref()
                            .map_or(String::new(), |f| format!("; offline form `{f}`"))
                    );
                }
                EventData::LivechatTimeout { .. } => {
                    let _ = writeln!(out, "  → nobody accepted in time ({})", s.now);
                }
                EventData::LivechatAccepted { agent } => {
                    let _ = writeln!(out, "  → {agent} accepted");
                }
                EventData::FlowStep(FlowStep::OfflineForm { offline_form, .. }) => {
                    let fields: Vec<String> = offline_form
                        .fields
                        .iter()
                        .map(|f| format!("{}{}", f.name, if f.required { "*" } else { "" }))
                        .collect();
                    let _ = writeln!(
                        out,
                        "  [form {}: {}] (:submit FIELD=VALUE …, :skip to dismiss)",
                        offline_form.id,
                        fields.join(" ")
                    );
                }
                EventData::FlowStep(FlowStep::End { .. }) => {
                    out.push_str("  (the flow has ended)\n")
                }
                _ => {}
            }
        }
        if let Some(mail) = s.mail() {
            let _ = writeln!(out, "  → mail to {}: {}", mail.to.join(", "), mail.subject);
        }
        self.numbered = s.choice_labels();
        self.numbered.extend(s.live_chat_label());
        for (i, label) in self.numbered.iter().enumerate() {
            let _ = writeln!(out, "  {}. {label}", i + 1);
        }
        if let Some(step) = s
            .conv
            .flow
            .step
            .as_ref()
            .and_then(|id| s.bot.steps.iter().find(|st| st.id.get_ref() == id))
            && s.conv.status == crate::chat::conversation::Status::Bot
        {
            let buttons: Vec<String> = step
                .buttons
                .iter()
                .map(|b| format!(":{}", crate::chat::flow::button_name(*b.get_ref())))
                .collect();
            if !buttons.is_empty() {
                let _ = writeln!(out, "  [{}]", buttons.join(" "));
            }
        }
        out
    }

    /// The session as a `[[case]]`: its setup, each action and what was seen after it.
    fn as_case(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let list = |items: &[String]| {
            format!(
                "[{}]",
                items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", ")
            )
        };
        let table = |m: &BTreeMap<String, String>| {
            format!(
                "{{ {} }}",
                m.iter()
                    .map(|(k, v)| format!("{} = {}", q(k), q(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut out = String::from("# Written by `livechat try` (:save).\n\n[[case]]\n");
        let _ = writeln!(out, "name = {}", q(&format!("{} session", self.bot_id)));
        let _ = writeln!(out, "bot = {}", q(&self.bot_id));
        if let Some(l) = &self.setup.language {
            let _ = writeln!(out, "language = {}", q(l));
        }
        if let Some(p) = &self.setup.page_url {
            let _ = writeln!(out, "page_url = {}", q(p));
        }
        if let Some(c) = &self.setup.country {
            let _ = writeln!(out, "country = {}", q(c));
        }
        if !self.setup.vars.is_empty() {
            let _ = writeln!(out, "vars = {}", table(&self.setup.vars));
        }
        if let Some(t) = &self.setup.time {
            let _ = writeln!(out, "time = {}", q(&t.to_string()));
        }
        if let Some(o) = &self.setup.online {
            let _ = writeln!(
                out,
                "online = {}",
                list(&o.iter().cloned().collect::<Vec<_>>())
            );
        }
        for r in &self.log {
            out.push_str("\n[[case.step]]\n");
            let _ = match &r.action {
                Action::Type(t) => writeln!(out, "type = {}", q(t)),
                Action::Click(c) => writeln!(out, "click = {}", q(c)),
                Action::Submit(v) => writeln!(out, "submit = {}", table(v)),
                Action::Skip => writeln!(out, "skip = true"),
                Action::Back => writeln!(out, "back = true"),
                Action::Accept(a) => writeln!(out, "accept = {}", q(a)),
                Action::NobodyAccepts => writeln!(out, "nobody_accepts = true"),
                Action::Wait(d) => writeln!(
                    out,
                    "wait = {}",
                    q(&humantime::format_duration(*d).to_string())
                ),
            };
            for (k, v) in &r.after {
                let _ = writeln!(out, "{k} = {v}");
            }
        }
        out
    }
}

/// What `:save` asserts after a step, as TOML `key = value` lines: the first message, the
/// step or the end, the status, and where a request or a form went.
fn observed(s: &Session<'_>) -> Vec<(String, String)> {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = Vec::new();
    if let Some(m) = s.messages().first() {
        out.push(("bot".into(), q(&m.text)));
    }
    match &s.conv.flow.step {
        Some(step) => out.push(("step".into(), q(step))),
        None => out.push(("ended".into(), "true".into())),
    }
    out.push(("status".into(), q(s.conv.status.as_str())));
    if s.recent
        .iter()
        .any(|e| matches!(e, EventData::LivechatRequested { .. }))
    {
        out.push(("team".into(), q(s.conv.team.as_deref().unwrap_or(""))));
    }
    if s.recent
        .iter()
        .any(|e| matches!(e, EventData::LivechatRinging { .. }))
    {
        let ring: Vec<String> = s.conv.ringing.iter().map(|a| q(a)).collect();
        out.push(("rings".into(), format!("[{}]", ring.join(", "))));
    }
    match s.offline_reason() {
        Some(OfflineReason::Closed) => out.push(("offline".into(), q("closed"))),
        Some(OfflineReason::NoAgents) => out.push(("offline".into(), q("no_agents"))),
        None => {}
    }
    if let Some(f) = s.form() {
        out.push(("form".into(), q(f)));
    }
    if let Some(mail) = s.mail() {
        let to: Vec<String> = mail.to.iter().map(|a| q(a)).collect();
        out.push(("mail_to".into(), format!("[{}]", to.join(", "))));
        out.push(("mail_subject".into(), q(&mail.subject)));
    }
    out
}

/// `email=a@b.example message=Hello there` → the form's values; a word without `=`
/// continues the value before it.
fn fields(arg: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for word in arg.split_whitespace() {
        match word.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
                last = Some(k.to_string());
            }
            _ => match &last {
                Some(k) => {
                    let v = out.entry(k.clone()).or_default();
                    v.push(' ');
                    v.push_str(word);
                }
                None => return Err("write :submit FIELD=VALUE …".into()),
            },
        }
    }
    Ok(out)
}
