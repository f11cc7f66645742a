//! Aligned text tables: a header, rows, and rules before total lines. Widths ignore colour codes,
//! so coloured cells line up with plain ones.

use crate::style::Style;

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

enum Row {
    Cells(Vec<String>),
    Rule,
}

/// A table under construction; [`Table::render`] lays it out.
pub struct Table {
    headers: Vec<String>,
    aligns: Vec<Align>,
    rows: Vec<Row>,
}

/// Columns are separated by this.
const GAP: &str = "  ";

impl Table {
    /// A table with these `(header, alignment)` columns.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            headers: columns.iter().map(|(h, _)| (*h).to_owned()).collect(),
            aligns: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are blank, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cells: Vec<String> = cells.into_iter().map(Into::into).take(self.headers.len()).collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(Row::Cells(cells));
    }

    /// Appends a horizontal rule (before a totals row).
    pub fn rule(&mut self) {
        self.rows.push(Row::Rule);
    }

    /// True when no data row was added.
    pub fn is_empty(&self) -> bool {
        !self.rows.iter().any(|r| matches!(r, Row::Cells(_)))
    }

    /// The laid-out table, one line per row, each ending in `\n`, no trailing spaces.
    pub fn render(&self, style: Style) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| visible_width(h)).collect();
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (w, cell) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(visible_width(cell));
                }
            }
        }
        let total = widths.iter().sum::<usize>() + GAP.len() * widths.len().saturating_sub(1);

        let mut out = String::new();
        let header = self.line(&self.headers, &widths);
        out.push_str(&style.bold(&header));
        out.push('\n');
        for row in &self.rows {
            match row {
                Row::Cells(cells) => out.push_str(&self.line(cells, &widths)),
                Row::Rule => out.push_str(&style.dim(&"-".repeat(total))),
            }
            out.push('\n');
        }
        out
    }

    fn line(&self, cells: &[String], widths: &[usize]) -> String {
        let mut line = String::new();
        for (i, ((cell, width), align)) in cells.iter().zip(widths).zip(&self.aligns).enumerate() {
            if i > 0 {
                line.push_str(GAP);
            }
            let pad = " ".repeat(width.saturating_sub(visible_width(cell)));
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
            }
        }
        line.trim_end().to_owned()
    }
}

/// Characters a terminal shows for `text`: ANSI escape sequences (`ESC [ … letter`) take no room.
pub fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // Skip to the sequence's final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            width += 1;
        }
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_text_left_and_numbers_right() {
        let mut t = Table::new(&[("ROUTE", Align::Left), ("ALLOWED", Align::Right), ("NOTE", Align::Left)]);
        t.row(["config", "120", "x"]);
        t.row(["rag", "7", ""]);
        t.rule();
        t.row(["TOTAL", "127"]);
        let expected = "\
ROUTE   ALLOWED  NOTE
config      120  x
rag           7
---------------------
TOTAL       127
";
        assert_eq!(t.render(Style::plain()), expected);
    }

    #[test]
    fn colour_codes_take_no_width() {
        let colored = Style::decide(true, None).good("HIT");
        assert_eq!(visible_width(&colored), 3);
        let mut t = Table::new(&[("STATUS", Align::Left), ("N", Align::Right)]);
        t.row([colored.clone(), "1".into()]);
        t.row(["MISS".to_owned(), "22".into()]);
        let out = t.render(Style::plain());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], format!("{colored}      1"));
        assert_eq!(lines[2], "MISS    22");
    }

    #[test]
    fn extra_cells_are_dropped_and_missing_ones_blank() {
        let mut t = Table::new(&[("A", Align::Left), ("B", Align::Left)]);
        assert!(t.is_empty());
        t.row(["1", "2", "3"]);
        t.row(["4"]);
        assert!(!t.is_empty());
        assert_eq!(t.render(Style::plain()), "A  B\n1  2\n4\n");
    }
}
