//! Spot Instance Advisor data (`spot-advisor-data.json`): interruption bucket and savings per
//! region and instance type (Linux).
//!
//! Contract: [`parse`] is pure and never panics; entries with out-of-range values are skipped.
//! Format: `{"spot_advisor": {"<region>": {"Linux": {"<type>": {"s": <savings %>, "r": <0..4>}}}}}`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One advisor entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advice {
    /// Interruption bucket 0..=4.
    pub bucket: u8,
    /// Savings over on-demand, percent.
    pub savings_percent: u8,
}

#[derive(Deserialize)]
struct Doc {
    spot_advisor: BTreeMap<String, BTreeMap<String, BTreeMap<String, Entry>>>,
}

#[derive(Deserialize)]
struct Entry {
    s: i64,
    r: i64,
}

/// (region, instance type) -> advice, for Linux.
pub fn parse(body: &str) -> Result<BTreeMap<(String, String), Advice>, serde_json::Error> {
    let doc: Doc = serde_json::from_str(body)?;
    let mut out = BTreeMap::new();
    for (region, oses) in doc.spot_advisor {
        let Some(types) = oses.get("Linux") else {
            continue;
        };
        for (t, e) in types {
            let (Ok(bucket), Ok(savings)) = (u8::try_from(e.r), u8::try_from(e.s)) else {
                continue;
            };
            if bucket <= 4 && savings <= 100 {
                out.insert(
                    (region.clone(), t.clone()),
                    Advice {
                        bucket,
                        savings_percent: savings,
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_linux_entries_and_skips_nonsense() {
        let body = r#"{"global_rate":"<10%","instance_types":{},"ranges":[],
          "spot_advisor":{"us-east-1":{"Linux":{"p5.48xlarge":{"s":62,"r":3},"g5.xlarge":{"s":70,"r":9}},
                                       "Windows":{"g5.xlarge":{"s":60,"r":0}}}}}"#;
        let got = parse(body).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[&("us-east-1".to_owned(), "p5.48xlarge".to_owned())],
            Advice {
                bucket: 3,
                savings_percent: 62
            }
        );
        assert!(parse("{not json").is_err());
    }
}
