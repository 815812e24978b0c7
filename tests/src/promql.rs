//! Just enough PromQL reading for the tests that hold expressions to the code: the alerting rules
//! (every metric they use is exported) and the dashboards (every selector is filtered by
//! instance). Not a parser: it finds the vector selectors of an expression, each with its
//! metric name and label matchers, and the labels it groups by. Grafana's `$variables` may
//! stand anywhere a value or a range may.

/// One vector selector: `metric{label op "value", …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Empty for a selector without a name (`{__name__=~"…"}`).
    pub metric: String,
    /// `(label, op, value)`, op one of `=`, `!=`, `=~`, `!~`, the value without its quotes.
    pub matchers: Vec<(String, String, String)>,
}

impl Selector {
    /// The matcher on `label`, as `(op, value)`.
    pub fn matcher(&self, label: &str) -> Option<(&str, &str)> {
        self.matchers
            .iter()
            .find(|(name, _, _)| name == label)
            .map(|(_, op, value)| (op.as_str(), value.as_str()))
    }
}

/// Words that are not metric names when no `{` follows them.
const KEYWORDS: [&str; 12] = [
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "atan2",
];

/// Aggregations, which a `by (…)` or `without (…)` may follow before their `(`.
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Keywords whose parenthesised list names labels, not series.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Every vector selector of `expr`, in order.
pub fn selectors(expr: &str) -> Vec<Selector> {
    scan(expr).0
}

/// Every label named in a `by (…)` or `without (…)` of `expr`.
pub fn grouping_labels(expr: &str) -> Vec<String> {
    scan(expr).1
}

fn scan(expr: &str) -> (Vec<Selector>, Vec<String>) {
    let chars: Vec<char> = expr.chars().collect();
    let (mut selectors, mut grouping) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = skip_to(&chars, i, ']');
        } else if c == '{' {
            let (matchers, next) = read_matchers(&chars, i);
            selectors.push(Selector {
                metric: String::new(),
                matchers,
            });
            i = next;
        } else if c.is_ascii_digit() || c == '.' || c == '$' {
            // A number, a duration, or a Grafana variable in a value position.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "._$".contains(chars[i]))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_spaces(&chars, i);
            let follows = chars.get(next).copied();
            if LABEL_LISTS.contains(&word.as_str()) && follows == Some('(') {
                let close = skip_to(&chars, next, ')');
                let list: String = chars[next + 1..close - 1].iter().collect();
                if word == "by" || word == "without" {
                    grouping.extend(list.split(',').map(|l| l.trim().to_owned()));
                }
                i = close;
            } else if follows == Some('{') {
                let (matchers, after) = read_matchers(&chars, next);
                selectors.push(Selector {
                    metric: word,
                    matchers,
                });
                i = after;
            } else if follows != Some('(')
                && !KEYWORDS.contains(&word.as_str())
                && !AGGREGATIONS.contains(&word.as_str())
            {
                selectors.push(Selector {
                    metric: word,
                    matchers: Vec::new(),
                });
            }
        } else {
            i += 1;
        }
    }
    grouping.retain(|label| !label.is_empty());
    (selectors, grouping)
}

fn skip_spaces(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The index after the string starting at `i` (its quote), escapes included.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' && quote != '`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// The index after the `close` that ends what starts at `i`, strings skipped.
fn skip_to(chars: &[char], i: usize, close: char) -> usize {
    let mut j = i + 1;
    while j < chars.len() && chars[j] != close {
        j = if "\"'`".contains(chars[j]) {
            skip_string(chars, j)
        } else {
            j + 1
        };
    }
    j + 1
}

/// The matchers between the `{` at `i` and its `}`, and the index after it.
fn read_matchers(chars: &[char], i: usize) -> (Vec<(String, String, String)>, usize) {
    let end = skip_to(chars, i, '}');
    let mut matchers = Vec::new();
    let mut j = i + 1;
    while j < end - 1 {
        j = skip_spaces(chars, j);
        let start = j;
        while j < end - 1 && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        let label: String = chars[start..j].iter().collect();
        j = skip_spaces(chars, j);
        let op_start = j;
        while j < end - 1 && "=!~".contains(chars[j]) {
            j += 1;
        }
        let op: String = chars[op_start..j].iter().collect();
        j = skip_spaces(chars, j);
        if label.is_empty() || op.is_empty() || j >= end - 1 {
            break;
        }
        let after = skip_string(chars, j);
        let value: String = chars[j + 1..after - 1].iter().collect();
        matchers.push((label, op, value));
        j = skip_spaces(chars, after);
        if chars.get(j) == Some(&',') {
            j += 1;
        }
    }
    (matchers, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        selectors(expr).into_iter().map(|s| s.metric).collect()
    }

    #[test]
    fn finds_selectors_through_functions_aggregations_and_binary_operators() {
        let expr = r#"sum by (service, queue) (rate(consumer_messages_total{outcome="retried"}[5m])) > 0.2
            and on () sum(increase(saga_finished_total{service="order",outcome=~"completed|failed"}[6h] offset 10m)) / ignoring(x) group_left(y) up == bool 0 or vector(0)"#;
        assert_eq!(
            names(expr),
            ["consumer_messages_total", "saga_finished_total", "up"]
        );
        assert_eq!(grouping_labels(expr), ["service", "queue"]);
        let finished = &selectors(expr)[1];
        assert_eq!(
            finished.matcher("outcome"),
            Some(("=~", "completed|failed"))
        );
        assert_eq!(finished.matcher("service"), Some(("=", "order")));
    }

    #[test]
    fn reads_grafana_variables_quoted_strings_and_nameless_selectors() {
        let expr = r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{instance=~"$instance", route!="a,}\"b"}[$__rate_interval]))) or label_replace(vector(1), "x", "$1", "y", "(.*)") + {__name__="z"}"#;
        let found = selectors(expr);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].metric, "http_request_duration_seconds_bucket");
        assert_eq!(found[0].matcher("instance"), Some(("=~", "$instance")));
        assert_eq!(found[0].matcher("route"), Some(("!=", "a,}\\\"b")));
        assert_eq!(found[1].metric, "");
        assert_eq!(found[1].matcher("__name__"), Some(("=", "z")));
    }
}
