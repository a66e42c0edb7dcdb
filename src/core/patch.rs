//! RFC 6902 JSON patches for the InferenceService annotations the plan changes.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde::Serialize;
use serde_json::Value;

/// The patch that turns `current` annotations into ones with `changes` applied. `current` is
/// `None` when the object has no `metadata.annotations` at all, which needs one `add` of the
/// whole map (a per-key add under a missing parent fails).
pub fn annotations(
    current: Option<&BTreeMap<String, String>>,
    changes: &BTreeMap<String, Option<String>>,
) -> Patch {
    let Some(current) = current else {
        let added: serde_json::Map<String, Value> = changes
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), Value::String(v.clone()?))))
            .collect();
        if added.is_empty() {
            return Patch(Vec::new());
        }
        return Patch(vec![PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: Value::Object(added),
        })]);
    };
    let mut ops = Vec::with_capacity(changes.len());
    for (key, value) in changes {
        // `from_tokens` escapes `/` as `~1` and `~` as `~0`.
        let path = PointerBuf::from_tokens(["metadata", "annotations", key.as_str()]);
        match (current.get(key), value) {
            (Some(old), Some(new)) if old != new => {
                ops.push(PatchOperation::Replace(ReplaceOperation {
                    path,
                    value: Value::String(new.clone()),
                }))
            }
            (None, Some(new)) => ops.push(PatchOperation::Add(AddOperation {
                path,
                value: Value::String(new.clone()),
            })),
            (Some(_), None) => ops.push(PatchOperation::Remove(RemoveOperation { path })),
            _ => {}
        }
    }
    Patch(ops)
}

/// The patch [`annotations`] builds, written straight to its JSON; `Ok(None)` when it has
/// no operations. Admission only needs the bytes, and building the operations as a tree of
/// pointers and values first cost more than writing them.
pub fn annotations_json(
    current: Option<&BTreeMap<String, String>>,
    changes: &BTreeMap<String, Option<String>>,
) -> Result<Option<Vec<u8>>, serde_json::Error> {
    let ops: Vec<Op<'_>> = match current {
        None => {
            let added: BTreeMap<&str, &str> = changes
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_deref()?)))
                .collect();
            if added.is_empty() {
                return Ok(None);
            }
            vec![Op {
                op: "add",
                path: Pointer(None),
                value: Some(OpValue::Map(added)),
            }]
        }
        Some(current) => changes
            .iter()
            .filter_map(|(key, value)| {
                let op = match (current.get(key), value) {
                    (Some(old), Some(new)) if old != new => "replace",
                    (None, Some(_)) => "add",
                    (Some(_), None) => "remove",
                    _ => return None,
                };
                Some(Op {
                    op,
                    path: Pointer(Some(key)),
                    value: value.as_deref().map(OpValue::Str),
                })
            })
            .collect(),
    };
    if ops.is_empty() {
        return Ok(None);
    }
    // An operation is about 80 bytes plus its key and value; a buffer sized up front is not
    // grown (and copied) several times while writing.
    let guess: usize = changes
        .iter()
        .map(|(k, v)| 96 + k.len() + v.as_ref().map_or(0, String::len))
        .sum();
    let mut out = Vec::with_capacity(guess);
    serde_json::to_writer(&mut out, &ops)?;
    Ok(Some(out))
}

#[derive(Serialize)]
struct Op<'a> {
    op: &'static str,
    path: Pointer<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<OpValue<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OpValue<'a> {
    Str(&'a str),
    Map(BTreeMap<&'a str, &'a str>),
}

/// `/metadata/annotations`, or the pointer to one key under it (RFC 6901: `~` is written
/// `~0` and `/` is written `~1`), written without building the string first.
struct Pointer<'a>(Option<&'a str>);

impl std::fmt::Display for Pointer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("/metadata/annotations")?;
        let Some(key) = self.0 else {
            return Ok(());
        };
        f.write_str("/")?;
        let mut rest = key;
        while let Some(i) = rest.find(['~', '/']) {
            f.write_str(&rest[..i])?;
            f.write_str(if rest.as_bytes()[i] == b'~' {
                "~0"
            } else {
                "~1"
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

impl Serialize for Pointer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn missing_annotations_get_one_add_of_the_map() {
        let p = annotations(None, &changes(&[("a/b", Some("1")), ("gone", None)]));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            json!([{"op": "add", "path": "/metadata/annotations", "value": {"a/b": "1"}}])
        );
        let mut doc = json!({"metadata": {"name": "x"}});
        json_patch::patch(&mut doc, &p).unwrap();
        assert_eq!(doc["metadata"]["annotations"]["a/b"], "1");
    }

    #[test]
    fn keys_with_slashes_and_tildes_are_escaped() {
        let current = BTreeMap::from([("x~y/z".to_string(), "old".to_string())]);
        let p = annotations(
            Some(&current),
            &changes(&[
                ("x~y/z", Some("new")),
                ("serving.kserve.io/autoscalerClass", Some("external")),
            ]),
        );
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v[0]["path"],
            "/metadata/annotations/serving.kserve.io~1autoscalerClass"
        );
        assert_eq!(v[0]["op"], "add");
        assert_eq!(v[1]["path"], "/metadata/annotations/x~0y~1z");
        assert_eq!(v[1]["op"], "replace");
        let mut doc = json!({"metadata": {"annotations": {"x~y/z": "old"}}});
        json_patch::patch(&mut doc, &p).unwrap();
        assert_eq!(doc["metadata"]["annotations"]["x~y/z"], "new");
        assert_eq!(
            doc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"],
            "external"
        );
    }

    #[test]
    fn unchanged_and_absent_removals_yield_no_ops() {
        let current = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let p = annotations(
            Some(&current),
            &changes(&[("k", Some("v")), ("other", None)]),
        );
        assert!(p.0.is_empty());
        let p = annotations(Some(&current), &changes(&[("k", None)]));
        assert_eq!(serde_json::to_value(&p).unwrap()[0]["op"], "remove");
        assert!(annotations(None, &changes(&[("k", None)])).0.is_empty());
    }

    /// The bytes admission sends are exactly the patch `annotations` builds, for keys that
    /// need escaping, unchanged values, removals and a missing annotations map.
    #[test]
    fn json_is_the_same_patch() {
        let current = BTreeMap::from([
            ("x~y/z".to_string(), "old".to_string()),
            ("keep".to_string(), "same".to_string()),
            ("gone/~".to_string(), "v".to_string()),
            ("say".to_string(), "\"quoted\"\n".to_string()),
        ]);
        let cases = [
            changes(&[("x~y/z", Some("new")), ("a/b", Some("1"))]),
            changes(&[("keep", Some("same")), ("gone/~", None), ("absent", None)]),
            changes(&[("say", Some("é \u{1}")), ("~~//", Some(""))]),
            changes(&[("keep", Some("same"))]),
            changes(&[]),
        ];
        for c in &cases {
            for cur in [Some(&current), None] {
                let tree = annotations(cur, c);
                match annotations_json(cur, c).unwrap() {
                    None => assert!(tree.0.is_empty(), "{c:?}"),
                    Some(bytes) => {
                        let parsed: Patch = serde_json::from_slice(&bytes).unwrap();
                        assert!(!parsed.0.is_empty());
                        assert_eq!(parsed, tree, "{}", String::from_utf8_lossy(&bytes));
                    }
                }
            }
        }
    }
}
