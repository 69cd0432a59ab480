//! Which columns of a table a conditional model reads as its context `c`, and which it
//! models (`y`, the density `p(y | c)`).

use serde::{Deserialize, Serialize};

use super::table::{DataError, Table};

/// The columns of a data file: `columns` in all, `context` (0-based, increasing) condition,
/// the others are modelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    columns: usize,
    context: Vec<usize>,
}

impl Layout {
    /// All `columns` modelled, none conditioning.
    pub fn unconditional(columns: usize) -> Self {
        Self {
            columns,
            context: Vec::new(),
        }
    }

    /// `context` (0-based, any order, repeats ignored) conditions the rest of `columns`.
    /// A column past the last, or no modelled column left, is an error naming the
    /// columns 1-based, as the user gave them.
    pub fn new(columns: usize, context: &[usize]) -> Result<Self, DataError> {
        let mut context = context.to_vec();
        context.sort_unstable();
        context.dedup();
        if let Some(&c) = context.iter().find(|&&c| c >= columns) {
            return Err(DataError::Columns(format!(
                "context column {} is out of range: the data has {columns} columns",
                c + 1
            )));
        }
        if context.len() == columns {
            return Err(DataError::Columns(format!(
                "all {columns} columns are context columns: at least one must be modelled"
            )));
        }
        Ok(Self { columns, context })
    }

    /// Columns of the data.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// The context columns, 0-based.
    pub fn context(&self) -> &[usize] {
        &self.context
    }

    /// The modelled columns, 0-based.
    pub fn modelled(&self) -> Vec<usize> {
        (0..self.columns)
            .filter(|c| self.context.binary_search(c).is_err())
            .collect()
    }

    /// `(y, c)`: the modelled columns and, for a conditional layout, the context columns
    /// of `table` (which has [`Layout::columns`] columns).
    pub fn split(&self, table: &Table) -> (Table, Option<Table>) {
        let y = table.select(&self.modelled());
        let c = (!self.context.is_empty()).then(|| table.select(&self.context));
        (y, c)
    }

    /// Rows in the data's column order from modelled values `y` and context `c` (as many
    /// rows): the inverse of [`Layout::split`].
    pub fn join(&self, y: &Table, c: Option<&Table>) -> Table {
        let modelled = self.modelled();
        let mut values = vec![0.0; y.rows() * self.columns];
        for (r, row) in values.chunks_exact_mut(self.columns).enumerate() {
            for (k, &col) in modelled.iter().enumerate() {
                row[col] = y.values[r * y.dim + k];
            }
            if let Some(c) = c {
                for (k, &col) in self.context.iter().enumerate() {
                    row[col] = c.values[r * c.dim + k];
                }
            }
        }
        Table {
            values,
            dim: self.columns,
        }
    }
}

/// Parses `1,3-4`-style column lists (1-based numbers and inclusive ranges) into 0-based
/// indices.
pub fn parse_columns(s: &str) -> Result<Vec<usize>, String> {
    let number = |t: &str| match t.trim().parse::<usize>() {
        Ok(v) if v > 0 => Ok(v - 1),
        _ => Err(format!(
            "{t:?} is not a column number (columns count from 1; write e.g. 1,3-4)"
        )),
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("{part:?} is an empty range"));
                }
                out.extend(a..=b);
            }
            None => out.push(number(part)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_are_inverse() {
        let t = Table {
            values: (0..12).map(f64::from).collect(),
            dim: 4,
        };
        let layout = Layout::new(4, &[2, 0, 2]).unwrap();
        assert_eq!(layout.context(), &[0, 2]);
        assert_eq!(layout.modelled(), vec![1, 3]);
        let (y, c) = layout.split(&t);
        assert_eq!(y.values, vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
        assert_eq!(
            c.as_ref().unwrap().values,
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(layout.join(&y, c.as_ref()), t);
    }

    #[test]
    fn bad_layouts_are_named() {
        let e = Layout::new(3, &[3]).unwrap_err().to_string();
        assert!(e.contains("context column 4 is out of range"), "{e}");
        let e = Layout::new(2, &[0, 1]).unwrap_err().to_string();
        assert!(e.contains("at least one must be modelled"), "{e}");
        assert_eq!(parse_columns("1,3-4").unwrap(), vec![0, 2, 3]);
        for bad in ["0", "a", "3-1", "1,,2", "-2"] {
            assert!(parse_columns(bad).is_err(), "{bad}");
        }
    }
}
