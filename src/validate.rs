//! Input rules shared by REST and socket ops. Every failure names the field.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// One line of text people read as a name or a label (titles, names,
/// venues, tags): trimmed, `min`-`max` characters, with no control
/// character (a newline in a name breaks every list it shows in) and no
/// bidirectional control (which makes a name display as something it is
/// not: `\u{202E}nimda` displays as `admin`).
pub fn line(field: &str, value: &str, min: usize, max: usize) -> Result<String> {
    let trimmed = value.trim();
    if trimmed
        .chars()
        .any(|c| c.is_control() || is_bidi_control(c))
    {
        return Err(Error::bad(
            field,
            "must not contain control or bidirectional-override characters",
        ));
    }
    check_length(field, trimmed, min, max)?;
    Ok(trimmed.to_owned())
}

/// Free text of several lines (descriptions, bios, card bodies): trimmed,
/// `min`-`max` characters; newlines and tabs are kept, every other control
/// character is refused.
pub fn prose(field: &str, value: &str, min: usize, max: usize) -> Result<String> {
    let trimmed = value.trim();
    check_prose_chars(field, trimmed)?;
    check_length(field, trimmed, min, max)?;
    Ok(trimmed.to_owned())
}

/// Refuses control characters other than line breaks and tabs, which
/// terminals and logs would act on rather than show.
pub fn check_prose_chars(field: &str, value: &str) -> Result<()> {
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::bad(
            field,
            "must not contain control characters other than newlines and tabs",
        ));
    }
    Ok(())
}

/// The characters that reorder how text displays: the Arabic letter mark,
/// the left-to-right and right-to-left marks, embeddings, overrides and
/// isolates.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

fn check_length(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let len = value.chars().count();
    if len < min || len > max {
        let why = if min == 0 {
            format!("must be at most {max} characters")
        } else {
            format!("must be {min}-{max} characters")
        };
        return Err(Error::bad(field, &why));
    }
    Ok(())
}

/// Trims and de-duplicates tags, keeping their order; each 1-30 characters.
pub fn tags(field: &str, tags: &[String], max_count: usize) -> Result<Vec<String>> {
    let mut clean: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = line(field, tag, 1, 30)?;
        if !clean.contains(&tag) {
            clean.push(tag);
        }
    }
    if clean.len() > max_count {
        return Err(Error::bad(field, &format!("at most {max_count} tags")));
    }
    Ok(clean)
}

/// A path or body id: ids are decimal strings on the wire.
pub fn id(field: &str, value: &str) -> Result<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::bad(field, "is not a valid id"))
}

/// An RFC 3339 time, as stored: integer milliseconds since the epoch.
pub fn timestamp(field: &str, value: &str) -> Result<i64> {
    let bad = || {
        Error::bad(
            field,
            "must be an RFC 3339 time such as 2030-01-31T19:00:00Z",
        )
    };
    // The longest valid form (nanoseconds and an offset) is 35 characters.
    if value.len() > 40 {
        return Err(bad());
    }
    let parsed = OffsetDateTime::parse(value.trim(), &Rfc3339).map_err(|_| bad())?;
    i64::try_from(parsed.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| bad())
}

/// An absolute `http` or `https` URL with a host, at most `max` characters.
/// Nothing is fetched, so this is only a shape check.
pub fn http_url(field: &str, value: &str, max: usize) -> Result<String> {
    let url = value.trim();
    if url.chars().count() > max {
        return Err(Error::bad(
            field,
            &format!("must be at most {max} characters"),
        ));
    }
    let bad = || Error::bad(field, "must be an http:// or https:// URL");
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(bad());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        let input = vec![" rust ".to_owned(), "rust".to_owned(), "go".to_owned()];
        assert_eq!(tags("tags", &input, 5).unwrap(), vec!["rust", "go"]);
        assert!(tags("tags", &["".to_owned()], 5).is_err());
        assert!(tags("tags", &["x".repeat(31)], 5).is_err());
        let many: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
        assert!(tags("tags", &many, 5).is_err());
    }

    #[test]
    fn lines_refuse_controls_and_bidi_overrides() {
        assert_eq!(
            line("name", "  ramen night ", 1, 60).unwrap(),
            "ramen night"
        );
        assert_eq!(
            line("name", "東京 ラーメン", 1, 60).unwrap(),
            "東京 ラーメン"
        );
        for bad in [
            "a\nb",
            "a\tb",
            "a\u{0}b",
            "a\u{1b}[31mb",
            "\u{202E}nimda",
            "x\u{2066}y",
            "a\u{200F}b",
        ] {
            let err = line("name", bad, 1, 60).unwrap_err().to_string();
            assert!(
                err.starts_with("name:"),
                "{bad:?} refused naming the field: {err}"
            );
        }
        assert!(tags("tags", &["ok\u{202E}".to_owned()], 5).is_err());
    }

    #[test]
    fn prose_keeps_newlines_and_tabs_only() {
        assert_eq!(
            prose("body", "line one\n\tline two\r\n", 0, 100).unwrap(),
            "line one\n\tline two"
        );
        assert!(prose("body", "bell\u{7}", 0, 100).is_err());
        assert!(prose("body", "nul\u{0}", 0, 100).is_err());
        assert!(prose("body", &"x".repeat(101), 0, 100).is_err());
    }

    #[test]
    fn ids_are_positive_decimals() {
        assert_eq!(id("id", "42").unwrap(), 42);
        assert!(id("id", "0").is_err());
        assert!(id("id", "abc").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_and_become_milliseconds() {
        assert_eq!(timestamp("t", "1970-01-01T00:00:01.5Z").unwrap(), 1_500);
        assert_eq!(
            timestamp("t", "2030-01-01T09:00:00+09:00").unwrap(),
            timestamp("t", "2030-01-01T00:00:00Z").unwrap()
        );
        assert!(timestamp("t", "2030-01-01").is_err());
        assert!(timestamp("t", "tomorrow").is_err());
        assert!(timestamp("t", &"9".repeat(100)).is_err());
    }

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        assert_eq!(
            http_url("u", " https://meet.example/abc ", 500).unwrap(),
            "https://meet.example/abc"
        );
        assert!(http_url("u", "HTTP://example.com", 500).is_ok());
        assert!(http_url("u", "ftp://example.com", 500).is_err());
        assert!(http_url("u", "https://", 500).is_err());
        assert!(http_url("u", "https:///path", 500).is_err());
        assert!(http_url("u", "https://exa mple.com", 500).is_err());
        assert!(http_url("u", "javascript:alert(1)", 500).is_err());
        let long = format!("https://example.com/{}", "a".repeat(500));
        assert!(http_url("u", &long, 500).is_err());
    }
}
