//! Tabular exports for finance and supervision staff: one [`Table`] rendered as CSV (UTF-8 with a
//! byte-order mark, so Excel shows the Chinese headers) or XLSX (rust_xlsxwriter), and served as
//! an HTTP attachment for `?format=csv|xlsx`.
//!
//! Money cells hold integer fen and are written as yuan: `12.34` in CSV, the number 12.34 with the
//! format `0.00` in XLSX (fen ÷ 100 is exact in an f64 below 2^53 fen).
//!
//! Text cells are data, never formulas (OWASP "CSV injection"): a text cell that starts with `=`,
//! `+`, `-`, `@`, a tab or a carriage return (or their full-width forms `＝＋－＠`) is written with a
//! leading `'`, in CSV and in XLSX alike (XLSX cells are written as strings, which never
//! evaluate; the prefix keeps a sheet re-saved as CSV safe too). Numbers are number cells
//! ([`Cell::Int`], [`Cell::Fen`], [`Cell::Decimal`]), so a negative amount stays a number.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rust_xlsxwriter::{Format as XlsxFormat, Workbook, XlsxError};

use crate::http::Problem;

/// One cell of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    /// An integer quantity.
    Int(i64),
    /// An amount in fen, shown in yuan.
    Fen(i64),
    /// A decimal given in units of 10^-scale: `Decimal(667, 3)` is 0.667; shown without
    /// trailing zeros (`Decimal(2000, 3)` is 2).
    Decimal(i64, u32),
    Empty,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_owned())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

/// A sheet: a name, the header row and the data rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub sheet: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// Fen as a yuan string with two decimals: `-1234` → `-12.34` (the ledger's own formatter).
pub use crate::domain::safety_fund::yuan;

/// Characters that make a spreadsheet read a cell as a formula when they lead it.
const FORMULA_LEADS: [char; 10] = [
    '=', '+', '-', '@', '\t', '\r', '\u{FF1D}', '\u{FF0B}', '\u{FF0D}', '\u{FF20}',
];

/// A text cell as written: with a leading `'` when a spreadsheet would take it for a formula.
pub fn neutralise(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(FORMULA_LEADS) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// `value × 10^-scale` as a decimal without trailing zeros: (667, 3) → `0.667`, (-2000, 3) → `-2`.
pub fn decimal(value: i64, scale: u32) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let a = value.unsigned_abs();
    let Some(div) = 10u64.checked_pow(scale) else {
        return format!("{sign}0");
    };
    let frac = a % div;
    if frac == 0 {
        format!("{sign}{}", a / div)
    } else {
        let f = format!("{frac:0width$}", width = scale as usize);
        format!("{sign}{}.{}", a / div, f.trim_end_matches('0'))
    }
}

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

impl Table {
    pub fn new(sheet: impl Into<String>, headers: &[&str]) -> Self {
        Table {
            sheet: sheet.into(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// RFC 4180 CSV with CRLF line ends, preceded by a UTF-8 byte-order mark.
    pub fn to_csv(&self) -> String {
        let mut out = String::from('\u{feff}');
        let mut line = |cells: &mut dyn Iterator<Item = String>| {
            for (i, c) in cells.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                csv_field(&mut out, &c);
            }
            out.push_str("\r\n");
        };
        line(&mut self.headers.iter().cloned());
        for row in &self.rows {
            line(&mut row.iter().map(|c| match c {
                Cell::Text(s) => neutralise(s).into_owned(),
                Cell::Int(n) => n.to_string(),
                Cell::Fen(f) => yuan(*f),
                Cell::Decimal(v, scale) => decimal(*v, *scale),
                Cell::Empty => String::new(),
            }));
        }
        out
    }

    /// An XLSX workbook with one sheet; headers bold, money as numbers formatted `0.00`.
    pub fn to_xlsx(&self) -> Result<Vec<u8>, XlsxError> {
        let mut book = Workbook::new();
        let bold = XlsxFormat::new().set_bold();
        let money = XlsxFormat::new().set_num_format("0.00");
        let sheet = book.add_worksheet();
        // Sheet names are at most 31 characters and may not contain []:*?/\ .
        let name: String = self
            .sheet
            .chars()
            .filter(|c| !"[]:*?/\\".contains(*c))
            .take(31)
            .collect();
        sheet.set_name(if name.is_empty() { "Sheet1" } else { &name })?;
        for (c, h) in self.headers.iter().enumerate() {
            sheet.write_string_with_format(0, col(c), h, &bold)?;
            sheet.set_column_width(col(c), 14)?;
        }
        for (r, row) in self.rows.iter().enumerate() {
            let r = u32::try_from(r + 1).map_err(|_| XlsxError::RowColumnLimitError)?;
            for (c, cell) in row.iter().enumerate() {
                match cell {
                    Cell::Text(s) => {
                        sheet.write_string(r, col(c), neutralise(s))?;
                    }
                    Cell::Int(n) => {
                        sheet.write_number(r, col(c), *n as f64)?;
                    }
                    Cell::Fen(f) => {
                        sheet.write_number_with_format(r, col(c), *f as f64 / 100.0, &money)?;
                    }
                    Cell::Decimal(v, scale) => {
                        // Correctly rounded: the same f64 as the decimal's text.
                        let x = *v as f64 / 10f64.powi((*scale).min(18) as i32);
                        sheet.write_number(r, col(c), x)?;
                    }
                    Cell::Empty => {}
                }
            }
        }
        book.save_to_buffer()
    }
}

fn col(c: usize) -> u16 {
    u16::try_from(c).unwrap_or(u16::MAX)
}

/// The `?format=` of report endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Csv,
    Xlsx,
}

impl Format {
    /// Parses `json`, `csv` or `xlsx` (absent means JSON).
    pub fn parse(s: Option<&str>) -> Result<Format, Problem> {
        match s {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some("xlsx") => Ok(Format::Xlsx),
            Some(other) => Err(Problem::validation(
                "format",
                format!("expected json, csv or xlsx, got {other:?}"),
            )),
        }
    }
}

pub const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The table as an attachment named `{stem}.csv` / `{stem}.xlsx` (JSON is the caller's own).
pub fn attachment(table: &Table, format: Format, stem: &str) -> Result<Response, Problem> {
    let (body, mime, ext) = match format {
        Format::Csv => (
            table.to_csv().into_bytes(),
            "text/csv; charset=utf-8",
            "csv",
        ),
        Format::Xlsx => (
            table.to_xlsx().map_err(|e| Problem::internal(&e))?,
            XLSX_MIME,
            "xlsx",
        ),
        Format::Json => {
            return Err(Problem::validation("format", "JSON is not an attachment"));
        }
    };
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{Data, Reader, Xlsx};
    use std::io::Cursor;

    fn sample() -> Table {
        let mut t = Table::new("对账单", &["日期", "摘要", "金额(元)"]);
        t.push(vec![
            "2026-01-05".into(),
            "材料, \"防护\"".into(),
            Cell::Fen(123_456),
        ]);
        t.push(vec!["2026-01-06".into(), Cell::Empty, Cell::Fen(-5)]);
        t.push(vec!["合计".into(), Cell::Int(2), Cell::Fen(123_451)]);
        t
    }

    #[test]
    fn yuan_has_two_decimals_and_sign() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(yuan(-1234), "-12.34");
        assert_eq!(yuan(10_000_000_000), "100000000.00");
    }

    #[test]
    fn csv_quotes_and_marks_utf8() {
        let csv = sample().to_csv();
        assert!(csv.starts_with('\u{feff}'));
        let body = &csv['\u{feff}'.len_utf8()..];
        let lines: Vec<&str> = body.split("\r\n").collect();
        assert_eq!(lines[0], "日期,摘要,金额(元)");
        assert_eq!(lines[1], "2026-01-05,\"材料, \"\"防护\"\"\",1234.56");
        assert_eq!(lines[2], "2026-01-06,,-0.05");
        assert_eq!(lines[3], "合计,2,1234.51");
        assert_eq!(lines[4], "");
    }

    #[test]
    fn xlsx_reads_back_with_the_same_cells() {
        let bytes = sample().to_xlsx().unwrap();
        let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).unwrap();
        assert_eq!(book.sheet_names(), vec!["对账单".to_owned()]);
        let range = book.worksheet_range("对账单").unwrap();
        let rows: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
        assert_eq!(rows[0][0], Data::String("日期".into()));
        assert_eq!(rows[1][1], Data::String("材料, \"防护\"".into()));
        assert_eq!(rows[1][2], Data::Float(1234.56));
        assert_eq!(rows[2][2], Data::Float(-0.05));
        assert_eq!(rows[3][1], Data::Float(2.0));
    }

    /// Cells a hostile name or reference could put in an export.
    fn hostile() -> Table {
        let mut t = Table::new("导出", &["名称", "金额(元)", "数量"]);
        for s in [
            "=HYPERLINK(\"http://x\",\"点我\")",
            "+1+2",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
            "＝1+1",
            "=1,2",
        ] {
            t.push(vec![s.into(), Cell::Fen(-1234), Cell::Decimal(-333, 3)]);
        }
        t.push(vec![
            "吉林-建工 = 好".into(),
            Cell::Int(-5),
            Cell::Decimal(2000, 3),
        ]);
        t
    }

    #[test]
    fn csv_neutralises_formula_cells_and_keeps_negative_numbers() {
        let csv = hostile().to_csv();
        let lines: Vec<&str> = csv['\u{feff}'.len_utf8()..].split("\r\n").collect();
        assert_eq!(
            lines[1],
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"点我\"\")\",-12.34,-0.333"
        );
        assert_eq!(lines[2], "'+1+2,-12.34,-0.333");
        assert_eq!(lines[3], "'-2+3,-12.34,-0.333");
        assert_eq!(lines[4], "'@SUM(A1),-12.34,-0.333");
        assert_eq!(lines[5], "'\t=1,-12.34,-0.333");
        assert_eq!(lines[6], "\"'\r=1\",-12.34,-0.333");
        assert_eq!(lines[7], "'＝1+1,-12.34,-0.333");
        assert_eq!(lines[8], "\"'=1,2\",-12.34,-0.333");
        // Only a leading character counts; numbers are never prefixed.
        assert_eq!(lines[9], "吉林-建工 = 好,-5,2");
        for l in &lines[1..9] {
            assert!(l.starts_with("'") || l.starts_with("\"'"), "{l:?}");
        }
    }

    #[test]
    fn xlsx_writes_formula_text_as_prefixed_strings_and_numbers_as_numbers() {
        let bytes = hostile().to_xlsx().unwrap();
        let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).unwrap();
        let range = book.worksheet_range("导出").unwrap();
        let rows: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
        assert_eq!(
            rows[1][0],
            Data::String("'=HYPERLINK(\"http://x\",\"点我\")".into())
        );
        assert_eq!(rows[2][0], Data::String("'+1+2".into()));
        assert_eq!(rows[3][0], Data::String("'-2+3".into()));
        assert_eq!(rows[4][0], Data::String("'@SUM(A1)".into()));
        assert_eq!(rows[7][0], Data::String("'＝1+1".into()));
        for r in &rows[1..9] {
            assert_eq!(r[1], Data::Float(-12.34));
            assert_eq!(r[2], Data::Float(-0.333));
        }
        assert_eq!(rows[9][0], Data::String("吉林-建工 = 好".into()));
        assert_eq!(rows[9][1], Data::Float(-5.0));
        assert_eq!(rows[9][2], Data::Float(2.0));
        // No cell of the sheet is a formula.
        let formulas = book.worksheet_formula("导出").unwrap();
        assert!(
            formulas.used_cells().all(|(_, _, f)| f.is_empty()),
            "{formulas:?}"
        );
    }

    #[test]
    fn decimals_print_without_trailing_zeros() {
        assert_eq!(decimal(667, 3), "0.667");
        assert_eq!(decimal(2_000, 3), "2");
        assert_eq!(decimal(4_250, 3), "4.25");
        assert_eq!(decimal(-333, 3), "-0.333");
        assert_eq!(decimal(0, 3), "0");
        assert_eq!(decimal(1_234, 2), "12.34");
        assert_eq!(decimal(-150, 2), "-1.5");
        assert_eq!(decimal(i64::MIN, 3), "-9223372036854775.808");
    }

    #[test]
    fn format_parses_the_three_names() {
        assert_eq!(Format::parse(None).unwrap(), Format::Json);
        assert_eq!(Format::parse(Some("csv")).unwrap(), Format::Csv);
        assert_eq!(Format::parse(Some("xlsx")).unwrap(), Format::Xlsx);
        assert_eq!(Format::parse(Some("pdf")).unwrap_err().status, 422);
    }
}
