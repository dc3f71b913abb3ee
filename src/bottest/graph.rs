//! A bot's flow as a picture (`livechat graph`): Mermaid or Graphviz DOT, drawn from the
//! successor rule of `config::graph`, so the picture is the flow the runtime follows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::chat::flow::{default_language, vars_json};
use crate::chat::text::render_text;
use crate::config::graph::{self, Exit};
use crate::config::schema::{Bot, FlowButton, Text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Mermaid,
    Dot,
}

/// A node of the picture.
struct Node {
    id: String,
    label: String,
    kind: NodeKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Step,
    Unreachable,
    LiveChat,
    Form,
    Agent,
    End,
}

struct Edge {
    from: String,
    to: String,
    label: String,
    /// Skip, back and the paths without a person are drawn dashed.
    dashed: bool,
}

/// A text as a visitor of the bot's first language sees it before any variable is set.
fn first(bot: &Bot, text: &Text) -> String {
    let lang = default_language(bot);
    render_text(text, lang, &vars_json(bot, &BTreeMap::new()))
}

fn short(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 40 {
        format!("{}…", one_line.chars().take(39).collect::<String>())
    } else {
        one_line
    }
}

fn step_node(i: usize) -> String {
    format!("step{i}")
}

/// The nodes and edges of `bot`'s flow.
fn build(bot: &Bot) -> (Vec<Node>, Vec<Edge>) {
    let reachable = graph::reachable(bot);
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let mut actions = BTreeSet::new();
    let mut end_used = false;
    let target = |next: Option<usize>, end_used: &mut bool| match next {
        Some(n) => step_node(n),
        None => {
            *end_used = true;
            "done".to_string()
        }
    };
    for (i, step) in bot.steps.iter().enumerate() {
        let mut label = step.id.get_ref().clone();
        if let Some(say) = &step.say {
            label.push('\n');
            label.push_str(&short(&first(bot, say)));
        }
        if let Some(ask) = &step.ask {
            let _ = write!(label, "\nasks {}", ask.var.get_ref());
        }
        let kind = if reachable.get(i).copied().unwrap_or(false) {
            NodeKind::Step
        } else {
            label.push_str("\n(unreachable)");
            NodeKind::Unreachable
        };
        nodes.push(Node {
            id: step_node(i),
            label,
            kind,
        });
        for exit in graph::exits(step) {
            let next = graph::next(bot, i, exit);
            let (label, dashed) = match exit {
                Exit::Continue => (String::new(), false),
                Exit::Choice(c) => (short(&first(bot, &step.choices[c].label)), false),
                Exit::Answer => ("answer".into(), false),
                Exit::Skip => ("skip".into(), true),
                Exit::NoLiveChat => {
                    // Through the Live Chat action: drawn below.
                    if let Some(a) = &step.live_chat {
                        let action = format!("lc_{}", ident(a.get_ref()));
                        edges.push(Edge {
                            from: step_node(i),
                            to: action.clone(),
                            label: "asks for a person".into(),
                            dashed: false,
                        });
                        actions.insert(a.get_ref().clone());
                        let after = target(next, &mut end_used);
                        match bot
                            .live_chat
                            .get(a.get_ref())
                            .and_then(|lc| lc.offline_form.as_ref())
                        {
                            Some(form) => {
                                let form_node = format!("form_{}_{}", ident(a.get_ref()), i);
                                nodes.push(Node {
                                    id: form_node.clone(),
                                    label: format!("offline form\n{}", form.get_ref()),
                                    kind: NodeKind::Form,
                                });
                                edges.push(Edge {
                                    from: action,
                                    to: form_node.clone(),
                                    label: "timeout, closed or nobody".into(),
                                    dashed: true,
                                });
                                edges.push(Edge {
                                    from: form_node,
                                    to: after,
                                    label: "sent or dismissed".into(),
                                    dashed: true,
                                });
                            }
                            None => edges.push(Edge {
                                from: action,
                                to: after,
                                label: "timeout, closed or nobody".into(),
                                dashed: true,
                            }),
                        }
                    }
                    continue;
                }
            };
            edges.push(Edge {
                from: step_node(i),
                to: target(next, &mut end_used),
                label,
                dashed,
            });
        }
        if graph::offers(step, FlowButton::Back) {
            // Back returns to the step answered before: any step that leads here.
            for (j, _) in bot.steps.iter().enumerate() {
                if j != i && graph::successors(bot, j).contains(&i) {
                    edges.push(Edge {
                        from: step_node(i),
                        to: step_node(j),
                        label: "back".into(),
                        dashed: true,
                    });
                }
            }
        }
    }
    for a in &actions {
        let mut label = format!("Live Chat: {a}");
        if let Some(lc) = bot.live_chat.get(a) {
            let _ = write!(
                label,
                "\naccept within {}",
                humantime::format_duration(lc.accept_timeout.get())
            );
            if lc.hours.is_some() {
                label.push_str("\nopening hours");
            }
        }
        nodes.push(Node {
            id: format!("lc_{}", ident(a)),
            label,
            kind: NodeKind::LiveChat,
        });
        nodes.push(Node {
            id: format!("agent_{}", ident(a)),
            label: "chat with an agent".into(),
            kind: NodeKind::Agent,
        });
        edges.push(Edge {
            from: format!("lc_{}", ident(a)),
            to: format!("agent_{}", ident(a)),
            label: "accepted".into(),
            dashed: false,
        });
    }
    if end_used {
        nodes.push(Node {
            id: "done".into(),
            label: "end".into(),
            kind: NodeKind::End,
        });
    }
    (nodes, edges)
}

fn ident(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The picture of `bot` in `style`.
pub fn render(bot: &Bot, style: Style) -> String {
    let (nodes, edges) = build(bot);
    match style {
        Style::Mermaid => mermaid(&nodes, &edges),
        Style::Dot => dot(&nodes, &edges),
    }
}

fn mermaid_text(s: &str) -> String {
    s.replace('&', "#amp;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
        .replace('\n', "<br/>")
}

fn mermaid(nodes: &[Node], edges: &[Edge]) -> String {
    let mut out = String::from("flowchart TD\n");
    for n in nodes {
        let t = mermaid_text(&n.label);
        let shape = match n.kind {
            NodeKind::Step | NodeKind::Unreachable => format!("[\"{t}\"]"),
            NodeKind::LiveChat => format!("{{{{\"{t}\"}}}}"),
            NodeKind::Form => format!("[/\"{t}\"/]"),
            NodeKind::Agent => format!("([\"{t}\"])"),
            NodeKind::End => format!("((\"{t}\"))"),
        };
        let _ = writeln!(out, "    {}{shape}", n.id);
    }
    for e in edges {
        let arrow = if e.dashed { "-.->" } else { "-->" };
        if e.label.is_empty() {
            let _ = writeln!(out, "    {} {arrow} {}", e.from, e.to);
        } else {
            let _ = writeln!(
                out,
                "    {} {arrow}|\"{}\"| {}",
                e.from,
                mermaid_text(&e.label),
                e.to
            );
        }
    }
    out.push_str("    classDef unreachable stroke-dasharray: 5 5,color:#888\n");
    let unreachable: Vec<&str> = nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Unreachable)
        .map(|n| n.id.as_str())
        .collect();
    if !unreachable.is_empty() {
        let _ = writeln!(out, "    class {} unreachable", unreachable.join(","));
    }
    out
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn dot(nodes: &[Node], edges: &[Edge]) -> String {
    let mut out = String::from(
        "digraph flow {\n    rankdir=TB;\n    node [fontname=\"Helvetica\", fontsize=11];\n    edge [fontname=\"Helvetica\", fontsize=9];\n",
    );
    for n in nodes {
        let attrs = match n.kind {
            NodeKind::Step => "shape=box, style=rounded",
            NodeKind::Unreachable => {
                "shape=box, style=\"rounded,dashed\", color=gray50, fontcolor=gray50"
            }
            NodeKind::LiveChat => "shape=hexagon",
            NodeKind::Form => "shape=parallelogram",
            NodeKind::Agent => "shape=box, style=\"rounded,bold\"",
            NodeKind::End => "shape=doublecircle",
        };
        let _ = writeln!(
            out,
            "    {} [label=\"{}\", {attrs}];",
            n.id,
            dot_text(&n.label)
        );
    }
    for e in edges {
        let style = if e.dashed { ", style=dashed" } else { "" };
        let _ = writeln!(
            out,
            "    {} -> {} [label=\"{}\"{style}];",
            e.from,
            e.to,
            dot_text(&e.label)
        );
    }
    out.push_str("}\n");
    out
}
