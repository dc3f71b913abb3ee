//! Routing: which team a live chat request rings, and which agents are eligible to take it.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::schema::{Agent, LiveChat, Role, Route, Team};

/// An agent as the state machine sees it: the roster entry plus live presence and load,
/// supplied by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub teams: Vec<String>,
    /// The "Accept chats" toggle.
    pub accepting: bool,
    /// Has the console open (connected).
    pub online: bool,
    /// Conversations assigned to this agent and not yet resolved (assigned or chatting).
    pub active_chats: u32,
    pub max_chats: u32,
    /// Takes video calls (an agent may opt out in the console).
    pub video: bool,
}

impl AgentView {
    /// A roster entry as the state machine sees it, given its presence and load.
    pub fn of(agent: &Agent, online: bool, accepting: bool, active_chats: u32) -> AgentView {
        AgentView {
            email: agent.email.as_str().to_lowercase(),
            name: agent.name.clone(),
            role: agent.role,
            teams: agent.team_ids().map(str::to_string).collect(),
            accepting,
            online,
            active_chats,
            max_chats: *agent.max_chats.get_ref(),
            video: true,
        }
    }

    pub fn has_capacity(&self) -> bool {
        self.active_chats < self.max_chats
    }

    /// Can take a new chat now: accepting, online and below `max_chats`.
    pub fn available(&self) -> bool {
        self.accepting && self.online && self.has_capacity()
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The team a request rings: the first rule of `action.route` that matches. `None` when no
/// rule matches (or there are none): then every team serving the bot rings.
pub fn route(
    action: &LiveChat,
    vars: &BTreeMap<String, String>,
    page_url: Option<&str>,
    language: &str,
    country: Option<&str>,
) -> Option<String> {
    action
        .route
        .iter()
        .find(|rule| rule_matches(rule, vars, page_url, language, country))
        .map(|rule| rule.team.get_ref().clone())
}

/// All `when` keys must match; a rule without `when` always matches. `page_url` is a glob
/// (`*` is any text), `language = "en"` also matches `en-GB`, `language` and `country` ignore
/// case; any other key is a collected variable, compared exactly. A key whose value is
/// unknown (no page URL, variable not set) does not match.
pub fn rule_matches(
    rule: &Route,
    vars: &BTreeMap<String, String>,
    page_url: Option<&str>,
    language: &str,
    country: Option<&str>,
) -> bool {
    rule.when.iter().all(|(key, wanted)| {
        let wanted = wanted.values();
        match key.as_str() {
            "page_url" => page_url.is_some_and(|url| wanted.iter().any(|p| glob_match(p, url))),
            "language" => wanted.iter().any(|w| language_matches(w, language)),
            "country" => country.is_some_and(|c| wanted.iter().any(|w| w.eq_ignore_ascii_case(c))),
            var => vars.get(var).is_some_and(|v| wanted.contains(&v.as_str())),
        }
    })
}

fn language_matches(wanted: &str, language: &str) -> bool {
    if wanted.eq_ignore_ascii_case(language) {
        return true;
    }
    language
        .get(..wanted.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(wanted))
        && matches!(language.as_bytes().get(wanted.len()), Some(b'-' | b'_'))
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (also none)
/// and everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether `agent` serves a request of `bot` routed to `team`: a member of that team, or,
/// when the request has no team, a member of any team whose `bots` lists the bot.
pub fn serves(agent: &AgentView, teams: &[Team], bot: &str, team: Option<&str>) -> bool {
    match team {
        Some(team) => agent.teams.iter().any(|t| t == team),
        None => teams
            .iter()
            .filter(|t| t.bots.iter().any(|b| b.get_ref() == bot))
            .any(|t| agent.teams.iter().any(|a| a == t.id.get_ref())),
    }
}

/// The agents a request rings: available (accepting, online, below `max_chats`), serving
/// the bot or routed team, and not muted for it. Sorted by email.
pub fn eligible_agents<'a>(
    agents: &'a [AgentView],
    teams: &[Team],
    bot: &str,
    team: Option<&str>,
    muted: &BTreeSet<String>,
) -> Vec<&'a AgentView> {
    let mut out: Vec<&AgentView> = agents
        .iter()
        .filter(|a| a.available() && !muted.contains(&a.email) && serves(a, teams, bot, team))
        .collect();
    out.sort_by(|a, b| a.email.cmp(&b.email));
    out.dedup_by(|a, b| a.email == b.email);
    out
}

/// For `assignment = "auto"`: the eligible agent with the fewest active chats (ties by
/// email) not in `exclude`.
pub fn least_loaded<'a>(
    eligible: &[&'a AgentView],
    exclude: &BTreeSet<String>,
) -> Option<&'a AgentView> {
    eligible
        .iter()
        .filter(|a| !exclude.contains(&a.email))
        .min_by(|a, b| (a.active_chats, &a.email).cmp(&(b.active_chats, &b.email)))
        .copied()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chat::flow::tests::bot;
    use crate::config::load::{FileCtx, parse_roster};

    pub(crate) fn teams(src: &str) -> Vec<Team> {
        let mut ctx = FileCtx::new("agents.toml", src);
        let roster = parse_roster(&mut ctx);
        assert!(ctx.diags.is_empty(), "{:#?}", ctx.diags);
        roster.unwrap().teams
    }

    pub(crate) fn agent(email: &str, teams: &[&str]) -> AgentView {
        AgentView {
            email: email.into(),
            name: email.split('@').next().unwrap_or(email).into(),
            role: Role::Agent,
            teams: teams.iter().map(|t| t.to_string()).collect(),
            accepting: true,
            online: true,
            active_chats: 0,
            max_chats: 3,
            video: true,
        }
    }

    fn action() -> LiveChat {
        let b = bot(r#"
name = "B"
[live_chat.desk]
route = [
  { when = { topic = "billing" }, team = "billing" },
  { when = { country = ["US", "GB"], language = "en" }, team = "day" },
  { when = { page_url = "https://shop.example/*/checkout*" }, team = "sales" },
  { team = "support" },
]
[live_chat.plain]
"#);
        b.live_chat["desk"].clone()
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let a = action();
        let billing = vars(&[("topic", "billing")]);
        assert_eq!(
            route(&a, &billing, None, "en", Some("US")).as_deref(),
            Some("billing")
        );
        assert_eq!(
            route(&a, &vars(&[]), None, "en", Some("us")).as_deref(),
            Some("day")
        );
        assert_eq!(
            route(&a, &vars(&[]), None, "en-GB", Some("GB")).as_deref(),
            Some("day")
        );
        // All keys of a rule must match: a German speaker in the US is not `day`.
        assert_eq!(
            route(&a, &vars(&[]), None, "de", Some("US")).as_deref(),
            Some("support")
        );
        assert_eq!(
            route(&a, &vars(&[("topic", "Billing")]), None, "en", None).as_deref(),
            Some("support")
        );
    }

    #[test]
    fn page_urls_match_as_globs() {
        let a = action();
        let v = vars(&[]);
        let at = |url| route(&a, &v, Some(url), "fr", None);
        assert_eq!(
            at("https://shop.example/de/checkout").as_deref(),
            Some("sales")
        );
        assert_eq!(
            at("https://shop.example/de/checkout?step=2").as_deref(),
            Some("sales")
        );
        assert_eq!(
            at("https://shop.example/checkout").as_deref(),
            Some("support")
        );
        assert_eq!(route(&a, &v, None, "fr", None).as_deref(), Some("support"));
    }

    #[test]
    fn no_rules_means_no_team() {
        let b = bot("name = \"B\"\n[live_chat.plain]\n");
        assert_eq!(
            route(&b.live_chat["plain"], &vars(&[]), None, "en", None),
            None
        );
    }

    #[test]
    fn glob() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a*c", "ac"));
        assert!(!glob_match("a*c", "acb"));
        assert!(glob_match("*/pricing", "https://x.example/pricing"));
        assert!(!glob_match("https://x.example/", "https://x.example/a"));
        assert!(glob_match("a*b*c", "a-b-b-c"));
        assert!(glob_match("ü*", "über"));
    }

    #[test]
    fn language_prefixes() {
        assert!(language_matches("en", "EN"));
        assert!(language_matches("en", "en-US"));
        assert!(language_matches("en", "en_US"));
        assert!(!language_matches("en", "eng"));
        assert!(!language_matches("en-US", "en"));
    }

    #[test]
    fn eligible_agents_are_available_unmuted_and_in_scope() {
        let ts = teams(
            "[[team]]\nid = \"support\"\nbots = [\"web\"]\n[[team]]\nid = \"billing\"\nbots = []\n",
        );
        let mut off = agent("off@x.example", &["support"]);
        off.accepting = false;
        let mut away = agent("away@x.example", &["support"]);
        away.online = false;
        let mut full = agent("full@x.example", &["support"]);
        full.active_chats = 3;
        let agents = vec![
            agent("zed@x.example", &["support"]),
            agent("ana@x.example", &["support", "billing"]),
            agent("bil@x.example", &["billing"]),
            agent("mute@x.example", &["support"]),
            off,
            away,
            full,
        ];
        let muted = BTreeSet::from(["mute@x.example".to_string()]);
        let emails = |team| {
            eligible_agents(&agents, &ts, "web", team, &muted)
                .iter()
                .map(|a| a.email.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(emails(None), ["ana@x.example", "zed@x.example"]);
        assert_eq!(emails(Some("billing")), ["ana@x.example", "bil@x.example"]);
        assert!(emails(Some("night")).is_empty());
        assert!(eligible_agents(&agents, &ts, "other-bot", None, &muted).is_empty());
    }

    #[test]
    fn least_loaded_breaks_ties_by_email() {
        let mut a = agent("a@x.example", &[]);
        a.active_chats = 2;
        let b = agent("b@x.example", &[]);
        let c = agent("c@x.example", &[]);
        let all = vec![&a, &c, &b];
        assert_eq!(
            least_loaded(&all, &BTreeSet::new()).unwrap().email,
            "b@x.example"
        );
        let seen = BTreeSet::from(["b@x.example".to_string()]);
        assert_eq!(least_loaded(&all, &seen).unwrap().email, "c@x.example");
        let seen = BTreeSet::from(["b@x.example".into(), "c@x.example".into()]);
        assert_eq!(least_loaded(&all, &seen).unwrap().email, "a@x.example");
        let seen = BTreeSet::from([
            "a@x.example".into(),
            "b@x.example".into(),
            "c@x.example".into(),
        ]);
        assert!(least_loaded(&all, &seen).is_none());
    }
}
