//! Who is calling: the access key id, signing region and service from the SigV4
//! `Authorization` header. Signatures are not verified; cloudsim trusts loopback.
//!
//! Contract: a request without a parsable `Authorization` header has no caller and is answered
//! with the service's "missing authentication" error by the caller of [`caller`].

use axum::http::HeaderMap;

/// The caller as named by the signature's credential scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Access key id (`AKIA...`, or `ASIA...` for assumed-role sessions).
    pub access_key_id: String,
    /// Signing region, e.g. `us-east-1`.
    pub region: String,
    /// Signing service, e.g. `ec2`, `servicequotas`, `sts`.
    pub service: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20261123/us-east-1/ec2/aws4_request, ...`.
pub fn caller(headers: &HeaderMap) -> Option<Caller> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let credential = value
        .split([' ', ','])
        .find_map(|part| part.trim().strip_prefix("Credential="))?;
    let mut parts = credential.split('/');
    let access_key_id = parts.next()?.to_owned();
    let _date = parts.next()?;
    let region = parts.next()?.to_owned();
    let service = parts.next()?.to_owned();
    (!access_key_id.is_empty()).then_some(Caller {
        access_key_id,
        region,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_credential_scope() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20261123/us-east-1/ec2/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc"
                .parse()
                .unwrap(),
        );
        let c = caller(&h).unwrap();
        assert_eq!(c.access_key_id, "AKIDTEST");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.service, "ec2");
        assert!(caller(&HeaderMap::new()).is_none());
    }
}
