//! Display names: what a token or a guest login may call a user.
//!
//! A name is a label, never an identity (clients act on the `sub`), but it
//! must not be able to pass for someone else's at a glance: it is
//! normalised to NFKC (so look-alike compatibility forms such as
//! full-width letters become the plain ones), stripped of control, format
//! (zero-width, bidi overrides and isolates, the BOM), private-use and
//! unassigned-looking characters, its spaces collapsed, and limited in
//! length. A name that is empty after that is refused.

use unicode_normalization::UnicodeNormalization;

/// Why a name was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BadName {
    /// Nothing printable is left.
    Empty,
    /// Longer than the limit, in characters.
    TooLong,
}

/// True for characters a name may not carry: controls, and the invisible
/// or direction-changing ones (Unicode general category Cf and friends).
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'                 // soft hyphen
            | '\u{034F}'               // combining grapheme joiner
            | '\u{061C}'               // Arabic letter mark
            | '\u{115F}' | '\u{1160}'  // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'  // Mongolian variation selectors, vowel separator
            | '\u{200B}'..='\u{200F}'  // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}'  // separators, bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}'  // word joiner, invisible operators, isolates
            | '\u{3164}'               // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'  // variation selectors
            | '\u{FEFF}'               // BOM / zero-width no-break space
            | '\u{FFA0}'               // half-width Hangul filler
            | '\u{FFF0}'..='\u{FFFB}'  // specials, interlinear annotations
            | '\u{E000}'..='\u{F8FF}'  // private use
            | '\u{E0000}'..='\u{E0FFF}' // tags, variation selectors supplement
            | '\u{F0000}'..='\u{10FFFF}' // supplementary private use
        )
}

/// The display name `raw` is shown as: NFKC, no invisible or control
/// characters, whitespace runs as one space, trimmed, at most `max_chars`.
pub fn display_name(raw: &str, max_chars: usize) -> Result<String, BadName> {
    let mut out = String::with_capacity(raw.len());
    let mut space = false;
    for c in raw.nfkc() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if invisible(c) {
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    // Recompose what dropping characters may have split.
    let out: String = out.nfc().collect();
    if out.is_empty() {
        return Err(BadName::Empty);
    }
    if out.chars().count() > max_chars {
        return Err(BadName::TooLong);
    }
    Ok(out)
}

/// True when `name` is (case-insensitively) the name or id of a user the
/// hub has seen who is not a guest: a guest may not be called like them.
pub fn taken_by_a_user(state: &crate::server::AppState, name: &str) -> bool {
    let (subs, _) = state.features.directory.lookup(&[name.to_lowercase()]);
    subs.iter().any(|sub| !sub.starts_with("guest-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_direction_characters_are_dropped() {
        assert_eq!(display_name("al\u{200B}ice", 64).unwrap(), "alice");
        assert_eq!(display_name("\u{202E}ecila", 64).unwrap(), "ecila");
        assert_eq!(display_name("bob\u{2066}\u{2069}", 64).unwrap(), "bob");
        assert_eq!(display_name("\u{FEFF}carol\u{00AD}", 64).unwrap(), "carol");
        assert_eq!(display_name("a\u{0007}b", 64).unwrap(), "ab");
    }

    #[test]
    fn compatibility_forms_and_spaces_are_normalised() {
        // Full-width letters and a ligature become plain ones.
        assert_eq!(display_name("ａｌｉｃｅ", 64).unwrap(), "alice");
        assert_eq!(display_name("ﬁona", 64).unwrap(), "fiona");
        assert_eq!(display_name("  Ann \t  Lee  ", 64).unwrap(), "Ann Lee");
        // Decomposed accents compose.
        assert_eq!(display_name("Jose\u{0301}", 64).unwrap(), "José");
    }

    #[test]
    fn empty_and_long_names_are_refused() {
        assert_eq!(display_name("\u{200B}\u{200D} ", 64), Err(BadName::Empty));
        assert_eq!(display_name(&"x".repeat(65), 64), Err(BadName::TooLong));
        assert_eq!(
            display_name(&"é".repeat(64), 64).unwrap().chars().count(),
            64
        );
    }
}
