//! Reading a Prometheus text exposition and the series selectors of PromQL expressions,
//! just far enough to cross-check the alert rules and the dashboard against `/metrics`.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

/// One sample line: its series name, its labels and its value.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The series name as written (`_bucket`, `_sum`, `_count`, `_total` included).
    pub name: String,
    /// Label name to value.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Every sample of a text exposition (comment lines skipped).
pub fn samples(text: &str) -> Vec<Sample> {
    let label = Regex::new(r#"(\w+)="([^"]*)""#).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            Sample {
                name: name.to_owned(),
                labels: label
                    .captures_iter(labels)
                    .map(|c| (c[1].to_owned(), c[2].to_owned()))
                    .collect(),
                value: value.parse().expect("a sample's value is a number"),
            }
        })
        .collect()
}

/// The value of the one sample named `name` with exactly `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
}

/// One label matcher of a selector: `label op "value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// The label's name.
    pub label: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: String,
    /// The value or regular expression, as written.
    pub value: String,
}

impl Matcher {
    /// The label values the matcher names: the value itself, or each alternative of a
    /// regular expression made only of `a|b|c` words. `None` for a Grafana variable or a
    /// pattern (`.*sipgw.*`), which name no particular value.
    pub fn named_values(&self) -> Option<Vec<&str>> {
        let words: Vec<&str> = self.value.split('|').collect();
        let plain = |w: &&str| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '+' || c == '.')
        };
        (!self.value.contains('$') && words.iter().all(plain)).then_some(words)
    }
}

/// A series selector: a metric name and its matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The metric name (`up`, `sipgw_...`, `process_...`).
    pub metric: String,
    /// The matchers in braces, if any.
    pub matchers: Vec<Matcher>,
}

/// The selectors of a PromQL expression. Every series sipgw's files read is `up` (which
/// Prometheus adds), a `sipgw_` metric or a `process_` one, and no label, function or
/// keyword is named like them, so a word search finds them all.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let selector = Regex::new(r"\b(up|sipgw_[a-z0-9_]+|process_[a-z_]+)\b(\{[^}]*\})?").unwrap();
    let matcher = Regex::new(r#"(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)""#).unwrap();
    selector
        .captures_iter(expr)
        .map(|c| Selector {
            metric: c[1].to_owned(),
            matchers: c.get(2).map_or_else(Vec::new, |braces| {
                matcher
                    .captures_iter(braces.as_str())
                    .map(|m| Matcher {
                        label: m[1].to_owned(),
                        op: m[2].to_owned(),
                        value: m[3].to_owned(),
                    })
                    .collect()
            }),
        })
        .collect()
}

/// The values each label takes in the series named `metric`.
pub fn label_values(samples: &[Sample], metric: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.name == metric) {
        for (label, value) in &sample.labels {
            values
                .entry(label.clone())
                .or_default()
                .insert(value.clone());
        }
    }
    values
}

#[test]
fn selectors_are_found_with_their_matchers() {
    let found = selectors(
        r#"sum by (job) (rate(sipgw_requests_total{code=~"a|b",job=~"$job"}[5m])) / on (instance) process_max_fds > up"#,
    );
    let names: Vec<&str> = found.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(names, ["sipgw_requests_total", "process_max_fds", "up"]);
    assert_eq!(found[0].matchers[0].named_values(), Some(vec!["a", "b"]));
    assert_eq!(
        found[0].matchers[1].named_values(),
        None,
        "a Grafana variable"
    );
    let text = "# TYPE x counter\nx_total{a=\"1\",b=\"two\"} 3\nplain 4.5\n";
    let parsed = samples(text);
    assert_eq!(
        value(&parsed, "x_total", &[("a", "1"), ("b", "two")]),
        Some(3.0)
    );
    assert_eq!(value(&parsed, "plain", &[]), Some(4.5));
}
