//! Google service-account credentials: the JSON key file (`GOOGLE_APPLICATION_CREDENTIALS`),
//! the RS256-signed JWT assertion, and its exchange for an access token at the key file's
//! `token_uri` (OAuth2 JWT-bearer grant), cached until shortly before it expires.
//!
//! Contract: the private key never leaves this module and is never printed; a malformed key
//! file is [`CloudError::Invalid`] naming the field; a refused assertion (unknown service
//! account, bad signature, disabled key) is a `permission` [`CloudError::Api`].

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use capsight_classify::Classified;
use capsight_proto::domain::ErrorClass;
use ring::{
    rand::SystemRandom,
    signature::{RSA_PKCS1_SHA256, RsaKeyPair},
};
use serde::Deserialize;

use crate::CloudError;

/// The environment variable holding the path of the service-account JSON key file.
pub const CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// The OAuth2 scope capsight asks for (Compute, Resource Manager and Billing reads).
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(120);

/// The fields of a service-account key file capsight reads.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    private_key: Option<String>,
    client_email: Option<String>,
    token_uri: Option<String>,
}

/// A service account: who it is, where tokens come from, and its signing key.
#[derive(Clone)]
pub struct ServiceAccount {
    email: String,
    token_uri: String,
    project_id: Option<String>,
    key: Arc<RsaKeyPair>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the key
        f.debug_struct("ServiceAccount")
            .field("email", &self.email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

fn invalid(what: &str, why: impl std::fmt::Display) -> CloudError {
    CloudError::Invalid(format!("service-account key {what}: {why}"))
}

impl ServiceAccount {
    /// Parses a service-account JSON key file's text.
    pub fn from_json(text: &str) -> Result<Self, CloudError> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| invalid("file", e))?;
        if file.kind.as_deref() != Some("service_account") {
            return Err(invalid("type", "must be \"service_account\""));
        }
        let field = |name: &str, v: Option<String>| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or_else(|| invalid(name, "is missing"))
        };
        let email = field("client_email", file.client_email)?;
        let token_uri = field("token_uri", file.token_uri)?;
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
            return Err(invalid("token_uri", "must be an http(s) URL"));
        }
        let pem = field("private_key", file.private_key)?;
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----") && !l.is_empty())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| invalid("private_key", "is not PEM"))?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| invalid("private_key", format!("is not an RSA PKCS#8 key ({e})")))?;
        Ok(Self {
            email,
            token_uri,
            project_id: file.project_id.filter(|p| !p.is_empty()),
            key: Arc::new(key),
        })
    }

    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<Self, CloudError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("file", format!("{}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    /// The key file named by `GOOGLE_APPLICATION_CREDENTIALS`.
    pub fn from_env() -> Result<Self, CloudError> {
        let path = std::env::var(CREDENTIALS_ENV)
            .ok()
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| CloudError::Invalid(format!("{CREDENTIALS_ENV} is not set")))?;
        Self::from_file(Path::new(&path))
    }

    /// The service account's email.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The project the key file names, if any.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// The token endpoint.
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The signed JWT assertion, issued at `now` (unix seconds), valid one hour.
    pub fn assertion(&self, now: i64) -> Result<String, CloudError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let claims = b64.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| invalid("private_key", "cannot sign"))?;
        Ok(format!("{signed}.{}", b64.encode(signature)))
    }
}

/// A cached access token.
#[derive(Debug, Clone)]
struct Cached {
    token: String,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

#[derive(Deserialize)]
struct TokenRefusal {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Access tokens of one service account, fetched when missing or about to expire; clones share
/// the cache.
#[derive(Debug, Clone)]
pub struct Tokens {
    account: ServiceAccount,
    cached: Arc<tokio::sync::Mutex<Option<Cached>>>,
}

impl Tokens {
    /// Tokens of `account`.
    pub fn new(account: ServiceAccount) -> Self {
        Self {
            account,
            cached: Arc::default(),
        }
    }

    /// The service account.
    pub fn account(&self) -> &ServiceAccount {
        &self.account
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    pub async fn token(&self, http: &reqwest::Client) -> Result<String, CloudError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
            return Ok(c.token.clone());
        }
        let fresh = self.exchange(http).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn exchange(&self, http: &reqwest::Client) -> Result<Cached, CloudError> {
        const OPERATION: &str = "oauth2.token";
        let now = chrono::Utc::now().timestamp();
        let assertion = self.account.assertion(now)?;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let started = Instant::now();
        let response = http
            .post(&self.account.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| CloudError::Transport {
                operation: OPERATION,
                message: e.to_string(),
            })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| CloudError::Transport {
            operation: OPERATION,
            message: e.to_string(),
        })?;
        if status.is_success() {
            let answer: TokenAnswer =
                serde_json::from_str(&text).map_err(|e| CloudError::Response {
                    operation: OPERATION,
                    message: e.to_string(),
                })?;
            let lifetime = Duration::from_secs(answer.expires_in.max(1));
            return Ok(Cached {
                token: answer.access_token,
                renew_at: started + lifetime.saturating_sub(RENEW_BEFORE),
            });
        }
        let class = match status.as_u16() {
            429 => ErrorClass::Throttled,
            500..=599 => ErrorClass::Transient,
            // invalid_grant (unknown account, bad signature, disabled key), unauthorized_client
            _ => ErrorClass::Permission,
        };
        let refusal: TokenRefusal = serde_json::from_str(&text).unwrap_or(TokenRefusal {
            error: status.as_u16().to_string(),
            error_description: text,
        });
        Err(CloudError::Api {
            operation: OPERATION,
            classified: Box::new(Classified::new(
                class,
                refusal.error,
                format!(
                    "service account {}: {}",
                    self.account.email, refusal.error_description
                ),
            )),
            zone_id_hints: Vec::new(),
            request_id: None,
        })
    }
}
