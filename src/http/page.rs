//! Cursor paging: `limit` (1-100, default 50) and an opaque `cursor` that
//! encodes the sort key of the last item served, so pages stay stable when
//! rows are inserted meanwhile.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

/// One page of a listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The query of a list paged by id: `limit` and `cursor`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-100, default 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The limit and the id below which the page starts.
    pub fn by_id(&self) -> Result<(u32, Option<i64>)> {
        let limit = limit(self.limit)?;
        let before = self
            .cursor
            .as_deref()
            .map(|c| decode_cursor(c, 1).map(|k| k[0]))
            .transpose()?;
        Ok((limit, before))
    }
}

pub fn limit(requested: Option<u32>) -> Result<u32> {
    match requested.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(Error::bad("limit", "must be 1-100")),
        n if n > MAX_LIMIT => Err(Error::bad("limit", "must be 1-100")),
        n => Ok(n),
    }
}

/// Encodes a sort key (one or more integers) as an opaque cursor.
pub fn encode_cursor(key: &[i64]) -> String {
    let joined: Vec<String> = key.iter().map(i64::to_string).collect();
    URL_SAFE_NO_PAD.encode(joined.join("."))
}

/// Decodes a cursor made by [`encode_cursor`] with `parts` integers.
pub fn decode_cursor(cursor: &str, parts: usize) -> Result<Vec<i64>> {
    let invalid = || Error::bad("cursor", "is not a cursor this server made");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let key: Vec<i64> = text
        .split('.')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| invalid())?;
    if key.len() != parts {
        return Err(invalid());
    }
    Ok(key)
}

/// Encodes a sort key of text then an id (listings ordered by name) as an
/// opaque cursor.
pub fn encode_text_cursor(text: &str, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{id}.{text}"))
}

/// Decodes a cursor made by [`encode_text_cursor`].
pub fn decode_text_cursor(cursor: &str) -> Result<(String, i64)> {
    let invalid = || Error::bad("cursor", "is not a cursor this server made");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    // The id goes first because the text may hold the separator itself.
    let (id, key) = text.split_once('.').ok_or_else(invalid)?;
    let id = id.parse::<i64>().map_err(|_| invalid())?;
    Ok((key.to_owned(), id))
}

/// Builds a page from `limit + 1` fetched rows: the extra row only says
/// that there is more.
pub fn page<R, T>(
    rows: Vec<R>,
    limit: u32,
    key: impl Fn(&R) -> Vec<i64>,
    show: impl FnMut(R) -> T,
) -> Page<T> {
    page_by(rows, limit, |row| encode_cursor(&key(row)), show)
}

/// [`page`] for sort keys that are not all integers: `cursor` encodes the
/// key of the last row served.
pub fn page_by<R, T>(
    mut rows: Vec<R>,
    limit: u32,
    cursor: impl Fn(&R) -> String,
    show: impl FnMut(R) -> T,
) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last().map(&cursor)).flatten();
    Page {
        items: rows.into_iter().map(show).collect(),
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = encode_cursor(&[1_700_000_000_000, 42]);
        assert_eq!(
            decode_cursor(&cursor, 2).unwrap(),
            vec![1_700_000_000_000, 42]
        );
        assert!(decode_cursor(&cursor, 1).is_err());
        assert!(decode_cursor("!!", 1).is_err());
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_exist() {
        let full = page(vec![5, 4, 3], 2, |r| vec![*r as i64], |r| r);
        assert_eq!(full.items, vec![5, 4]);
        assert_eq!(
            decode_cursor(&full.next_cursor.unwrap(), 1).unwrap(),
            vec![4]
        );
        let last = page(vec![2, 1], 2, |r| vec![*r as i64], |r| r);
        assert!(last.next_cursor.is_none());
    }

    #[test]
    fn text_cursors_round_trip_with_dots_and_reject_garbage() {
        let cursor = encode_text_cursor("rust.tokyo 東京", 7);
        assert_eq!(
            decode_text_cursor(&cursor).unwrap(),
            ("rust.tokyo 東京".to_owned(), 7)
        );
        assert!(decode_text_cursor(&encode_cursor(&[7])).is_err());
        assert!(decode_text_cursor(&URL_SAFE_NO_PAD.encode("x.name")).is_err());
        assert!(decode_text_cursor("!!").is_err());
    }
}
