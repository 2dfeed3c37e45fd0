//! Block-style YAML with a comment per field (where its value came from). Written here because no
//! YAML serializer keeps comments; the output is parsed back and validated before it is used
//! ([`crate::validate`]), so a quoting mistake cannot go out unnoticed.

use std::fmt::Write as _;

/// A YAML value.
#[derive(Clone, Debug)]
pub enum Y {
    Map(Vec<Entry>),
    List(Vec<(Y, Option<String>)>),
    Str(String),
    Int(i64),
    Bool(bool),
}

/// `key: value  # comment`.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub value: Y,
    pub comment: Option<String>,
}

impl Y {
    pub fn map() -> Y {
        Y::Map(Vec::new())
    }

    pub fn str(s: impl Into<String>) -> Y {
        Y::Str(s.into())
    }

    /// Adds `key: value` (with a comment) to a map; no-op on other values.
    pub fn set(&mut self, key: &str, value: Y, comment: Option<String>) -> &mut Self {
        if let Y::Map(entries) = self {
            entries.push(Entry {
                key: key.to_string(),
                value,
                comment,
            });
        }
        self
    }

    /// The map under `key`, created if absent.
    pub fn child(&mut self, key: &str) -> &mut Y {
        let Y::Map(entries) = self else {
            return self;
        };
        let i = match entries.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    key: key.to_string(),
                    value: Y::map(),
                    comment: None,
                });
                entries.len() - 1
            }
        };
        &mut entries[i].value
    }
}

/// A scalar as YAML: plain when that reads back as the same string, else double-quoted (JSON
/// string syntax is valid YAML).
pub fn scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '@'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

fn comment(c: &Option<String>) -> String {
    match c {
        Some(c) => format!("  # {}", c.replace('\n', " ")),
        None => String::new(),
    }
}

fn inline(v: &Y) -> Option<String> {
    match v {
        Y::Str(s) => Some(scalar(s)),
        Y::Int(i) => Some(i.to_string()),
        Y::Bool(b) => Some(b.to_string()),
        Y::Map(m) if m.is_empty() => Some("{}".into()),
        Y::List(l) if l.is_empty() => Some("[]".into()),
        _ => None,
    }
}

/// A document: the map's entries at column 0.
pub fn document(root: &Y, header: &[String]) -> String {
    let mut out = String::new();
    for h in header {
        let _ = writeln!(out, "# {h}");
    }
    if let Y::Map(entries) = root {
        map(entries, 0, &mut out);
    }
    out
}

fn map(entries: &[Entry], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for e in entries {
        let key = scalar(&e.key);
        match inline(&e.value) {
            Some(v) => {
                let _ = writeln!(out, "{pad}{key}: {v}{}", comment(&e.comment));
            }
            None => {
                let _ = writeln!(out, "{pad}{key}:{}", comment(&e.comment));
                match &e.value {
                    Y::Map(m) => map(m, indent + 2, out),
                    Y::List(l) => list(l, indent + 2, out),
                    _ => {}
                }
            }
        }
    }
}

fn list(items: &[(Y, Option<String>)], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (item, c) in items {
        match (inline(item), item) {
            (Some(v), _) => {
                let _ = writeln!(out, "{pad}- {v}{}", comment(c));
            }
            (None, Y::Map(m)) => {
                let mut inner = String::new();
                map(m, indent + 2, &mut inner);
                // The item's comment goes on its first line when that line has none.
                let mut first = true;
                for line in inner.lines() {
                    if first {
                        let body = &line[indent + 2..];
                        let extra = if body.contains("  # ") {
                            String::new()
                        } else {
                            comment(c)
                        };
                        let _ = writeln!(out, "{pad}- {body}{extra}");
                        first = false;
                    } else {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
            (None, Y::List(l)) => {
                let _ = writeln!(out, "{pad}-{}", comment(c));
                list(l, indent + 2, out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emitted_yaml_reads_back_with_the_same_values() {
        let mut root = Y::map();
        root.set("name", Y::str("wf-spot"), Some("cluster.yaml:3".into()));
        root.set("count", Y::str("8"), None);
        root.set("flag", Y::str("true"), None);
        root.set("odd", Y::str("a: b # c"), None);
        root.set("n", Y::Int(80), Some("pri.yaml:4".into()));
        let mut item = Y::map();
        item.set("key", Y::str("k"), Some("x:1".into()));
        item.set(
            "values",
            Y::List(vec![(Y::str("m5.large"), None), (Y::str("1"), None)]),
            None,
        );
        root.set(
            "reqs",
            Y::List(vec![(item, Some("whole".into()))]),
            Some("list".into()),
        );
        root.set("empty", Y::map(), None);
        let text = document(&root, &["header".into()]);
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "wf-spot", "count": "8", "flag": "true", "odd": "a: b # c", "n": 80,
                "reqs": [{"key": "k", "values": ["m5.large", "1"]}], "empty": {}}),
            "{text}"
        );
        assert!(text.contains("name: wf-spot  # cluster.yaml:3"), "{text}");
        assert!(text.contains("- key: k  # x:1"), "{text}");
    }
}
