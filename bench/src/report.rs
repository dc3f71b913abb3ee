//! What a run prints: one section per scenario, each a list of named figures and the
//! correctness checks (loss, duplicates, accept winners, dropped sockets). As a table for
//! people, or with `--json` for machines; the keys are the same in both.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::machine::Machine;
use super::stats::Summary;

#[derive(Debug)]
pub struct Report {
    pub machine: Machine,
    pub sections: Vec<Section>,
}

/// The figures of the chat and idle sections that mean the same for livechat and the relay.
pub const CHAT_COMPARED: &[&str] = &[
    "delivery_visitor_to_agent",
    "delivery_agent_to_visitor",
    "messages_acked_per_s",
    "server_cpu_cores",
];
pub const IDLE_COMPARED: &[&str] = &["rss_per_socket_kib"];
/// The ramp's: above 1, livechat held the higher rate.
pub const RAMP_COMPARED: &[&str] = &["highest_rate_held"];

#[derive(Debug)]
pub struct Section {
    pub name: &'static str,
    /// The scenario and its sizes, in one line.
    pub title: String,
    pub figures: Vec<Figure>,
    pub checks: Vec<Check>,
}

#[derive(Debug)]
pub struct Figure {
    pub key: String,
    pub label: String,
    pub value: Shown,
}

#[derive(Debug)]
pub enum Shown {
    Num { value: f64, unit: &'static str },
    Int { value: u64, unit: &'static str },
    Latency(Summary),
    Text(String),
}

#[derive(Debug)]
pub struct Check {
    pub key: String,
    pub label: String,
    pub ok: bool,
    pub detail: String,
}

impl Section {
    pub fn new(name: &'static str, title: String) -> Section {
        Section {
            name,
            title,
            figures: Vec::new(),
            checks: Vec::new(),
        }
    }

    fn add(&mut self, key: &str, label: &str, value: Shown) {
        self.figures.push(Figure {
            key: key.to_string(),
            label: label.to_string(),
            value,
        });
    }

    pub fn num(&mut self, key: &str, label: &str, value: f64, unit: &'static str) {
        self.add(key, label, Shown::Num { value, unit });
    }

    pub fn int(&mut self, key: &str, label: &str, value: u64, unit: &'static str) {
        self.add(key, label, Shown::Int { value, unit });
    }

    pub fn latency(&mut self, key: &str, label: &str, summary: Summary) {
        self.add(key, label, Shown::Latency(summary));
    }

    pub fn text(&mut self, key: &str, label: &str, value: impl Into<String>) {
        self.add(key, label, Shown::Text(value.into()));
    }

    pub fn check(&mut self, key: &str, label: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            key: key.to_string(),
            label: label.to_string(),
            ok,
            detail: detail.into(),
        });
    }

    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

impl Report {
    pub fn ok(&self) -> bool {
        self.sections.iter().all(Section::ok)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "livechat-bench {} ({} build) — {} CPUs ({}), {:.1} GiB RAM, Linux {}",
            env!("CARGO_PKG_VERSION"),
            m.bench_profile,
            m.cpus,
            m.cpu_model,
            m.ram_gib,
            m.kernel
        );
        let _ = writeln!(out, "server binary: {}", m.server);
        let _ = writeln!(out, "load average at start: {}", m.load_start);
        for s in &self.sections {
            let _ = writeln!(out, "\n== {} — {}", s.name, s.title);
            for f in &s.figures {
                let _ = writeln!(out, "  {:<48} {}", f.label, shown(&f.value));
            }
            for c in &s.checks {
                let _ = writeln!(
                    out,
                    "  {:<48} {} ({})",
                    c.label,
                    if c.ok { "ok" } else { "FAILED" },
                    c.detail
                );
            }
        }
        let _ = writeln!(out, "\nload average at end: {}", m.load_end);
        let _ = writeln!(
            out,
            "checks: {}",
            if self.ok() {
                "all passed"
            } else {
                "SOME FAILED"
            }
        );
        out
    }

    pub fn json(&self) -> Value {
        let mut scenarios = Map::new();
        for s in &self.sections {
            let mut figures = Map::new();
            for f in &s.figures {
                figures.insert(f.key.clone(), json_value(&f.value));
            }
            let checks: Map<String, Value> = s
                .checks
                .iter()
                .map(|c| (c.key.clone(), json!({"ok": c.ok, "detail": c.detail})))
                .collect();
            scenarios.insert(
                s.name.to_string(),
                json!({"title": s.title, "figures": figures, "checks": checks}),
            );
        }
        json!({
            "machine": self.machine,
            "scenarios": scenarios,
            "ok": self.ok(),
        })
    }
}

/// Livechat's figures beside the alternative's, run under the same load: `ours / theirs`, for
/// the given keys of each pair of sections.
pub fn comparison(pairs: &[(&Section, &Section, &[&str])]) -> Section {
    let mut s = Section::new(
        "comparison",
        "livechat / Socket.IO relay, same load, same machine, same run (latency, CPU, memory: below 1 means livechat uses less)"
            .to_string(),
    );
    for (ours, theirs, keys) in pairs {
        for &key in keys.iter() {
            let (Some(fa), Some(fb)) = (figure(ours, key), figure(theirs, key)) else {
                continue;
            };
            let (label, a, b) = (&fa.label, &fa.value, &fb.value);
            let ratio = |x: f64, y: f64| {
                if y > 0.0 {
                    format!("{:.2}", x / y)
                } else {
                    "-".into()
                }
            };
            let text = match (a, b) {
                (Shown::Latency(x), Shown::Latency(y)) => format!(
                    "p50 {} / {} ms ({}×), p99 {} / {} ms ({}×)",
                    format_num(x.p50_ms),
                    format_num(y.p50_ms),
                    ratio(x.p50_ms, y.p50_ms),
                    format_num(x.p99_ms),
                    format_num(y.p99_ms),
                    ratio(x.p99_ms, y.p99_ms)
                ),
                (Shown::Num { value: x, unit }, Shown::Num { value: y, .. }) => format!(
                    "{} / {} {unit} ({}×)",
                    format_num(*x),
                    format_num(*y),
                    ratio(*x, *y)
                ),
                _ => continue,
            };
            s.text(
                &format!("{}_{key}", ours.name),
                &format!("{}: {label}", ours.name),
                text,
            );
        }
    }
    s
}

fn figure<'s>(section: &'s Section, key: &str) -> Option<&'s Figure> {
    section.figures.iter().find(|f| f.key == key)
}

fn shown(v: &Shown) -> String {
    match v {
        Shown::Num { value, unit } => with_unit(format_num(*value), unit),
        Shown::Int { value, unit } => with_unit(value.to_string(), unit),
        Shown::Latency(s) if s.count == 0 => "no samples".to_string(),
        Shown::Latency(s) => format!(
            "p50 {} ms  p99 {} ms  p99.9 {} ms  max {} ms  (n={})",
            format_num(s.p50_ms),
            format_num(s.p99_ms),
            format_num(s.p999_ms),
            format_num(s.max_ms),
            s.count
        ),
        Shown::Text(t) => t.clone(),
    }
}

fn with_unit(n: String, unit: &str) -> String {
    if unit.is_empty() {
        n
    } else {
        format!("{n} {unit}")
    }
}

/// Three significant digits, at least; never scientific notation.
fn format_num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn json_value(v: &Shown) -> Value {
    match v {
        Shown::Num { value, unit } => json!({"value": value, "unit": unit}),
        Shown::Int { value, unit } => json!({"value": value, "unit": unit}),
        Shown::Latency(s) => serde_json::to_value(s).unwrap_or(Value::Null),
        Shown::Text(t) => Value::String(t.clone()),
    }
}
