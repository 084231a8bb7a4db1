//! The house rule, checked over `cargo metadata`: `proto/` is the contract and pure shared
//! knowledge and depends on nothing of ours outside it; `deploy/` is the platform and depends
//! only on itself and `proto/`; the service wings `collectors/`, `scorer/` and `gateway/` never
//! depend on each other (each may use `deploy/` and `proto/`); `tests/` may use anything, and any
//! crate may use the test kit (`tests/kit`) in its tests. See docs/ARCHITECTURE.md, "Wings".

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{collections::HashMap, process::Command};

use capsight_testkit::process::succeed;
use serde_json::Value;

/// Which wings each wing may depend on.
const RULES: &[(&str, &[&str])] = &[
    ("proto", &["proto"]),
    ("deploy", &["deploy", "proto"]),
    ("collectors", &["collectors", "deploy", "proto"]),
    ("scorer", &["scorer", "deploy", "proto"]),
    ("gateway", &["gateway", "deploy", "proto"]),
    ("kit", &["kit", "deploy", "proto"]),
    ("tests", &["*"]),
];

/// Edges that break the rule and are still to be removed (each removal deletes its line; the
/// list may only shrink: `known_exceptions_still_exist`).
const KNOWN: &[(&str, &str)] = &[];

/// Normal (non-test) edges forbidden even inside a wing, with the reason.
const FORBIDDEN: &[(&str, &str, &str)] = &[(
    "capsight-launcher",
    "capsight-gateway",
    "the launcher shares the launch core (capsight-launch), not the gRPC server",
)];

/// Every dependency edge between workspace crates: (from, from's wing, to, to's wing, kind).
fn edges() -> Vec<(String, String, String, String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = succeed(
        Command::new(cargo)
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--offline",
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = m["workspace_root"].as_str().unwrap().to_owned();
    let wing = |manifest: &str| -> String {
        let rel = manifest
            .strip_prefix(&root)
            .unwrap()
            .trim_start_matches('/');
        if rel.starts_with("tests/kit/") {
            "kit".into()
        } else {
            rel.split('/').next().unwrap().to_owned()
        }
    };
    let packages = m["packages"].as_array().unwrap();
    let wings: HashMap<String, String> = packages
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                wing(p["manifest_path"].as_str().unwrap()),
            )
        })
        .collect();
    let mut edges = Vec::new();
    for p in packages {
        let from = p["name"].as_str().unwrap();
        for d in p["dependencies"].as_array().unwrap() {
            let to = d["name"].as_str().unwrap();
            if let Some(to_wing) = wings.get(to) {
                edges.push((
                    from.to_owned(),
                    wings[from].clone(),
                    to.to_owned(),
                    to_wing.clone(),
                    d["kind"].as_str().unwrap_or("normal").to_owned(),
                ));
            }
        }
    }
    edges
}

#[test]
fn dependencies_stay_in_their_wings() {
    let mut bad = Vec::new();
    for (from, from_wing, to, to_wing, kind) in edges() {
        let allowed = RULES
            .iter()
            .find(|(w, _)| *w == from_wing)
            .unwrap_or_else(|| panic!("{from}: {from_wing}/ is not a wing of the house rule"))
            .1;
        let by_rule = allowed.iter().any(|w| *w == "*" || *w == to_wing)
            || (kind == "dev" && to == "capsight-testkit");
        let forbidden = FORBIDDEN
            .iter()
            .find(|(f, t, _)| *f == from && *t == to && kind == "normal");
        let known = KNOWN.contains(&(from.as_str(), to.as_str()));
        if let Some((_, _, why)) = forbidden {
            bad.push(format!("{from} -> {to} [{kind}]: {why}"));
        } else if !by_rule && !known {
            bad.push(format!(
                "{from} ({from_wing}/) -> {to} ({to_wing}/) [{kind}]"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "dependencies across wings (docs/ARCHITECTURE.md, 'Wings'): move what both need down \
         to deploy/ or proto/:\n{}",
        bad.join("\n")
    );
}

#[test]
fn known_exceptions_still_exist() {
    let edges = edges();
    for (from, to) in KNOWN {
        assert!(
            edges.iter().any(|(f, _, t, _, _)| f == from && t == to),
            "{from} -> {to} is gone: delete it from KNOWN"
        );
    }
}
