//! JSON pointer lookups without allocation: `serde_json::Value::pointer` builds a `String` per
//! path segment, which the simulator's per-event code (thousands of pods, several lookups each)
//! paid on every watch event.

use std::borrow::Cow;

use serde_json::Value;

/// [`Value::pointer`] with the same semantics (RFC 6901: `~1` is `/`, `~0` is `~`; array
/// indexes without sign or leading zero), allocating only for segments that contain `~`.
pub(crate) trait JsonPointer {
    fn ptr(&self, pointer: &str) -> Option<&Value>;
}

impl JsonPointer for Value {
    fn ptr(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        let mut v = self;
        for raw in rest.split('/') {
            let token: Cow<'_, str> = if raw.contains('~') {
                Cow::Owned(raw.replace("~1", "/").replace("~0", "~"))
            } else {
                Cow::Borrowed(raw)
            };
            v = match v {
                Value::Object(m) => m.get(token.as_ref())?,
                Value::Array(a) => a.get(index(&token)?)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

/// `metadata.<map>.<key>` (`map`: `labels` or `annotations`) as a string: a label or annotation
/// by its plain key, without building and unescaping a pointer for keys with a `/`.
pub(crate) fn meta_str<'a>(obj: &'a Value, map: &str, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(map)?.get(key)?.as_str()
}

fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agrees_with_serde_json_pointer() {
        let v = json!({
            "metadata": { "labels": { "a/b": "1", "c~d": "2", "": "3" }, "name": "x" },
            "list": [ { "k": 0 }, { "k": 1 } ],
            "": { "e": 4 }
        });
        for p in [
            "",
            "/",
            "/metadata",
            "/metadata/name",
            "/metadata/labels/a~1b",
            "/metadata/labels/c~0d",
            "/metadata/labels/",
            "/list/1/k",
            "/list/01",
            "/list/+1",
            "/list/2",
            "/list/x",
            "/metadata/name/deeper",
            "metadata",
            "//e",
            "/missing/x",
        ] {
            assert_eq!(v.ptr(p), v.pointer(p), "{p}");
        }
    }
}
