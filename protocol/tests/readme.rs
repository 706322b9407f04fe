//! Keeps `README.md` honest: its JSON examples are exactly the fixtures, and
//! its tables name every error code and every close code.

use meshi_protocol::{close, ErrorCode};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    let path = crate_dir().join("README.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()))
}

/// The body of every ```json block, with the line it starts on.
fn json_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        match open.take() {
            None if line.trim_start().starts_with("```json") => {
                open = Some((line_no, String::new()));
            }
            None => {}
            Some(block) if line.trim_start().starts_with("```") => blocks.push(block),
            Some((start, mut body)) => {
                body.push_str(line);
                body.push('\n');
                open = Some((start, body));
            }
        }
    }
    assert!(open.is_none(), "README.md: a ```json block is never closed");
    blocks
}

/// Every fixture as (path, JSON value).
fn fixtures() -> Vec<(PathBuf, Value)> {
    let mut all = Vec::new();
    for sub in ["client", "server"] {
        let dir = crate_dir().join("fixtures").join(sub);
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not valid JSON: {e}", path.display()));
            all.push((path, value));
        }
    }
    assert!(!all.is_empty(), "no fixtures found");
    all
}

#[test]
fn readme_examples_are_the_fixtures() {
    let text = readme();
    let blocks = json_blocks(&text);
    assert!(!blocks.is_empty(), "README.md has no ```json examples");
    let examples: Vec<(usize, Value)> = blocks
        .into_iter()
        .map(|(line, body)| {
            let value = serde_json::from_str(&body).unwrap_or_else(|e| {
                panic!("README.md line {line}: example is not valid JSON: {e}")
            });
            (line, value)
        })
        .collect();
    let fixtures = fixtures();

    for (line, example) in &examples {
        assert!(
            fixtures.iter().any(|(_, fixture)| fixture == example),
            "README.md line {line}: example matches no file under fixtures/:\n{}",
            serde_json::to_string_pretty(example).expect("a JSON value always serializes")
        );
    }
    for (path, fixture) in &fixtures {
        assert!(
            examples.iter().any(|(_, example)| example == fixture),
            "{} is not shown in README.md",
            path.display()
        );
    }
}

#[test]
fn readme_lists_every_error_code() {
    let all = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RoomFull,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];
    // A code added to `ErrorCode` breaks this match: list it above too.
    for code in all {
        match code {
            ErrorCode::BadRequest
            | ErrorCode::Unauthenticated
            | ErrorCode::Forbidden
            | ErrorCode::NotFound
            | ErrorCode::Conflict
            | ErrorCode::RoomFull
            | ErrorCode::RateLimited
            | ErrorCode::TooLarge
            | ErrorCode::Unavailable
            | ErrorCode::Internal => {}
        }
    }

    let text = readme();
    for code in all {
        let wire = serde_json::to_value(code).expect("an error code serializes");
        assert_eq!(wire, code.as_str(), "serde and as_str disagree on {code:?}");
        let row = format!("| `{}` |", code.as_str());
        assert!(
            text.contains(&row),
            "README.md: the error table lacks a row for `{code}`"
        );
    }
}

#[test]
fn readme_lists_every_close_code() {
    let text = readme();
    for code in [
        close::TOO_BIG,
        close::SERVER_RESTART,
        close::ORIGIN_NOT_ALLOWED,
        close::IDLE,
        close::AUTH_FAILED,
        close::RATE_LIMIT_ABUSE,
        close::SLOW_CONSUMER,
        close::TOKEN_ENDED,
    ] {
        let row = text
            .lines()
            .find(|line| line.starts_with(&format!("| {code} |")))
            .unwrap_or_else(|| panic!("README.md: the close table lacks a row for {code}"));
        assert!(
            row.contains("**reconnect**") || row.contains("**terminal**"),
            "README.md: close code {code} must say reconnect or terminal"
        );
    }
}
