//! Layered, strict configuration.
//!
//! Layers, later wins: [`DEFAULTS`] (`deploy/config/capsight.toml`, embedded: every key with its
//! default, the one documented reference) < the file named by `--config` or `CAPSIGHT_CONFIG`
//! (TOML) < environment variables `CAPSIGHT_<SECTION>__<FIELD>` (double underscore between
//! levels, e.g. `CAPSIGHT_KAFKA__BROKERS=10.0.0.5:9092`).
//!
//! A binary's config struct names only the sections it needs; each section struct uses
//! `#[serde(deny_unknown_fields)]`, so a misspelt key is an error. A section in the file that
//! no binary knows (`[kafak]`) is an error too. Only environment variables whose first level
//! names a known section are read, so unrelated `CAPSIGHT_*` variables (the stack script's
//! ports) are ignored. One value is built in `main` and passed down; there is no global config.

use std::path::{Path, PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
    value::{Dict, UncasedStr},
};
use serde::de::DeserializeOwned;

/// Every key with its default: `deploy/config/capsight.toml`.
pub const DEFAULTS: &str = include_str!("../../config/capsight.toml");

/// The prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "CAPSIGHT_";

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The embedded defaults do not parse: a bug in the binary.
    #[error("embedded default configuration is invalid: {0}")]
    Defaults(String),
    /// The config file is missing.
    #[error("config file {path} does not exist")]
    MissingFile {
        /// The path given.
        path: PathBuf,
    },
    /// A layer holds a bad value; the message names the key and the layer it came from.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The `--config` flag every binary takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML config file layered over the built-in defaults (environment variables
    /// `CAPSIGHT_<SECTION>__<FIELD>` override both).
    #[arg(long, env = "CAPSIGHT_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Loads `T` from [`DEFAULTS`], the optional file and the process environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_with_defaults(DEFAULTS, file)
}

/// [`load`] over other defaults (tests).
pub fn load_with_defaults<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
) -> Result<T, ConfigError> {
    figment(defaults, file)?
        .extract()
        .map_err(|e| ConfigError::Invalid(flatten(&e)))
}

/// [`DEFAULTS`] alone, ignoring files and the environment (drift tests, docs).
pub fn load_defaults<T: DeserializeOwned>() -> Result<T, ConfigError> {
    Figment::from(Toml::string(DEFAULTS))
        .extract()
        .map_err(|e| ConfigError::Defaults(flatten(&e)))
}

/// The `[section]` of [`DEFAULTS`] alone. Drift tests compare it with the section's Rust
/// `Default`, through [`defaults_match`].
pub fn load_default_section<T: DeserializeOwned>(section: &str) -> Result<T, ConfigError> {
    Figment::from(Toml::string(DEFAULTS))
        .extract_inner(section)
        .map_err(|e| ConfigError::Defaults(flatten(&e)))
}

/// Whether `[section]` of [`DEFAULTS`] loads and equals `code` in every field (compared
/// through `Debug`); the error names the section and shows both sides.
pub fn defaults_match<T: DeserializeOwned + std::fmt::Debug>(
    section: &str,
    code: &T,
) -> Result<(), String> {
    let file: T = load_default_section(section).map_err(|e| format!("[{section}]: {e}"))?;
    let (file, code) = (format!("{file:?}"), format!("{code:?}"));
    if file == code {
        Ok(())
    } else {
        Err(format!(
            "[{section}] drifted:\n file: {file}\n code: {code}"
        ))
    }
}

/// Declares the drift test of one config section: `[section]` of [`DEFAULTS`] equals the
/// settings type's `Default` in every field (see [`defaults_match`]). Invoke it under
/// `#[cfg(test)]`.
#[macro_export]
macro_rules! documented_defaults_test {
    ($section:literal, $settings:ty) => {
        #[test]
        fn documented_defaults_match_the_code() {
            let code = <$settings as ::std::default::Default>::default();
            if let Err(drift) = $crate::config::defaults_match($section, &code) {
                panic!("{drift}");
            }
        }
    };
}

/// Builds the layered figment.
fn figment(defaults: &str, file: Option<&Path>) -> Result<Figment, ConfigError> {
    let base = Figment::from(Toml::string(defaults));
    let sections: Vec<String> = base
        .extract::<Dict>()
        .map_err(|e| ConfigError::Defaults(flatten(&e)))?
        .into_keys()
        .collect();
    let mut fig = base;
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile {
                path: path.to_owned(),
            });
        }
        let unknown: Vec<String> = Figment::from(Toml::file_exact(path))
            .extract::<Dict>()
            .map_err(|e| ConfigError::Invalid(flatten(&e)))?
            .into_keys()
            .filter(|k| !sections.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{}: unknown section(s) {}; known: {}",
                path.display(),
                unknown.join(", "),
                sections.join(", ")
            )));
        }
        fig = fig.merge(Toml::file_exact(path));
    }
    let env = Env::prefixed(ENV_PREFIX)
        .filter(move |key: &UncasedStr| {
            key.as_str().split_once("__").is_some_and(|(section, _)| {
                sections.iter().any(|s| s.eq_ignore_ascii_case(section))
            })
        })
        .split("__");
    Ok(fig.merge(env))
}

/// One line per figment error, each with its key path and source.
fn flatten(e: &figment::Error) -> String {
    e.clone()
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[allow(clippy::result_large_err, reason = "figment::Jail's closure signature")]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Kafka {
        brokers: String,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        kafka: Kafka,
    }

    const TEST_DEFAULTS: &str = "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntimeout = \"30s\"\n";

    fn load_with(jail: &figment::Jail, file: Option<&str>) -> Result<Conf, ConfigError> {
        let path = file.map(|f| jail.directory().join(f));
        load_with_defaults::<Conf>(TEST_DEFAULTS, path.as_deref())
    }

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            assert_eq!(
                load_with(jail, None).unwrap().kafka.brokers,
                "127.0.0.1:9092"
            );
            jail.create_file(
                "c.toml",
                "[kafka]\nbrokers = \"file:9092\"\ntimeout = \"2m\"",
            )?;
            let c = load_with(jail, Some("c.toml")).unwrap();
            assert_eq!(c.kafka.brokers, "file:9092");
            assert_eq!(c.kafka.timeout, Duration::from_secs(120));
            jail.set_env("CAPSIGHT_KAFKA__BROKERS", "env:9092");
            assert_eq!(
                load_with(jail, Some("c.toml")).unwrap().kafka.brokers,
                "env:9092"
            );
            Ok(())
        });
    }

    #[test]
    fn unrelated_env_is_ignored_but_typos_in_sections_fail() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("CAPSIGHT_KAFKA_PORT", "9999");
            jail.set_env("CAPSIGHT_AMQP__URL", "amqp://x");
            assert!(load_with(jail, None).is_ok());
            jail.set_env("CAPSIGHT_KAFKA__BROKRES", "x");
            let err = load_with(jail, None).unwrap_err().to_string();
            assert!(err.contains("brokres"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_and_missing_files_are_clear_errors() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("CAPSIGHT_KAFKA__TIMEOUT", "soon");
            let err = load_with(jail, None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("timeout"), "{err}");
            let err = load_with(jail, Some("nope.toml")).unwrap_err();
            assert!(matches!(err, ConfigError::MissingFile { .. }), "{err}");
            jail.create_file("typo.toml", "[kafak]\nbrokers = \"x\"")?;
            let err = load_with(jail, Some("typo.toml")).unwrap_err().to_string();
            assert!(err.contains("kafak"), "{err}");
            Ok(())
        });
    }
}
