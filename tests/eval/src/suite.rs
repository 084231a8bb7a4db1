//! The library: every `<library>/<pair>/{scenario,workload}.toml`, run one after the other with
//! the same options, each into `<out>/<pair>/`, and a `summary.md` over all of them.
//!
//! Contract: a pair that fails is reported in the summary with its error and does not stop the
//! others (Ctrl-C does).

use std::{fmt::Write as _, path::Path};

use crate::run::{self, RunError, RunOptions};

/// The pairs of `library`, sorted by directory name.
pub fn pairs(library: &Path) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(library)? {
        let dir = entry?.path();
        if dir.join("scenario.toml").is_file() && dir.join("workload.toml").is_file() {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, dir));
        }
    }
    out.sort();
    Ok(out)
}

/// Runs every pair of `library` with `base` (its scenario, workload and out are replaced);
/// returns the summary's Markdown.
pub async fn suite(library: &Path, base: &RunOptions) -> Result<String, RunError> {
    let pairs = pairs(library).map_err(|source| RunError::Write {
        path: library.display().to_string(),
        source,
    })?;
    let mut md = String::new();
    let _ = writeln!(md, "# Evaluation library summary\n");
    let _ = writeln!(
        md,
        "- command: `{}`\n- commit `{}`, time scale {}x, {} repeat(s)\n",
        base.command,
        run::commit(),
        base.time_scale,
        base.repeats
    );
    let _ = writeln!(
        md,
        "| pair | arm | satisfied | failed attempts | failed / success | p50 min | p90 min |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let mut first = true;
    for (name, dir) in pairs {
        let opts = RunOptions {
            scenario: dir.join("scenario.toml"),
            workload: dir.join("workload.toml"),
            out: base.out.join(&name),
            // the stack is brought up once
            stack_up: base.stack_up && first,
            ..base.clone()
        };
        first = false;
        println!("== {name}");
        match run::run(&opts).await {
            Ok(report) => {
                println!("{}", run::console_summary(&report));
                for a in report.repeats.first().into_iter().flatten() {
                    let fmt =
                        |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
                    let _ = writeln!(
                        md,
                        "| [{name}]({name}/report.md) | {} | {}/{} | {} | {} | {} | {} |",
                        a.arm,
                        a.satisfied,
                        a.requests,
                        a.failed_attempts,
                        a.failed_per_success
                            .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
                        fmt(a.minutes_to_running.0),
                        fmt(a.minutes_to_running.1)
                    );
                }
            }
            Err(RunError::Interrupted) => return Err(RunError::Interrupted),
            Err(e) => {
                eprintln!("{name}: {e}");
                let _ = writeln!(md, "| {name} | failed: {e} | | | | | |");
            }
        }
    }
    std::fs::create_dir_all(&base.out).map_err(|source| RunError::Write {
        path: base.out.display().to_string(),
        source,
    })?;
    std::fs::write(base.out.join("summary.md"), &md).map_err(|source| RunError::Write {
        path: base.out.display().to_string(),
        source,
    })?;
    Ok(md)
}
