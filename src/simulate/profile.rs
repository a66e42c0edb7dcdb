//! A model on a GPU, as the simulator's model server needs it. Built-in profiles live in
//! `profiles/*.yaml` beside this file; each names where its numbers come from.

use serde::Deserialize;

use crate::core::strategy::Strategy;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// Where the numbers come from (benchmark, hardware, server version).
    pub source: String,
    /// vLLM `--max-num-seqs`: requests decoded together at most.
    pub max_num_seqs: u32,
    /// vLLM `--max-num-batched-tokens`: tokens one engine step may process (prefill budget).
    pub max_num_batched_tokens: u32,
    /// KV-cache capacity in tokens (what vLLM logs as "GPU KV cache size").
    pub kv_cache_tokens: u64,
    /// Time of one decode step with a single running request, in milliseconds.
    pub decode_step_ms: f64,
    /// What each further running request adds to a step, in milliseconds.
    pub decode_step_per_seq_ms: f64,
    /// Prefill time per prompt token, in milliseconds.
    pub prefill_ms_per_token: f64,
    /// Seconds from pod creation until it serves: scheduling, image pull, weights, warm-up.
    pub startup_seconds: f64,
    /// Default request shape when the load gives none.
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    /// Board power idle and fully busy, for the `power` strategy.
    #[serde(default)]
    pub idle_watts: f64,
    #[serde(default)]
    pub busy_watts: f64,
    /// Which built-in signal a `custom` trigger's query reads on this deployment. Without
    /// it a `custom` trigger cannot be simulated.
    #[serde(default)]
    pub custom_signal: Option<Strategy>,
}

/// The profiles shipped with the binary: (name, YAML).
pub const BUILT_IN: [(&str, &str); 2] = [
    (
        "llama-3.1-8b-a100",
        include_str!("profiles/llama-3.1-8b-a100.yaml"),
    ),
    (
        "mistral-7b-rtx4090",
        include_str!("profiles/mistral-7b-rtx4090.yaml"),
    ),
];

pub const DEFAULT: &str = "llama-3.1-8b-a100";

/// The shortest decode step a profile may give, in milliseconds.
pub const MIN_STEP_MS: f64 = 0.1;

pub fn built_in_names() -> String {
    BUILT_IN.map(|(n, _)| n).join(", ")
}

/// Parses and checks a profile; `origin` names the file in messages.
pub fn parse(origin: &str, text: &str) -> Result<Profile, String> {
    let p: Profile = serde_yaml_ng::from_str(text).map_err(|e| format!("profile {origin}: {e}"))?;
    let positive = [
        ("maxNumSeqs", f64::from(p.max_num_seqs)),
        ("maxNumBatchedTokens", f64::from(p.max_num_batched_tokens)),
        ("kvCacheTokens", p.kv_cache_tokens as f64),
        ("decodeStepMs", p.decode_step_ms),
        ("promptTokens", f64::from(p.prompt_tokens)),
        ("outputTokens", f64::from(p.output_tokens)),
    ];
    for (field, v) in positive {
        if !(v.is_finite() && v > 0.0) {
            return Err(format!(
                "profile {origin}: field {field} is {v}; it must be a number greater than 0"
            ));
        }
    }
    let non_negative = [
        ("decodeStepPerSeqMs", p.decode_step_per_seq_ms),
        ("prefillMsPerToken", p.prefill_ms_per_token),
        ("startupSeconds", p.startup_seconds),
        ("idleWatts", p.idle_watts),
        ("busyWatts", p.busy_watts),
    ];
    for (field, v) in non_negative {
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!(
                "profile {origin}: field {field} is {v}; it must be a number of 0 or more"
            ));
        }
    }
    // A step shorter than this would not move the clock forward at the end of a long run,
    // and no GPU decodes that fast.
    if p.decode_step_ms < MIN_STEP_MS {
        return Err(format!(
            "profile {origin}: field decodeStepMs is {}; it must be at least {MIN_STEP_MS} (a decode step takes milliseconds)",
            p.decode_step_ms
        ));
    }
    if p.kv_cache_tokens < u64::from(p.prompt_tokens) + u64::from(p.output_tokens) {
        return Err(format!(
            "profile {origin}: field kvCacheTokens is {}, smaller than one default request ({} prompt + {} output tokens); no request would fit",
            p.kv_cache_tokens, p.prompt_tokens, p.output_tokens
        ));
    }
    if p.custom_signal == Some(Strategy::Custom) {
        return Err(format!(
            "profile {origin}: field customSignal cannot be 'custom'; name the built-in signal the custom query reads: {}",
            Strategy::ALLOWED
        ));
    }
    Ok(p)
}

/// A built-in profile by name, or a YAML file by path.
pub fn load(name_or_path: &str) -> Result<Profile, String> {
    if let Some((n, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
        return parse(n, text);
    }
    let text = super::limits::read_yaml(name_or_path).map_err(|e| {
        format!(
            "--profile {}: not a built-in profile ({}) and not a readable file: {e}",
            crate::core::text::clip(name_or_path),
            built_in_names()
        )
    })?;
    parse(name_or_path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_parse_and_name_a_source() {
        for (name, text) in BUILT_IN {
            let p = parse(name, text).unwrap();
            assert_eq!(p.name, name);
            assert!(p.source.contains("http"), "{name} must name its source");
        }
    }

    #[test]
    fn unknown_and_bad_fields_are_named() {
        let (_, text) = BUILT_IN[0];
        let e = parse("x.yaml", &format!("{text}\nbatchSize: 3\n")).unwrap_err();
        assert!(
            e.contains("unknown field `batchSize`") && e.contains("maxNumSeqs"),
            "{e}"
        );
        let e = parse("x.yaml", &text.replace("decodeStepMs: ", "decodeStepMs: -")).unwrap_err();
        assert!(
            e.contains("decodeStepMs") && e.contains("greater than 0"),
            "{e}"
        );
        // Positive but too short for the clock to move at the end of a 31-day run.
        let line = text
            .lines()
            .find(|l| l.starts_with("decodeStepMs:"))
            .unwrap_or_default();
        let e = parse("x.yaml", &text.replace(line, "decodeStepMs: 1e-12")).unwrap_err();
        assert!(
            e.contains("decodeStepMs is 0.000000000001") && e.contains("at least 0.1"),
            "{e}"
        );
        let e = parse("x.yaml", &format!("{text}\ncustomSignal: queues\n")).unwrap_err();
        assert!(e.contains("queues"), "{e}");
        let e = load("/nonexistent/profile.yaml").unwrap_err();
        assert!(e.contains("llama-3.1-8b-a100"), "{e}");
    }
}
