//! `livechat agent password EMAIL` and `livechat agent list`: agents' passwords. Who the
//! agents are is the roster of the live bundle (agents.toml); only passwords live here, in
//! the store (`cli::db`: SQLite in the data directory, or PostgreSQL of `database_url`).
//!
//! Neither needs the data directory's "server running" guard, on either database: setting a
//! password is one transaction (the hash stored, the agent's sessions ended, their open
//! invitations used up) that a running server, or every replica on PostgreSQL, sees at its
//! next request, since sessions are looked up in the database on each one. So a password is
//! set while replicas run.

use std::io::{self, BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Format;
use super::apply::print;
use super::db::{self, Missing};
use crate::auth::{self, password};
use crate::config::schema::Role;
use crate::config::{self, Roster};
use crate::settings::{ServerArgs, Settings};

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Set an agent's password: typed twice at a terminal, or one line on standard input
    /// (`echo 'pw' | livechat agent password EMAIL`). Signs the agent out everywhere.
    Password {
        /// The agent's email, as in agents.toml.
        email: String,
    },
    /// List the agents of the live bundle and whether each has a password.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub fn run(server: &ServerArgs, args: AgentArgs) -> ExitCode {
    let settings = match server.resolve() {
        Ok(settings) => settings,
        Err(e) => return super::fail(e),
    };
    let roster = match live_roster(&settings) {
        Ok(roster) => roster,
        Err(code) => return code,
    };
    match args.command {
        AgentCommand::Password { email } => set_password(&settings, &roster, &email),
        AgentCommand::List { format } => list(&settings, &roster, format),
    }
}

/// The roster of the bundle directory, which must be valid.
fn live_roster(settings: &Settings) -> Result<Roster, ExitCode> {
    let dir = settings.bots_dir.display();
    match config::load_dir(&settings.bots_dir, &config::process_env) {
        Ok(Ok(bundle)) => Ok(bundle.roster),
        Ok(Err(diags)) => {
            eprintln!(
                "error: the bundle in {dir} has {} error(s); `livechat validate {dir}` shows them",
                diags.len()
            );
            Err(ExitCode::from(1))
        }
        Err(e) => Err(super::fail(e)),
    }
}

fn set_password(settings: &Settings, roster: &Roster, email: &str) -> ExitCode {
    let key = auth::email_key(email);
    let Some(agent) = auth::roster_agent(roster, &key) else {
        eprintln!(
            "error: {email} is not an agent in the bundle {}; add them to {} first",
            settings.bots_dir.display(),
            config::AGENTS_FILE
        );
        return ExitCode::from(1);
    };
    let email = agent.email.as_str();
    let typed = if io::stdin().is_terminal() {
        prompt_twice(email)
    } else {
        read_line()
    };
    let typed = match typed {
        Ok(Some(typed)) => typed,
        Ok(None) => {
            eprintln!("error: the two passwords differ; nothing was changed");
            return ExitCode::from(1);
        }
        Err(e) => return super::fail(format!("cannot read the password: {e}")),
    };
    let phc = match password::hash(&typed) {
        Ok(phc) => phc,
        Err(e @ password::PasswordError::TooShort) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
        Err(e) => return super::fail(e),
    };
    let saved = db::runtime().and_then(|runtime| {
        runtime
            .block_on(async {
                let store = db::open(settings, Missing::Create)
                    .await?
                    .ok_or("no database")?;
                store
                    .set_password(&key, &phc, jiff::Timestamp::now())
                    .await
                    .map_err(|e| format!("cannot store the password: {e}"))
            })
            .map_err(super::fail)
    });
    match saved {
        Ok(ended) => {
            let mut out = format!("Password set for {email}.\n");
            if ended > 0 {
                out.push_str(&format!(
                    "Signed out of {ended} session{}.\n",
                    if ended == 1 { "" } else { "s" }
                ));
            }
            print(&out);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// At a terminal, without echo: `None` when the two differ.
fn prompt_twice(email: &str) -> io::Result<Option<String>> {
    let first = rpassword::prompt_password(format!("New password for {email}: "))?;
    let again = rpassword::prompt_password("Type it again: ")?;
    Ok((first == again).then_some(first))
}

/// From a pipe: the first line, without its line ending.
fn read_line() -> io::Result<Option<String>> {
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Ok(Some(line.to_string()))
}

#[derive(Debug, Serialize)]
struct Listed<'a> {
    name: &'a str,
    email: &'a str,
    role: &'static str,
    teams: Vec<&'a str>,
    max_chats: u32,
    password_set: bool,
}

fn list(settings: &Settings, roster: &Roster, format: Format) -> ExitCode {
    // Looking must not create a database where there is none.
    let read = db::runtime().and_then(|runtime| {
        runtime
            .block_on(async {
                match db::open(settings, Missing::Leave).await? {
                    Some(store) => store.with_password().await.map_err(|e| e.to_string()),
                    None => Ok(Default::default()),
                }
            })
            .map_err(super::fail)
    });
    let with_password = match read {
        Ok(set) => set,
        Err(code) => return code,
    };
    let agents: Vec<Listed<'_>> = roster
        .agents
        .iter()
        .map(|a| Listed {
            name: &a.name,
            email: a.email.as_str(),
            role: match a.role {
                Role::Agent => "agent",
                Role::Admin => "admin",
            },
            teams: a.team_ids().collect(),
            max_chats: *a.max_chats.get_ref(),
            password_set: with_password.contains(&auth::email_key(a.email.as_str())),
        })
        .collect();
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&agents).expect("agents serialize") + "\n",
        Format::Text => table(&agents),
    };
    print(&text);
    ExitCode::SUCCESS
}

fn table(agents: &[Listed<'_>]) -> String {
    if agents.is_empty() {
        return format!("No agents yet: add them to {}.\n", config::AGENTS_FILE);
    }
    let header = ["NAME", "EMAIL", "ROLE", "TEAMS", "MAX_CHATS", "PASSWORD"];
    let rows: Vec<[String; 6]> = agents
        .iter()
        .map(|a| {
            [
                a.name.to_string(),
                a.email.to_string(),
                a.role.to_string(),
                a.teams.join(","),
                a.max_chats.to_string(),
                if a.password_set { "set" } else { "not set" }.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_columns() {
        let agents = [
            Listed {
                name: "Ana Lima",
                email: "ana@acme.example",
                role: "admin",
                teams: vec!["support", "sales"],
                max_chats: 3,
                password_set: true,
            },
            Listed {
                name: "Bo",
                email: "bo@acme.example",
                role: "agent",
                teams: vec!["support"],
                max_chats: 12,
                password_set: false,
            },
        ];
        assert_eq!(
            table(&agents),
            "NAME      EMAIL             ROLE   TEAMS          MAX_CHATS  PASSWORD\n\
             Ana Lima  ana@acme.example  admin  support,sales  3          set\n\
             Bo        bo@acme.example   agent  support        12         not set\n"
        );
    }
}
