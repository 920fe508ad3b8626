//! The bulk device CSV (`POST /v1/projects/{id}/devices:bulk`): UTF-8 (a BOM is dropped), one
//! header row naming the columns (`serial_no`, `model_id`, `category` required; `mn` and the
//! category's configuration columns optional), then one device per line; RFC 4180 quoting within
//! a line; blank lines are skipped. Each data row becomes a provisioning body, or the reason it
//! cannot: a bad row never stops the others. Pure, so it can be fuzzed without a server.

use serde_json::{Map, Value};

/// Columns that stay text; every other cell is a number where it parses.
const TEXT_COLUMNS: [&str; 4] = ["serial_no", "model_id", "category", "mn"];
/// Columns every header must have.
const REQUIRED: [&str; 3] = ["serial_no", "model_id", "category"];

/// A parsed CSV: the header and the data rows in order.
#[derive(Debug, PartialEq)]
pub struct BulkCsv {
    pub header: Vec<String>,
    pub rows: Vec<BulkRow>,
}

/// One data row: its serial (empty when it has none) and its provisioning body, or why the row
/// cannot be one.
#[derive(Debug, PartialEq)]
pub struct BulkRow {
    pub serial_no: String,
    pub body: Result<Map<String, Value>, String>,
}

/// Parses the whole upload; `Err` (a sentence for the `body` field) when it is not UTF-8, has no
/// header or misses a required column, or has more than `max_rows` data rows.
pub fn parse(bytes: &[u8], max_rows: usize) -> Result<BulkCsv, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the CSV is not UTF-8".to_owned())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .and_then(record)
        .ok_or_else(|| "no header row".to_owned())?
        .into_iter()
        .map(|h| h.trim().to_owned())
        .collect();
    for required in REQUIRED {
        if !header.iter().any(|h| h == required) {
            return Err(format!("the header has no {required} column"));
        }
    }
    let lines: Vec<&str> = lines.collect();
    if lines.len() > max_rows {
        return Err(format!(
            "{} rows; at most {max_rows} per request",
            lines.len()
        ));
    }
    let serial_col = header.iter().position(|h| h == "serial_no");
    let rows = lines
        .into_iter()
        .map(|line| {
            let cells = record(line);
            let serial_no = cells
                .as_ref()
                .and_then(|c| serial_col.and_then(|s| c.get(s)))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            let body = match cells {
                None => Err("unterminated quote".to_owned()),
                Some(c) => row_body(&header, &c),
            };
            BulkRow { serial_no, body }
        })
        .collect();
    Ok(BulkCsv { header, rows })
}

/// Splits one CSV record (RFC 4180 quoting) of a line; `None` on an unterminated quote.
fn record(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cell.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cell.push(c);
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => out.push(std::mem::take(&mut cell)),
                c => cell.push(c),
            }
        }
    }
    if quoted {
        return None;
    }
    out.push(cell);
    Some(out)
}

/// A data row as the provisioning body: text columns as strings, the rest as numbers where they
/// parse (else strings, refused by the configuration check naming the column); empty = absent.
fn row_body(header: &[String], cells: &[String]) -> Result<Map<String, Value>, String> {
    if cells.len() != header.len() {
        return Err(format!(
            "{} cells, the header has {}",
            cells.len(),
            header.len()
        ));
    }
    let mut body = Map::new();
    for (name, cell) in header.iter().zip(cells) {
        let cell = cell.trim();
        if cell.is_empty() {
            continue;
        }
        let v = if TEXT_COLUMNS.contains(&name.as_str()) {
            Value::String(cell.to_owned())
        } else {
            cell.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(cell.to_owned()), Value::Number)
        };
        body.insert(name.clone(), v);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_rows_quotes_and_numbers() {
        let csv = "\u{feff}serial_no, model_id ,category,mn,rated_load_t\n\
                   \n\
                   TC-1,m1,tower_crane,,8\n\
                   \"DN,2\",m2,dust_noise,\"51\"\"57\",x\n\
                   \"open,m3,hoist,,\n\
                   TC-4,m1\n";
        let p = parse(csv.as_bytes(), 10).unwrap();
        assert_eq!(
            p.header,
            ["serial_no", "model_id", "category", "mn", "rated_load_t"]
        );
        assert_eq!(p.rows.len(), 4);
        assert_eq!(p.rows[0].serial_no, "TC-1");
        assert_eq!(
            p.rows[0].body,
            Ok(json!({"serial_no": "TC-1", "model_id": "m1", "category": "tower_crane", "rated_load_t": 8.0})
                .as_object()
                .unwrap()
                .clone())
        );
        assert_eq!(p.rows[1].serial_no, "DN,2");
        let b = p.rows[1].body.as_ref().unwrap();
        assert_eq!(b["mn"], json!("51\"57"));
        assert_eq!(b["rated_load_t"], json!("x"));
        assert_eq!(p.rows[2].serial_no, "");
        assert_eq!(p.rows[2].body, Err("unterminated quote".to_owned()));
        assert_eq!(p.rows[3].body, Err("2 cells, the header has 5".to_owned()));
    }

    #[test]
    fn refusals_of_the_whole_upload() {
        assert_eq!(parse(b"\xff\xfe", 10), Err("the CSV is not UTF-8".into()));
        assert_eq!(parse(b"\n \n", 10), Err("no header row".into()));
        assert_eq!(parse(b"\"serial_no", 10), Err("no header row".into()));
        assert_eq!(
            parse(b"serial_no,category\n", 10),
            Err("the header has no model_id column".into())
        );
        let rows = "serial_no,model_id,category\n".to_owned() + &"a,b,c\n".repeat(3);
        assert_eq!(
            parse(rows.as_bytes(), 2),
            Err("3 rows; at most 2 per request".into())
        );
        assert_eq!(parse(rows.as_bytes(), 3).map(|p| p.rows.len()), Ok(3));
    }
}
