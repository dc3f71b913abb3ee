//! `livechat history`: the installed revisions, newest first; the newest is the live one.
//! From the store (`cli::db`): SQLite in the data directory, or PostgreSQL of
//! `database_url`, where every replica's recorded revisions are.

use std::process::ExitCode;

use serde::Serialize;

use super::Format;
use super::apply::print;
use super::db::{self, Missing};
use crate::settings::ServerArgs;
use crate::store::revisions::{RevisionSummary, short_hash};

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    revision: &'a RevisionSummary,
    live: bool,
}

pub fn run(server: &ServerArgs, format: Format) -> ExitCode {
    let settings = match server.resolve() {
        Ok(settings) => settings,
        Err(e) => return super::fail(e),
    };
    // Looking must not create a database where there is none.
    let listed = db::runtime().and_then(|runtime| {
        runtime
            .block_on(async {
                match db::open(&settings, Missing::Leave).await? {
                    Some(store) => store.revisions().await.map_err(|e| e.to_string()),
                    None => Ok(Vec::new()),
                }
            })
            .map_err(super::fail)
    });
    let list = match listed {
        Ok(list) => list,
        Err(code) => return code,
    };
    let text = match format {
        Format::Json => json(&list),
        Format::Text => table(&list),
    };
    print(&text);
    ExitCode::SUCCESS
}

fn json(list: &[RevisionSummary]) -> String {
    let entries: Vec<Entry<'_>> = list
        .iter()
        .enumerate()
        .map(|(i, revision)| Entry {
            revision,
            live: i == 0,
        })
        .collect();
    serde_json::to_string_pretty(&entries).expect("revisions always serialize") + "\n"
}

fn table(list: &[RevisionSummary]) -> String {
    if list.is_empty() {
        return "No revisions yet: `livechat apply DIR` installs the first.\n".to_string();
    }
    let header = ["REV", "TIME", "SOURCE", "HASH", "SUMMARY"];
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|r| {
            [
                r.number.to_string(),
                r.created_at.clone(),
                r.source.clone(),
                short_hash(&r.hash).to_string(),
                r.summary.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |mark: &str, cells: [&str; 5]| -> String {
        let mut out = format!("{mark} ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == cells.len() - 1 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(" ", header);
    for (i, row) in rows.iter().enumerate() {
        let mark = if i == 0 { "*" } else { " " };
        out.push_str(&line(mark, row.each_ref().map(String::as_str)));
    }
    out.push_str("(* live)\n");
    out
}
