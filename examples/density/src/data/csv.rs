//! CSV tables.

use std::{borrow::Cow, path::Path};

use super::table::{DataError, Table};

/// Reads a CSV table of numbers; see [`parse_csv`] for the format.
pub fn read_csv(path: &Path) -> Result<Table, DataError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    // Lossy: only a header may hold text, and its names are not used; a non-UTF-8 byte in
    // a data cell still fails that cell's number parse, with its line and column.
    parse_csv(&String::from_utf8_lossy(&bytes), &name)
}

/// `table` as CSV text: a header line of `names` (one per column), then one line per row,
/// each number written so that it reads back exactly (Rust's shortest round-trip form).
pub fn write_csv(table: &Table, names: &[String]) -> String {
    let mut out = names.join(",");
    out.push('\n');
    for row in table.values.chunks_exact(table.dim.max(1)) {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The field separator of a CSV file, chosen from its first line: a comma if it has one
/// outside quotes, else a semicolon, else a tab, else a comma (one column).
fn csv_delimiter(first_line: &str) -> char {
    let mut quoted = false;
    let (mut semicolon, mut tab) = (false, false);
    for c in first_line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return ',',
            ';' if !quoted => semicolon = true,
            '\t' if !quoted => tab = true,
            _ => {}
        }
    }
    if semicolon {
        ';'
    } else if tab {
        '\t'
    } else {
        ','
    }
}

/// The cells of one CSV line: trimmed, double quotes removed (`""` inside quotes is a
/// quote), an empty last cell after a separator (a trailing separator) not counted. Cells
/// borrow from the line unless they are quoted, so a line costs no memory per cell.
#[derive(Clone)]
struct CsvCells<'a> {
    rest: Option<&'a str>,
    delimiter: char,
    first: bool,
}

impl<'a> CsvCells<'a> {
    fn new(line: &'a str, delimiter: char) -> Self {
        Self {
            rest: Some(line),
            delimiter,
            first: true,
        }
    }
}

impl<'a> Iterator for CsvCells<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        let rest = self.rest?;
        if !self.first && rest.trim().is_empty() {
            self.rest = None;
            return None;
        }
        self.first = false;
        let (mut quoted, mut has_quote, mut end) = (false, false, rest.len());
        for (i, c) in rest.char_indices() {
            if c == '"' {
                quoted = !quoted;
                has_quote = true;
            } else if c == self.delimiter && !quoted {
                end = i;
                break;
            }
        }
        let raw = &rest[..end];
        self.rest = rest.get(end + self.delimiter.len_utf8()..);
        if !has_quote {
            return Some(Cow::Borrowed(raw.trim()));
        }
        let mut cell = String::with_capacity(raw.len());
        let mut quoted = false;
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => quoted = !quoted,
                c => cell.push(c),
            }
        }
        Some(Cow::Owned(cell.trim().to_string()))
    }
}

/// Parses CSV text (`name` names the file in errors) into a table of numbers.
///
/// - The separator is a comma, or a semicolon or a tab when the first line has one of
///   those and no comma; fields may be double-quoted; a trailing separator is ignored.
/// - The first non-blank line is a header when any of its cells is not a number (it is
///   skipped, and said so at `info` level). Every later line must be all numbers: a bad
///   cell is an error naming its line and column, never a silently dropped row.
/// - Blank lines are skipped; a UTF-8 byte-order mark is ignored; every row has as many
///   cells as the first (header or data) line.
pub fn parse_csv(text: &str, name: &str) -> Result<Table, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty());
    let Some((first_no, first)) = lines.next() else {
        return Err(DataError::Shape {
            path: name.into(),
            why: "no data rows (the file is empty)".into(),
        });
    };
    let delimiter = csv_delimiter(first);
    // The first line, parsed as data until it proves to be a header.
    let mut values = Vec::new();
    let (mut dim, mut numbers) = (0, 0);
    for cell in CsvCells::new(first, delimiter) {
        dim += 1;
        if let Ok(v) = cell.parse::<f64>() {
            values.push(v);
            numbers += 1;
        }
    }
    if numbers < dim {
        values.clear();
        let shown: Vec<Cow<str>> = CsvCells::new(first, delimiter).take(20).collect();
        tracing::info!(
            "{name}: line {first_no} is a header, skipped: {}{}",
            shown.join(", "),
            if dim > shown.len() { ", …" } else { "" }
        );
        // A first data row with a typo reads as a header and its values are lost: warn
        // when it holds numbers, which a header seldom does.
        if numbers > 0 {
            tracing::warn!(
                "{name}: the header (line {first_no}) has {numbers} numeric cell(s) of {dim}: \
                 if it is a data row, fix its non-numeric cells"
            );
        }
    }
    for (no, line) in lines {
        let cells = CsvCells::new(line, delimiter);
        let got = cells.clone().count();
        if got != dim {
            return Err(DataError::Ragged {
                path: name.into(),
                line: no,
                expected: dim,
                got,
            });
        }
        for (j, cell) in cells.enumerate() {
            values.push(cell.parse::<f64>().map_err(|_| DataError::NotANumber {
                path: name.into(),
                line: no,
                column: j + 1,
                cell: cell.into_owned(),
            })?);
        }
    }
    if values.is_empty() {
        let shown: String = first.chars().take(60).collect();
        let more = if shown.len() < first.len() { "…" } else { "" };
        return Err(DataError::Shape {
            path: name.into(),
            why: format!(
                "no data rows (line {first_no} is a header: {shown:?}{more}; separator \
                 {delimiter:?})"
            ),
        });
    }
    let table = Table { values, dim };
    table.check_finite(name)?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_tables_read_back_exactly() {
        let t = Table {
            values: vec![0.1, -2.5e-300, 1.0 / 3.0, 7.0],
            dim: 2,
        };
        let text = write_csv(&t, &["a".into(), "b".into()]);
        assert!(text.starts_with("a,b\n"));
        assert_eq!(parse_csv(&text, "t.csv").unwrap(), t);
    }

    fn csv(text: &str) -> Result<Table, DataError> {
        parse_csv(text, "t.csv")
    }

    #[test]
    fn csv_header_is_only_ever_the_first_line() {
        // A typo in a data row is an error naming it, not a silently dropped "header".
        let e = csv("x,y\n1,2\n3,4.O\n5,6\n").unwrap_err();
        assert!(
            matches!(&e, DataError::NotANumber { line: 3, column: 2, cell, .. } if cell == "4.O"),
            "{e}"
        );
        // The same after blank lines, and with no header at all.
        let e = csv("\n\n1,2\nx,4\n").unwrap_err();
        assert!(matches!(e, DataError::NotANumber { line: 4, .. }), "{e}");
        // The old reader skipped every leading non-numeric line: a second header line
        // is data, and not a number.
        let e = csv("x,y\nunits,units\n1,2\n").unwrap_err();
        assert!(matches!(e, DataError::NotANumber { line: 2, .. }), "{e}");
        let t = csv("x,y\n1,2\n3,4\n").unwrap();
        assert_eq!((t.values, t.dim), (vec![1.0, 2.0, 3.0, 4.0], 2));
        let t = csv("1,2\n3,4\n").unwrap();
        assert_eq!(t.rows(), 2);
        // A header must have as many cells as the rows.
        let e = csv("x,y,z\n1,2\n").unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Ragged {
                    line: 2,
                    expected: 3,
                    got: 2,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn csv_accepts_semicolons_tabs_quotes_and_trailing_separators() {
        let want = Table {
            values: vec![1.5, -2.0, 3.0, 4e-3],
            dim: 2,
        };
        for text in [
            "a;b\n1.5;-2\n3;4e-3\n",
            "1.5;-2\r\n3;4e-3\r\n",
            "a\tb\n1.5\t-2\n3\t4e-3\n",
            "\"a\",\"b\"\n\"1.5\",\"-2\"\n\"3\", \"4e-3\"\n",
            "a,b,\n1.5,-2,\n3,4e-3,\n",
            "1.5, -2 ,\n 3 ,4e-3\n",
            "\u{feff}1.5,-2\n3,4e-3\n",
            "\"a,b\",\"c\"\"d\"\n1.5,-2\n3,4e-3\n",
        ] {
            assert_eq!(csv(text).unwrap(), want, "{text:?}");
        }
        // A missing value is not a trailing separator.
        let e = csv("1,2,3\n4,5,\n").unwrap_err();
        assert!(matches!(e, DataError::Ragged { line: 2, .. }), "{e}");
        let e = csv("1,,3\n").unwrap_err();
        assert!(
            matches!(e, DataError::Ragged { .. } | DataError::Shape { .. }),
            "{e}"
        );
    }

    #[test]
    fn csv_without_rows_says_what_was_skipped() {
        for (text, says) in [
            ("", "empty"),
            ("\n \n", "empty"),
            ("x,y\n", "line 1 is a header: \"x,y\""),
            ("a;b\n\n", "separator ';'"),
        ] {
            let e = csv(text).unwrap_err().to_string();
            assert!(
                e.contains("no data rows") && e.contains(says),
                "{text:?}: {e}"
            );
            assert!(e.contains("t.csv"), "{e}");
        }
        let e = csv("x\n1\nNaN\n").unwrap_err().to_string();
        assert!(e.contains("row 2, column 1 is NaN"), "{e}");
    }
}
