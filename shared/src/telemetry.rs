//! One tracing initialisation for every binary: JSON lines (Lambda, production) or pretty
//! (a developer's terminal). Filter from `RUST_LOG`, default `info`.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    #[default]
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(LogFormat::Json),
            "pretty" | "text" => Ok(LogFormat::Pretty),
            other => Err(format!("log format must be json or pretty, not {other:?}")),
        }
    }
}

impl LogFormat {
    /// `SMARTSITE_LOG_FORMAT` if set and valid, else the default.
    pub fn from_env() -> Self {
        std::env::var("SMARTSITE_LOG_FORMAT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    }
}

/// Installs the global subscriber. A second call is a no-op (tests may call it repeatedly).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// A device-supplied value (client id, username, topic, MN, a frame's detail, an error that
/// quotes them) as a log field: `field = %Untrusted(&value)`. Line breaks, other control
/// characters, invisible format characters (bidi overrides, zero-width) and the backslash are
/// written as Rust escapes (`\n`, `\u{202e}`, `\\`), so in the pretty format a value can never
/// end the line it is on and start a forged one, nor reorder what a terminal shows. Printable
/// text, Chinese included, is written as is. tracing-subscriber itself escapes only ANSI
/// sequences, not line breaks.
pub struct Untrusted<T>(pub T);

impl<T: std::fmt::Display> std::fmt::Display for Untrusted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        write!(EscapingWriter(f), "{}", self.0)
    }
}

impl<T: std::fmt::Display> std::fmt::Debug for Untrusted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

struct EscapingWriter<'a, 'b>(&'a mut std::fmt::Formatter<'b>);

impl std::fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for c in s.chars() {
            if needs_escape(c) {
                for e in c.escape_default() {
                    self.0.write_char(e)?;
                }
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Control characters (C0, DEL, C1), the backslash (so an escape in the output is always ours),
/// line and paragraph separators, and the invisible format characters that reorder or hide text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\\' | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_values_cannot_break_or_reorder_a_line() {
        let forged = "dev-1\n2026-12-07T00:00:00Z  INFO login ok\r\u{1b}[2J\u{202e}\\n\t\u{85}";
        let out = Untrusted(forged).to_string();
        assert_eq!(
            out,
            "dev-1\\n2026-12-07T00:00:00Z  INFO login ok\\r\\u{1b}[2J\\u{202e}\\\\n\\t\\u{85}"
        );
        assert!(!out.chars().any(needs_escape_unless_backslash));
        // Printable text, Chinese included, is untouched; Debug is the same as Display.
        assert_eq!(format!("{:?}", Untrusted("扬尘-PM10 a=b")), "扬尘-PM10 a=b");
    }

    fn needs_escape_unless_backslash(c: char) -> bool {
        c != '\\' && needs_escape(c)
    }
}
