//! The API page: the gateway's OpenAPI document as one self-contained HTML page, rendered here
//! rather than by a JavaScript viewer, so it needs no script, no font and no network: it works
//! offline, from a file, and in any browser.

use std::fmt::Write;

use serde_json::{Map, Value};

pub const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

/// The page for `spec` (an OpenAPI 3.1 document as JSON).
pub fn render(spec: &Value) -> String {
    let title = text(&spec["info"]["title"]);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<header><h1>{title}</h1>\
         <p class=\"version\">OpenAPI {} · version {}</p>{}<p>The machine-readable document: \
         <a href=\"openapi.json\">openapi.json</a>.</p></header>\n",
        text(&spec["openapi"]),
        text(&spec["info"]["version"]),
        paragraph(&spec["info"]["description"]),
    );
    let operations = operations(spec);
    html.push_str("<nav><h2>Operations</h2><ul>");
    for op in &operations {
        let _ = write!(
            html,
            "<li><a href=\"#{}\"><span class=\"method {}\">{}</span> <code>{}</code></a> {}</li>",
            op.anchor(),
            op.method,
            op.method.to_uppercase(),
            escape(op.path),
            text(&op.body["summary"]),
        );
    }
    html.push_str("</ul></nav>\n<main>\n");
    for op in &operations {
        operation(&mut html, op);
    }
    schemas(&mut html, &spec["components"]["schemas"]);
    html.push_str("</main></body></html>\n");
    html
}

/// One method on one path.
pub struct Operation<'a> {
    pub method: &'a str,
    pub path: &'a str,
    body: &'a Value,
}

impl Operation<'_> {
    fn anchor(&self) -> String {
        let path: String = self
            .path
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("op-{}{path}", self.method)
    }
}

/// Every operation of `spec`, by path then method.
pub fn operations(spec: &Value) -> Vec<Operation<'_>> {
    let Some(paths) = spec["paths"].as_object() else {
        return Vec::new();
    };
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |method| {
                item.get(*method)
                    .map(|body| Operation { method, path, body })
            })
        })
        .collect()
}

fn operation(html: &mut String, op: &Operation<'_>) {
    let _ = write!(
        html,
        "<section class=\"operation\" id=\"{}\"><h2><span class=\"method {}\">{}</span> \
         <code>{}</code></h2><p class=\"summary\">{}</p>{}",
        op.anchor(),
        op.method,
        op.method.to_uppercase(),
        escape(op.path),
        text(&op.body["summary"]),
        paragraph(&op.body["description"]),
    );
    if let Some(security) = op.body["security"].as_array().filter(|s| !s.is_empty()) {
        let names: Vec<String> = security
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|scheme| scheme.keys().map(|name| escape(name)))
            .collect();
        let _ = write!(html, "<p>Requires: {}.</p>", names.join(", "));
    }
    if let Some(parameters) = op.body["parameters"].as_array().filter(|p| !p.is_empty()) {
        html.push_str(
            "<h3>Parameters</h3><table><tr><th>Name</th><th>In</th><th>Type</th>\
             <th>Required</th><th>Description</th></tr>",
        );
        for parameter in parameters {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&parameter["name"]),
                text(&parameter["in"]),
                type_of(&parameter["schema"]),
                yes_no(&parameter["required"]),
                text(&parameter["description"]),
            );
        }
        html.push_str("</table>");
    }
    if let Some(body) = op.body.get("requestBody") {
        let _ = write!(
            html,
            "<h3>Request body</h3><p>{} {}</p>",
            media(&body["content"]),
            text(&body["description"]),
        );
    }
    html.push_str("<h3>Responses</h3><table><tr><th>Status</th><th>Body</th><th>Meaning</th></tr>");
    if let Some(responses) = op.body["responses"].as_object() {
        for (status, response) in responses {
            let _ = write!(
                html,
                "<tr><td class=\"status s{}\">{}</td><td>{}</td><td>{}</td></tr>",
                status
                    .chars()
                    .next()
                    .filter(char::is_ascii_digit)
                    .unwrap_or('0'),
                escape(status),
                media(&response["content"]),
                text(&response["description"]),
            );
        }
    }
    html.push_str("</table></section>\n");
}

fn schemas(html: &mut String, schemas: &Value) {
    let Some(schemas) = schemas.as_object() else {
        return;
    };
    html.push_str("<h2 class=\"part\">Schemas</h2>\n");
    for (name, schema) in schemas {
        let _ = write!(
            html,
            "<section class=\"schema\" id=\"schema-{0}\"><h3>{0}</h3>{1}",
            escape(name),
            paragraph(&schema["description"]),
        );
        // A flattened struct is `allOf` its parts: the fields of those inline, the others named.
        let parts = match schema["allOf"].as_array() {
            Some(parts) => parts.iter().collect(),
            None => vec![schema],
        };
        for part in parts {
            match part["properties"].as_object() {
                Some(properties) => properties_table(html, part, properties),
                None if part.get("$ref").is_some() => {
                    let _ = write!(html, "<p>Every field of {}, and:</p>", type_of(part));
                }
                None => {
                    let _ = write!(html, "<p>{}</p>", type_of(part));
                }
            }
        }
        html.push_str("</section>\n");
    }
}

fn properties_table(html: &mut String, schema: &Value, properties: &Map<String, Value>) {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    html.push_str(
        "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>",
    );
    for (field, property) in properties {
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(field),
            type_of(property),
            if required.contains(&field.as_str()) {
                "yes"
            } else {
                "no"
            },
            text(&property["description"]),
        );
    }
    html.push_str("</table>");
}

/// `application/json`: the schema's type, for a body.
fn media(content: &Value) -> String {
    let Some(content) = content.as_object() else {
        return "none".to_owned();
    };
    content
        .iter()
        .map(|(kind, media)| {
            format!(
                "{} <small>({})</small>",
                type_of(&media["schema"]),
                escape(kind)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A schema in a few words: its type or the schema it refers to, with its constraints.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    for (key, joiner) in [("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")] {
        if let Some(parts) = schema[key].as_array() {
            let parts: Vec<String> = parts.iter().map(type_of).collect();
            return parts.join(joiner);
        }
    }
    let mut words = match &schema["type"] {
        Value::String(kind) => vec![kind.clone()],
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => vec!["any".to_owned()],
    };
    if words.iter().any(|word| word == "array") {
        words.retain(|word| word != "array");
        words.insert(0, format!("array of {}", type_of(&schema["items"])));
    }
    let mut described = escape(&words.join(" | "));
    if let Some(format) = schema["format"].as_str() {
        let _ = write!(described, " ({})", escape(format));
    }
    let constraints = constraints(schema);
    if !constraints.is_empty() {
        let _ = write!(described, " <small>{}</small>", constraints.join(", "));
    }
    described
}

fn constraints(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", text(v)))
            .collect();
        found.push(format!("one of {}", values.join(", ")));
    }
    for (key, words) in [
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
        ("default", "default"),
        ("pattern", "matches"),
    ] {
        if let Some(value) = schema.get(key) {
            found.push(format!("{words} <code>{}</code>", text(value)));
        }
    }
    found
}

fn yes_no(value: &Value) -> &'static str {
    if value.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

fn paragraph(value: &Value) -> String {
    match value.as_str() {
        Some(words) if !words.is_empty() => format!("<p>{}</p>", text(value)),
        _ => String::new(),
    }
}

/// A JSON value as escaped text: a string as it is (its `code spans` as code), anything else
/// as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(words) => code_spans(&escape(words)),
        other => escape(&other.to_string()),
    }
}

/// `a` `b` → <code>a</code> <code>b</code>; an unpaired backtick stays as it is.
fn code_spans(escaped: &str) -> String {
    let parts: Vec<&str> = escaped.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return escaped.to_owned();
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                (*part).to_owned()
            }
        })
        .collect()
}

fn escape(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2330;background:#fafbfc}\
header{background:#1d2330;color:#fff;padding:1.5em 2em}header a{color:#9cf}\
.version{opacity:.7}nav,main{padding:0 2em}nav ul{list-style:none;padding:0}\
nav li{margin:.2em 0}a{color:#0b63c5;text-decoration:none}\
.method{display:inline-block;min-width:4.5em;text-align:center;border-radius:3px;color:#fff;\
font:bold 12px monospace;padding:.15em .4em}.get{background:#2f7d32}.post{background:#1565c0}\
.put,.patch{background:#b26a00}.delete{background:#c62828}\
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:1em 0;padding:.5em 1.5em 1em}\
h2{font-size:1.2em}h3{font-size:1em;margin-bottom:.3em}table{border-collapse:collapse;width:100%}\
th,td{border-bottom:1px solid #eceff3;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f5f8}.status{font-weight:bold}.s2{color:#2f7d32}.s4{color:#b26a00}\
.s5{color:#c62828}code{font-size:13px}small{color:#5b6472}.part{margin-top:2em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_on_the_page_and_text_is_escaped() {
        let spec = serde_json::json!({
            "openapi": "3.1.0",
            "info": {"title": "T <x>", "version": "1"},
            "paths": {
                "/a/{id}": {"get": {"summary": "Read <a>", "responses": {"200": {"description": "ok"}}},
                            "post": {"summary": "Write", "responses": {}}},
                "/b": {"delete": {"responses": {}}}
            }
        });
        let page = render(&spec);
        assert_eq!(operations(&spec).len(), 3);
        for (method, path) in [("GET", "/a/{id}"), ("POST", "/a/{id}"), ("DELETE", "/b")] {
            assert!(
                page.contains(&format!("{method}</span> <code>{path}</code>")),
                "{method} {path}"
            );
        }
        assert!(page.contains("T &lt;x&gt;") && !page.contains("<x>"));
        assert!(page.contains("Read &lt;a&gt;"));
        assert_eq!(
            code_spans("use `a` or `b`"),
            "use <code>a</code> or <code>b</code>"
        );
        assert_eq!(code_spans("one ` alone"), "one ` alone");
    }
}
