//! A gRPC `Status` (the gateway's one error mapping, `crate::error`) as an HTTP answer: the
//! status code below and a JSON body `{"code": "<grpc code>", "message": "..."}`; a rate limit
//! keeps its `retry-after`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    response::{IntoResponse, Response},
};
use tonic::{Code, Status};

/// An API error: the gRPC status of the call it was mapped onto.
#[derive(Debug)]
pub struct WebError(pub Status);

impl From<Status> for WebError {
    fn from(s: Status) -> Self {
        Self(s)
    }
}

impl From<crate::GatewayError> for WebError {
    fn from(e: crate::GatewayError) -> Self {
        Self(Status::from(e))
    }
}

impl WebError {
    /// A request the web layer itself cannot read (a malformed body or query).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self(Status::invalid_argument(message))
    }
}

/// The HTTP status of a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON body of an error.
pub fn body(s: &Status) -> serde_json::Value {
    serde_json::json!({
        "code": format!("{:?}", s.code()),
        "message": s.message(),
    })
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut resp = (http_status(self.0.code()), Json(body(&self.0))).into_response();
        if let Some(after) = self
            .0
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            resp.headers_mut().insert(RETRY_AFTER, after);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_keeps_its_meaning_over_http() {
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let limited = WebError::from(crate::GatewayError::RateLimited {
            per_minute: 5,
            retry_after_secs: 7,
        })
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            limited
                .headers()
                .get(RETRY_AFTER)
                .map(HeaderValue::as_bytes),
            Some(&b"7"[..])
        );
    }
}
