//! The metrics every crate declares (`METRICS` tables of `capsight_runtime::metrics::Metric`)
//! are exactly the ones `docs/operations.md` documents, with the same type and labels, and
//! follow the naming conventions. (`deploy/local/checks/30-observability` checks the dashboard
//! and the alerting rules against the same table.)

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::collections::BTreeMap;

use capsight_e2e::repo_root;
use capsight_runtime::metrics::Metric;

fn declared() -> Vec<Metric> {
    [
        capsight_runtime::metrics::METRICS,
        capsight_publisher::METRICS,
        capsight_kafka::METRICS,
        capsight_scorer::metrics::METRICS,
        capsight_gateway::metrics::METRICS,
        capsight_launch::metrics::METRICS,
        capsight_launcher::metrics::METRICS,
        capsight_probe::metrics::METRICS,
        capsight_notify::metrics::METRICS,
    ]
    .concat()
}

/// `name -> (type, labels)` from the documentation table's rows.
fn documented() -> BTreeMap<String, (String, Vec<String>)> {
    let doc = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    doc.lines()
        .filter(|l| l.starts_with("| `capsight_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let labels = cells[3]
                .split(',')
                .map(|s| s.trim().trim_matches('`').to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            (name, (cells[2].to_owned(), labels))
        })
        .collect()
}

#[test]
fn every_declared_metric_is_documented_and_nothing_else() {
    let declared = declared();
    let documented = documented();
    let mut names: Vec<&str> = declared.iter().map(|m| m.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "a metric is declared twice");
    for m in &declared {
        assert_eq!(m.convention_error(), None);
        let (kind, labels) = documented
            .get(m.name)
            .unwrap_or_else(|| panic!("{} is not in docs/operations.md", m.name));
        assert_eq!(kind, m.kind.as_str(), "{}: type", m.name);
        assert_eq!(labels, &m.labels, "{}: labels", m.name);
        assert!(
            !m.labels
                .iter()
                .any(|l| ["tenant", "key", "job_id", "api_key"].contains(l)),
            "{}: an unbounded label",
            m.name
        );
    }
    for name in documented.keys() {
        assert!(
            names.contains(&name.as_str()),
            "docs/operations.md documents {name}, which no crate declares"
        );
    }
}
