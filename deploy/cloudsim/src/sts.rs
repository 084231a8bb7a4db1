//! STS (awsQuery protocol, version 2011-06-15): `AssumeRole` and `GetCallerIdentity`.
//!
//! AssumeRole succeeds when the caller may `sts:AssumeRole`, the role's trust names the caller's
//! account and the `ExternalId` matches the role's; the session's credentials then act as the
//! role (its account, its allowed actions). Expiry is real wall-clock time (+1 h), because the
//! SDK compares it with the system clock.

use crate::{
    error::ApiError,
    params::Params,
    world::{Identity, World},
    xml::{STS_NS, Xml},
};

/// Handles one STS action.
pub fn handle(
    world: &mut World,
    who: &Identity,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    match params.get("Action").unwrap_or_default() {
        "GetCallerIdentity" => {
            let mut x = Xml::document("GetCallerIdentityResponse", STS_NS);
            x.open("GetCallerIdentityResult")
                .leaf("Arn", &who.arn)
                .leaf("UserId", &who.user_id)
                .leaf("Account", &who.account)
                .close("GetCallerIdentityResult");
            metadata(&mut x, request_id);
            Ok(x.finish("GetCallerIdentityResponse"))
        }
        "AssumeRole" => {
            let role_arn = params.required("RoleArn")?;
            let session = params.required("RoleSessionName")?;
            let duration: i64 = params
                .number("DurationSeconds")?
                .unwrap_or(3600)
                .clamp(900, 43_200);
            let (key, secret, token, identity) =
                world.assume_role(who, role_arn, session, params.get("ExternalId"))?;
            let expires = chrono::Utc::now() + chrono::Duration::seconds(duration);
            let mut x = Xml::document("AssumeRoleResponse", STS_NS);
            x.open("AssumeRoleResult")
                .open("Credentials")
                .leaf("AccessKeyId", key)
                .leaf("SecretAccessKey", secret)
                .leaf("SessionToken", token)
                .leaf("Expiration", expires.format("%Y-%m-%dT%H:%M:%SZ"))
                .close("Credentials")
                .open("AssumedRoleUser")
                .leaf("AssumedRoleId", &identity.user_id)
                .leaf("Arn", &identity.arn)
                .close("AssumedRoleUser")
                .close("AssumeRoleResult");
            metadata(&mut x, request_id);
            Ok(x.finish("AssumeRoleResponse"))
        }
        other => Err(ApiError::bad_request(
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    }
}

fn metadata(x: &mut Xml, request_id: &str) {
    x.open("ResponseMetadata")
        .leaf("RequestId", request_id)
        .close("ResponseMetadata");
}
