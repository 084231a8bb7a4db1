//! The harness end to end on the smoke pair (`tests/eval/smoke`): capsight through its real
//! pipeline, blind failover and the oracle, each against its own cloudsim. Asserts only what
//! cannot be noise: every request is accounted for in every arm, the oracle never fails an
//! attempt and satisfies at least as many requests as any arm, and the report is complete.
//! Runs in `deploy/local/stack test` (the stack is up and the binaries are built).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use capsight_eval::{
    report::SECTIONS,
    run::{self, RunOptions},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smoke_pair_accounts_for_every_request_and_the_oracle_is_the_bound() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smoke = run::repo_root().join("tests/eval/smoke");
    let out = std::env::temp_dir().join(format!(
        "capsight-eval-smoke-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let opts = RunOptions {
        scenario: smoke.join("scenario.toml"),
        workload: smoke.join("workload.toml"),
        arms: vec!["capsight".into(), "blind-failover".into(), "oracle".into()],
        seed: None,
        time_scale: 30.0,
        repeats: 1,
        out: out.clone(),
        stack_up: false,
        model: None,
        command: "eval_smoke".into(),
    };
    let report = run::run(&opts).await.unwrap();
    println!("{}", run::console_summary(&report));
    let arms = &report.repeats[0];
    assert_eq!(arms.len(), 3);
    for a in arms {
        assert!(a.requests > 0, "{}: no requests", a.arm);
        assert_eq!(
            a.satisfied + a.unsatisfied,
            a.requests,
            "{}: every request accounted for",
            a.arm
        );
    }
    let oracle = arms.iter().find(|a| a.arm == "oracle").unwrap();
    assert_eq!(
        oracle.failed_attempts, 0,
        "the oracle launches only where stock is"
    );
    assert!(
        oracle.errors.is_empty(),
        "oracle errors: {:?}",
        oracle.errors
    );
    for a in arms {
        assert!(
            oracle.satisfied >= a.satisfied,
            "oracle satisfied {} < {} of {}",
            oracle.satisfied,
            a.satisfied,
            a.arm
        );
    }
    for file in [
        "report.json",
        "report.md",
        "time_to_running.svg",
        "reliability.svg",
    ] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let mut at = 0;
    for section in SECTIONS {
        let pos = md[at..]
            .find(section)
            .unwrap_or_else(|| panic!("{section} missing or out of order in\n{md}"));
        at += pos + section.len();
    }
    for a in arms {
        assert!(
            md.contains(&format!("| {} |", a.arm)),
            "{} in the report",
            a.arm
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["repeats"][0].as_array().unwrap().len(), 3);
    let capsight = arms.iter().find(|a| a.arm == "capsight").unwrap();
    assert!(
        capsight.verdicts.is_some() && capsight.preflight.is_some() && capsight.detection.is_some()
    );
    let _ = std::fs::remove_dir_all(&out);
}
