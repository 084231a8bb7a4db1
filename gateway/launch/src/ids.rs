//! Typed launch job ids: a UUID in its hyphenated form, and the cloud client tokens derived
//! from a job id (attempt n, the warm standby, the n-th replacement), so a replayed step finds
//! the instance it launched before instead of creating a second one. Instance ids are the cloud
//! adapter's [`capsight_cloud::InstanceId`].

use std::fmt;

use capsight_proto::domain::FieldError;

/// A launch job id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(String);

impl JobId {
    /// A new id (UUIDv7: time-ordered).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id sent in `field`, in its canonical (hyphenated) form.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        if text.is_empty() {
            return Err(FieldError::missing(field));
        }
        uuid::Uuid::parse_str(text)
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_| FieldError::new(field, "is not a launch job id (a UUID)"))
    }

    /// The id of an idempotency key: a UUIDv5 of (tenant, key), so the same key of another
    /// tenant is another job.
    pub fn idempotent(tenant: &str, key: &str) -> Result<Self, FieldError> {
        if key.len() > 64
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(FieldError::new(
                "idempotency_key",
                "must be 1..=64 of [A-Za-z0-9_-]",
            ));
        }
        Ok(Self(
            uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("capsight-launch\u{1f}{tenant}\u{1f}{key}").as_bytes(),
            )
            .to_string(),
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string (wire messages, rows).
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for JobId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// The client token of launch attempt `attempt` of `job_id`: the id itself for the first,
/// `<job_id>-<n>` after.
pub fn attempt_token(job_id: &str, attempt: u32) -> String {
    if attempt <= 1 {
        job_id.to_owned()
    } else {
        format!("{job_id}-{attempt}")
    }
}

/// The client token of `job_id`'s warm standby: `<job_id>-standby`.
pub fn standby_token(job_id: &str) -> String {
    format!("{job_id}-standby")
}

/// The client token of `job_id`'s replacement spot instance after switch `switch`:
/// `<job_id>-r<n>`.
pub fn replacement_token(job_id: &str, switch: u32) -> String {
    format!("{job_id}-r{switch}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_uuids_in_their_hyphenated_form() {
        let id = "0190b2a4-7c3e-7d4e-9b1a-2f3c4d5e6f70";
        assert_eq!(JobId::parse("job_id", id).unwrap().as_str(), id);
        assert_eq!(
            JobId::parse("job_id", "0190B2A47C3E7D4E9B1A2F3C4D5E6F70").unwrap(),
            *id
        );
        assert_eq!(JobId::parse("job_id", "").unwrap_err().field(), "job_id");
        assert!(JobId::parse("job_id", "nope").is_err());
        assert_eq!(
            JobId::parse("job_id", JobId::generate().as_str())
                .unwrap()
                .as_str()
                .len(),
            36
        );
    }

    #[test]
    fn client_tokens_name_the_job() {
        assert_eq!(standby_token("j"), "j-standby");
        assert_eq!(replacement_token("j", 2), "j-r2");
        assert_eq!(attempt_token("j", 2), "j-2");
    }
}
