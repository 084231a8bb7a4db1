//! Status feeds and their parsers: bytes in, the feed's current incidents out.
//!
//! Contract: [`parse`] is pure and never panics; malformed input is a [`FeedError`]. Every
//! incident names the regions it affects, resolved through the feed's `locations` table (text ->
//! region), built-in Azure display names, or text that already is a region id.
//! Supported kinds:
//! * `statuspage` — Atlassian Statuspage `/api/v2/summary.json` (most neoclouds): open incidents
//!   by impact, components not `operational`, scheduled maintenance in progress;
//! * `gcp_incidents` — Google Cloud `incidents.json`, filtered by product;
//! * `aws_rss` — an AWS per-service-region RSS feed: the newest item is the region's state;
//! * `azure_rss` — Azure's RSS of wide-impact incidents: each item is an open incident.

use std::collections::BTreeMap;

use capsight_proto::domain::{Provider, Region, StatusSeverity};
use serde::Deserialize;

/// A feed as configured (`[[status.feeds]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Unique name; appears in signals (`StatusEvent.feed`).
    pub name: String,
    /// Parser to use.
    pub kind: FeedKind,
    /// Where to fetch it.
    pub url: String,
    /// Provider the feed reports on (`aws`, `gcp`, `azure`, `lambda`).
    pub provider: String,
    /// The region of a single-region feed (AWS per-region RSS).
    pub region: Option<String>,
    /// Text found in component names / incident text -> region id.
    #[serde(default)]
    pub locations: BTreeMap<String, String>,
    /// `gcp_incidents`: products that matter (default: Google Compute Engine).
    #[serde(default)]
    pub products: Vec<String>,
}

/// Feed formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    /// Atlassian Statuspage summary.json.
    Statuspage,
    /// Google Cloud incidents.json.
    GcpIncidents,
    /// AWS per-service-region RSS.
    AwsRss,
    /// Azure status RSS.
    AzureRss,
}

/// A validated feed.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: FeedKind,
    /// URL.
    pub url: String,
    /// Provider.
    pub provider: Provider,
    /// Region of a single-region feed.
    pub region: Option<Region>,
    /// Lowercase needle -> region, longest needle first.
    locations: Vec<(String, Region)>,
    products: Vec<String>,
}

/// A configuration or parse problem.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The feed config is invalid.
    #[error("status feed {feed}: {reason}")]
    Config {
        /// Feed name.
        feed: String,
        /// What is wrong.
        reason: String,
    },
    /// The body does not parse as the feed's kind.
    #[error("status feed {feed}: malformed {kind:?} body: {reason}")]
    Malformed {
        /// Feed name.
        feed: String,
        /// Kind.
        kind: FeedKind,
        /// Parser message.
        reason: String,
    },
}

/// One incident as the feed shows it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Stable id within the feed.
    pub id: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: StatusSeverity,
    /// Over.
    pub resolved: bool,
    /// Link.
    pub url: String,
    /// Affected regions (sorted, unique).
    pub regions: Vec<Region>,
}

/// Azure display names -> region ids (longest first when matching).
const AZURE_REGIONS: &[(&str, &str)] = &[
    ("east us 2", "eastus2"),
    ("east us", "eastus"),
    ("west us 3", "westus3"),
    ("west us 2", "westus2"),
    ("west us", "westus"),
    ("central us", "centralus"),
    ("north central us", "northcentralus"),
    ("south central us", "southcentralus"),
    ("west europe", "westeurope"),
    ("north europe", "northeurope"),
    ("uk south", "uksouth"),
    ("sweden central", "swedencentral"),
    ("france central", "francecentral"),
    ("germany west central", "germanywestcentral"),
    ("japan east", "japaneast"),
    ("southeast asia", "southeastasia"),
    ("australia east", "australiaeast"),
    ("canada central", "canadacentral"),
];

impl Feed {
    /// Validates a configured feed.
    pub fn new(c: &FeedConfig) -> Result<Self, FeedError> {
        let bad = |reason: String| FeedError::Config {
            feed: c.name.clone(),
            reason,
        };
        if c.name.is_empty() || !c.name.chars().all(|ch| ch.is_ascii_graphic()) {
            return Err(bad(
                "name must be non-empty printable ASCII without spaces".into()
            ));
        }
        if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
            return Err(bad(format!("url {:?} must be http(s)", c.url)));
        }
        let provider = Provider::parse("provider", &c.provider).map_err(|e| bad(e.to_string()))?;
        let region = c
            .region
            .as_deref()
            .map(|r| Region::parse("region", provider, r))
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        if c.kind == FeedKind::AwsRss && region.is_none() {
            return Err(bad("aws_rss feeds are per region: set region".into()));
        }
        let mut locations = c
            .locations
            .iter()
            .map(|(text, r)| {
                Region::parse(&format!("locations.{text}"), provider, r)
                    .map(|r| (text.to_lowercase(), r))
                    .map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if provider == Provider::Azure {
            for (text, id) in AZURE_REGIONS {
                if let Ok(r) = Region::parse("azure", provider, id) {
                    locations.push(((*text).to_owned(), r));
                }
            }
        }
        locations.sort_by_key(|l| std::cmp::Reverse(l.0.len()));
        let products = if c.products.is_empty() && c.kind == FeedKind::GcpIncidents {
            vec!["google compute engine".to_owned()]
        } else {
            c.products.iter().map(|p| p.to_lowercase()).collect()
        };
        Ok(Self {
            name: c.name.clone(),
            kind: c.kind,
            url: c.url.clone(),
            provider,
            region,
            locations,
            products,
        })
    }

    /// Regions named in `text`: a configured/built-in location, or a region id itself.
    fn regions_in(&self, text: &str) -> Vec<Region> {
        let mut lower = text.to_lowercase();
        let mut out = Vec::new();
        for (needle, region) in &self.locations {
            if lower.contains(needle.as_str()) {
                out.push(region.clone());
                // so "east us" does not match again inside "east us 2"
                lower = lower.replace(needle.as_str(), " ");
            }
        }
        for word in lower.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            // Azure region ids are plain words ("eastus") that would match prose
            if self.provider == Provider::Azure {
                continue;
            }
            if let Ok(r) = Region::parse("region", self.provider, word) {
                out.push(r);
            }
        }
        out
    }

    fn malformed(&self, reason: impl std::fmt::Display) -> FeedError {
        FeedError::Malformed {
            feed: self.name.clone(),
            kind: self.kind,
            reason: reason.to_string(),
        }
    }
}

fn finish(mut regions: Vec<Region>) -> Vec<Region> {
    regions.sort();
    regions.dedup();
    regions
}

/// Parses a feed body into its current incidents.
pub fn parse(feed: &Feed, body: &str) -> Result<Vec<Incident>, FeedError> {
    match feed.kind {
        FeedKind::Statuspage => statuspage(feed, body),
        FeedKind::GcpIncidents => gcp(feed, body),
        FeedKind::AwsRss => aws_rss(feed, body),
        FeedKind::AzureRss => azure_rss(feed, body),
    }
}

#[derive(Deserialize)]
struct SpSummary {
    #[serde(default)]
    components: Vec<SpComponent>,
    #[serde(default)]
    incidents: Vec<SpIncident>,
    #[serde(default)]
    scheduled_maintenances: Vec<SpIncident>,
}

#[derive(Deserialize)]
struct SpComponent {
    id: String,
    name: String,
    status: String,
}

#[derive(Deserialize)]
struct SpIncident {
    id: String,
    name: String,
    status: String,
    #[serde(default)]
    impact: String,
    shortlink: Option<String>,
    #[serde(default)]
    components: Vec<SpComponent>,
}

fn statuspage(feed: &Feed, body: &str) -> Result<Vec<Incident>, FeedError> {
    let s: SpSummary = serde_json::from_str(body).map_err(|e| feed.malformed(e))?;
    let mut out = Vec::new();
    let affected_regions = |components: &[SpComponent]| {
        finish(
            components
                .iter()
                .flat_map(|c| feed.regions_in(&c.name))
                .collect(),
        )
    };
    let degraded: Vec<SpComponent> = s
        .components
        .into_iter()
        .filter(|c| c.status != "operational")
        .collect();
    for i in s.incidents.iter().chain(&s.scheduled_maintenances) {
        let maintenance = s.scheduled_maintenances.iter().any(|m| m.id == i.id);
        let severity = if maintenance {
            StatusSeverity::Maintenance
        } else {
            match i.impact.as_str() {
                "critical" => StatusSeverity::Critical,
                "major" => StatusSeverity::Major,
                "minor" => StatusSeverity::Minor,
                _ => StatusSeverity::None,
            }
        };
        // an incident without components affects whatever is degraded now
        let components = if i.components.is_empty() {
            &degraded
        } else {
            &i.components
        };
        out.push(Incident {
            id: i.id.clone(),
            title: i.name.clone(),
            severity,
            resolved: matches!(i.status.as_str(), "resolved" | "postmortem" | "completed"),
            url: i.shortlink.clone().unwrap_or_default(),
            regions: affected_regions(components),
        });
    }
    for c in &degraded {
        let severity = match c.status.as_str() {
            "major_outage" => StatusSeverity::Critical,
            "partial_outage" => StatusSeverity::Major,
            "degraded_performance" => StatusSeverity::Minor,
            "under_maintenance" => StatusSeverity::Maintenance,
            _ => continue,
        };
        out.push(Incident {
            id: format!("component-{}", c.id),
            title: format!("{} {}", c.name, c.status.replace('_', " ")),
            severity,
            resolved: false,
            url: String::new(),
            regions: finish(feed.regions_in(&c.name)),
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct GcpIncident {
    id: String,
    end: Option<String>,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    external_desc: String,
    #[serde(default)]
    uri: String,
    #[serde(default)]
    affected_products: Vec<GcpTitle>,
    #[serde(default)]
    currently_affected_locations: Vec<GcpLocation>,
    #[serde(default)]
    previously_affected_locations: Vec<GcpLocation>,
}

#[derive(Deserialize)]
struct GcpTitle {
    title: String,
}

#[derive(Deserialize)]
struct GcpLocation {
    id: String,
}

fn gcp(feed: &Feed, body: &str) -> Result<Vec<Incident>, FeedError> {
    let all: Vec<GcpIncident> = serde_json::from_str(body).map_err(|e| feed.malformed(e))?;
    Ok(all
        .into_iter()
        .filter(|i| {
            feed.products.is_empty()
                || i.affected_products
                    .iter()
                    .any(|p| feed.products.contains(&p.title.to_lowercase()))
        })
        .map(|i| {
            let resolved = i.end.is_some();
            let locations = if resolved && i.currently_affected_locations.is_empty() {
                &i.previously_affected_locations
            } else {
                &i.currently_affected_locations
            };
            Incident {
                regions: finish(
                    locations
                        .iter()
                        .flat_map(|l| feed.regions_in(&l.id))
                        .collect(),
                ),
                severity: match i.severity.as_str() {
                    "high" => StatusSeverity::Critical,
                    "medium" => StatusSeverity::Major,
                    "low" => StatusSeverity::Minor,
                    _ => StatusSeverity::None,
                },
                title: i.external_desc,
                url: if i.uri.is_empty() {
                    String::new()
                } else {
                    format!("https://status.cloud.google.com/{}", i.uri)
                },
                id: i.id,
                resolved,
            }
        })
        .collect())
}

fn rss_items(feed: &Feed, body: &str) -> Result<Vec<rss::Item>, FeedError> {
    let channel = rss::Channel::read_from(body.as_bytes()).map_err(|e| feed.malformed(e))?;
    Ok(channel.items().to_vec())
}

fn aws_rss(feed: &Feed, body: &str) -> Result<Vec<Incident>, FeedError> {
    let items = rss_items(feed, body)?;
    let newest = items.iter().max_by_key(|i| {
        i.pub_date()
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.timestamp())
            .unwrap_or(i64::MIN)
    });
    let Some(item) = newest else {
        return Ok(Vec::new());
    };
    let title = item.title().unwrap_or_default().to_owned();
    let lower = title.to_lowercase();
    let (severity, resolved) =
        if lower.contains("operating normally") || lower.contains("[resolved]") {
            (StatusSeverity::None, true)
        } else if lower.starts_with("service disruption") {
            (StatusSeverity::Major, false)
        } else {
            // "Performance issues:", "Informational message:" and anything new
            (StatusSeverity::Minor, false)
        };
    Ok(vec![Incident {
        // one rolling incident per service-region feed; the newest item is its state
        id: feed.name.clone(),
        title,
        severity,
        resolved,
        url: item.link().unwrap_or_default().to_owned(),
        regions: feed.region.iter().cloned().collect(),
    }])
}

fn azure_rss(feed: &Feed, body: &str) -> Result<Vec<Incident>, FeedError> {
    Ok(rss_items(feed, body)?
        .into_iter()
        .map(|item| {
            let title = item.title().unwrap_or_default().to_owned();
            let text = format!("{title} {}", item.description().unwrap_or_default());
            Incident {
                id: item
                    .guid()
                    .map(|g| g.value().to_owned())
                    .unwrap_or_else(|| title.clone()),
                regions: finish(feed.regions_in(&text)),
                severity: StatusSeverity::Major,
                resolved: false,
                url: item.link().unwrap_or_default().to_owned(),
                title,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(
        kind: FeedKind,
        provider: &str,
        region: Option<&str>,
        locations: &[(&str, &str)],
    ) -> Feed {
        Feed::new(&FeedConfig {
            name: "f".into(),
            kind,
            url: "http://127.0.0.1/x".into(),
            provider: provider.into(),
            region: region.map(Into::into),
            locations: locations
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            products: vec![],
        })
        .unwrap()
    }

    fn r(s: &str, p: Provider) -> Region {
        Region::parse("r", p, s).unwrap()
    }

    #[test]
    fn statuspage_incidents_components_and_maintenance() {
        let f = feed(
            FeedKind::Statuspage,
            "lambda",
            None,
            &[("Texas", "us-south-1")],
        );
        let body = include_str!("../tests/fixtures/statuspage.json");
        let got = parse(&f, body).unwrap();
        let inc = got.iter().find(|i| i.id == "inc1").unwrap();
        assert_eq!(inc.severity, StatusSeverity::Major);
        assert!(!inc.resolved);
        assert_eq!(inc.regions, vec![r("us-east-1", Provider::Lambda)]);
        let comp = got.iter().find(|i| i.id == "component-c2").unwrap();
        assert_eq!(comp.severity, StatusSeverity::Minor);
        assert_eq!(comp.regions, vec![r("us-south-1", Provider::Lambda)]);
        let mnt = got.iter().find(|i| i.id == "mnt1").unwrap();
        assert_eq!(mnt.severity, StatusSeverity::Maintenance);
    }

    #[test]
    fn gcp_filters_products_and_maps_locations() {
        let f = feed(FeedKind::GcpIncidents, "gcp", None, &[]);
        let got = parse(&f, include_str!("../tests/fixtures/gcp_incidents.json")).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        let open = got.iter().find(|i| i.id == "open1").unwrap();
        assert!(!open.resolved);
        assert_eq!(open.severity, StatusSeverity::Critical);
        assert_eq!(
            open.regions,
            vec![
                r("europe-west4", Provider::Gcp),
                r("us-central1", Provider::Gcp)
            ]
        );
        let closed = got.iter().find(|i| i.id == "closed1").unwrap();
        assert!(closed.resolved);
        assert_eq!(closed.regions, vec![r("us-east1", Provider::Gcp)]);
    }

    #[test]
    fn aws_rss_newest_item_is_the_state() {
        let f = feed(FeedKind::AwsRss, "aws", Some("us-east-1"), &[]);
        let got = parse(&f, include_str!("../tests/fixtures/aws_ec2_us_east_1.rss")).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].severity, StatusSeverity::Major);
        assert!(!got[0].resolved);
        assert_eq!(got[0].regions, vec![r("us-east-1", Provider::Aws)]);
    }

    #[test]
    fn azure_rss_maps_display_names_without_double_matching() {
        let f = feed(FeedKind::AzureRss, "azure", None, &[]);
        let got = parse(&f, include_str!("../tests/fixtures/azure.rss")).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].regions, vec![r("eastus2", Provider::Azure)]);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for kind in [
            FeedKind::Statuspage,
            FeedKind::GcpIncidents,
            FeedKind::AwsRss,
            FeedKind::AzureRss,
        ] {
            let provider = if kind == FeedKind::GcpIncidents {
                "gcp"
            } else {
                "aws"
            };
            let f = feed(
                kind,
                provider,
                Some(if provider == "gcp" {
                    "us-central1"
                } else {
                    "us-east-1"
                }),
                &[],
            );
            assert!(parse(&f, "{not json <rss").is_err(), "{kind:?}");
        }
    }

    #[test]
    fn bad_configs_are_rejected() {
        let mut c = FeedConfig {
            name: "x".into(),
            kind: FeedKind::AwsRss,
            url: "http://h/x".into(),
            provider: "aws".into(),
            region: None,
            locations: BTreeMap::new(),
            products: vec![],
        };
        assert!(Feed::new(&c).is_err(), "aws_rss without region");
        c.region = Some("us-east-1".into());
        assert!(Feed::new(&c).is_ok());
        c.url = "ftp://x".into();
        assert!(Feed::new(&c).is_err());
        c.url = "http://h".into();
        c.provider = "oracle".into();
        assert!(Feed::new(&c).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in ".{0,300}") {
            for kind in [FeedKind::Statuspage, FeedKind::GcpIncidents, FeedKind::AwsRss, FeedKind::AzureRss] {
                let f = feed(kind, "gcp", Some("us-central1"), &[]);
                let _ = parse(&f, &body);
            }
        }
    }
}
