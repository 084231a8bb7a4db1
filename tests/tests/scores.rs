//! `capsight-admin scores` reads the compacted scores topic and shows the latest score per key.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use capsight_e2e::admin_bin;
use capsight_testkit::{Sandbox, signals::score};

#[tokio::test(flavor = "multi_thread")]
async fn scores_table_shows_the_latest_score_per_key() {
    let sandbox = Sandbox::builder("scores").scores(2).start().await;
    for s in [
        score("aws/us-east-1/use1-az4/p5.48xlarge/spot", 91, 0.7),
        score("aws/us-east-1/use1-az4/p5.48xlarge/spot", 42, 0.7),
        score("aws/us-west-2//g6e.xlarge/on_demand", 65, 0.7),
    ] {
        sandbox.publish_score(&s).await;
    }
    let out = sandbox.command(admin_bin()).arg("scores").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 keys"), "{stdout}");
    let p5 = stdout
        .lines()
        .find(|l| l.starts_with("aws/us-east-1/use1-az4/p5.48xlarge/spot"))
        .unwrap();
    assert!(p5.contains(" 42 ") && p5.contains("unavailable"), "{p5}");
    assert!(stdout.contains("limited"), "{stdout}");
}
