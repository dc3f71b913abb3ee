//! The successor rule of a bot's flow: where each way of leaving a step leads.
//!
//! This is the only definition of it. The flow interpreter (`chat::flow`) moves by it and
//! validation decides by it which steps a visitor can reach, so the two cannot disagree
//! about a bundle. It lives in `config` because `config` may not import `chat`.
//!
//! The first `[[step]]` is the entry. A step that waits for the visitor (choices, then
//! `ask`, then `live_chat`, in that order of precedence) is left by an [`Exit`]:
//! - `end = true`: the flow ends, whichever way the step is left;
//! - a picked choice goes to the choice's `goto`, else the step's `goto`, else the next
//!   step in file order;
//! - every other exit (an answer, `skip`, a live chat that did not happen, a step that
//!   waits for nothing moving on) goes to the step's `goto`, else the next step;
//! - after the last step, or at a `goto` that names no step (validation reports it), the
//!   flow ends. When ids repeat, a `goto` means the first step with that id.
//!
//! `back` returns to a step the visitor has already seen, so it reaches nothing new and is
//! not an exit here. A live chat that did happen ends the bot's part of the conversation.

use super::schema::{Bot, FlowButton, Step};

/// What a step waits for before the flow moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A pick among its `choices`.
    Choice,
    /// An answer to its `ask`.
    Answer,
    /// The outcome of its `live_chat` request.
    LiveChat,
}

/// One way of leaving a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The step waits for nothing (`say`, `link`) and moves on by itself.
    Continue,
    /// The visitor picked the step's choice with this index.
    Choice(usize),
    /// The visitor answered the step's `ask`.
    Answer,
    /// The visitor pressed `skip`.
    Skip,
    /// The `live_chat` step's request ended without a chat: nobody accepted in time, nobody
    /// was available or the action was closed, and the offline form (if any) was sent or
    /// dismissed.
    NoLiveChat,
}

/// What `step` waits for, if anything. A step may only wait in one way (validation says
/// so); when it has several, choices come first, then the question, then the live chat.
pub fn wait_kind(step: &Step) -> Option<Wait> {
    if !step.choices.is_empty() {
        Some(Wait::Choice)
    } else if step.ask.is_some() {
        Some(Wait::Answer)
    } else if step.live_chat.is_some() {
        Some(Wait::LiveChat)
    } else {
        None
    }
}

/// Whether `step` shows the navigation button `button`.
pub fn offers(step: &Step, button: FlowButton) -> bool {
    step.buttons.iter().any(|b| *b.get_ref() == button)
}

/// Every way `step` can be left. Buttons only count on a step that waits: one that does
/// not is never shown with them.
pub fn exits(step: &Step) -> Vec<Exit> {
    let mut out = match wait_kind(step) {
        None => return vec![Exit::Continue],
        Some(Wait::Choice) => (0..step.choices.len()).map(Exit::Choice).collect(),
        Some(Wait::Answer) => vec![Exit::Answer],
        Some(Wait::LiveChat) => Vec::new(),
    };
    // A visitor may ask for a person at any step that waits; at a step with `live_chat`
    // (even one that wrongly also waits another way) a chat that does not happen moves on.
    if step.live_chat.is_some() {
        out.push(Exit::NoLiveChat);
    }
    if offers(step, FlowButton::Skip) {
        out.push(Exit::Skip);
    }
    out
}

/// The index of the first step with id `id`.
pub fn position(bot: &Bot, id: &str) -> Option<usize> {
    bot.steps.iter().position(|s| s.id.get_ref() == id)
}

/// Where leaving `bot.steps[index]` by `exit` goes: the index of the next step, or `None`
/// when the flow ends there. It does not check that the step offers `exit` ([`exits`]
/// says which it does); a choice it does not have counts as leaving without one.
pub fn next(bot: &Bot, index: usize, exit: Exit) -> Option<usize> {
    let step = bot.steps.get(index)?;
    if step.end {
        return None;
    }
    let picked = match exit {
        Exit::Choice(c) => step.choices.get(c).and_then(|c| c.goto.as_ref()),
        _ => None,
    };
    match picked.or(step.goto.as_ref()) {
        Some(goto) => position(bot, goto.get_ref()),
        None => (index + 1 < bot.steps.len()).then_some(index + 1),
    }
}

/// Every step that some exit of `bot.steps[index]` leads to, in file order, once each.
pub fn successors(bot: &Bot, index: usize) -> Vec<usize> {
    let Some(step) = bot.steps.get(index) else {
        return Vec::new();
    };
    let mut out: Vec<usize> = exits(step)
        .into_iter()
        .filter_map(|exit| next(bot, index, exit))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// For each step, whether a visitor can get there from the entry.
pub fn reachable(bot: &Bot) -> Vec<bool> {
    let mut reached = vec![false; bot.steps.len()];
    if bot.steps.is_empty() {
        return reached;
    }
    reached[0] = true;
    let mut todo = vec![0];
    while let Some(i) = todo.pop() {
        for n in successors(bot, i) {
            if !reached[n] {
                reached[n] = true;
                todo.push(n);
            }
        }
    }
    reached
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::{FileCtx, parse_bot};

    fn bot(src: &str) -> Bot {
        let mut ctx = FileCtx::new("test.toml", src);
        let bot = parse_bot(&mut ctx);
        assert!(ctx.diags.is_empty(), "{:#?}", ctx.diags);
        bot.expect("bot loads")
    }

    #[test]
    fn the_successor_rule() {
        let b = bot(r#"
name = "B"
[[step]]
id = "a"
choices = [{ label = "x", goto = "c" }, { label = "y" }]
goto = "b"
[[step]]
id = "b"
choices = [{ label = "x" }]
buttons = ["skip"]
[[step]]
id = "c"
goto = "a"
[[step]]
id = "d"
say = "last"
end = true
choices = [{ label = "x", goto = "a" }]
[[step]]
id = "e"
"#);
        assert_eq!(next(&b, 0, Exit::Choice(0)), Some(2));
        assert_eq!(next(&b, 0, Exit::Choice(1)), Some(1));
        assert_eq!(next(&b, 0, Exit::Skip), Some(1));
        assert_eq!(next(&b, 1, Exit::Choice(0)), Some(2));
        assert_eq!(next(&b, 2, Exit::Continue), Some(0));
        assert_eq!(next(&b, 3, Exit::Choice(0)), None);
        assert_eq!(next(&b, 4, Exit::Continue), None);
        assert_eq!(next(&b, 9, Exit::Continue), None);
        assert_eq!(successors(&b, 0), [1, 2]);
        assert_eq!(successors(&b, 1), [2]);
        assert_eq!(successors(&b, 2), [0]);
        assert!(successors(&b, 3).is_empty());
    }

    #[test]
    fn skip_is_an_exit_only_where_the_step_waits_and_offers_it() {
        let b = bot(r#"
name = "B"
[[step]]
id = "pick"
choices = [{ label = "x", goto = "end" }]
buttons = ["skip", "back"]
[[step]]
id = "skipped_to"
say = "only by skip"
buttons = ["skip"]
[[step]]
id = "end"
end = true
"#);
        assert_eq!(exits(&b.steps[0]), [Exit::Choice(0), Exit::Skip]);
        assert_eq!(successors(&b, 0), [1, 2]);
        // A step that does not wait is never shown with its buttons.
        assert_eq!(exits(&b.steps[1]), [Exit::Continue]);
        assert_eq!(reachable(&b), [true, true, true]);
    }

    #[test]
    fn each_kind_of_step_has_its_exits() {
        let b = bot(r#"
name = "B"
[[step]]
id = "q"
ask = { var = "x" }
[[step]]
id = "h"
live_chat = "desk"
buttons = ["skip"]
[[step]]
id = "both"
choices = [{ label = "x" }, { label = "y" }]
ask = { var = "y" }
[live_chat.desk]
"#);
        assert_eq!(exits(&b.steps[0]), [Exit::Answer]);
        assert_eq!(exits(&b.steps[1]), [Exit::NoLiveChat, Exit::Skip]);
        // Choices come first when a step (wrongly) waits in two ways.
        assert_eq!(wait_kind(&b.steps[2]), Some(Wait::Choice));
        assert_eq!(exits(&b.steps[2]), [Exit::Choice(0), Exit::Choice(1)]);
        let mut chat_too = b.steps[2].clone();
        chat_too.live_chat = b.steps[1].live_chat.clone();
        assert_eq!(
            exits(&chat_too),
            [Exit::Choice(0), Exit::Choice(1), Exit::NoLiveChat]
        );
    }

    #[test]
    fn a_goto_to_no_step_ends_and_a_repeated_id_means_the_first() {
        let b = bot(r#"
name = "B"
[[step]]
id = "a"
goto = "nowhere"
[[step]]
id = "b"
goto = "a"
[[step]]
id = "a"
"#);
        assert_eq!(next(&b, 0, Exit::Continue), None);
        assert_eq!(next(&b, 1, Exit::Continue), Some(0));
        assert_eq!(reachable(&b), [true, false, false]);
        assert!(reachable(&bot("name = \"B\"\n")).is_empty());
    }
}
