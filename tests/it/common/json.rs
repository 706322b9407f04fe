//! Reading and checking the JSON the server answers: the REST error shape,
//! timestamps, and fields that must be there.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Asserts an error answer: the status, and a body that is exactly
/// `{"error": {"code", "message"}}` with this code and a non-empty message.
/// Returns the message.
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) -> String {
    assert_eq!(status, want_status, "status (body {body})");
    assert_eq!(keys(body), ["error"], "error body keys in {body}");
    assert_eq!(
        keys(&body["error"]),
        ["code", "message"],
        "error object keys in {body}"
    );
    assert_eq!(body["error"]["code"], want_code, "code in {body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("message is a string: {body}"));
    assert!(!message.is_empty(), "message is not empty: {body}");
    message.to_owned()
}

/// [`assert_error`], and the message names `named`.
pub fn assert_error_naming(status: u16, body: &Value, want_status: u16, code: &str, named: &str) {
    let message = assert_error(status, body, want_status, code);
    assert!(
        message.contains(named),
        "message `{message}` names `{named}`"
    );
}

/// Asserts a 400 `bad_request` whose message starts with `field:`, as
/// every refusal of one field's value does. A body the server could not
/// read at all (a field missing or of the wrong type) names the field
/// further in: check those with [`assert_error_naming`].
pub fn assert_bad_field(status: u16, body: &Value, field: &str) {
    let message = assert_error(status, body, 400, "bad_request");
    assert!(
        message.starts_with(&format!("{field}:")),
        "the message names `{field}`: {message}"
    );
}

/// The keys of a JSON object, sorted.
pub fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// An RFC 3339 timestamp string.
pub fn parse_time(value: &Value) -> OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is a string: {value}"));
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("timestamp `{text}` is RFC 3339: {e}"))
}

pub fn text_of(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}

pub fn seq_of(value: &Value) -> u64 {
    value["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("a seq in {value}"))
}

/// The `seq` of each of `messages`.
pub fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(seq_of).collect()
}

/// The `id` of each of `items`.
pub fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|item| text_of(&item["id"])).collect()
}

/// Checks a live `notification` push of this kind; returns its body.
pub fn notification_in(frame: &Value, kind: &str) -> Value {
    assert_eq!(frame["type"], "notification", "frame {frame}");
    assert!(frame.get("ref").is_none(), "a push with a ref: {frame}");
    let notification = frame["notification"].clone();
    assert!(
        notification["id"].as_str().is_some_and(|id| !id.is_empty()),
        "notification id is a string: {frame}"
    );
    assert_eq!(notification["kind"], kind, "kind in {frame}");
    assert!(notification["data"].is_object(), "data in {frame}");
    parse_time(&notification["created_at"]);
    notification
}
