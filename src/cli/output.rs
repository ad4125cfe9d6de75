//! Table and JSON rendering shared by listing commands.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use std::io::IsTerminal;
use std::sync::OnceLock;

use comfy_table::{ColumnConstraint, ContentArrangement, Row, Table};
use serde::Serialize;

/// `--wide`: tables show every cell in full instead of fitting the width.
static WIDE: OnceLock<bool> = OnceLock::new();

/// Width tables fit when stdout is not a terminal (a pipe, a file, a CI log).
const DEFAULT_WIDTH: u16 = 80;

/// Columns no wider than this are shown in full.
const SHORT_COLUMN: usize = 10;

pub fn set_wide(wide: bool) {
    let _ = WIDE.set(wide);
}

/// A table that fits the terminal (80 columns when there is none): long cells are cut
/// to one line ending in an ellipsis rather than broken mid-word across lines. With
/// `--wide`, every cell is shown in full.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    // Short columns (severity, status, counts, "-") are never worth cutting: they keep
    // their width and the long ones (titles, ids, errors) share what is left.
    let short: Vec<bool> = (0..headers.len())
        .map(|i| {
            std::iter::once(headers[i])
                .chain(rows.iter().filter_map(|r| r.get(i).map(String::as_str)))
                .all(|cell| cell.chars().count() <= SHORT_COLUMN)
        })
        .collect();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(headers.to_vec());
    let wide = WIDE.get().copied().unwrap_or(false);
    if wide {
        t.set_content_arrangement(ContentArrangement::Disabled);
    } else {
        t.set_content_arrangement(ContentArrangement::Dynamic)
            .set_truncation_indicator("…");
        if !std::io::stdout().is_terminal() {
            t.set_width(DEFAULT_WIDTH);
        }
    }
    for row in rows {
        let mut row = Row::from(row);
        if !wide {
            row.max_height(1);
        }
        t.add_row(row);
    }
    // The first column names the row (an instance, a check id): never cut it.
    for (i, short) in short.into_iter().enumerate() {
        if i == 0 || short {
            if let Some(column) = t.column_mut(i) {
                column.set_constraint(ColumnConstraint::ContentWidth);
            }
        }
    }
    t.to_string()
}

/// One record as field/value lines, every value in full (a timestamp or an id cut
/// short would be useless).
pub fn record(rows: Vec<Vec<String>>) -> String {
    table_in_full(&["field", "value"], rows)
}

/// A table whose cells are never cut (paths, sources, values to copy).
pub fn table_in_full(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.to_vec());
    for row in rows {
        t.add_row(row);
    }
    t.to_string()
}

pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "-".into())
}

/// An expiry column: the date, or "expired <date>" once it has passed, "-" for never.
pub fn expiry(
    at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    match at {
        Some(t) if t <= now => format!("expired {}", t.format("%Y-%m-%d")),
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => "-".into(),
    }
}

/// Who recorded an exception or attestation: `--author`, else $USER.
pub fn author_or_user(author: Option<String>) -> String {
    author
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

/// A time in tables and messages: UTC, to the second, with the zone shown.
pub fn utc(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
