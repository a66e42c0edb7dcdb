//! `simulate` as a user runs it: the real binary, its output and exit code.

mod cli;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use cli::{bin, stderr};

fn isvc_file(dir: &Path, annotations: &[(&str, &str)]) -> PathBuf {
    let mut text = String::from(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: llama\n  namespace: llm\n  annotations:\n",
    );
    for (k, v) in annotations {
        text.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    text.push_str(
        "spec:\n  predictor:\n    model:\n      modelFormat:\n        name: huggingface\n",
    );
    let path = dir.join("isvc.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn simulate(file: &Path, args: &[&str]) -> Output {
    bin()
        .arg("simulate")
        .arg("-f")
        .arg(file)
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn same_seed_same_bytes_other_seed_other_run() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(dir.path(), &[("scaling.io/strategy", "tokens")]);
    let args = [
        "--load",
        "bursty:base=1,peak=6,every=10m,length=2m",
        "--duration",
        "30m",
        "--output",
        "json",
    ];
    let a = simulate(&f, &[&args[..], &["--seed", "7"]].concat());
    let b = simulate(&f, &[&args[..], &["--seed", "7"]].concat());
    let c = simulate(&f, &[&args[..], &["--seed", "8"]].concat());
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout);
}

#[test]
fn timeline_has_one_entry_per_hpa_sync_with_the_planned_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(
        dir.path(),
        &[
            ("scaling.io/strategy", "tokens"),
            ("scaling.io/max-replicas", "6"),
        ],
    );
    let v = json(&simulate(
        &f,
        &[
            "--load",
            "step:from=1,to=8,at=10m",
            "--duration",
            "40m",
            "--output",
            "json",
        ],
    ));
    let timeline = v["timeline"].as_array().unwrap();
    // 40 minutes of 15 s syncs, the first at 15 s.
    assert_eq!(timeline.len(), 40 * 4 - 1);
    for (i, tick) in timeline.iter().enumerate() {
        assert_eq!(tick["t"], 15.0 * (i + 1) as f64);
        let names: Vec<&str> = tick["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        // `tokens` brings a running-requests trigger along, as the planner generates it.
        assert_eq!(names, ["tokens", "concurrency"]);
        assert_eq!(tick["triggers"][0]["target"], 1000.0);
        assert_eq!(tick["triggers"][1]["metricType"], "AverageValue");
        let desired = tick["desired"].as_u64().unwrap();
        assert!((1..=6).contains(&desired), "{tick}");
        assert!(tick["readyReplicas"].as_u64() <= tick["currentReplicas"].as_u64());
        for key in ["proposal", "kedaActive", "currentReplicas"] {
            assert!(tick.get(key).is_some(), "{key} missing: {tick}");
        }
    }
    // The step is seen: the HPA scales up after it, never to more than max replicas, and
    // new pods serve only after the profile's startup time.
    let s = &v["summary"];
    let up = s["stepToScaleUp"].as_f64().unwrap();
    let ready = s["stepToReady"].as_f64().unwrap();
    assert!((0.0..=120.0).contains(&up), "{s}");
    assert!(ready >= up + 120.0, "{s}");
    assert!(s["maxReplicasReached"].as_u64().unwrap() > 1);
    assert!(s["requests"].as_u64().unwrap() > 10_000);
    for share in ["ttftAttainment", "itlAttainment", "sloAttainment"] {
        let x = s[share].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{share} {x}");
    }
}

#[test]
fn a_fixed_replica_count_costs_exactly_its_hours() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(
        dir.path(),
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/min-replicas", "2"),
            ("scaling.io/max-replicas", "2"),
        ],
    );
    let v = json(&simulate(
        &f,
        &[
            "--load",
            "constant:rate=3",
            "--duration",
            "90m",
            "--output",
            "json",
        ],
    ));
    let s = &v["summary"];
    assert!(
        (s["replicaHours"].as_f64().unwrap() - 3.0).abs() < 1e-6,
        "{s}"
    );
    assert_eq!(
        (s["scaleUps"].as_u64(), s["scaleDowns"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn pod_level_triggers_cannot_wake_a_model_keda_scaled_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(
        dir.path(),
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/min-replicas", "0"),
        ],
    );
    // Idle at first: KEDA's first poll finds nothing active and scales to zero (no
    // LastActiveTime yet, so no cooldown); the later load has no pod to report it.
    let v = json(&simulate(
        &f,
        &[
            "--load",
            "step:from=0,to=2,at=5m",
            "--duration",
            "15m",
            "--output",
            "json",
        ],
    ));
    let timeline = v["timeline"].as_array().unwrap();
    assert_eq!(timeline[0]["currentReplicas"], 1);
    assert!(
        timeline[2..]
            .iter()
            .all(|t| t["currentReplicas"] == 0 && t["kedaActive"] == false)
    );
    let s = &v["summary"];
    assert_eq!(s["finished"], 0);
    assert!(s["failed"].as_u64().unwrap() > 500, "{s}");
    assert_eq!(s["sloAttainment"], 0.0);
}

#[test]
fn custom_triggers_need_the_signal_named_in_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(
        dir.path(),
        &[
            ("scaling.io/strategy", "custom"),
            ("scaling.io/query", "sum(my_queue)"),
            ("scaling.io/target-custom", "5"),
        ],
    );
    let out = simulate(&f, &["--load", "constant:rate=1", "--duration", "10m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("customSignal"), "{}", stderr(&out));

    let builtin = bin().args(["simulate", "--help"]).output().unwrap();
    assert!(builtin.status.success());
    let profile = dir.path().join("p.yaml");
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/simulate/profiles/llama-3.1-8b-a100.yaml"
    ))
    .unwrap();
    std::fs::write(&profile, format!("{base}customSignal: queue\n")).unwrap();
    let v = json(&simulate(
        &f,
        &[
            "--load",
            "constant:rate=1",
            "--duration",
            "10m",
            "--output",
            "json",
            "--profile",
            profile.to_str().unwrap(),
        ],
    ));
    assert_eq!(v["triggers"][0]["name"], "custom");
    assert_eq!(v["triggers"][0]["signal"], "queue");
}

#[test]
fn azure_trace_columns_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(dir.path(), &[("scaling.io/strategy", "concurrency")]);
    let trace = dir.path().join("azure.csv");
    let mut text = String::from("TIMESTAMP,ContextTokens,GeneratedTokens\n");
    for i in 0..600 {
        text.push_str(&format!(
            "2023-11-16 18:{:02}:{:02}.5000000,{},{}\n",
            15 + i / 60,
            i % 60,
            500 + i,
            50 + i % 100
        ));
    }
    std::fs::write(&trace, text).unwrap();
    let v = json(&simulate(
        &f,
        &["--trace", trace.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(v["summary"]["requests"], 600);
    assert_eq!(v["summary"]["finished"], 600);
}

#[test]
fn sweep_names_the_cheapest_setting_meeting_the_slo() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(
        dir.path(),
        &[
            ("scaling.io/strategy", "tokens"),
            ("scaling.io/max-replicas", "6"),
        ],
    );
    let args = [
        "--load",
        "step:from=1,to=6,at=5m",
        "--duration",
        "30m",
        "--sweep",
        "concurrency=2,8,32",
        "--sweep",
        "queue=1,20",
    ];
    let v = json(&simulate(&f, &[&args[..], &["--output", "json"]].concat()));
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let meeting: Vec<&Value> = rows.iter().filter(|r| r["meetsSlo"] == true).collect();
    for r in rows {
        assert_eq!(
            r["meetsSlo"].as_bool().unwrap(),
            r["summary"]["sloAttainment"].as_f64().unwrap() >= 0.95
        );
    }
    if let Some(best) = meeting.iter().min_by(|a, b| {
        a["summary"]["replicaHours"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["summary"]["replicaHours"].as_f64().unwrap())
    }) {
        assert_eq!(v["cheapest"]["strategy"], best["strategy"]);
        assert_eq!(v["cheapest"]["target"], best["target"]);
    } else {
        assert!(v["cheapest"].is_null());
    }
    let text = simulate(&f, &args);
    let table = String::from_utf8_lossy(&text.stdout);
    assert!(
        table.contains("strategy") && table.contains("replica-hours"),
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("concurrency") || l.starts_with("queue"))
            .count(),
        5
    );
    assert!(
        table.contains("cheapest meeting the SLO") || table.contains("no setting meets the SLO")
    );
}

#[test]
fn plot_is_an_svg_with_the_three_panels() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(dir.path(), &[("scaling.io/strategy", "queue")]);
    let svg = dir.path().join("run.svg");
    let out = simulate(
        &f,
        &[
            "--load",
            "ramp:from=1,to=5,over=20m",
            "--duration",
            "20m",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for label in [
        "load (requests/s)",
        "replicas",
        "p95 TTFT (s)",
        "desired",
        "ready",
        "SLO",
        "time (min)",
    ] {
        assert!(text.contains(label), "{label}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("replica-hours"));
}

#[test]
fn bad_input_names_the_field_value_and_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(dir.path(), &[("scaling.io/strategy", "queue")]);
    let profile = dir.path().join("bad.yaml");
    std::fs::write(&profile, "name: x\nsource: y\nbatch: 3\n").unwrap();
    let trace = dir.path().join("t.csv");
    std::fs::write(
        &trace,
        "arrival,prompt_tokens,output_tokens\n0,10,5\n1.5,many,5\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--load",
                "constant:rate=1",
                "--profile",
                profile.to_str().unwrap(),
            ],
            "unknown field `batch`",
        ),
        (
            vec!["--trace", trace.to_str().unwrap()],
            "line 3: column 'prompt_tokens' value 'many'",
        ),
        (
            vec!["--load", "constant:rate=1", "--duration", "2 hours"],
            "--duration: '2 hours' is not a duration",
        ),
        (vec!["--load", "constant:speed=1"], "unknown key 'speed'"),
        (
            vec!["--load", "constant:rate=1", "--slo-ttft", "1"],
            "--slo-ttft: '1' is not a duration",
        ),
        (
            vec!["--load", "constant:rate=1", "--sweep", "queues=1"],
            "unknown strategy 'queues'",
        ),
        (
            vec!["--load", "constant:rate=1", "--profile", "h100"],
            "not a built-in profile (llama-3.1-8b-a100, mistral-7b-rtx4090)",
        ),
    ];
    for (args, needle) in cases {
        let out = simulate(&f, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
    let none = simulate(&isvc_file(dir.path(), &[]), &["--load", "constant:rate=1"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        stderr(&none).contains("no scaling.io/strategy annotation"),
        "{}",
        stderr(&none)
    );
}

#[test]
fn keda_scales_to_zero_a_cooldown_after_the_last_active_poll() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(
        dir.path(),
        &[
            ("scaling.io/strategy", "tokens"),
            ("scaling.io/min-replicas", "0"),
        ],
    );
    let v = json(&simulate(
        &f,
        &[
            "--load",
            "step:from=2,to=0,at=5m",
            "--duration",
            "20m",
            "--output",
            "json",
        ],
    ));
    let timeline = v["timeline"].as_array().unwrap();
    let zero_at = timeline
        .iter()
        .find(|t| t["currentReplicas"] == 0)
        .map(|t| t["t"].as_f64().unwrap())
        .unwrap();
    let last_active = timeline
        .iter()
        .filter(|t| t["kedaActive"] == true)
        .map(|t| t["t"].as_f64().unwrap())
        .fold(0.0, f64::max);
    // The token rate stays above zero while its 1m window still holds the last requests;
    // KEDA then waits cooldownPeriod (300 s) from the last active poll, checked every 30 s.
    assert!((300.0..=420.0).contains(&last_active), "{last_active}");
    assert!(
        zero_at > last_active + 300.0 - 15.0 && zero_at <= last_active + 300.0 + 45.0,
        "{zero_at} {last_active}"
    );
    assert!(
        timeline
            .iter()
            .filter(|t| t["t"].as_f64() > Some(zero_at))
            .all(|t| t["currentReplicas"] == 0)
    );
}

/// Any window the planner accepts is simulated: it is read back by Prometheus' grammar,
/// which has weeks, not by the command line's duration syntax, which does not.
#[test]
fn every_window_the_planner_accepts_is_simulated() {
    let dir = tempfile::tempdir().unwrap();
    for window in ["1w", "1m30s", "90s"] {
        let f = isvc_file(
            dir.path(),
            &[
                ("scaling.io/strategy", "queue"),
                ("scaling.io/window", window),
            ],
        );
        let out = simulate(&f, &["--load", "constant:rate=1", "--duration", "5m"]);
        assert!(out.status.success(), "{window}: {}", stderr(&out));
    }
}

#[test]
fn signals_replay_through_keda_and_the_hpa_with_the_controllers_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = isvc_file(
        dir.path(),
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/max-replicas", "12"),
        ],
    );
    let signals = dir.path().join("signals.csv");
    std::fs::write(&signals, "t,trigger,value\n10,queue,60\n40,queue,0\n").unwrap();
    let signals = signals.to_str().unwrap();
    let run = |flags: &[&str]| {
        let mut args = vec!["--signals", signals, "--output", "json"];
        args.extend_from_slice(flags);
        let v = json(&simulate(&file, &args));
        v["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["desired"] != k["currentReplicas"])
            .map(|k| (k["t"].as_f64().unwrap(), k["desired"].as_u64().unwrap()))
            .collect::<Vec<_>>()
    };
    // The generated ScaledObject sets no HPA behavior: up by max(2 x current, 4) per sync.
    assert_eq!(
        run(&[
            "--hpa-sync-period",
            "2s",
            "--hpa-downscale-stabilization",
            "20s"
        ]),
        [(10.0, 4), (12.0, 8), (14.0, 12), (60.0, 1)]
    );
    // The controller's defaults: a 15 s sync and a 5 m window.
    assert_eq!(run(&[]), [(15.0, 4), (30.0, 8), (45.0, 12), (345.0, 1)]);

    std::fs::write(dir.path().join("bad.csv"), "t,trigger,value\n1,tokens,3\n").unwrap();
    let bad = simulate(
        &file,
        &["--signals", dir.path().join("bad.csv").to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad)
            .contains("trigger 'tokens' is not in the ScaledObject; its triggers are: queue"),
        "{}",
        stderr(&bad)
    );
}

/// `simulate` under a 2 GiB address-space limit: a run that tries to allocate past the bounds
/// of one run dies here (as it used to) instead of taking the machine down with it.
fn simulate_capped(file: &Path, args: &[&str]) -> Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 2097152 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
        .arg("simulate")
        .arg("-f")
        .arg(file)
        .args(args)
        .output()
        .unwrap()
}

fn refused(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
    assert!(out.stdout.is_empty());
}

/// Each of these ran out of memory (or would take days) before the bounds of one run were
/// checked; each is now refused before anything is generated, naming the flag or the line.
#[test]
fn runs_past_the_bounds_are_refused_naming_the_flag_and_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(dir.path(), &[("scaling.io/strategy", "queue")]);
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };

    // A high constant rate over the allowed 31 days: 2.7e11 arrivals.
    refused(
        &simulate_capped(&f, &["--load", "constant:rate=100000", "--duration", "31d"]),
        &[
            "--load 'constant:rate=100000' over 31.0 days",
            "5000000 requests",
        ],
    );
    // The peak of a shape counts: arrivals are drawn at it.
    refused(
        &simulate_capped(
            &f,
            &[
                "--load",
                "bursty:base=1,peak=5000,every=1h,length=1m",
                "--duration",
                "1d",
            ],
        ),
        &["peak rate 5000/s", "lower the rate or --duration"],
    );
    // One timeline entry per HPA sync.
    refused(
        &simulate_capped(
            &f,
            &[
                "--load",
                "constant:rate=1",
                "--duration",
                "31d",
                "--hpa-sync-period",
                "1s",
            ],
        ),
        &["--hpa-sync-period 1s is 2678400 HPA syncs", "200000"],
    );

    let signals = file("s.csv", "t,trigger,value\n0,queue,1\n");
    // --signals took any --duration.
    refused(
        &simulate_capped(&f, &["--signals", &signals, "--duration", "100000d"]),
        &["--duration: '100000d' is out of range; simulate between 1m and 31d"],
    );
    // A signal time of 1e12 made the default duration 1e12 s.
    let far = file("far.csv", "t,trigger,value\n0,queue,1\n1e12,queue,0\n");
    refused(
        &simulate_capped(&f, &["--signals", &far]),
        &["line 3: t 1000000000000 is past the 31 days (2678400 s)"],
    );
    for bad in ["NaN", "inf", "-1", "-inf"] {
        let p = file("bad.csv", &format!("t,trigger,value\n{bad},queue,1\n"));
        refused(&simulate_capped(&f, &["--signals", &p]), &["line 2: t '"]);
    }

    // A trace spanning 1e12 s made the default duration as long.
    let trace = file(
        "t.csv",
        "arrival,prompt_tokens,output_tokens\n0,10,5\n1e12,10,5\n",
    );
    refused(
        &simulate_capped(&f, &["--trace", &trace]),
        &[
            "line 3: this request arrives 1000000000000 s after the one on line 2",
            "31 days",
        ],
    );
    for bad in ["NaN", "inf", "-5"] {
        let p = file(
            "bad.csv",
            &format!("arrival,prompt_tokens,output_tokens\n{bad},10,5\n"),
        );
        refused(&simulate_capped(&f, &["--trace", &p]), &["is not a time"]);
    }

    // Each modelled pod runs a model server: a max of 100000 is refused for the model, not
    // for --signals, which models none.
    let wide = isvc_file(
        dir.path(),
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/max-replicas", "100000"),
        ],
    );
    refused(
        &simulate_capped(&wide, &["--load", "constant:rate=1", "--duration", "1m"]),
        &[
            "max replicas 100000",
            "scaling.io/max-replicas to at most 1000",
        ],
    );
    let out = simulate_capped(&wide, &["--signals", &signals]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The duration --signals picks on its own includes the cooldown, which an annotation may set
/// to 68 years: it stops at the 31 days one run covers.
#[test]
fn signals_without_duration_stop_at_31_days_whatever_the_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(
        dir.path(),
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/cooldown-period", "2147483647"),
        ],
    );
    let signals = dir.path().join("s.csv");
    std::fs::write(&signals, "t,trigger,value\n0,queue,1\n").unwrap();
    let v = json(&simulate_capped(
        &f,
        &[
            "--signals",
            signals.to_str().unwrap(),
            "--output",
            "json",
            "--hpa-sync-period",
            "60s",
        ],
    ));
    let timeline = v["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 44_639, "{}", timeline.len());
    assert!(timeline.last().unwrap()["t"].as_f64().unwrap() < 31.0 * 86400.0);
}

/// What spreadsheets and other tools write: a byte-order mark, CRLF line ends, rows out of
/// order, duplicate times, quoted cells, extra columns.
#[test]
fn csv_files_as_tools_write_them_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(dir.path(), &[("scaling.io/strategy", "queue")]);
    let trace = dir.path().join("t.csv");
    std::fs::write(
        &trace,
        "\u{feff}\"arrival\",prompt_tokens,output_tokens,extra\r\n5,10,5,x\r\n1,10,5,y\r\n1,20,5,z\r\n",
    )
    .unwrap();
    let v = json(&simulate(
        &f,
        &["--trace", trace.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(v["summary"]["requests"], 3);

    let signals = dir.path().join("s.csv");
    std::fs::write(
        &signals,
        "\u{feff}t,trigger,value\r\n10,queue,60\r\n10,queue,60\r\n40,queue,0\r\n",
    )
    .unwrap();
    let out = simulate(
        &f,
        &[
            "--signals",
            signals.to_str().unwrap(),
            "--hpa-sync-period",
            "2s",
            "--hpa-downscale-stabilization",
            "20s",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("t=   10.0s  1 -> 4"));
    // Out of order within one trigger is refused: a replay needs its changes in order.
    std::fs::write(&signals, "t,trigger,value\n10,queue,1\n5,queue,2\n").unwrap();
    refused(
        &simulate(&f, &["--signals", signals.to_str().unwrap()]),
        &["line 3: t 5 is earlier than the previous row"],
    );
}

/// A line of commas used to be split into one slice per comma (16 bytes each): 64 MiB of
/// them took over a GiB. Only the columns read are split out now.
#[test]
fn a_line_of_commas_costs_no_more_than_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(dir.path(), &[("scaling.io/strategy", "queue")]);
    let commas = ",".repeat(64 << 20);
    let trace = dir.path().join("t.csv");
    std::fs::write(
        &trace,
        format!("arrival,prompt_tokens,output_tokens\n1,10,5{commas}\n2,10,5\n"),
    )
    .unwrap();
    let out = simulate_capped(
        &f,
        &["--trace", trace.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(json(&out)["summary"]["requests"], 2);
    let signals = dir.path().join("s.csv");
    std::fs::write(&signals, format!("t,trigger,value{commas}\n1,queue,3\n")).unwrap();
    let out = simulate_capped(&f, &["--signals", signals.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Input files are read up to a bound, not whole: a 300 MiB trace is refused with the
/// bound, and a manifest over 4 MiB too (a YAML document takes up to a hundred times its size
/// to parse), or one nesting brackets a million deep (the parser is quadratic in the depth).
#[test]
fn oversized_files_are_refused_with_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let f = isvc_file(dir.path(), &[("scaling.io/strategy", "queue")]);
    let trace = dir.path().join("big.csv");
    let file = std::fs::File::create(&trace).unwrap();
    file.set_len(300 << 20).unwrap();
    refused(
        &simulate_capped(&f, &["--trace", trace.to_str().unwrap()]),
        &["is larger than 256 MiB"],
    );
    let manifest = dir.path().join("big.yaml");
    std::fs::write(&manifest, format!("# {}\n", "x".repeat(9 << 20))).unwrap();
    refused(
        &simulate_capped(&manifest, &["--load", "constant:rate=1"]),
        &["is larger than 4 MiB"],
    );
    std::fs::write(&manifest, format!("a: {}", "{a: ".repeat(1_000_000))).unwrap();
    refused(
        &simulate_capped(&manifest, &["--load", "constant:rate=1"]),
        &["nests '[' and '{' more than 1000 deep"],
    );
}
