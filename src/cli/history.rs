//! `livechat history`: the installed revisions, newest first; the newest is the live one.

use std::process::ExitCode;

use serde::Serialize;

use super::Format;
use super::apply::print;
use crate::settings::ServerArgs;
use crate::store::revisions::{self, RevisionSummary, short_hash};
use crate::store::{self, DB_FILE};

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
    let list = if settings.data_dir.join(DB_FILE).is_file() {
        let listed = store::open(&settings.data_dir).and_then(|conn| revisions::list(&conn));
        match listed {
            Ok(list) => list,
            Err(e) => return super::fail(e),
        }
    } else {
        Vec::new()
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
