//! What the client commands print: aligned tables and `key: value` lists for people, JSON for
//! scripts.
//!
//! Owns: formats and the helpers that render times and sizes. Must not do: talk to a service.

use std::io::Write;

use serde::Serialize;

/// `--output`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns (lists) or `key: value` lines (one entity).
    #[default]
    Table,
    /// JSON: an array for lists, an object for one entity.
    Json,
}

/// Prints in the chosen format.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    format: Format,
}

/// One row of a table.
pub type Row = Vec<String>;

impl Out {
    /// Prints in `format`.
    pub fn new(format: Format) -> Self {
        Self { format }
    }

    /// Whether scripts are reading.
    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// A list: a JSON array of `items`, or a table of `headers` and one `row` per item (or a
    /// note on stderr that there are no `what`).
    pub fn list<T: Serialize>(
        &self,
        items: &[T],
        what: &str,
        headers: &[&str],
        row: impl Fn(&T) -> Row,
    ) -> anyhow::Result<()> {
        if self.is_json() {
            return print_json(&items);
        }
        if items.is_empty() {
            eprintln!("no {what}");
            return Ok(());
        }
        let rows: Vec<Row> = items.iter().map(row).collect();
        write_stdout(&table(headers, &rows))
    }

    /// One entity: JSON, or its `fields` as aligned `key: value` lines.
    pub fn show<T: Serialize>(
        &self,
        item: &T,
        fields: impl FnOnce(&T) -> Vec<(&'static str, String)>,
    ) -> anyhow::Result<()> {
        if self.is_json() {
            return print_json(item);
        }
        let fields = fields(item);
        let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        let mut text = String::new();
        for (key, value) in fields {
            let label = format!("{key}:");
            text.push_str(&format!("{label:<width$} {value}\n"));
        }
        write_stdout(&text)
    }

    /// A confirmation for people ("pool 'p' created"); scripts get nothing.
    pub fn done(&self, message: impl std::fmt::Display) -> anyhow::Result<()> {
        if self.is_json() {
            return Ok(());
        }
        write_stdout(&format!("{message}\n"))
    }
}

/// Pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_stdout(&text)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    write_bytes(&mut std::io::stdout().lock(), text.as_bytes())
}

/// Writes and flushes `bytes`; a closed pipe is not an error.
pub fn write_bytes(w: &mut impl Write, bytes: &[u8]) -> anyhow::Result<()> {
    match w.write_all(bytes).and_then(|()| w.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Columns aligned on the widest cell, two spaces apart, the last one unpadded.
pub fn table(headers: &[&str], rows: &[Row]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Row = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                line.push_str(cell);
                line.push_str(&" ".repeat(pad.saturating_sub(cell.chars().count()) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `2026-11-21 07:00:00` (UTC), for tables.
pub fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An RFC 3339 time as [`time`] writes it (`-` if absent, as it is if not RFC 3339).
pub fn time_text(text: Option<&str>) -> String {
    match text {
        None => "-".to_owned(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_or_else(|_| t.to_owned(), |t| time(t.with_timezone(&chrono::Utc))),
    }
}

/// An optional value, or `-`.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `1.5 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["pool1".to_owned(), "active".to_owned(), "1/1".to_owned()],
            vec![
                "a-longer-pool".to_owned(),
                "deleting".to_owned(),
                String::new(),
            ],
        ];
        assert_eq!(
            table(&["ID", "STATE", "NODES"], &rows),
            "ID             STATE     NODES\npool1          active    1/1\na-longer-pool  deleting\n"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size(12), "12 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 20), "3.0 MiB");
    }
}
