//! The small commands and the flag checks that run before anything starts: `version`,
//! `completion`, `policy check -f`, leader-election timings, `--kubeconfig`.

mod cli;
use std::io::Write;
use std::process::{Command, Stdio};

use cli::bin;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_json_has_commit_date_and_compiler() {
    let (code, out, err) = run(&["version", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let commit = v["commit"].as_str().unwrap();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    let date = v["buildDate"].as_str().unwrap();
    assert!(
        date == "unknown"
            || (date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T'),
        "{date}"
    );
    // The compiler that built the binary is the one on PATH here.
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        v["rustcVersion"].as_str().unwrap().starts_with("rustc "),
        "{v}"
    );
    if !rustc.is_empty() {
        assert_eq!(v["rustcVersion"], rustc.as_str());
    }
    let (code, text, _) = run(&["version"]);
    assert_eq!(code, 0);
    assert!(text.starts_with(&format!(
        "kserve-keda-webhook {}\n",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains(&format!("commit: {commit}\n")), "{text}");
    let (code, _, err) = run(&["version", "--output", "yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("json") && err.contains("text"), "{err}");
}

#[test]
fn completion_scripts_name_the_commands_and_flags() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef kserve-keda-webhook"),
        ("fish", "complete -c kserve-keda-webhook"),
    ] {
        let (code, out, err) = run(&["completion", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}");
        for word in [
            "render",
            "serve",
            "leader-elect-lease-duration",
            "kubeconfig",
        ] {
            assert!(out.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (code, _, err) = run(&["completion", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("bash"), "{err}");
}

#[test]
fn bash_accepts_the_completion_script() {
    let (_, script, _) = run(&["completion", "bash"]);
    let Ok(out) = Command::new("bash").args(["-n", "-c", &script]).output() else {
        eprintln!("skipped: bash is not installed");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn policy_check_reads_a_file_or_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "defaults:\n  minReplicas: 1\n").unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "defaults:\n  minReplicas: 1\nlimitz: {}\n").unwrap();
    let good = good.to_str().unwrap();
    let bad = bad.to_str().unwrap();

    for flag in ["-f", "--filename", "--policy"] {
        let (code, out, err) = run(&["policy", "check", flag, good]);
        assert_eq!(code, 0, "{flag}: {err}");
        assert_eq!(out, format!("{good}: ok\n"));
        let (code, _, err) = run(&["policy", "check", flag, bad]);
        assert_eq!(code, 1);
        assert!(err.contains(bad) && err.contains("limitz"), "{err}");
    }

    for (text, ok) in [
        ("defaults:\n  minReplicas: 1\n", true),
        ("limitz: {}\n", false),
    ] {
        let mut child = bin()
            .args(["policy", "check", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.success(), ok);
        let shown = String::from_utf8_lossy(if ok { &out.stdout } else { &out.stderr });
        assert!(shown.contains("standard input"), "{shown}");
    }
}

#[test]
fn leader_election_timings_must_nest() {
    let base = [
        "serve",
        "--self-signed",
        "--no-controller",
        "--addr",
        "127.0.0.1:0",
    ];
    let cases: [(&[&str], &str); 5] = [
        (
            &["--leader-elect-renew-deadline", "15s"],
            "--leader-elect-renew-deadline 15s must be below --leader-elect-lease-duration 15s",
        ),
        (
            &["--leader-elect-retry-period", "10s"],
            "--leader-elect-retry-period 10s must be below --leader-elect-renew-deadline 10s",
        ),
        (
            &[
                "--leader-elect-lease-duration",
                "10s",
                "--leader-elect-renew-deadline",
                "8s",
                "--leader-elect-retry-period",
                "6s",
            ],
            "at most half of --leader-elect-lease-duration",
        ),
        (&["--leader-elect-retry-period", "0s"], "must be above zero"),
        (
            &["--leader-elect-lease-duration", "fifteen"],
            "is not a duration",
        ),
    ];
    for (flags, message) in cases {
        let args: Vec<&str> = base.iter().chain(flags).copied().collect();
        let (code, _, err) = run(&args);
        assert_ne!(code, 0, "{flags:?}");
        assert!(err.contains(message), "{flags:?}: {err}");
    }
    let (code, _, err) = run(&["serve", "--leader-elect=maybe"]);
    assert_eq!(code, 2);
    assert!(err.contains("--leader-elect"), "{err}");
}

#[test]
fn kubeconfig_flag_names_the_file_it_could_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("kubeconfig");
    std::fs::write(&broken, "clusters: [\n").unwrap();
    let missing = dir.path().join("missing");
    for path in [&broken, &missing] {
        let out = bin()
            .args([
                "serve",
                "--self-signed",
                "--addr",
                "127.0.0.1:0",
                "--leader-elect=false",
            ])
            .arg("--self-signed-dir")
            .arg(dir.path())
            .arg("--kubeconfig")
            .arg(path)
            // A valid KUBECONFIG must not be used instead of the named file.
            .env("KUBECONFIG", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("--kubeconfig {}", path.display())),
            "{err}"
        );
    }
}

/// A kubeconfig built to hurt (alias bomb, deep nesting, binary) is refused at start-up,
/// naming the flag, within bounded memory: kube's YAML reader keeps a node and depth budget.
/// Run under a 2 GiB address-space cap, so a regression fails here and not on the machine.
#[test]
fn hostile_kubeconfig_files_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut bomb = String::from(
        "apiVersion: v1\nkind: Config\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for level in 'b'..='j' {
        bomb.push_str(&format!(
            "{level}: &{level} [{}]\n",
            vec![format!("*{prev}"); 10].join(",")
        ));
        prev = level;
    }
    let files: [(&str, Vec<u8>); 3] = [
        ("bomb", bomb.into_bytes()),
        (
            "deep",
            format!("a: {}", "{a: ".repeat(100_000)).into_bytes(),
        ),
        ("binary", vec![0xff, 0xfe, 0x00, 0x9f]),
    ];
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -v 2097152 && exec "$0" "$@""#)
            .arg(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
            .args([
                "serve",
                "--self-signed",
                "--addr",
                "127.0.0.1:0",
                "--leader-elect=false",
            ])
            .arg("--self-signed-dir")
            .arg(dir.path())
            .arg("--kubeconfig")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!("--kubeconfig {}", path.display())),
            "{name}: {err}"
        );
    }
}
