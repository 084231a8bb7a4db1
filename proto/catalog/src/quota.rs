//! Quota codes and units. AWS GPU quotas are per region, in vCPUs, per instance family
//! (Service Quotas, service code `ec2`); [`aws_quota_codes`] is that family table (P, G/VT,
//! Inf, Trn, DL, standard), so a type missing from the catalog still finds its quota.

use capsight_proto::domain::{InstanceType, Market, Provider};

/// The quota codes an instance type counts against.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuotaCodes {
    /// On-demand quota (AWS `L-417A185B`, GCP `NVIDIA_H100_GPUS`, Azure
    /// `standardNDSH100v5Family`).
    pub on_demand: String,
    /// Spot quota, if the type has a spot market with a known quota.
    pub spot: Option<String>,
}

impl QuotaCodes {
    /// The code for `market`. Capacity blocks are prepaid reservations and count against no
    /// quota, so they have none.
    pub fn for_market(&self, market: Market) -> Option<&str> {
        match market {
            Market::OnDemand => Some(&self.on_demand),
            Market::Spot => self.spot.as_deref(),
            Market::CapacityBlock => None,
        }
    }
}

/// What a provider's GPU quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaUnit {
    /// vCPUs of running instances of the family (AWS, Azure cores).
    Vcpus,
    /// GPUs (GCP `NVIDIA_*_GPUS`; RunPod's account GPU limit).
    Gpus,
    /// Instances (Lambda Cloud's account limit).
    Instances,
}

impl QuotaUnit {
    /// The unit `provider` counts GPU quotas in.
    pub fn of(provider: Provider) -> Self {
        match provider {
            Provider::Aws | Provider::Azure => Self::Vcpus,
            Provider::Gcp | Provider::RunPod => Self::Gpus,
            Provider::Lambda => Self::Instances,
        }
    }
}

/// The AWS quota family of an instance type and its codes (Service Quotas, service code `ec2`), or `None` for
/// families the table does not cover (F, U, X, ...). P2-P4 and P5 have different spot codes;
/// later P generations have no spot code in the table.
pub fn aws_quota_codes(instance_type: &InstanceType) -> Option<(&'static str, QuotaCodes)> {
    let family = instance_type.as_str().split('.').next().unwrap_or_default();
    let letters: String = family
        .chars()
        .take_while(char::is_ascii_lowercase)
        .collect();
    let generation: u32 = family
        .get(letters.len()..)
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    let (name, on_demand, spot) = match letters.as_str() {
        "p" => (
            "P",
            "L-417A185B",
            match generation {
                2..=4 => Some("L-7212CCBC"),
                5 => Some("L-C4BD4855"),
                _ => None,
            },
        ),
        "g" | "vt" => ("G and VT", "L-DB2E81BA", Some("L-3819A6DF")),
        "inf" => ("Inf", "L-1945791B", Some("L-B5D1601B")),
        "trn" => ("Trn", "L-2C3B7624", Some("L-6B0D517C")),
        "dl" => ("DL", "L-6E869C2A", None),
        l if l.len() == 1 && "acdhimrtz".contains(l) => {
            ("Standard", "L-1216C47A", Some("L-34B43A08"))
        }
        _ => return None,
    };
    Some((
        name,
        QuotaCodes {
            on_demand: on_demand.to_owned(),
            spot: spot.map(str::to_owned),
        },
    ))
}

/// `L-` followed by 8 uppercase hex digits.
pub(crate) fn is_aws_quota_code(code: &str) -> bool {
    code.strip_prefix("L-").is_some_and(|hex| {
        hex.len() == 8
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(t: &str) -> Option<(&'static str, QuotaCodes)> {
        aws_quota_codes(&InstanceType::parse("t", Provider::Aws, t).unwrap())
    }

    #[test]
    fn families_follow_the_domain_table() {
        let p5 = codes("p5en.48xlarge").unwrap().1;
        assert_eq!(p5.on_demand, "L-417A185B");
        assert_eq!(p5.spot.as_deref(), Some("L-C4BD4855"));
        assert_eq!(
            codes("p4d.24xlarge").unwrap().1.spot.as_deref(),
            Some("L-7212CCBC")
        );
        assert_eq!(
            codes("p3.2xlarge").unwrap().1.spot.as_deref(),
            Some("L-7212CCBC")
        );
        assert_eq!(codes("g6e.xlarge").unwrap().1.on_demand, "L-DB2E81BA");
        assert_eq!(codes("vt1.3xlarge").unwrap().0, "G and VT");
        assert_eq!(codes("inf2.xlarge").unwrap().1.on_demand, "L-1945791B");
        assert_eq!(
            codes("trn1.32xlarge").unwrap().1.spot.as_deref(),
            Some("L-6B0D517C")
        );
        assert_eq!(codes("dl1.24xlarge").unwrap().1.spot, None);
        assert_eq!(codes("c7i.metal-24xl").unwrap().1.on_demand, "L-1216C47A");
        assert_eq!(codes("t3.micro").unwrap().0, "Standard");
        assert!(codes("x2idn.32xlarge").is_none());
        assert!(codes("u7i-12tb.224xlarge").is_none());
    }

    #[test]
    fn quota_code_shape() {
        assert!(is_aws_quota_code("L-417A185B"));
        for bad in [
            "",
            "L-",
            "L-417A185",
            "L-417A185BB",
            "l-417A185B",
            "L-417a185b",
            "X-417A185B",
        ] {
            assert!(!is_aws_quota_code(bad), "{bad}");
        }
    }

    #[test]
    fn capacity_blocks_have_no_quota() {
        let q = codes("p5.48xlarge").unwrap().1;
        assert_eq!(q.for_market(Market::OnDemand), Some("L-417A185B"));
        assert_eq!(q.for_market(Market::Spot), Some("L-C4BD4855"));
        assert_eq!(q.for_market(Market::CapacityBlock), None);
    }
}
