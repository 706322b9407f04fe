//! Reading a node's `/metrics` the way Prometheus does: one sample per
//! line, `name{label="value",...} number`, label values quoted (a route
//! template's braces are inside the quotes).

use std::collections::BTreeMap;

use super::Api;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// The node's `/metrics` text.
pub async fn scrape(api: &Api) -> String {
    let response = reqwest::get(api.url("/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200, "GET /metrics");
    response.text().await.expect("the metrics body")
}

/// Every sample of the text, comments skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("not a sample line: {line}")))
        .collect()
}

/// The samples of `name` whose labels include every pair of `having`.
pub fn find<'a>(samples: &'a [Sample], name: &str, having: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| having.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .collect()
}

/// The one value of `name` with these labels, summed if several match.
pub fn value(samples: &[Sample], name: &str, having: &[(&str, &str)]) -> Option<f64> {
    let found = find(samples, name, having);
    (!found.is_empty()).then(|| found.iter().map(|s| s.value).sum())
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    let (_, quote) = chars.next()?;
                    if quote != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => value.push(chars.next()?.1),
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
    }
    let value = match rest.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}
