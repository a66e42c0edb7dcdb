//! Request arrivals: generated shapes (`--load`) or a recorded trace (`--trace`).

use super::limits;
use super::rng::Rng;
use crate::core::text::duration;

/// Header columns a CSV may have; more are not looked at.
pub const MAX_COLUMNS: usize = 64;

/// One request as the model server sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request {
    /// Seconds from the start of the run.
    pub arrival: f64,
    pub prompt: u32,
    pub output: u32,
}

/// Requests per second over time.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    Constant {
        rate: f64,
    },
    Step {
        from: f64,
        to: f64,
        at: f64,
    },
    Ramp {
        from: f64,
        to: f64,
        start: f64,
        over: f64,
    },
    Diurnal {
        min: f64,
        max: f64,
        period: f64,
    },
    Bursty {
        base: f64,
        peak: f64,
        every: f64,
        length: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoadSpec {
    pub shape: Shape,
    pub prompt: Option<u32>,
    pub output: Option<u32>,
}

pub const FORMS: &str = "constant:rate=R | step:from=R,to=R,at=DURATION | ramp:from=R,to=R[,start=DURATION],over=DURATION | diurnal:min=R,max=R[,period=DURATION] | bursty:base=R,peak=R,every=DURATION,length=DURATION; each may add prompt=TOKENS,output=TOKENS (R in requests per second)";

impl Shape {
    pub fn rate(&self, t: f64) -> f64 {
        match *self {
            Shape::Constant { rate } => rate,
            Shape::Step { from, to, at } => {
                if t < at {
                    from
                } else {
                    to
                }
            }
            Shape::Ramp {
                from,
                to,
                start,
                over,
            } => {
                let x = ((t - start) / over).clamp(0.0, 1.0);
                from + (to - from) * x
            }
            Shape::Diurnal { min, max, period } => {
                let phase = std::f64::consts::TAU * t / period;
                min + (max - min) * (1.0 - phase.cos()) / 2.0
            }
            Shape::Bursty {
                base,
                peak,
                every,
                length,
            } => {
                let since = t % every;
                if t >= every && since < length {
                    peak
                } else {
                    base
                }
            }
        }
    }

    /// The highest rate the shape reaches: arrivals are drawn at this rate and thinned.
    pub fn max_rate(&self) -> f64 {
        match *self {
            Shape::Constant { rate } => rate,
            Shape::Step { from, to, .. } | Shape::Ramp { from, to, .. } => from.max(to),
            Shape::Diurnal { min, max, .. } => min.max(max),
            Shape::Bursty { base, peak, .. } => base.max(peak),
        }
    }

    /// When the load jumps up, for "time to react to a step".
    pub fn step_at(&self) -> Option<f64> {
        match *self {
            Shape::Step { from, to, at } if to > from => Some(at),
            Shape::Bursty {
                base, peak, every, ..
            } if peak > base => Some(every),
            _ => None,
        }
    }
}

/// Parses `KIND:key=value,...`.
pub fn parse(text: &str) -> Result<LoadSpec, String> {
    let bad = |why: String| {
        format!(
            "--load '{}': {why}; forms: {FORMS}",
            crate::core::text::clip(text)
        )
    };
    let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
    let allowed: &[&str] = match kind {
        "constant" => &["rate"],
        "step" => &["from", "to", "at"],
        "ramp" => &["from", "to", "start", "over"],
        "diurnal" => &["min", "max", "period"],
        "bursty" => &["base", "peak", "every", "length"],
        other => {
            return Err(bad(format!(
                "unknown load '{}'; allowed: constant, step, ramp, diurnal, bursty",
                crate::core::text::clip(other)
            )));
        }
    };
    let mut values: Vec<(&str, &str)> = Vec::new();
    for pair in rest.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            bad(format!(
                "'{}' is not key=value",
                crate::core::text::clip(pair)
            ))
        })?;
        if !allowed.contains(&k) && k != "prompt" && k != "output" {
            return Err(bad(format!(
                "unknown key '{}' for {kind}; allowed: {}, prompt, output",
                crate::core::text::clip(k),
                allowed.join(", ")
            )));
        }
        if values.iter().any(|(seen, _)| *seen == k) {
            return Err(bad(format!("key '{k}' is given twice")));
        }
        values.push((k, v));
    }
    let get = |k: &str| values.iter().find(|(seen, _)| *seen == k).map(|(_, v)| *v);
    let rate = |k: &str| -> Result<f64, String> {
        let v = get(k).ok_or_else(|| bad(format!("{kind} needs {k}")))?;
        match v.parse::<f64>() {
            Ok(r) if (0.0..=100_000.0).contains(&r) => Ok(r),
            _ => Err(bad(format!(
                "{k}={} is not a rate; use requests per second from 0 to 100000",
                crate::core::text::clip(v)
            ))),
        }
    };
    let span = |k: &str, default: Option<f64>| -> Result<f64, String> {
        match (get(k), default) {
            (Some(v), _) => {
                let s = duration::parse(&format!("--load {kind} {k}"), v)?;
                Ok(s)
            }
            (None, Some(d)) => Ok(d),
            (None, None) => Err(bad(format!("{kind} needs {k}"))),
        }
    };
    let tokens = |k: &str| -> Result<Option<u32>, String> {
        get(k)
            .map(|v| match v.parse::<u32>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err(bad(format!(
                    "{k}={} is not a token count; use a whole number from 1 to 1000000",
                    crate::core::text::clip(v)
                ))),
            })
            .transpose()
    };
    let shape = match kind {
        "constant" => Shape::Constant {
            rate: rate("rate")?,
        },
        "step" => Shape::Step {
            from: rate("from")?,
            to: rate("to")?,
            at: span("at", None)?,
        },
        "ramp" => Shape::Ramp {
            from: rate("from")?,
            to: rate("to")?,
            start: span("start", Some(0.0))?,
            over: span("over", None)?.max(1e-9),
        },
        "diurnal" => Shape::Diurnal {
            min: rate("min")?,
            max: rate("max")?,
            period: span("period", Some(86400.0))?.max(1.0),
        },
        _ => {
            let every = span("every", None)?;
            if every <= 0.0 {
                return Err(bad("every must be longer than 0s".into()));
            }
            Shape::Bursty {
                base: rate("base")?,
                peak: rate("peak")?,
                every,
                length: span("length", None)?,
            }
        }
    };
    Ok(LoadSpec {
        shape,
        prompt: tokens("prompt")?,
        output: tokens("output")?,
    })
}

/// Poisson arrivals following the shape (thinning), each request's lengths drawn uniformly
/// within +-50 % of the mean.
pub fn generate(
    spec: &LoadSpec,
    duration: f64,
    prompt: u32,
    output: u32,
    rng: &mut Rng,
) -> Vec<Request> {
    let prompt = spec.prompt.unwrap_or(prompt);
    let output = spec.output.unwrap_or(output);
    let max = spec.shape.max_rate();
    let mut out = Vec::new();
    if max <= 0.0 {
        return out;
    }
    let spread = |mean: u32, rng: &mut Rng| -> u32 {
        let x = f64::from(mean) * (0.5 + rng.unit());
        (x.round() as u32).max(1)
    };
    let mut t = 0.0;
    loop {
        t += rng.exponential(1.0 / max);
        if t >= duration {
            break;
        }
        let keep = rng.unit() * max < spec.shape.rate(t);
        let p = spread(prompt, rng);
        let o = spread(output, rng);
        if keep {
            out.push(Request {
                arrival: t,
                prompt: p,
                output: o,
            });
        }
    }
    out
}

/// Reads a CSV trace with a header row. Columns: arrival time (`arrival`, `time`,
/// `timestamp` in seconds, or the Azure LLM inference traces' `TIMESTAMP` date-time),
/// prompt tokens (`prompt_tokens` or `ContextTokens`), output tokens (`output_tokens` or
/// `GeneratedTokens`). Times are made relative to the earliest request.
pub fn parse_trace(origin: &str, text: &str) -> Result<Vec<Request>, String> {
    const TIME: [&str; 4] = ["arrival", "time", "timestamp", "TIMESTAMP"];
    const PROMPT: [&str; 2] = ["prompt_tokens", "ContextTokens"];
    const OUTPUT: [&str; 2] = ["output_tokens", "GeneratedTokens"];
    // Spreadsheet exports start with a byte-order mark, which would hide the first column.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| {
        format!("trace {origin}: empty; expected a header row and one row per request")
    })?;
    let names: Vec<&str> = header
        .split(',')
        .take(MAX_COLUMNS)
        .map(|c| c.trim().trim_matches('"'))
        .collect();
    let find = |wanted: &[&str], what: &str| {
        names
            .iter()
            .position(|n| wanted.contains(n))
            .ok_or_else(|| {
                format!(
                    "trace {origin} line 1: no {what} column; expected one of {} (found: {})",
                    wanted.join(", "),
                    crate::core::text::clip(header)
                )
            })
    };
    let (ti, pi, oi) = (
        find(&TIME, "arrival time")?,
        find(&PROMPT, "prompt tokens")?,
        find(&OUTPUT, "output tokens")?,
    );
    let read = ti.max(pi).max(oi) + 1;
    let mut out = Vec::new();
    // The earliest and latest arrival and their lines, for the span check.
    let mut first = (f64::INFINITY, 0);
    let mut last = (f64::NEG_INFINITY, 0);
    for (i, line) in lines {
        let n = i + 1;
        if out.len() as u64 == limits::MAX_REQUESTS {
            return Err(format!(
                "trace {origin} line {n}: more than {} requests, the most simulate holds; cut the trace",
                limits::MAX_REQUESTS
            ));
        }
        // Only the columns read are split out, so a line of commas costs nothing.
        let cells: Vec<&str> = line
            .split(',')
            .take(read)
            .map(|c| c.trim().trim_matches('"'))
            .collect();
        let cell = |idx: usize| -> Result<&str, String> {
            cells.get(idx).copied().ok_or_else(|| {
                format!(
                    "trace {origin} line {n}: {} cells, but column '{}' is number {}",
                    cells.len(),
                    names[idx],
                    idx + 1
                )
            })
        };
        let arrival = time_of(cell(ti)?).ok_or_else(|| {
            format!(
                "trace {origin} line {n}: column '{}' value '{}' is not a time; use seconds (e.g. 12.5) or a date-time like 2023-11-16 18:15:46.6805900",
                names[ti],
                crate::core::text::clip(cells[ti])
            )
        })?;
        let count = |idx: usize| -> Result<u32, String> {
            let v = cell(idx)?;
            v.parse::<u32>().map_err(|_| {
                format!(
                    "trace {origin} line {n}: column '{}' value '{}' is not a token count; use a whole number of 0 or more",
                    names[idx],
                    crate::core::text::clip(v)
                )
            })
        };
        if arrival < first.0 {
            first = (arrival, n);
        }
        if arrival > last.0 {
            last = (arrival, n);
        }
        out.push(Request {
            arrival,
            prompt: count(pi)?,
            output: count(oi)?.max(1),
        });
    }
    if out.is_empty() {
        return Err(format!(
            "trace {origin}: the header is there but no request row follows"
        ));
    }
    let span = last.0 - first.0;
    if span > limits::MAX_SECONDS {
        return Err(format!(
            "trace {origin} line {}: this request arrives {span} s after the one on line {}, but simulate covers at most 31 days ({} s); cut the trace",
            last.1,
            first.1,
            limits::MAX_SECONDS
        ));
    }
    out.sort_by(|a, b| a.arrival.total_cmp(&b.arrival));
    let first = out[0].arrival;
    for r in &mut out {
        r.arrival -= first;
    }
    Ok(out)
}

/// Seconds as a number, or `YYYY-MM-DD HH:MM:SS[.fraction]` as seconds since 1970.
fn time_of(s: &str) -> Option<f64> {
    if let Ok(v) = s.parse::<f64>() {
        return (v.is_finite() && v >= 0.0).then_some(v);
    }
    let (date, clock) = s.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(str::parse::<i32>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date = time::Date::from_calendar_date(y, month, u8::try_from(day).ok()?).ok()?;
    let mut c = clock.trim_end_matches('Z').splitn(3, ':');
    let (h, mi, sec) = (
        c.next()?.parse::<u32>().ok()?,
        c.next()?.parse::<u32>().ok()?,
        c.next()?.parse::<f64>().ok()?,
    );
    if h > 23 || mi > 59 || !(0.0..61.0).contains(&sec) {
        return None;
    }
    let days = f64::from(date.to_julian_day() - 2_440_588);
    Some(days * 86400.0 + f64::from(h * 3600 + mi * 60) + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_their_parameters() {
        let s = parse("step:from=1,to=5,at=10m").unwrap().shape;
        assert_eq!(
            (s.rate(599.0), s.rate(600.0), s.step_at()),
            (1.0, 5.0, Some(600.0))
        );
        let r = parse("ramp:from=0,to=10,over=100s").unwrap().shape;
        assert_eq!((r.rate(0.0), r.rate(50.0), r.rate(500.0)), (0.0, 5.0, 10.0));
        let d = parse("diurnal:min=2,max=10,period=1h").unwrap().shape;
        assert_eq!((d.rate(0.0), d.rate(1800.0)), (2.0, 10.0));
        let b = parse("bursty:base=1,peak=9,every=5m,length=30s")
            .unwrap()
            .shape;
        assert_eq!(
            (b.rate(10.0), b.rate(310.0), b.rate(340.0)),
            (1.0, 9.0, 1.0)
        );
        let c = parse("constant:rate=3,prompt=100,output=20").unwrap();
        assert_eq!((c.prompt, c.output), (Some(100), Some(20)));
    }

    #[test]
    fn bad_loads_name_the_key_value_and_forms() {
        for (text, needle) in [
            ("sine:rate=1", "unknown load 'sine'"),
            ("constant:rte=1", "unknown key 'rte'"),
            ("constant:rate=fast", "rate=fast is not a rate"),
            ("step:from=1,to=2", "step needs at"),
            ("step:from=1,to=2,at=10", "'10' is not a duration"),
            ("constant:rate=1,prompt=0", "prompt=0 is not a token count"),
            ("constant:rate", "'rate' is not key=value"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn generated_arrivals_match_the_rate_and_the_seed() {
        let spec = parse("constant:rate=4").unwrap();
        let a = generate(&spec, 1000.0, 100, 50, &mut Rng::new(1));
        let b = generate(&spec, 1000.0, 100, 50, &mut Rng::new(1));
        assert_eq!(a, b);
        assert!((3600..4400).contains(&a.len()), "{}", a.len());
        assert!(
            a.iter()
                .all(|r| (50..=150).contains(&r.prompt) && (25..=75).contains(&r.output))
        );
        assert_ne!(a, generate(&spec, 1000.0, 100, 50, &mut Rng::new(2)));
    }

    #[test]
    fn traces_accept_our_columns_and_azure_columns() {
        let ours = parse_trace(
            "t.csv",
            "arrival,prompt_tokens,output_tokens\n10.5,100,20\n10,50,5\n",
        )
        .unwrap();
        assert_eq!(
            ours[0],
            Request {
                arrival: 0.0,
                prompt: 50,
                output: 5
            }
        );
        assert_eq!(ours[1].arrival, 0.5);
        let azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 23:59:59.5000000,4808,10\n2023-11-17 00:00:01.0000000,3180,8\n";
        let a = parse_trace("azure.csv", azure).unwrap();
        assert_eq!((a[1].arrival, a[1].prompt, a[1].output), (1.5, 3180, 8));
    }

    #[test]
    fn bad_trace_rows_name_line_column_and_value() {
        let e = parse_trace(
            "t.csv",
            "arrival,prompt_tokens,output_tokens\n1,10,5\n2,ten,5\n",
        )
        .unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("'prompt_tokens' value 'ten'"),
            "{e}"
        );
        let e = parse_trace("t.csv", "arrival,prompt_tokens,output_tokens\n1,10\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("output_tokens"), "{e}");
        let e = parse_trace("t.csv", "when,prompt_tokens,output_tokens\n1,10,5\n").unwrap_err();
        assert!(
            e.contains("no arrival time column") && e.contains("TIMESTAMP"),
            "{e}"
        );
        let e = parse_trace(
            "t.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-13-01 00:00:00,1,1\n",
        )
        .unwrap_err();
        assert!(e.contains("'2023-13-01 00:00:00' is not a time"), "{e}");
        assert!(parse_trace("t.csv", "").unwrap_err().contains("empty"));
    }
}
