//! Input rules shared by REST and socket ops. Every failure names the field.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Trims `value` and checks its length in characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String> {
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len < min || len > max {
        let why = if min == 0 {
            format!("must be at most {max} characters")
        } else {
            format!("must be {min}-{max} characters")
        };
        return Err(Error::bad(field, &why));
    }
    Ok(trimmed.to_owned())
}

/// Trims and de-duplicates tags, keeping their order; each 1-30 characters.
pub fn tags(field: &str, tags: &[String], max_count: usize) -> Result<Vec<String>> {
    let mut clean: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = text(field, tag, 1, 30)?;
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
