//! Change detection: which incidents are new, changed or gone since the last successful poll.
//!
//! Contract: [`Tracker::update`] returns only what changed for a feed — a new incident, a
//! change of severity, resolution or regions, or an open incident that disappeared from the
//! feed (reported once as resolved). A feed that could not be fetched or parsed is not
//! updated, so an outage of the status page itself never looks like a recovery.

use std::collections::HashMap;

use crate::feeds::Incident;

/// Last known incidents per feed.
#[derive(Debug, Default)]
pub struct Tracker {
    feeds: HashMap<String, HashMap<String, Incident>>,
}

impl Tracker {
    /// Records `now` as the feed's current incidents and returns the changes to publish.
    pub fn update(&mut self, feed: &str, now: Vec<Incident>) -> Vec<Incident> {
        let known = self.feeds.entry(feed.to_owned()).or_default();
        let mut changes = Vec::new();
        let mut seen = HashMap::with_capacity(now.len());
        for inc in now {
            let changed = known.get(&inc.id).is_none_or(|old| {
                old.severity != inc.severity
                    || old.resolved != inc.resolved
                    || old.regions != inc.regions
            });
            // a resolved incident seen for the first time is history, not news
            let first_sight_resolved = !known.contains_key(&inc.id) && inc.resolved;
            if changed && !first_sight_resolved {
                changes.push(inc.clone());
            }
            seen.insert(inc.id.clone(), inc);
        }
        for (id, old) in known.iter() {
            if !seen.contains_key(id) && !old.resolved {
                changes.push(Incident {
                    resolved: true,
                    ..old.clone()
                });
            }
        }
        *known = seen;
        changes
    }

    /// Forgets a feed, so its next poll reports every incident again.
    pub fn forget(&mut self, feed: &str) {
        self.feeds.remove(feed);
    }
}

#[cfg(test)]
mod tests {
    use capsight_proto::domain::{Provider, Region, StatusSeverity};

    use super::*;

    fn inc(id: &str, severity: StatusSeverity, resolved: bool) -> Incident {
        Incident {
            id: id.into(),
            title: "t".into(),
            severity,
            resolved,
            url: String::new(),
            regions: vec![Region::parse("r", Provider::Aws, "us-east-1").unwrap()],
        }
    }

    #[test]
    fn emits_only_changes() {
        let mut t = Tracker::default();
        let a = inc("a", StatusSeverity::Minor, false);
        assert_eq!(t.update("f", vec![a.clone()]), vec![a.clone()]);
        assert!(
            t.update("f", vec![a.clone()]).is_empty(),
            "unchanged: nothing"
        );
        let worse = inc("a", StatusSeverity::Major, false);
        assert_eq!(t.update("f", vec![worse.clone()]), vec![worse]);
        let fixed = inc("a", StatusSeverity::Major, true);
        assert_eq!(t.update("f", vec![fixed.clone()]), vec![fixed.clone()]);
        assert!(t.update("f", vec![fixed]).is_empty());
    }

    #[test]
    fn vanished_open_incidents_resolve_once_and_old_history_is_ignored() {
        let mut t = Tracker::default();
        let a = inc("a", StatusSeverity::Major, false);
        t.update("f", vec![a]);
        let gone = t.update("f", vec![]);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].resolved);
        assert!(t.update("f", vec![]).is_empty());
        assert!(
            t.update("f", vec![inc("old", StatusSeverity::Minor, true)])
                .is_empty()
        );
        // feeds are independent
        assert_eq!(
            t.update("g", vec![inc("a", StatusSeverity::Minor, false)])
                .len(),
            1
        );
    }
}
