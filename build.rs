//! Build facts for `kserve-keda-webhook version`: commit, build date, compiler. Every one
//! falls back to "unknown" so a source tarball without `.git` (or without `git`) still builds.

use std::process::Command;

fn main() {
    let commit = run("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(unknown);
    // SOURCE_DATE_EPOCH keeps reproducible builds reproducible; otherwise the commit time,
    // so two builds of one commit report the same date.
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| run("git", &["log", "-1", "--format=%ct"]).and_then(|s| s.parse().ok()));
    let date = epoch.map_or_else(unknown, rfc3339_date);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc = run(&rustc, &["-V"]).unwrap_or_else(unknown);

    println!("cargo:rustc-env=KKW_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=KKW_BUILD_DATE={date}");
    println!("cargo:rustc-env=KKW_RUSTC_VERSION={rustc}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    // Re-run when HEAD or the branch it points at moves. Only existing paths are named: Cargo
    // re-runs a script on every build when a named path is missing (a tarball has no .git).
    let branch = run("git", &["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = run("git", &["rev-parse", "--git-path", name])
            .filter(|p| std::path::Path::new(p).exists())
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn unknown() -> String {
    "unknown".to_string()
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC), without a date crate in the build.
fn rfc3339_date(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Civil-from-days over the proleptic Gregorian calendar (era = 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
