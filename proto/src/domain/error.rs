//! The one validation error of the contract: which field, and why.

/// A field failed validation. `field` is the protobuf field path (`key.region`,
/// `launch_attempt.outcome`), so an API can answer `INVALID_ARGUMENT` naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {reason}")]
pub struct FieldError {
    field: String,
    reason: String,
}

impl FieldError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The protobuf path of the offending field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Prefixes the field path with its parent message field: `region` -> `key.region`.
    #[must_use]
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }

    /// The error for a required field that is missing.
    pub fn missing(field: impl Into<String>) -> Self {
        Self::new(field, "is required")
    }
}

/// Rejects strings longer than `max` bytes.
pub(crate) fn bounded(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.len() > max {
        return Err(FieldError::new(
            field,
            format!("is {} bytes long, at most {max} allowed", value.len()),
        ));
    }
    Ok(())
}
