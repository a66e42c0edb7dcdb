//! RFC 6902 JSON patches for the InferenceService annotations the plan changes.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
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
}
