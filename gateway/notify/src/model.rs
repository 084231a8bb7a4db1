//! What a subscription is (pure): event kinds, payload formats, key selectors, the webhook URL
//! and its network policy, and the validation of a tenant's request into a [`Spec`] — every
//! field bounded, errors naming the field.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use capsight_catalog::Catalog;
use capsight_clickhouse::rows::{AlertRow, NotifySubscriptionRow};
use capsight_proto::{
    domain::{FieldError, InstanceType, Market, Provider, Region},
    v1,
};
use serde::{Deserialize, Serialize};

use crate::settings::NotifySettings;

/// What a tenant can be notified about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A watched key's label changed.
    LabelChanged,
    /// A launch fell back to an alternative key.
    Fallback,
    /// The cloud warned that a launch's spot instance goes away.
    InterruptionWarning,
    /// The warm standby serves.
    StandbyStarted,
    /// The warm standby was stopped again.
    StandbyStopped,
    /// The lifecycle reaper terminated the launch.
    Reaped,
}

impl EventKind {
    /// Every kind, in the order notifications of one transition are sent.
    pub const ALL: [Self; 6] = [
        Self::LabelChanged,
        Self::Fallback,
        Self::InterruptionWarning,
        Self::StandbyStarted,
        Self::StandbyStopped,
        Self::Reaped,
    ];

    /// The snake-case name (payload `type`, ClickHouse rows, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LabelChanged => "label_changed",
            Self::Fallback => "fallback",
            Self::InterruptionWarning => "interruption_warning",
            Self::StandbyStarted => "standby_started",
            Self::StandbyStopped => "standby_stopped",
            Self::Reaped => "reaped",
        }
    }

    /// Parses [`EventKind::as_str`].
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| FieldError::new(field, format!("{text:?} is not an event kind")))
    }

    /// From the wire enum.
    pub fn from_wire(field: &str, value: i32) -> Result<Self, FieldError> {
        use v1::NotificationEvent as W;
        match W::try_from(value) {
            Ok(W::LabelChanged) => Ok(Self::LabelChanged),
            Ok(W::Fallback) => Ok(Self::Fallback),
            Ok(W::InterruptionWarning) => Ok(Self::InterruptionWarning),
            Ok(W::StandbyStarted) => Ok(Self::StandbyStarted),
            Ok(W::StandbyStopped) => Ok(Self::StandbyStopped),
            Ok(W::Reaped) => Ok(Self::Reaped),
            Ok(W::Unspecified) => Err(FieldError::new(field, "must be set")),
            Err(_) => Err(FieldError::new(
                field,
                format!("unknown enum value {value}"),
            )),
        }
    }

    /// To the wire enum.
    pub fn to_wire(self) -> v1::NotificationEvent {
        use v1::NotificationEvent as W;
        match self {
            Self::LabelChanged => W::LabelChanged,
            Self::Fallback => W::Fallback,
            Self::InterruptionWarning => W::InterruptionWarning,
            Self::StandbyStarted => W::StandbyStarted,
            Self::StandbyStopped => W::StandbyStopped,
            Self::Reaped => W::Reaped,
        }
    }

    /// Whether it is about one of the tenant's launches (only ever sent to that tenant).
    pub fn is_launch_event(self) -> bool {
        self != Self::LabelChanged
    }

    /// Order of notifications derived from one transition.
    pub fn rank(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload shape a receiver expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Generic JSON (the event itself).
    Json,
    /// Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// Discord webhook: `{"content": ...}`.
    Discord,
}

impl Format {
    /// Every format.
    pub const ALL: [Self; 3] = [Self::Json, Self::Slack, Self::Discord];

    /// `json`, `slack`, `discord`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
            Self::Discord => "discord",
        }
    }

    /// Parses [`Format::as_str`].
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| FieldError::new(field, format!("{text:?} is not a format")))
    }

    /// From the wire enum (unset = JSON).
    pub fn from_wire(field: &str, value: i32) -> Result<Self, FieldError> {
        use v1::WebhookFormat as W;
        match W::try_from(value) {
            Ok(W::Unspecified | W::Json) => Ok(Self::Json),
            Ok(W::Slack) => Ok(Self::Slack),
            Ok(W::Discord) => Ok(Self::Discord),
            Err(_) => Err(FieldError::new(
                field,
                format!("unknown enum value {value}"),
            )),
        }
    }

    /// To the wire enum.
    pub fn to_wire(self) -> v1::WebhookFormat {
        match self {
            Self::Json => v1::WebhookFormat::Json,
            Self::Slack => v1::WebhookFormat::Slack,
            Self::Discord => v1::WebhookFormat::Discord,
        }
    }
}

/// Label changes of the keys matching every field set (a GPU model matches every instance
/// type of the catalog carrying it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeySelector {
    /// Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Instance type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// GPU model (`H100`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    /// Market.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market: Option<Market>,
}

impl KeySelector {
    /// Validates a wire selector; `field` is its path (`keys[2]`).
    pub fn from_wire(
        field: &str,
        w: &v1::KeySelector,
        catalog: &Catalog,
    ) -> Result<Self, FieldError> {
        let f = |name: &str| format!("{field}.{name}");
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let provider = match w.provider.as_str() {
            "" => None,
            p => Some(Provider::parse(&f("provider"), p)?),
        };
        if let Some(region) = some(&w.region) {
            // the region's shape per provider when it is named; any provider's otherwise
            let providers: Vec<Provider> =
                provider.map_or_else(|| Provider::ALL.to_vec(), |p| vec![p]);
            if !providers
                .iter()
                .any(|p| Region::parse(&f("region"), *p, &region).is_ok())
            {
                return Err(FieldError::new(
                    f("region"),
                    format!("{region:?} is not a region name"),
                ));
            }
        }
        if let Some(t) = some(&w.instance_type) {
            let providers: Vec<Provider> =
                provider.map_or_else(|| Provider::ALL.to_vec(), |p| vec![p]);
            if !providers
                .iter()
                .any(|p| InstanceType::parse(&f("instance_type"), *p, &t).is_ok())
            {
                return Err(FieldError::new(
                    f("instance_type"),
                    format!("{t:?} is not an instance type name"),
                ));
            }
        }
        if let Some(m) = some(&w.gpu_model) {
            if !w.instance_type.is_empty() {
                return Err(FieldError::new(
                    f("gpu_model"),
                    "name an instance type or a GPU model, not both",
                ));
            }
            if !catalog.iter().any(|g| g.gpu_model == m) {
                return Err(FieldError::new(
                    f("gpu_model"),
                    format!("{m:?} is not a GPU model of the catalog"),
                ));
            }
        }
        let market = match w.market {
            0 => None,
            m => Some(Market::from_wire(&f("market"), m)?),
        };
        let s = Self {
            provider,
            region: some(&w.region),
            instance_type: some(&w.instance_type),
            gpu_model: some(&w.gpu_model),
            market,
        };
        if s == Self::default() {
            return Err(FieldError::new(field, "set at least one field"));
        }
        Ok(s)
    }

    /// To the wire.
    pub fn to_wire(&self) -> v1::KeySelector {
        v1::KeySelector {
            provider: self
                .provider
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            region: self.region.clone().unwrap_or_default(),
            instance_type: self.instance_type.clone().unwrap_or_default(),
            gpu_model: self.gpu_model.clone().unwrap_or_default(),
            market: self.market.map_or(0, i32::from),
        }
    }

    /// Whether the alert's key matches.
    pub fn matches(&self, a: &AlertRow, catalog: &Catalog) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.provider.is_none_or(|p| p.as_str() == a.provider)
            && eq(&self.region, &a.region)
            && eq(&self.instance_type, &a.instance_type)
            && self.market.is_none_or(|m| m.as_str() == a.market)
            && self.gpu_model.as_deref().is_none_or(|model| {
                Provider::parse("provider", &a.provider)
                    .ok()
                    .and_then(|p| {
                        let t = InstanceType::parse("instance_type", p, &a.instance_type).ok()?;
                        catalog.get(p, &t)
                    })
                    .is_some_and(|g| g.gpu_model == model)
            })
    }
}

/// A network a webhook may reach although it is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `a.b.c.d/n` or `x::/n` (a bare address is a single host).
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::new(field, format!("{text:?} is not a CIDR network"));
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                Some(p.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (text.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u8) {
            match ip {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((a, wa), (b, wb)) = (bits(self.addr), bits(ip));
        if wa != wb {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        let shift = u32::from(wa - self.prefix);
        (a >> shift) == (b >> shift)
    }
}

/// Where webhooks may go: public addresses, plus the configured private networks.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allowed: Vec<Network>,
}

impl NetworkPolicy {
    /// From `notify.allowed_private_networks`.
    pub fn from_settings(s: &NotifySettings) -> Result<Self, FieldError> {
        let allowed = s
            .allowed_private_networks
            .iter()
            .map(|n| Network::parse("notify.allowed_private_networks", n))
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    /// Whether a webhook may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|n| n.contains(ip))
    }
}

/// Not loopback, private, link-local, shared (CGNAT), unspecified, multicast, broadcast or
/// documentation space.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            !(v.is_loopback()
                || v.is_private()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_multicast()
                || v.is_broadcast()
                || v.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v) => {
            if let Some(v4) = v.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v.segments();
            !(v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || seg[0] == 0x2001 && seg[1] == 0x0db8)
        }
    }
}

/// A webhook URL: http or https, a host, no credentials, bounded; an IP-literal host must be
/// allowed by the [`NetworkPolicy`] (host names are checked when they are resolved, at every
/// delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    /// Validates `text`.
    pub fn parse(
        field: &str,
        text: &str,
        max_len: u32,
        policy: &NetworkPolicy,
    ) -> Result<Self, FieldError> {
        if text.is_empty() {
            return Err(FieldError::missing(field));
        }
        if text.len() > usize::try_from(max_len).unwrap_or(usize::MAX) {
            return Err(FieldError::new(
                field,
                format!("is longer than {max_len} bytes"),
            ));
        }
        let url = url::Url::parse(text)
            .map_err(|e| FieldError::new(field, format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FieldError::new(
                field,
                format!("scheme {:?} is not http or https", url.scheme()),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FieldError::new(field, "must not carry credentials"));
        }
        let ip = match url.host() {
            None => return Err(FieldError::new(field, "has no host")),
            Some(url::Host::Ipv4(v)) => Some(IpAddr::V4(v)),
            Some(url::Host::Ipv6(v)) => Some(IpAddr::V6(v)),
            Some(url::Host::Domain(d)) => d.parse::<IpAddr>().ok(),
        };
        if let Some(ip) = ip
            && !policy.allows(ip)
        {
            return Err(FieldError::new(
                field,
                format!("{ip} is a private, loopback or reserved address"),
            ));
        }
        Ok(Self(url))
    }

    /// The URL.
    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// As text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A validated subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Where to.
    pub url: WebhookUrl,
    /// Payload shape.
    pub format: Format,
    /// What to send.
    pub kinds: BTreeSet<EventKind>,
    /// Which keys' label changes.
    pub keys: Vec<KeySelector>,
    /// The cooldown.
    pub cooldown: Duration,
    /// Also low-confidence label changes.
    pub low_confidence: bool,
}

impl Spec {
    /// Validates a tenant's request against the limits of `settings`.
    pub fn from_wire(
        r: &v1::CreateSubscriptionRequest,
        settings: &NotifySettings,
        policy: &NetworkPolicy,
        catalog: &Catalog,
    ) -> Result<Self, FieldError> {
        let url = WebhookUrl::parse("url", &r.url, settings.max_url_length, policy)?;
        let format = Format::from_wire("format", r.format)?;
        if r.events.is_empty() {
            return Err(FieldError::new("events", "name at least one event"));
        }
        if r.events.len() > EventKind::ALL.len() {
            return Err(FieldError::new(
                "events",
                format!("at most {} events", EventKind::ALL.len()),
            ));
        }
        let kinds = r
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| EventKind::from_wire(&format!("events[{i}]"), *e))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let max_keys = usize::try_from(settings.max_keys_per_subscription).unwrap_or(usize::MAX);
        if r.keys.len() > max_keys {
            return Err(FieldError::new(
                "keys",
                format!("at most {max_keys} key selectors"),
            ));
        }
        let keys = r
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| KeySelector::from_wire(&format!("keys[{i}]"), k, catalog))
            .collect::<Result<Vec<_>, _>>()?;
        if kinds.contains(&EventKind::LabelChanged) && keys.is_empty() {
            return Err(FieldError::new(
                "keys",
                "LABEL_CHANGED needs at least one key selector",
            ));
        }
        if !kinds.contains(&EventKind::LabelChanged) && !keys.is_empty() {
            return Err(FieldError::new(
                "keys",
                "key selectors apply to LABEL_CHANGED only",
            ));
        }
        let cooldown = match r.cooldown_seconds {
            0 => settings.default_cooldown,
            s => Duration::from_secs(u64::from(s)),
        };
        if cooldown > settings.max_cooldown {
            return Err(FieldError::new(
                "cooldown_seconds",
                format!("at most {}", settings.max_cooldown.as_secs()),
            ));
        }
        Ok(Self {
            url,
            format,
            kinds,
            keys,
            cooldown,
            low_confidence: r.include_low_confidence,
        })
    }
}

/// A stored subscription, as the notifier and the gateway read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Tenant id.
    pub tenant: String,
    /// Subscription id.
    pub id: String,
    /// Created, seconds.
    pub created_at: u32,
    /// Webhook URL (validated when created; checked again at delivery).
    pub url: String,
    /// Payload shape.
    pub format: Format,
    /// What to send.
    pub kinds: BTreeSet<EventKind>,
    /// Which keys' label changes.
    pub keys: Vec<KeySelector>,
    /// Cooldown.
    pub cooldown: Duration,
    /// Also low-confidence label changes.
    pub low_confidence: bool,
}

/// A stored row that does not decode (written by a newer version, or damaged).
#[derive(Debug, thiserror::Error)]
#[error("subscription {id}: {reason}")]
pub struct BadRow {
    /// Subscription id.
    pub id: String,
    /// What is wrong.
    pub reason: String,
}

impl Subscription {
    /// The row recording its creation (version = created, milliseconds).
    pub fn row(&self, version: u64) -> NotifySubscriptionRow {
        NotifySubscriptionRow {
            tenant: self.tenant.clone(),
            id: self.id.clone(),
            version,
            created_at: self.created_at,
            deleted: 0,
            url: self.url.clone(),
            format: self.format.as_str().to_owned(),
            kinds: self
                .kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(","),
            keys: serde_json::to_string(&self.keys).unwrap_or_else(|_| "[]".into()),
            cooldown_secs: u32::try_from(self.cooldown.as_secs()).unwrap_or(u32::MAX),
            low_confidence: u8::from(self.low_confidence),
        }
    }

    /// Decodes a stored row.
    pub fn from_row(r: NotifySubscriptionRow) -> Result<Self, BadRow> {
        let bad = |reason: String| BadRow {
            id: r.id.clone(),
            reason,
        };
        let kinds = r
            .kinds
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|k| EventKind::parse("kinds", k))
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let keys: Vec<KeySelector> =
            serde_json::from_str(&r.keys).map_err(|e| bad(format!("keys: {e}")))?;
        let format = Format::parse("format", &r.format).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            format,
            kinds,
            keys,
            cooldown: Duration::from_secs(u64::from(r.cooldown_secs)),
            low_confidence: r.low_confidence != 0,
            tenant: r.tenant,
            id: r.id,
            created_at: r.created_at,
            url: r.url,
        })
    }

    /// To the wire (no secret).
    pub fn to_wire(&self) -> v1::Subscription {
        v1::Subscription {
            id: self.id.clone(),
            url: self.url.clone(),
            format: self.format.to_wire() as i32,
            events: self.kinds.iter().map(|k| k.to_wire() as i32).collect(),
            keys: self.keys.iter().map(KeySelector::to_wire).collect(),
            cooldown_seconds: u32::try_from(self.cooldown.as_secs()).unwrap_or(u32::MAX),
            include_low_confidence: self.low_confidence,
            created_at: Some(prost_ts(self.created_at)),
        }
    }
}

/// Seconds as a protobuf timestamp.
pub fn prost_ts(secs: u32) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::from(secs),
        nanos: 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a panic in a test is a failed assertion"
    )]

    use super::*;

    fn policy(nets: &[&str]) -> NetworkPolicy {
        NetworkPolicy::from_settings(&NotifySettings {
            allowed_private_networks: nets.iter().map(|s| (*s).to_owned()).collect(),
            ..NotifySettings::default()
        })
        .unwrap()
    }

    fn request(url: &str) -> v1::CreateSubscriptionRequest {
        v1::CreateSubscriptionRequest {
            url: url.into(),
            events: vec![v1::NotificationEvent::StandbyStarted as i32],
            ..Default::default()
        }
    }

    fn field_of(e: FieldError) -> String {
        e.field().to_owned()
    }

    #[test]
    fn urls_are_http_bounded_credential_free_and_public_unless_allowed() {
        let s = NotifySettings::default();
        let c = Catalog::embedded().unwrap();
        let open = policy(&[]);
        assert!(Spec::from_wire(&request("https://hooks.example.com/x"), &s, &open, &c).is_ok());
        for bad in [
            "",
            "ftp://example.com/x",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "http://127.0.0.1:8080/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:10.0.0.1]/",
            "not a url",
        ] {
            let e = Spec::from_wire(&request(bad), &s, &open, &c).unwrap_err();
            assert_eq!(field_of(e), "url", "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(3000));
        assert!(Spec::from_wire(&request(&long), &s, &open, &c).is_err());
        let loopback = policy(&["127.0.0.0/8"]);
        assert!(Spec::from_wire(&request("http://127.0.0.1:8080/"), &s, &loopback, &c).is_ok());
        assert!(Spec::from_wire(&request("http://10.1.2.3/"), &s, &loopback, &c).is_err());
    }

    #[test]
    fn networks_contain_what_their_prefix_says() {
        let n = Network::parse("n", "10.0.0.0/8").unwrap();
        assert!(n.contains("10.200.1.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        assert!(
            Network::parse("n", "::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(Network::parse("n", "10.0.0.0/33").is_err());
        assert!(Network::parse("n", "banana").is_err());
        assert!(
            Network::parse("n", "0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(!is_public("100.64.0.1".parse().unwrap()));
        assert!(!is_public("fd00::1".parse().unwrap()));
    }

    #[test]
    fn filters_are_bounded_and_named() {
        let s = NotifySettings {
            max_keys_per_subscription: 2,
            ..NotifySettings::default()
        };
        let c = Catalog::embedded().unwrap();
        let p = policy(&[]);
        let sel = |gpu: &str| v1::KeySelector {
            gpu_model: gpu.into(),
            ..Default::default()
        };
        let mut r = request("https://example.com/");
        r.events = vec![v1::NotificationEvent::LabelChanged as i32];
        assert_eq!(
            field_of(Spec::from_wire(&r, &s, &p, &c).unwrap_err()),
            "keys"
        );
        r.keys = vec![sel("H100"), sel("A100"), sel("H100")];
        assert_eq!(
            field_of(Spec::from_wire(&r, &s, &p, &c).unwrap_err()),
            "keys"
        );
        r.keys = vec![sel("H100"), sel("NOPE")];
        assert_eq!(
            field_of(Spec::from_wire(&r, &s, &p, &c).unwrap_err()),
            "keys[1].gpu_model"
        );
        r.keys = vec![sel("H100"), v1::KeySelector::default()];
        assert_eq!(
            field_of(Spec::from_wire(&r, &s, &p, &c).unwrap_err()),
            "keys[1]"
        );
        r.keys = vec![sel("H100")];
        r.events = vec![99];
        assert_eq!(
            field_of(Spec::from_wire(&r, &s, &p, &c).unwrap_err()),
            "events[0]"
        );
        r.events = vec![v1::NotificationEvent::LabelChanged as i32];
        r.cooldown_seconds = 10 * 86_400;
        assert_eq!(
            field_of(Spec::from_wire(&r, &s, &p, &c).unwrap_err()),
            "cooldown_seconds"
        );
        r.cooldown_seconds = 60;
        let spec = Spec::from_wire(&r, &s, &p, &c).unwrap();
        assert_eq!(spec.cooldown, Duration::from_secs(60));
    }

    #[test]
    fn gpu_model_selectors_match_the_catalog_types() {
        let c = Catalog::embedded().unwrap();
        let g = c.iter().next().unwrap().clone();
        let sel = KeySelector {
            gpu_model: Some(g.gpu_model.clone()),
            market: Some(Market::OnDemand),
            ..KeySelector::default()
        };
        let alert = AlertRow {
            provider: g.provider.as_str().into(),
            region: "us-east-1".into(),
            zone_id: "use1-az1".into(),
            instance_type: g.instance_type.as_str().into(),
            market: "on_demand".into(),
            at: 0,
            at_ms: 0,
            from_label: "available".into(),
            to_label: "unavailable".into(),
            score: 10,
            confidence: 0.9,
            low_confidence: 0,
            evidence: "[]".into(),
        };
        assert!(sel.matches(&alert, &c));
        let spot = AlertRow {
            market: "spot".into(),
            ..alert.clone()
        };
        assert!(!sel.matches(&spot, &c));
        let other = AlertRow {
            instance_type: "t3.micro".into(),
            ..alert
        };
        assert!(!sel.matches(&other, &c));
    }
}
