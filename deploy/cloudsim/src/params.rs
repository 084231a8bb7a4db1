//! Form-encoded AWS Query parameters (`Action=RunInstances&InstanceType=...&TagSpecification.1.Tag.1.Key=...`).
//!
//! Contract: lookups never panic; a missing or malformed value becomes an [`ApiError`] with the
//! AWS code the real service would use (`MissingParameter`, `InvalidParameterValue`).

use std::collections::BTreeMap;

use crate::error::ApiError;

/// The decoded parameters of one request.
#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Decodes a form body. Later duplicates win.
    pub fn parse(body: &[u8]) -> Self {
        Self {
            map: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// Builds from pairs (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The raw value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// The value of `name` or `MissingParameter`.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "MissingParameter",
                format!("The request must contain the parameter {name}"),
            )
        })
    }

    /// `name` as a boolean (`true`/`false`); absent = false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(invalid(name, v)),
        }
    }

    /// `name` parsed as a number, if present.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| v.trim().parse::<T>().map_err(|_| invalid(name, v)))
            .transpose()
    }

    /// `name` parsed as a number; `MissingParameter` when absent.
    pub fn required_number<T: std::str::FromStr>(&self, name: &str) -> Result<T, ApiError> {
        self.required(name)?;
        self.number(name)?.ok_or_else(|| invalid(name, ""))
    }

    /// `name` parsed as an RFC 3339 timestamp, if present.
    pub fn time(&self, name: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        self.get(name)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| invalid(name, v))
            })
            .transpose()
    }

    /// A flat list `Prefix.1`, `Prefix.2`, ... in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut items: Vec<(u32, String)> = self
            .map
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(prefix)?.strip_prefix('.')?;
                rest.parse::<u32>().ok().map(|i| (i, v.clone()))
            })
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// Structured list members `Prefix.N.*` as sub-parameter sets, in index order.
    pub fn members(&self, prefix: &str) -> Vec<Params> {
        let mut groups: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
        for (k, v) in &self.map {
            let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            let Some((index, field)) = rest.split_once('.') else {
                continue;
            };
            if let Ok(i) = index.parse::<u32>() {
                groups
                    .entry(i)
                    .or_default()
                    .insert(field.to_owned(), v.clone());
            }
        }
        groups.into_values().map(|map| Params { map }).collect()
    }

    /// `Filter.N.Name` / `Filter.N.Value.M` as (name, values).
    pub fn filters(&self) -> Vec<(String, Vec<String>)> {
        self.members("Filter")
            .into_iter()
            .filter_map(|f| Some((f.get("Name")?.to_owned(), f.list("Value"))))
            .collect()
    }

    /// Tags from `TagSpecification.N` (RunInstances) or `TagSpecifications.N` (reservations).
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut specs = self.members("TagSpecification");
        specs.extend(self.members("TagSpecifications"));
        specs
            .iter()
            .flat_map(|spec| spec.members("Tag"))
            .filter_map(|t| {
                Some((
                    t.get("Key")?.to_owned(),
                    t.get("Value").unwrap_or("").to_owned(),
                ))
            })
            .collect()
    }
}

/// `InvalidParameterValue` for `name`.
pub fn invalid(name: &str, value: &str) -> ApiError {
    ApiError::bad_request(
        "InvalidParameterValue",
        format!("Value ({value}) for parameter {name} is invalid."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_members_filters_and_tags() {
        let p = Params::parse(
            b"InstanceId.2=b&InstanceId.1=a&Filter.1.Name=instance-type&Filter.1.Value.1=p5.48xlarge\
              &TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=v%20w",
        );
        assert_eq!(p.list("InstanceId"), ["a", "b"]);
        assert_eq!(
            p.filters(),
            [("instance-type".to_owned(), vec!["p5.48xlarge".to_owned()])]
        );
        assert_eq!(p.tags(), [("k".to_owned(), "v w".to_owned())]);
        assert!(p.flag("InstanceId.1").is_err());
        assert!(p.required("Nope").is_err());
        assert!(p.number::<u32>("InstanceId.1").is_err());
    }
}
