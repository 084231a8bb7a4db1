//! The HTTP plumbing of the adapters that call REST or GraphQL APIs with `reqwest` (Lambda
//! Cloud, RunPod, GCP, Azure): one client per account with the operation timeout, the adapters'
//! retry loop under the API's name, a request sent and its answer read whole (failing either is
//! a transport failure), non-2xx answers classified with the provider's table, JSON decoded,
//! endpoints checked, and API keys kept out of `Debug`.

use std::future::Future;

use capsight_classify::classify_http;
use capsight_proto::domain::Provider;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use crate::{CloudError, CloudSettings};

/// One provider's API over HTTP: the client and the retry loop its calls run in (no secret:
/// credentials are added per request). Clones share the client's connection pool.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    client: reqwest::Client,
    settings: CloudSettings,
    provider: Provider,
    system: &'static str,
}

impl Api {
    /// The API `system` (`lambda-api`: the retry loop's and the spans' name) of `provider`, each
    /// attempt bounded by `settings.operation_timeout`.
    pub(crate) fn new(
        provider: Provider,
        system: &'static str,
        settings: CloudSettings,
    ) -> Result<Self, CloudError> {
        let client = reqwest::Client::builder()
            .timeout(settings.operation_timeout)
            .build()
            .map_err(|e| CloudError::Invalid(format!("{provider} HTTP client: {e}")))?;
        Ok(Self {
            client,
            settings,
            provider,
            system,
        })
    }

    /// The client.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The `[cloud]` settings the API was made with.
    pub(crate) fn settings(&self) -> &CloudSettings {
        &self.settings
    }

    /// Runs `call` in the adapters' retry loop ([`crate::retry::retrying`]).
    pub(crate) async fn retrying<T, F, Fut>(
        &self,
        operation: &'static str,
        call: F,
    ) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        crate::retry::retrying(&self.settings, self.system, operation, call).await
    }

    /// Sends one request (no retry); a non-2xx answer is classified with the provider's table
    /// ([`Answer::refusal`]).
    pub(crate) async fn send(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, CloudError> {
        let answer = exchange(operation, request).await?;
        if answer.is_success() {
            Ok(answer)
        } else {
            Err(answer.refusal(self.provider, operation))
        }
    }
}

/// One HTTP answer, read whole.
pub(crate) struct Answer {
    /// The status code.
    pub(crate) status: u16,
    /// The headers.
    pub(crate) headers: reqwest::header::HeaderMap,
    /// The body.
    pub(crate) body: String,
}

impl Answer {
    /// Whether the status is 2xx.
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON `T`; a body that is not one is an unexpected response.
    pub(crate) fn json<T: DeserializeOwned>(
        &self,
        operation: &'static str,
    ) -> Result<T, CloudError> {
        serde_json::from_str(&self.body).map_err(|e| CloudError::Response {
            operation,
            message: e.to_string(),
        })
    }

    /// The answer as `provider`'s error: status and body classified with its table
    /// (`capsight_classify::classify_http`); no zone hints, no request id.
    pub(crate) fn refusal(&self, provider: Provider, operation: &'static str) -> CloudError {
        CloudError::Api {
            operation,
            classified: Box::new(classify_http(provider, self.status, &self.body)),
            zone_id_hints: Vec::new(),
            request_id: None,
        }
    }
}

/// Sends `request` and reads its answer whole, whatever the status; failing to do either is a
/// transport failure (retryable).
pub(crate) async fn exchange(
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, CloudError> {
    let transport = |e: reqwest::Error| CloudError::Transport {
        operation,
        message: e.to_string(),
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(transport)?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// An RFC 3339 timestamp of an API's JSON (`2024-05-01T12:00:00.000-07:00`) in UTC; `None` when
/// absent or not one.
pub(crate) fn rfc3339(text: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    text.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// `text` as a base URL without trailing slashes; `field` (`lambda.endpoint`) names it in the
/// error when it is not an http(s) URL.
pub(crate) fn http_url(field: &str, text: &str) -> Result<String, CloudError> {
    let url = text.trim().trim_end_matches('/').to_owned();
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(url)
    } else {
        Err(CloudError::Invalid(format!(
            "{field} {text:?} must be an http(s) URL"
        )))
    }
}

/// An account's API key, sent as a bearer token (Lambda Cloud, RunPod); `Debug` never shows it
/// and it is zeroed when dropped (`secrecy`).
#[derive(Debug, Clone)]
pub(crate) struct ApiKey(SecretString);

impl ApiKey {
    /// `key`, which must not be blank: `cloud` (`Lambda`) and `env` (the variable it is read
    /// from) say which is missing.
    pub(crate) fn new(key: String, cloud: &str, env: &str) -> Result<Self, CloudError> {
        if key.trim().is_empty() {
            return Err(CloudError::Invalid(format!(
                "a {cloud} API key is required ({env})"
            )));
        }
        Ok(Self(key.into()))
    }

    /// `request` carrying the key as `Authorization: Bearer`.
    pub(crate) fn bearer(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(self.0.expose_secret())
    }
}
