//! Durations on the command line and in load specifications: `90s`, `100ms`, `2h`, `1h30m`.

/// Seconds in `text`, or a message naming the value and the accepted forms.
pub fn parse(what: &str, text: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "{what}: '{}' is not a duration; use a number with a unit, e.g. 500ms, 90s, 15m, 2h, 1h30m (units: ms, s, m, h, d)",
            crate::core::text::clip(text)
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_units_and_compounds() {
        assert_eq!(parse("d", "100ms"), Ok(0.1));
        assert_eq!(parse("d", "90s"), Ok(90.0));
        assert_eq!(parse("d", "1h30m"), Ok(5400.0));
        assert_eq!(parse("d", "1.5m"), Ok(90.0));
        assert_eq!(parse("d", "1d"), Ok(86400.0));
    }

    #[test]
    fn rejects_with_the_value_and_the_forms() {
        for bad in ["", "10", "s", "5 minutes", "1x", "-3s", "1..2s"] {
            let e = parse("--duration", bad).unwrap_err();
            assert!(e.starts_with("--duration: '"), "{e}");
            assert!(e.contains("ms, s, m, h, d"), "{e}");
        }
    }
}
