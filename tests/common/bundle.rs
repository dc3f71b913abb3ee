//! One way to write a bundle for a test whose point is not the exact TOML text:
//!
//! ```ignore
//! let server = Bundle::live(2).max_chats(3).live_chat(|d| d.accept_timeout("30s"))
//!     .serve(&[&agent_email(0)]);
//! Bundle::new().team("support", &["support"]).agent("Ana Lima", ANA, "support")
//!     .bot("support", bot("Support", "Hi")).write(dir);
//! ```
#![allow(dead_code)]

use std::path::Path;

use super::live::set_password_with;
use super::{TestServer, save_atomically};

/// Teams, agents and files of a bundle, written by `write`.
#[derive(Clone, Default)]
pub struct Bundle {
    teams: Vec<(String, Vec<String>)>,
    agents: Vec<Agent>,
    files: Vec<(String, String)>,
    desk: Option<Desk>,
}

#[derive(Clone)]
struct Agent {
    name: String,
    email: String,
    team: String,
    max_chats: Option<u32>,
    admin: bool,
}

impl Bundle {
    /// No teams, no agents, no bots.
    pub fn new() -> Bundle {
        Bundle::default()
    }

    /// The live chat bundle: bot `support` whose Live Chat action rings team `desk`; `agents`
    /// agents `agent0@acme.example` … (`Agent 0` …, two chats at once) in that team, and
    /// `boss@acme.example`, an admin.
    pub fn live(agents: usize) -> Bundle {
        let mut bundle = Bundle::new().team("desk", &["support"]);
        for i in 0..agents {
            bundle.agents.push(Agent {
                name: format!("Agent {i}"),
                email: super::live::agent_email(i),
                team: "desk".into(),
                max_chats: Some(2),
                admin: false,
            });
        }
        bundle.agents.push(Agent {
            name: "Boss".into(),
            email: "boss@acme.example".into(),
            team: "desk".into(),
            max_chats: None,
            admin: true,
        });
        bundle.desk = Some(Desk::default());
        bundle
    }

    /// A team serving `bots`.
    pub fn team(mut self, id: &str, bots: &[&str]) -> Bundle {
        let bots = bots.iter().map(|b| b.to_string()).collect();
        self.teams.push((id.into(), bots));
        self
    }

    /// An agent in `team`, with no limit of chats.
    pub fn agent(mut self, name: &str, email: &str, team: &str) -> Bundle {
        self.agents.push(Agent {
            name: name.into(),
            email: email.into(),
            team: team.into(),
            max_chats: None,
            admin: false,
        });
        self
    }

    /// Every agent of `live` (not the admin) may take `max_chats` chats at once.
    pub fn max_chats(mut self, max_chats: u32) -> Bundle {
        for agent in self.agents.iter_mut().filter(|a| a.max_chats.is_some()) {
            agent.max_chats = Some(max_chats);
        }
        self
    }

    /// Changes the Live Chat action of `live`'s `support` bot.
    pub fn live_chat(mut self, change: impl FnOnce(Desk) -> Desk) -> Bundle {
        self.desk = Some(change(self.desk.expect("live_chat needs Bundle::live")));
        self
    }

    /// The bot `id` (`{id}.toml`) with the given text.
    pub fn bot(self, id: &str, text: impl Into<String>) -> Bundle {
        self.file(&format!("{id}.toml"), text)
    }

    /// Any other file of the bundle (`responses.toml` …).
    pub fn file(mut self, name: &str, text: impl Into<String>) -> Bundle {
        self.files.push((name.into(), text.into()));
        self
    }

    /// The text of `agents.toml`.
    pub fn roster(&self) -> String {
        let mut out = String::new();
        for (id, bots) in &self.teams {
            let bots: Vec<String> = bots.iter().map(|b| format!("\"{b}\"")).collect();
            out.push_str(&format!(
                "[[team]]\nid = \"{id}\"\nbots = [{}]\n\n",
                bots.join(", ")
            ));
        }
        for a in &self.agents {
            out.push_str(&format!(
                "[[agent]]\nname = \"{}\"\nemail = \"{}\"\n",
                a.name, a.email
            ));
            if let Some(n) = a.max_chats {
                out.push_str(&format!("max_chats = {n}\n"));
            }
            if a.admin {
                out.push_str("role = \"admin\"\n");
            }
            out.push_str(&format!("teams = [\"{}\"]\n\n", a.team));
        }
        out
    }

    /// Starts the server on this bundle and gives each of `passwords` the test password.
    pub fn serve(&self, passwords: &[&str]) -> TestServer {
        self.serve_with(passwords, &[])
    }

    /// The same, with environment variables for the server.
    /// (The passwords are set with the same environment: a bundle's `${VAR}`s need it.)
    pub fn serve_with(&self, passwords: &[&str], env: &[(&str, &str)]) -> TestServer {
        let server = TestServer::start(|dir| self.write(dir), env);
        for email in passwords {
            set_password_with(&server.bots_dir, &server.data_dir, email, &server.env);
        }
        server
    }

    /// Writes every file into `dir` the way editors save, so a running server may watch.
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        save_atomically(&dir.join("agents.toml"), &self.roster());
        if let Some(desk) = &self.desk {
            save_atomically(&dir.join("support.toml"), &desk.bot());
        }
        for (name, text) in &self.files {
            save_atomically(&dir.join(name), text);
        }
    }
}

/// The Live Chat action `desk` of `Bundle::live`'s `support` bot.
#[derive(Clone)]
pub struct Desk {
    accept_timeout: String,
    idle_timeout: String,
    route: String,
    more: Vec<String>,
}

impl Default for Desk {
    fn default() -> Desk {
        Desk {
            accept_timeout: "90s".into(),
            idle_timeout: "10m".into(),
            route: r#"[{ team = "desk" }]"#.into(),
            more: Vec::new(),
        }
    }
}

impl Desk {
    pub fn accept_timeout(mut self, timeout: &str) -> Desk {
        self.accept_timeout = timeout.into();
        self
    }

    pub fn idle_timeout(mut self, timeout: &str) -> Desk {
        self.idle_timeout = timeout.into();
        self
    }

    /// The action's `route` (TOML), instead of `[{ team = "desk" }]`.
    pub fn route(mut self, route: &str) -> Desk {
        self.route = route.into();
        self
    }

    /// One more `key = value` line of the action.
    pub fn set(mut self, key: &str, value: &str) -> Desk {
        self.more.push(format!("{key} = {value}"));
        self
    }

    fn bot(&self) -> String {
        let (accept, idle, route) = (&self.accept_timeout, &self.idle_timeout, &self.route);
        let more: String = self.more.iter().map(|l| format!("{l}\n")).collect();
        format!(
            r#"name = "Acme Support"

[[step]]
id = "start"
say = "Hi! What can we do for you?"
choices = [
  {{ label = "Talk to a person", goto = "human" }},
  {{ label = "Nothing, thanks", goto = "bye" }},
]

[[step]]
id = "human"
live_chat = "desk"

[[step]]
id = "bye"
say = "Thanks for visiting."
end = true

[live_chat.desk]
welcome_message = "Let me find someone for you."
handoff_message = "Connecting you to our team…"
assigned_message = "{{{{ agent.name }}}} has joined the chat."
timeout_message = "Sorry, nobody is free right now."
offline_message = "We're offline at the moment."
accept_timeout = "{accept}"
idle_timeout = "{idle}"
offline_form = "contact"
route = {route}
{more}
[offline_form.contact]
fields = [
  {{ name = "email", label = "Email", type = "email", required = true }},
  {{ name = "message", label = "Message", type = "textarea", required = true, max = 2000 }},
]
email_to = ["support@acme.example"]
"#
        )
    }
}

/// A small valid bot: greets with `greeting` and rings team `desk` (90s to accept).
pub fn bot(name: &str, greeting: &str) -> String {
    format!(
        "name = \"{name}\"\n\n[[step]]\nid = \"start\"\nsay = \"{greeting}\"\nlive_chat = \"desk\"\n\n[[step]]\nid = \"bye\"\nsay = \"Bye\"\nend = true\n\n[live_chat.desk]\naccept_timeout = \"90s\"\n"
    )
}

/// Copies `examples/bots` (the bundle a new user serves first) into `dir`.
pub fn example_bundle(dir: &Path) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots");
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
}
