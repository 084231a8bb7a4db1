//! Errors cloudsim answers with, in the shapes of the AWS protocols.
//!
//! Contract: every failure a request can cause is an [`ApiError`] rendered as the protocol of the
//! service that was called (EC2 Query XML, awsQuery XML for STS, JSON 1.1 for Service Quotas) with
//! the HTTP status AWS uses for that code. Nothing on a request path panics.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::xml::Xml;

/// An AWS-shaped error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The AWS error code, e.g. `InsufficientInstanceCapacity`.
    pub code: String,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A 400 error.
    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// The status AWS uses for `code` (400 unless known otherwise).
    pub fn status_for(code: &str) -> u16 {
        match code {
            "DryRunOperation" => 412,
            "UnauthorizedOperation" | "AccessDenied" | "Blocked" => 403,
            "AuthFailure" => 401,
            "InsufficientInstanceCapacity" | "InternalError" | "ServerInternal" => 500,
            "RequestLimitExceeded" | "ServiceUnavailable" | "Unavailable" => 503,
            _ => 400,
        }
    }

    /// An error with AWS's status for its code.
    pub fn coded(code: impl Into<String>, message: impl Into<String>) -> Self {
        let code = code.into();
        Self::new(Self::status_for(&code), code, message)
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    /// EC2 Query protocol: `<Response><Errors><Error>..</Error></Errors><RequestID>..`.
    pub fn ec2(&self, request_id: &str) -> Response {
        let mut x = Xml::bare("Response");
        x.open("Errors")
            .open("Error")
            .leaf("Code", &self.code)
            .leaf("Message", &self.message)
            .close("Error")
            .close("Errors")
            .leaf("RequestID", request_id);
        xml_response(self.status_code(), x.finish("Response"), request_id)
    }

    /// awsQuery protocol (STS): `<ErrorResponse><Error><Type>..`.
    pub fn aws_query(&self, request_id: &str) -> Response {
        let kind = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        let mut x = Xml::bare("ErrorResponse");
        x.open("Error")
            .leaf("Type", kind)
            .leaf("Code", &self.code)
            .leaf("Message", &self.message)
            .close("Error")
            .leaf("RequestId", request_id);
        xml_response(self.status_code(), x.finish("ErrorResponse"), request_id)
    }

    /// JSON 1.1 protocol (Service Quotas): `{"__type": code, "message": ..}`.
    pub fn json(&self, request_id: &str) -> Response {
        let body = serde_json::json!({ "__type": self.code, "message": self.message });
        json_response(self.status_code(), body.to_string(), request_id)
    }
}

/// A response of `content_type` carrying the AWS request id header.
fn typed_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    request_id: &str,
) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// An XML response.
pub fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    typed_response(status, "text/xml;charset=UTF-8", body, request_id)
}

/// A JSON 1.1 response.
pub fn json_response(status: StatusCode, body: String, request_id: &str) -> Response {
    typed_response(status, "application/x-amz-json-1.1", body, request_id)
}
