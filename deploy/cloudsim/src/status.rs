//! Status feeds driven by the scenario's `status` events: an Atlassian Statuspage-style
//! `/api/v2/summary.json` and AWS Health Dashboard-style RSS feeds `/rss/<service>-<region>.rss`.
//!
//! Contract: the page indicator is the worst open component status (none | minor | major |
//! critical); an RSS feed lists the incidents whose component name contains the service and the
//! region of the feed name (case-insensitive), newest first, with one item per update.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{world::World, xml::escape};

fn impact(status: &str) -> &'static str {
    match status {
        "major_outage" => "critical",
        "partial_outage" => "major",
        "degraded_performance" | "under_maintenance" => "minor",
        _ => "none",
    }
}

fn rank(indicator: &str) -> u8 {
    match indicator {
        "critical" => 3,
        "major" => 2,
        "minor" => 1,
        _ => 0,
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `/api/v2/summary.json`.
pub fn summary(world: &World, now: DateTime<Utc>) -> Value {
    let page_id = "cloudsim";
    let indicator = world
        .components()
        .values()
        .map(|s| impact(s))
        .max_by_key(|i| rank(i))
        .unwrap_or("none");
    let description = match indicator {
        "none" => "All Systems Operational",
        "minor" => "Minor Service Outage",
        "major" => "Partial System Outage",
        _ => "Major Service Outage",
    };
    let components: Vec<Value> = world
        .components()
        .iter()
        .enumerate()
        .map(|(n, (name, status))| {
            json!({
                "id": component_id(n),
                "name": name,
                "status": status,
                "created_at": iso(world.truth().start),
                "updated_at": iso(now),
                "position": n + 1,
                "description": null,
                "showcase": true,
                "group_id": null,
                "page_id": page_id,
                "group": false,
                "only_show_if_degraded": false,
            })
        })
        .collect();
    let incidents: Vec<Value> = world
        .incidents()
        .iter()
        .filter(|i| i.resolved_at.is_none())
        .map(|i| incident(world, i, page_id))
        .collect();
    json!({
        "page": {
            "id": page_id,
            "name": world.scenario().status.name,
            "url": "http://127.0.0.1",
            "time_zone": "Etc/UTC",
            "updated_at": iso(now),
        },
        "status": { "indicator": indicator, "description": description },
        "components": components,
        "incidents": incidents,
        "scheduled_maintenances": [],
    })
}

/// A component's Statuspage id: its position among the world's components.
fn component_id(n: usize) -> String {
    format!("cmp{n:04}")
}

fn incident(world: &World, i: &crate::world::Incident, page_id: &str) -> Value {
    let status = if i.resolved_at.is_some() {
        "resolved"
    } else {
        i.updates
            .last()
            .map_or("investigating", |(_, s, _)| s.as_str())
    };
    let updates: Vec<Value> = i
        .updates
        .iter()
        .rev()
        .enumerate()
        .map(|(n, (t, s, body))| {
            json!({
                "id": format!("{}-u{n}", i.id),
                "status": s,
                "body": body,
                "incident_id": i.id,
                "created_at": iso(*t),
                "updated_at": iso(*t),
                "display_at": iso(*t),
            })
        })
        .collect();
    json!({
        "id": i.id,
        "name": i.title,
        "status": status,
        "created_at": iso(i.started_at),
        "updated_at": iso(i.updates.last().map_or(i.started_at, |(t, _, _)| *t)),
        "monitoring_at": null,
        "resolved_at": i.resolved_at.map(iso),
        "impact": impact(&i.status),
        "shortlink": format!("http://127.0.0.1/incidents/{}", i.id),
        "started_at": iso(i.started_at),
        "page_id": page_id,
        "incident_updates": updates,
        // as on a real Statuspage, the affected component with its id
        "components": [{
            "id": world
                .components()
                .keys()
                .position(|c| *c == i.component)
                .map_or_else(|| format!("cmp-{}", i.component), component_id),
            "name": i.component,
            "status": i.status,
        }],
    })
}

/// `/rss/<feed>.rss`, e.g. feed `ec2-us-east-1`.
pub fn rss(world: &World, feed: &str) -> String {
    let feed = feed.trim_end_matches(".rss");
    let (service, region) = feed.split_once('-').unwrap_or((feed, ""));
    let matches = |component: &str| {
        let c = component.to_lowercase();
        c.contains(&service.to_lowercase()) && c.contains(&region.to_lowercase())
    };
    let mut items: Vec<(DateTime<Utc>, String, String, String)> = Vec::new();
    for i in world.incidents().iter().filter(|i| matches(&i.component)) {
        for (t, status, body) in &i.updates {
            let prefix = if status == "resolved" {
                "Service is operating normally"
            } else {
                match i.status.as_str() {
                    "major_outage" => "Service disruption",
                    _ => "Informational message",
                }
            };
            let title = if status == "resolved" {
                format!("{prefix}: [RESOLVED] {}", i.title)
            } else {
                format!("{prefix}: {}", i.title)
            };
            items.push((
                *t,
                title,
                body.clone(),
                format!("{feed}_{}_{}", i.id, t.timestamp()),
            ));
        }
    }
    items.sort_by_key(|i| std::cmp::Reverse(i.0));
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\">\n<channel>\n",
    );
    out.push_str(&format!(
        "<title><![CDATA[Amazon {} ({}) Service Status]]></title>\n<link>http://status.aws.amazon.com/</link>\n<language>en-us</language>\n<description><![CDATA[Amazon {} ({}) Service Status]]></description>\n<ttl>5</ttl>\n",
        escape(&service.to_uppercase()),
        escape(region),
        escape(&service.to_uppercase()),
        escape(region)
    ));
    for (t, title, body, guid) in items {
        out.push_str(&format!(
            "<item>\n<title><![CDATA[{}]]></title>\n<link>http://status.aws.amazon.com/</link>\n<pubDate>{}</pubDate>\n<guid isPermaLink=\"false\">http://status.aws.amazon.com/#{}</guid>\n<description><![CDATA[{}]]></description>\n</item>\n",
            title.replace("]]>", "]]&gt;"),
            t.format("%a, %d %b %Y %H:%M:%S GMT"),
            escape(&guid),
            body.replace("]]>", "]]&gt;")
        ));
    }
    out.push_str("</channel>\n</rss>\n");
    out
}
