//! The status section of the reference config loads, and a config file's feed list replaces
//! the default one instead of appending to it.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use capsight_status::StatusSettings;

#[derive(serde::Deserialize)]
struct Conf {
    status: StatusSettings,
}

#[test]
fn defaults_load_and_a_file_replaces_the_feed_list() {
    let defaults: Conf = capsight_runtime::config::load_defaults().unwrap();
    assert!(defaults.status.feeds.len() >= 4);
    for f in &defaults.status.feeds {
        capsight_status::feeds::Feed::new(f).unwrap();
    }
    let path = std::env::temp_dir().join(format!("status-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[status.feeds]]\nname = \"sim\"\nkind = \"statuspage\"\nurl = \"http://127.0.0.1:5599/api/v2/summary.json\"\nprovider = \"aws\"\n",
    )
    .unwrap();
    let c: Conf = capsight_runtime::config::load(Some(&path)).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(c.status.feeds.len(), 1);
    assert_eq!(c.status.feeds[0].name, "sim");
}
