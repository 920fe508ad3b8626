//! Free text that people and devices supply and others read: names, reasons, notes, references,
//! descriptions. One parser for all of it, so a name cannot carry what the screen, the log line,
//! the CSV cell or the PDF would show differently from what is stored.
//!
//! Refused everywhere: C0 and C1 control characters (NUL included) and DEL; every Unicode format
//! character (general category Cf: the bidirectional embeddings, overrides and isolates
//! U+202A–U+202E and U+2066–U+2069, the marks U+200E/U+200F/U+061C, zero-width spaces and
//! joiners, the byte-order mark, soft hyphen, interlinear annotations, tag characters …); the
//! line and paragraph separators U+2028/U+2029; noncharacters; and the invisible fillers that
//! render as nothing (U+034F, U+115F, U+1160, U+3164, U+FFA0). Single-line text ([`line`])
//! allows no line break at all; a multi-line note ([`note`]) allows `\n` (a `\r\n` is taken as
//! `\n`), and no other control. Both are trimmed and must keep at least one character.

use super::tenancy::FieldError;

/// Unicode general category Cf (Unicode 16), as inclusive ranges.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Characters that are not format characters but render as nothing, so a name made of them (or
/// padded with them) looks empty or like another name.
const INVISIBLE: &[char] = &['\u{034F}', '\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}'];

/// Why `c` may not appear in stored text, or `None` if it may. `\n` is judged by the caller.
fn refusal(c: char) -> Option<&'static str> {
    let u = c as u32;
    if c.is_control() {
        return Some("a control character");
    }
    if matches!(u, 0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C) {
        return Some("a bidirectional control");
    }
    if FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&u)) {
        return Some("an invisible formatting character");
    }
    if matches!(u, 0x2028 | 0x2029) {
        return Some("a line or paragraph separator");
    }
    if (0xFDD0..=0xFDEF).contains(&u) || u & 0xFFFE == 0xFFFE {
        return Some("a noncharacter");
    }
    if INVISIBLE.contains(&c) {
        return Some("an invisible filler character");
    }
    None
}

/// The first character of `s` that stored text may not hold (`\n` allowed when
/// `allow_newline`), as a message naming it and where it is.
pub fn forbidden(s: &str, allow_newline: bool) -> Option<String> {
    s.chars().enumerate().find_map(|(i, c)| {
        if allow_newline && c == '\n' {
            return None;
        }
        let why = if c == '\n' || c == '\r' {
            Some("a line break")
        } else {
            refusal(c)
        };
        why.map(|why| {
            format!(
                "must not contain {why} (U+{:04X} at character {})",
                c as u32,
                i + 1
            )
        })
    })
}

fn parse(field: &str, s: &str, max_chars: usize, multiline: bool) -> Result<String, FieldError> {
    let normalised;
    let s = if multiline && s.contains("\r\n") {
        normalised = s.replace("\r\n", "\n");
        normalised.as_str()
    } else {
        s
    };
    let t = s.trim();
    let n = t.chars().count();
    if n == 0 || n > max_chars {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {max_chars} characters"),
        ));
    }
    match forbidden(t, multiline) {
        Some(message) => Err(FieldError::new(field, message)),
        None => Ok(t.to_owned()),
    }
}

/// Single-line text (a name, a reference, an id a person chose): trimmed, 1 to `max_chars`
/// characters, none of the refused characters and no line break.
pub fn line(field: &str, s: &str, max_chars: usize) -> Result<String, FieldError> {
    parse(field, s, max_chars, false)
}

/// A multi-line note (a reason, a comment): like [`line`], but `\n` (or `\r\n`, stored as `\n`)
/// may separate lines.
pub fn note(field: &str, s: &str, max_chars: usize) -> Result<String, FieldError> {
    parse(field, s, max_chars, true)
}

/// [`line`] of an optional field; absent stays absent.
pub fn opt_line(
    field: &str,
    s: Option<&str>,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    s.map(|s| line(field, s, max_chars)).transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_chinese_and_punctuation_and_are_trimmed() {
        assert_eq!(
            line("name", "  中国电信吉林分公司（长春）·A-1  ", 200).unwrap(),
            "中国电信吉林分公司（长春）·A-1"
        );
        // The ideographic space is ordinary whitespace: trimmed at the ends, kept inside.
        assert_eq!(
            line("name", "\u{3000}吉林\u{3000}建工\u{3000}", 200).unwrap(),
            "吉林\u{3000}建工"
        );
        assert_eq!(line("name", "Zoë 😀 #1", 200).unwrap(), "Zoë 😀 #1");
        assert!(line("name", "   ", 200).is_err());
        assert!(line("name", &"长".repeat(201), 200).is_err());
        assert!(line("name", &"长".repeat(200), 200).is_ok());
    }

    #[test]
    fn control_characters_and_nul_are_refused_naming_the_field() {
        for bad in [
            "a\u{0}b",
            "a\u{1}b",
            "a\tb",
            "a\nb",
            "a\rb",
            "a\u{1b}[31mb",
            "a\u{7f}b",
            "a\u{85}b",
            "a\u{9b}b",
        ] {
            let e = line("supplier.name", bad, 200).unwrap_err();
            assert_eq!(e.field, "supplier.name", "{bad:?}");
            assert!(e.message.contains("must not contain"), "{bad:?}: {e}");
        }
        let e = line("name", "ab\u{0}", 200).unwrap_err();
        assert!(e.message.contains("U+0000 at character 3"), "{e}");
    }

    #[test]
    fn bidi_controls_and_invisible_format_characters_are_refused() {
        let bidi = [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ];
        for c in bidi {
            let e = line("name", &format!("invoice{c}fdp.exe"), 200).unwrap_err();
            assert!(e.message.contains("bidirectional"), "{c:?}: {e}");
        }
        for c in [
            '\u{200B}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
            '\u{FFF9}',
            '\u{2028}',
            '\u{2029}',
            '\u{FDD0}',
            '\u{FFFE}',
            '\u{1FFFF}',
            '\u{3164}',
            '\u{115F}',
        ] {
            assert!(line("name", &format!("a{c}b"), 200).is_err(), "{c:?}");
            assert!(note("note", &format!("a{c}b"), 200).is_err(), "{c:?}");
        }
        // A name of nothing but fillers is not a name.
        assert!(line("name", "\u{3164}\u{3164}", 200).is_err());
    }

    #[test]
    fn notes_keep_line_feeds_only() {
        assert_eq!(
            note("note", " 第一行\r\n第二行\n", 200).unwrap(),
            "第一行\n第二行"
        );
        assert!(note("note", "a\rb", 200).is_err());
        assert!(note("note", "a\tb", 200).is_err());
        assert!(note("note", "a\u{0}b", 200).is_err());
        assert!(line("note", "第一行\n第二行", 200).is_err());
    }

    #[test]
    fn optional_lines_stay_absent() {
        assert_eq!(opt_line("evidence_ref", None, 64).unwrap(), None);
        assert_eq!(
            opt_line("evidence_ref", Some(" VCH-1 "), 64)
                .unwrap()
                .as_deref(),
            Some("VCH-1")
        );
        assert!(opt_line("evidence_ref", Some("VCH\u{202E}1"), 64).is_err());
    }
}
