//! `render` on input built to hurt: YAML bombs, deep nesting, binary, huge files, wrong kinds,
//! odd namespaces, and the KServe annotations that defeat a ScaledObject. Each run is capped
//! at 2 GiB of address space, so a regression fails the test instead of the machine.

mod cli;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use cli::{docs, stderr};

/// `render` with `args`, reading `stdin`, under the address-space cap.
fn render(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 2097152 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
        .arg("render")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The command may refuse before it has read everything: a closed pipe is fine.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn render_text(args: &[&str], text: &str) -> Output {
    render(&[&["-f", "-"], args].concat(), text.as_bytes())
}

fn isvc(metadata_extra: &str, predictor_extra: &str) -> String {
    format!(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: qwen\n{metadata_extra}  annotations:\n    scaling.io/strategy: queue\nspec:\n  predictor:\n{predictor_extra}    model:\n      modelFormat:\n        name: huggingface\n"
    )
}

fn refused(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn namespaces(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "{}", stderr(out));
    docs(out)
        .iter()
        .map(|d| {
            d.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
                .to_string()
        })
        .collect()
}

/// An empty or null namespace is no namespace: the InferenceService and everything generated
/// for it land in `-n`, or in `default` without it. The InferenceService used to keep the
/// empty or null one while its ScaledObject and monitor went to `-n`.
#[test]
fn an_empty_or_null_namespace_puts_every_object_in_the_same_one() {
    for meta in [
        "  namespace: \"\"\n",
        "  namespace: null\n",
        "  namespace:\n",
        "",
    ] {
        let text = isvc(meta, "");
        let all = namespaces(&render_text(&["-n", "team-a"], &text));
        assert_eq!(all.len(), 4, "{meta:?}: {all:?}");
        assert!(all.iter().all(|n| n == "team-a"), "{meta:?}: {all:?}");
        let all = namespaces(&render_text(&[], &text));
        assert!(all.iter().all(|n| n == "default"), "{meta:?}: {all:?}");
    }
    // The object's own namespace wins over -n, for every object.
    let all = namespaces(&render_text(
        &["-n", "team-a"],
        &isvc("  namespace: llm\n", ""),
    ));
    assert!(all.iter().all(|n| n == "llm"), "{all:?}");
}

/// KServe merges `spec.predictor.annotations` over the object's: a class or mode there wins.
#[test]
fn predictor_annotations_that_defeat_the_scaled_object_are_refused() {
    for (key, value) in [
        ("serving.kserve.io/autoscalerClass", "hpa"),
        ("serving.kserve.io/deploymentMode", "Serverless"),
    ] {
        let predictor = format!("    annotations:\n      {key}: {value}\n");
        refused(
            &render_text(&[], &isvc("", &predictor)),
            1,
            &[&format!(
                "spec.predictor.annotations {key}={value} cannot be combined with scaling.io/strategy"
            )],
        );
    }
    let external = "    annotations:\n      serving.kserve.io/autoscalerClass: external\n";
    let out = render_text(&[], &isvc("", external));
    let isvc_doc = &docs(&out)[0];
    assert_eq!(
        isvc_doc.pointer("/metadata/annotations/serving.kserve.io~1autoscalerClass"),
        None,
        "the predictor's class decides; the top level is left alone"
    );
}

/// KServe labels the predictor `app: isvc.<name>-predictor`: 48 characters is the longest
/// name, with or without a predictor name taking its share.
#[test]
fn the_longest_name_is_the_one_whose_app_label_fits() {
    let named = |name: &str, predictor: &str| {
        format!(
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: {name}\n  annotations:\n    scaling.io/strategy: queue\nspec:\n  predictor:\n{predictor}    model:\n      modelFormat:\n        name: huggingface\n"
        )
    };
    let ok = render_text(&[], &named(&"q".repeat(48), ""));
    assert!(ok.status.success(), "{}", stderr(&ok));
    refused(
        &render_text(&[], &named(&"q".repeat(49), "")),
        1,
        &["metadata.name", "(64 characters)", "app: isvc."],
    );
    let ok = render_text(&[], &named(&"q".repeat(43), "    name: main\n"));
    assert!(ok.status.success(), "{}", stderr(&ok));
    refused(
        &render_text(&[], &named(&"q".repeat(44), "    name: main\n")),
        1,
        &["metadata.name and spec.predictor.name", "(64 characters)"],
    );
}

#[test]
fn yaml_bombs_and_deep_nesting_are_refused_quickly() {
    // Nine levels of ten aliases each: a billion strings if expanded.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for level in 'b'..='j' {
        bomb.push_str(&format!(
            "{level}: &{level} [{}]\n",
            vec![format!("*{prev}"); 10].join(",")
        ));
        prev = level;
    }
    let doc = format!("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n{bomb}");
    let out = render_text(&[], &doc);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("document 1"), "{}", stderr(&out));

    // Past the parser's own limit of 128 levels: refused by the parser.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    refused(
        &render_text(&[], &deep),
        2,
        &["document 1: not valid YAML", "recursion limit"],
    );
    // Far past it: the parser would take time quadratic in the depth (a minute for 50,000
    // levels of '{a: ' in a debug build, hours for the million that fit in 4 MiB), so the
    // text is refused before it is parsed.
    for deep in [
        format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("a: {}", "{a: ".repeat(100_000)),
    ] {
        refused(
            &render_text(&[], &deep),
            2,
            &["standard input nests '[' and '{' more than 1000 deep"],
        );
    }
}

#[test]
fn binary_huge_empty_and_wrong_kinds_are_refused_all_or_nothing() {
    refused(
        &render(&["-f", "-"], &[0xff, 0xfe, 0x00, 0x9f, 0x80]),
        2,
        &["standard input is not UTF-8 text"],
    );
    let huge = format!("# {}\n{}", "x".repeat(5 << 20), isvc("", ""));
    refused(
        &render_text(&[], &huge),
        2,
        &["standard input is larger than 4 MiB"],
    );
    refused(&render_text(&[], ""), 2, &["holds no document"]);
    refused(&render_text(&[], "---\n---\n"), 2, &["holds no document"]);
    refused(
        &render_text(
            &[],
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        ),
        2,
        &["apiVersion 'v1' kind 'ConfigMap' is not an InferenceService"],
    );
    // A hostile kind is clipped and escaped in the message.
    let out = render_text(
        &[],
        &format!("apiVersion: v1\nkind: \"\\e[2J{}\"\n", "K".repeat(5000)),
    );
    refused(&out, 2, &["\\u{1b}[2J"]);
    assert!(stderr(&out).len() < 600, "{}", stderr(&out));
    // A name that would clear the terminal is escaped wherever it is printed: in the
    // denial of its name, and when it is refused for something else.
    for strategy in ["queue", "nonsense"] {
        let text = isvc("", "")
            .replace("name: qwen", "name: \"q\\e[2J\\nforged\"")
            .replace("strategy: queue", &format!("strategy: {strategy}"));
        let out = render_text(&[], &text);
        refused(&out, 1, &["default/q\\u{1b}[2J\\nforged: "]);
        assert!(!stderr(&out).contains('\u{1b}'), "{}", stderr(&out));
    }
    // A scalar, a list, a namespace that is not a string.
    refused(
        &render_text(&[], "42\n"),
        2,
        &["is not an InferenceService"],
    );
    refused(
        &render_text(&[], "- a\n- b\n"),
        2,
        &["is not an InferenceService"],
    );
    refused(
        &render_text(&[], &isvc("  namespace: [a]\n", "")),
        2,
        &["document 1: malformed object"],
    );
    // Several documents: each valid one is rendered; one bad document anywhere means nothing
    // is printed, so a failed render never leaves half a result behind.
    let two = format!(
        "{}---\n{}",
        isvc("", ""),
        isvc("", "").replace("name: qwen", "name: llama")
    );
    let out = render_text(&[], &two);
    assert_eq!(docs(&out).len(), 8, "{}", stderr(&out));
    let bad = format!("{two}---\napiVersion: v1\nkind: Secret\n");
    refused(&render_text(&[], &bad), 2, &["document 3"]);
    // JSON is YAML: a manifest written as JSON renders the same.
    let json: Value = serde_yaml_ng::from_str(&isvc("", "")).unwrap();
    let out = render_text(&[], &json.to_string());
    assert_eq!(docs(&out).len(), 4, "{}", stderr(&out));
}

/// A file named on the command line is bounded like standard input.
#[test]
fn a_huge_file_is_refused_without_being_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let f = std::fs::File::create(&path).unwrap();
    // Sparse: 4 GiB that would not fit under the cap if read whole.
    f.set_len(4 << 30).unwrap();
    let out = render(&["-f", path.to_str().unwrap()], b"");
    refused(&out, 2, &["is larger than 4 MiB"]);
    let missing = Path::new("/nonexistent/isvc.yaml");
    refused(
        &render(&["-f", missing.to_str().unwrap()], b""),
        2,
        &["cannot read /nonexistent/isvc.yaml"],
    );
}
