//! What a room op's input must be before any engine sees it: the same
//! checks on one node and in a cluster.

use crate::error::{Error, Result};

const DEFAULT_CAPACITY: u32 = 50;
const MAX_TEXT_CHARS: usize = 4000;
const MAX_CLIENT_MSG_ID: usize = 64;
const MAX_ROOM_ID_BYTES: usize = 64;

/// A new drop-in room's name, topic and capacity, trimmed and checked.
pub fn new_room(
    name: &str,
    topic: Option<&str>,
    capacity: Option<u32>,
) -> Result<(String, Option<String>, u32)> {
    let name = crate::validate::line("name", name, 1, 60)?;
    let topic = topic
        .map(|t| crate::validate::line("topic", t, 0, 200))
        .transpose()?
        .filter(|t| !t.is_empty());
    let capacity = capacity.unwrap_or(DEFAULT_CAPACITY);
    if !(2..=500).contains(&capacity) {
        return Err(Error::bad("capacity", "must be 2-500"));
    }
    Ok((name, topic, capacity))
}

/// A message's text and `client_msg_id`, in a room or a conversation.
pub fn message(text: &str, client_msg_id: Option<&str>) -> Result<()> {
    self::text(text)?;
    if client_msg_id.is_some_and(|id| id.is_empty() || id.chars().count() > MAX_CLIENT_MSG_ID) {
        return Err(Error::bad("client_msg_id", "must be 1-64 characters"));
    }
    Ok(())
}

pub fn text(text: &str) -> Result<()> {
    let chars = text.chars().count();
    if chars == 0 || text.trim().is_empty() {
        return Err(Error::bad("text", "must not be empty"));
    }
    if chars > MAX_TEXT_CHARS {
        return Err(Error::TooLarge(
            "text: must be at most 4000 characters".into(),
        ));
    }
    crate::validate::check_prose_chars("text", text)
}

/// Room ids go into Redis keys, which use `|` and the prefix's `:` as
/// separators; anything else is no room of ours, on one node or many.
pub fn room_id(room_id: &str) -> Result<()> {
    let fits = (1..=MAX_ROOM_ID_BYTES).contains(&room_id.len())
        && room_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
    if fits {
        Ok(())
    } else {
        Err(Error::NotFound("room"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_that_could_meet_other_keys_are_refused() {
        assert!(room_id("event:12").is_ok());
        assert!(room_id("r_AbC123").is_ok());
        for bad in ["", "a|m", "a b", "x".repeat(65).as_str(), "é"] {
            assert!(room_id(bad).is_err(), "{bad}");
        }
    }
}
