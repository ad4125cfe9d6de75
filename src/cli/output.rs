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

/// `--quiet`: no progress lines on stderr, only errors.
static QUIET: OnceLock<bool> = OnceLock::new();

pub fn set_quiet(quiet: bool) {
    let _ = QUIET.set(quiet);
}

pub fn quiet() -> bool {
    QUIET.get().copied().unwrap_or(false)
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

/// A listing of records with ids (exceptions, attestations): JSON in full, or a table
/// whose first column is the shortest id prefix (8 or more characters) that tells the
/// rows apart, which `remove` accepts; `--wide` shows whole ids.
pub fn print_id_list<T: Serialize>(
    format: super::ListFormat,
    rows: &[T],
    id: impl Fn(&T) -> uuid::Uuid,
    headers: &[&str],
    cells: impl Fn(&T, chrono::DateTime<chrono::Utc>) -> Vec<String>,
) -> anyhow::Result<()> {
    match format {
        super::ListFormat::Json => outln!("{}", json(rows)?),
        super::ListFormat::Table => {
            use crate::db::id_prefix;
            let now = chrono::Utc::now();
            let ids: Vec<uuid::Uuid> = rows.iter().map(&id).collect();
            let len = if WIDE.get().copied().unwrap_or(false) {
                32
            } else {
                id_prefix::short_len(&ids)
            };
            let table_rows = rows
                .iter()
                .zip(&ids)
                .map(|(row, id)| {
                    let mut cells_of_row = vec![id_prefix::short(*id, len)];
                    cells_of_row.extend(cells(row, now));
                    cells_of_row
                })
                .collect();
            let mut all_headers = vec!["id"];
            all_headers.extend_from_slice(headers);
            outln!("{}", table(&all_headers, table_rows));
        }
    }
    Ok(())
}

/// Who recorded an exception or attestation: `--author`, else $USER (when set and not
/// blank), else "cli". A blank `--author` is refused.
pub fn author_or_user(author: Option<String>) -> anyhow::Result<String> {
    author_from(author, std::env::var("USER").ok())
}

fn author_from(author: Option<String>, user: Option<String>) -> anyhow::Result<String> {
    match author {
        Some(a) if a.trim().is_empty() => {
            anyhow::bail!("--author must name who approved it; omit it to record $USER")
        }
        Some(a) => Ok(a.trim().to_string()),
        None => Ok(user
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "cli".into())),
    }
}

/// A time in tables and messages: UTC, to the second, with the zone shown.
pub fn utc(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_author_falls_back_to_user_then_cli() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            author_from(some(" secops "), some("alice")).unwrap(),
            "secops"
        );
        assert_eq!(author_from(None, some("alice")).unwrap(), "alice");
        assert_eq!(author_from(None, some("  ")).unwrap(), "cli");
        assert_eq!(author_from(None, None).unwrap(), "cli");
        assert!(author_from(some(" "), some("alice")).is_err());
    }
}
