//! Reading the input files: documents (multi-document YAML or one JSON value), each document's
//! kind detected from its content, and a typed cursor ([`At`]) over a document that knows where
//! every value came from (`file:line` and the field path) for the comments of the output and
//! for errors that name the file, the document and the field.

use std::collections::HashMap;

use serde_json::Value;

use crate::Error;

/// What a document is, detected from its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `apiVersion: eksctl.io/*`, `kind: ClusterConfig`.
    Eksctl,
    /// A ConfigMap with `data.priorities` (Cluster Autoscaler's priority expander).
    Priorities,
    /// A Deployment running Cluster Autoscaler (its flags).
    CaDeployment,
    /// `aws autoscaling describe-auto-scaling-groups` output.
    Asgs,
    /// `aws ec2 describe-launch-template-versions` output.
    LaunchTemplates,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Eksctl => "eksctl ClusterConfig",
            Kind::Priorities => "priority-expander ConfigMap",
            Kind::CaDeployment => "Cluster Autoscaler Deployment",
            Kind::Asgs => "describe-auto-scaling-groups output",
            Kind::LaunchTemplates => "describe-launch-template-versions output",
        }
    }
}

/// One document of one input file.
#[derive(Debug)]
pub struct Doc {
    pub file: String,
    /// 1-based.
    pub index: usize,
    pub kind: Kind,
    pub value: Value,
    /// Field path -> 1-based line in the file.
    pub lines: HashMap<String, usize>,
}

impl Doc {
    /// A cursor at the document's root.
    pub fn root(&self) -> At<'_> {
        At {
            doc: self,
            v: &self.value,
            path: "",
        }
    }

    /// `file:line` of `path` (or of its nearest located ancestor), else `file#document`.
    pub fn locate(&self, path: &str) -> String {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return format!("{}:{line}", self.file);
            }
            match parent(p) {
                Some(up) => p = up,
                None => return format!("{}#{}", self.file, self.index),
            }
        }
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Splits a file into documents and detects each one's kind. Empty documents are skipped; a
/// document of no known kind is an error naming it.
pub fn read(file: &str, text: &str) -> Result<Vec<Doc>, Error> {
    let trimmed = text.trim_start();
    let json = trimmed.starts_with('{') || trimmed.starts_with('[');
    let (values, lines): (Vec<Value>, Vec<HashMap<String, usize>>) = if json {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::Parse {
            file: file.to_string(),
            message: format!("invalid JSON: {e}"),
        })?;
        (vec![v], vec![json_lines(text)])
    } else {
        let values: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| Error::Parse {
            file: file.to_string(),
            message: format!("invalid YAML: {e}"),
        })?;
        let lines = yaml_lines(text);
        (values, lines)
    };
    let mut out = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let index = i + 1;
        let kind = detect(&value).ok_or_else(|| Error::Field {
            file: file.to_string(),
            document: index,
            field: String::new(),
            message: "not an eksctl ClusterConfig, a priority-expander ConfigMap, a Cluster Autoscaler Deployment, nor the JSON of describe-auto-scaling-groups or describe-launch-template-versions".to_string(),
        })?;
        out.push(Doc {
            file: file.to_string(),
            index,
            kind,
            value,
            lines: lines.get(i).cloned().unwrap_or_default(),
        });
    }
    Ok(out)
}

fn detect(v: &Value) -> Option<Kind> {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let kind = s("/kind");
    if kind == "ClusterConfig" && s("/apiVersion").starts_with("eksctl.io/") {
        return Some(Kind::Eksctl);
    }
    if kind == "ConfigMap" && v.pointer("/data/priorities").is_some() {
        return Some(Kind::Priorities);
    }
    if kind == "Deployment" {
        let containers = v
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)?;
        let runs_ca = containers.iter().any(|c| {
            let words = c
                .get("command")
                .into_iter()
                .chain(c.get("args"))
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(Value::as_str);
            words
                .chain(c.get("image").and_then(Value::as_str))
                .any(|w| w.contains("cluster-autoscaler"))
        });
        return runs_ca.then_some(Kind::CaDeployment);
    }
    if v.get("AutoScalingGroups").is_some_and(Value::is_array) {
        return Some(Kind::Asgs);
    }
    if v.get("LaunchTemplateVersions").is_some_and(Value::is_array) {
        return Some(Kind::LaunchTemplates);
    }
    None
}

/// A value in a document, with its path (`managedNodeGroups[3].instanceTypes`).
#[derive(Clone, Copy, Debug)]
pub struct At<'a> {
    pub doc: &'a Doc,
    pub v: &'a Value,
    path: &'a str,
}

// Paths are interned ([`intern`]) so that `At` stays `Copy`.
impl<'a> At<'a> {
    pub fn path(&self) -> &str {
        self.path
    }

    /// Where this value came from: `file:line path`.
    pub fn src(&self) -> String {
        if self.path.is_empty() {
            self.doc.locate("")
        } else {
            format!("{} {}", self.doc.locate(self.path), self.path)
        }
    }

    /// An error at this value.
    pub fn err(&self, message: impl Into<String>) -> Error {
        Error::Field {
            file: self.doc.file.clone(),
            document: self.doc.index,
            field: self.path.to_string(),
            message: message.into(),
        }
    }

    fn child(&self, v: &'a Value, seg: String) -> At<'a> {
        let path = if self.path.is_empty() {
            seg.trim_start_matches('.').to_string()
        } else {
            format!("{}{seg}", self.path)
        };
        At {
            doc: self.doc,
            v,
            path: intern(path),
        }
    }

    /// The field `key` when present and not null.
    pub fn get(&self, key: &str) -> Option<At<'a>> {
        let v = self.v.get(key).filter(|v| !v.is_null())?;
        let seg = if key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            format!(".{key}")
        } else {
            format!("[{key}]")
        };
        Some(self.child(v, seg))
    }

    pub fn str(&self) -> Result<&'a str, Error> {
        self.v
            .as_str()
            .ok_or_else(|| self.err(format!("expected a string, got {}", self.v)))
    }

    /// A scalar as text (labels and tags may be written as numbers or booleans).
    pub fn text(&self) -> Result<String, Error> {
        match self.v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(self.err(format!("expected a scalar, got {other}"))),
        }
    }

    pub fn int(&self) -> Result<i64, Error> {
        match self.v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| self.err(format!("expected an integer, got {}", self.v)))
    }

    pub fn float(&self) -> Result<f64, Error> {
        match self.v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| self.err(format!("expected a number, got {}", self.v)))
    }

    pub fn bool(&self) -> Result<bool, Error> {
        match self.v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
        .ok_or_else(|| self.err(format!("expected true or false, got {}", self.v)))
    }

    pub fn items(&self) -> Result<Vec<At<'a>>, Error> {
        let items = self
            .v
            .as_array()
            .ok_or_else(|| self.err(format!("expected a list, got {}", self.v)))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| self.child(v, format!("[{i}]")))
            .collect())
    }

    pub fn entries(&self) -> Result<Vec<(&'a str, At<'a>)>, Error> {
        let map = self
            .v
            .as_object()
            .ok_or_else(|| self.err(format!("expected a map, got {}", self.v)))?;
        Ok(map
            .iter()
            .map(|(k, v)| {
                let at = self
                    .get(k)
                    .unwrap_or_else(|| self.child(v, format!("[{k}]")));
                (k.as_str(), at)
            })
            .collect())
    }

    /// A list of strings.
    pub fn strings(&self) -> Result<Vec<String>, Error> {
        self.items()?
            .iter()
            .map(|i| i.str().map(str::to_string))
            .collect()
    }
}

/// Paths live as long as the process (a migration reads a few thousand fields at most); interning
/// keeps [`At`] `Copy` and cheap to pass around.
fn intern(path: String) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static PATHS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut paths = PATHS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(p) = paths.get(path.as_str()) {
        return p;
    }
    let leaked: &'static str = Box::leak(path.into_boxed_str());
    paths.insert(leaked);
    leaked
}

/// Field path -> line for each document of a block-style YAML file. Best effort: a path not found
/// (flow style, anchors) falls back to its nearest located ancestor ([`Doc::locate`]).
pub fn yaml_lines(text: &str) -> Vec<HashMap<String, usize>> {
    struct Open {
        indent: usize,
        path: String,
        item: bool,
        next: usize,
    }
    let mut docs = vec![HashMap::new()];
    let mut stack: Vec<Open> = Vec::new();
    let mut block_scalar: Option<usize> = None;
    let mut started = false;
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        let content = raw.trim();
        if let Some(min) = block_scalar {
            if content.is_empty() || indent > min {
                continue;
            }
            block_scalar = None;
        }
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content == "---" || content.starts_with("--- ") {
            if started {
                docs.push(HashMap::new());
            }
            started = false;
            stack.clear();
            continue;
        }
        started = true;
        let map = docs.last_mut();
        let Some(map) = map else { continue };
        let mut col = indent;
        let mut rest = content;
        let mut dash = indent;
        // List items: `- ` opens an item of the nearest open key at or left of the dash.
        while rest == "-" || rest.starts_with("- ") {
            while stack
                .last()
                .is_some_and(|o| o.indent > col || (o.indent == col && o.item))
            {
                stack.pop();
            }
            let (path, idx) = match stack.last_mut() {
                Some(o) => {
                    let i = o.next;
                    o.next += 1;
                    (o.path.clone(), i)
                }
                None => (String::new(), 0),
            };
            let path = format!("{path}[{idx}]");
            map.entry(path.clone()).or_insert(line);
            stack.push(Open {
                indent: col,
                path,
                item: true,
                next: 0,
            });
            dash = col;
            let after = rest.strip_prefix('-').unwrap_or_default();
            let spaces = after.len() - after.trim_start().len();
            col += 1 + spaces;
            rest = after.trim_start();
        }
        if rest.is_empty() {
            continue;
        }
        if rest.starts_with('|') || rest.starts_with('>') {
            block_scalar = Some(dash);
            continue;
        }
        let Some((key, value)) = split_key(rest) else {
            continue;
        };
        while stack.last().is_some_and(|o| o.indent >= col) {
            stack.pop();
        }
        let parent = stack.last().map(|o| o.path.as_str()).unwrap_or("");
        let simple = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let path = match (parent.is_empty(), simple) {
            (true, true) => key.to_string(),
            (true, false) => format!("[{key}]"),
            (false, true) => format!("{parent}.{key}"),
            (false, false) => format!("{parent}[{key}]"),
        };
        map.entry(path.clone()).or_insert(line);
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            block_scalar = Some(col);
        }
        stack.push(Open {
            indent: col,
            path,
            item: false,
            next: 0,
        });
    }
    docs
}

/// `key: value` (or `key:`) of a YAML line, the key unquoted; `None` for a plain scalar.
fn split_key(s: &str) -> Option<(&str, &str)> {
    if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = s[1..].find(q)? + 1;
        let after = s[end + 1..].strip_prefix(':')?;
        return Some((&s[1..end], after));
    }
    if s.starts_with('{') || s.starts_with('[') {
        return None;
    }
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            return Some((s[..i].trim_end(), &s[i + 1..]));
        }
        if b == b' ' && bytes.get(i + 1) == Some(&b'#') {
            return None;
        }
    }
    None
}

/// Field path -> line for a JSON text (one value): where each value starts.
pub fn json_lines(text: &str) -> HashMap<String, usize> {
    enum Frame {
        Obj { path: String, key: Option<String> },
        Arr { path: String, next: usize },
    }
    let mut out = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    // The path of the value starting now (in an object: after its key).
    let value_path = |stack: &mut Vec<Frame>| -> Option<String> {
        match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Obj { path, key }) => key.take().map(|k| {
                let simple = k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                match (path.is_empty(), simple) {
                    (true, true) => k,
                    (true, false) => format!("[{k}]"),
                    (false, true) => format!("{path}.{k}"),
                    (false, false) => format!("{path}[{k}]"),
                }
            }),
            Some(Frame::Arr { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(e) = chars.next() {
                                s.push(e);
                            }
                        }
                        '"' => break,
                        '\n' => {
                            line += 1;
                            s.push(c);
                        }
                        _ => s.push(c),
                    }
                }
                let is_key = matches!(stack.last(), Some(Frame::Obj { key: None, .. })) && {
                    while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                        chars.next();
                    }
                    chars.peek() == Some(&':')
                };
                if is_key {
                    if let Some(Frame::Obj { key, .. }) = stack.last_mut() {
                        *key = Some(s);
                    }
                } else if let Some(p) = value_path(&mut stack) {
                    out.entry(p).or_insert(line);
                }
            }
            '{' | '[' => {
                let p = value_path(&mut stack).unwrap_or_default();
                out.entry(p.clone()).or_insert(line);
                stack.push(if c == '{' {
                    Frame::Obj { path: p, key: None }
                } else {
                    Frame::Arr { path: p, next: 0 }
                });
            }
            '}' | ']' => {
                stack.pop();
            }
            ',' | ':' | ' ' | '\t' | '\r' => {}
            _ => {
                // A number, true, false or null: record it, then skip to its end.
                if let Some(p) = value_path(&mut stack) {
                    out.entry(p).or_insert(line);
                }
                while chars
                    .peek()
                    .is_some_and(|c| !matches!(c, ',' | '}' | ']' | '\n' | ' '))
                {
                    chars.next();
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_lines_follow_keys_and_list_items() {
        let text = "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata:\n  name: seed\nmanagedNodeGroups:\n- name: a\n  labels:\n    workload: x\n  instanceTypes: [m5.large]\n  preBootstrapCommands:\n    - |\n      echo key: value\n- name: b\n  taints:\n    - key: k\n      effect: NoSchedule\n---\nkind: ConfigMap\ndata:\n  priorities: |\n    10:\n      - .*\n";
        let docs = yaml_lines(text);
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!(d["metadata.name"], 4);
        assert_eq!(d["managedNodeGroups[0]"], 6);
        assert_eq!(d["managedNodeGroups[0].name"], 6);
        assert_eq!(d["managedNodeGroups[0].labels.workload"], 8);
        assert_eq!(d["managedNodeGroups[0].instanceTypes"], 9);
        assert_eq!(d["managedNodeGroups[1].name"], 13);
        assert_eq!(d["managedNodeGroups[1].taints[0].effect"], 16);
        assert!(!d.keys().any(|k| k.contains("echo")), "{d:?}");
        assert_eq!(docs[1]["data.priorities"], 20);
    }

    #[test]
    fn json_lines_follow_keys_and_items() {
        let text = "{\n  \"AutoScalingGroups\": [\n    {\n      \"AutoScalingGroupName\": \"a\",\n      \"MaxSize\": 10,\n      \"Tags\": [\n        {\"Key\": \"k\", \"Value\": \"v\"}\n      ]\n    }\n  ]\n}\n";
        let l = json_lines(text);
        assert_eq!(l["AutoScalingGroups[0]"], 3);
        assert_eq!(l["AutoScalingGroups[0].AutoScalingGroupName"], 4);
        assert_eq!(l["AutoScalingGroups[0].MaxSize"], 5);
        assert_eq!(l["AutoScalingGroups[0].Tags[0].Value"], 7);
    }

    #[test]
    fn unknown_documents_are_refused_by_file_and_document() {
        let err = read(
            "x.yaml",
            "kind: ClusterConfig\napiVersion: eksctl.io/v1alpha5\n---\nkind: Pod\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.yaml document 2: not an eksctl"),
            "{err}"
        );
    }
}
