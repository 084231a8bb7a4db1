//! Why a catalog was rejected: which entry, which field, and why.

use std::path::PathBuf;

/// A catalog that could not be read or did not validate.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read the GPU catalog {path}: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML of the catalog's shape (the message has the line and column).
    #[error("the GPU catalog is not valid: {0}")]
    Syntax(#[from] toml::de::Error),
    /// An entry broke a rule.
    #[error("GPU catalog {entry}: `{field}` {reason}")]
    Invalid {
        /// The entry: `instance[3] (aws p5.48xlarge)`, `model[1] (A100 80 GiB)` or `catalog`.
        entry: String,
        /// The offending field (`regions[2]`, `quota.on_demand`, ...).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl CatalogError {
    /// The offending field, for [`CatalogError::Invalid`].
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// A capacity key the catalog does not allow: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct UnknownKey {
    /// `instance_type`, `region` or `zone_id`.
    pub field: &'static str,
    /// What is unknown.
    pub reason: String,
}

impl UnknownKey {
    pub(crate) fn new(field: &'static str, reason: String) -> Self {
        Self { field, reason }
    }
}
