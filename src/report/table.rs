//! HTML tables from typed rows: every cell says what it is (a number, "n/a" = not applicable or not computed,
//! "never" = measured and not reached), every header sorts its column (the page's small script), and a long
//! table folds into `<details>` so the page stays readable.

use std::fmt::Write as _;

/// Rows above this fold into a closed `<details>`.
const FOLD_ROWS: usize = 12;

/// HTML-escapes untrusted text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One table cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A number; NaN shows as "n/a" (not computed, e.g. no permutations were run).
    Num(f64),
    /// A number with a unit or prefix shown, sorted by the number.
    Shown(f64, String),
    Text(String),
    /// Measured, and the event never happened (e.g. the target hue was never reached).
    Never,
    /// Does not apply, with the reason in the tooltip.
    NotApplicable(&'static str),
}

impl Cell {
    pub fn opt(v: Option<f64>, none: Cell) -> Cell {
        v.map_or(none, Cell::Num)
    }

    fn render(&self) -> String {
        match self {
            Cell::Num(v) if v.is_nan() => {
                "<td class=\"na\" title=\"not computed or not applicable\">n/a</td>".to_string()
            }
            Cell::Num(v) => format!("<td data-v=\"{v}\">{}</td>", number(*v)),
            Cell::Shown(v, text) => format!("<td data-v=\"{v}\">{}</td>", esc(text)),
            Cell::Text(t) => format!("<td class=\"t\">{}</td>", esc(t)),
            Cell::Never => "<td class=\"never\" title=\"measured, never happened\">never</td>".to_string(),
            Cell::NotApplicable(why) => format!("<td class=\"na\" title=\"{}\">n/a</td>", esc(why)),
        }
    }
}

/// Integers as integers, else four decimals (tables are for reading; the CSV next to them has every digit).
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v.fract() == 0.0 && v.abs() < 1e6 {
        format!("{v}")
    } else {
        format!("{v:.4}")
    }
}

/// A table under construction.
pub struct Table {
    caption: String,
    headers: Vec<String>,
    rows: Vec<(bool, Vec<Cell>)>,
}

impl Table {
    pub fn new(caption: impl Into<String>, headers: &[&str]) -> Self {
        Table { caption: caption.into(), headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// Adds a row; `highlight` marks the winning/chosen one.
    pub fn row(&mut self, highlight: bool, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push((highlight, cells));
    }

    pub fn render(&self) -> String {
        let mut s = String::from("<table class=\"sortable\"><thead><tr>");
        for h in &self.headers {
            let _ = write!(s, "<th title=\"click to sort\">{}</th>", esc(h));
        }
        s.push_str("</tr></thead><tbody>");
        for (win, cells) in &self.rows {
            s.push_str(if *win { "<tr class=\"win\">" } else { "<tr>" });
            for c in cells {
                s.push_str(&c.render());
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>");
        if self.rows.len() > FOLD_ROWS {
            format!(
                "<details><summary>{} ({} rows; click to open, headers sort)</summary>{s}</details>",
                esc(&self.caption),
                self.rows.len()
            )
        } else {
            format!("<p class=\"tcap\">{}</p>{s}", esc(&self.caption))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_missing_values_say_which_kind() {
        let mut t = Table::new("<b>x</b>", &["a\"", "b", "c", "d"]);
        t.row(
            false,
            vec![Cell::Text("<script>alert(1)</script>".into()), Cell::Num(f64::NAN), Cell::Never, Cell::Num(2.0)],
        );
        let html = t.render();
        assert!(!html.contains("<script>") && !html.contains("<b>") && html.contains("&lt;script&gt;"));
        assert!(html.contains("a&quot;"));
        assert!(html.contains(">n/a</td>") && html.contains(">never</td>") && html.contains("data-v=\"2\">2</td>"));
    }

    #[test]
    fn long_tables_fold() {
        let mut t = Table::new("scan", &["layer"]);
        for i in 0..=FOLD_ROWS {
            t.row(false, vec![Cell::Num(i as f64)]);
        }
        assert!(t.render().starts_with("<details><summary>scan (13 rows"));
    }
}
