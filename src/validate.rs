//! Input rules shared by REST and socket ops. Every failure names the field.

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
}
