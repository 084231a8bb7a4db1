//! Service Quotas (JSON 1.1, `X-Amz-Target: ServiceQuotasV20190624.<Operation>`):
//! `GetServiceQuota` and `ListServiceQuotas` for service code `ec2`.
//!
//! Values are the account's quotas from the scenario (changed by `quota` events), or
//! `defaults.quota_vcpus` for codes the GPU catalog names but the account does not set. Codes
//! nobody knows get `NoSuchResourceException`, like AWS. Callers need `servicequotas:<Operation>`.

use serde_json::{Value, json};

use crate::{
    error::ApiError,
    world::{Identity, World},
};

/// Handles one operation; `Ok` is the JSON body.
pub fn handle(
    world: &World,
    who: &Identity,
    region: &str,
    operation: &str,
    body: &[u8],
) -> Result<String, ApiError> {
    if !who.may(&format!("servicequotas:{operation}")) {
        return Err(ApiError::new(
            400,
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: servicequotas:{operation}",
                who.arn
            ),
        ));
    }
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("SerializationException", e.to_string()))?
    };
    let service = req
        .get("ServiceCode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let no_such = || {
        ApiError::bad_request(
            "NoSuchResourceException",
            "The request failed because the specified service quota does not exist.",
        )
    };
    match operation {
        "GetServiceQuota" => {
            let code = req
                .get("QuotaCode")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if service != "ec2" || !world.quota_codes(&who.account).contains(code) {
                return Err(no_such());
            }
            Ok(json!({ "Quota": quota(world, who, region, code) }).to_string())
        }
        "ListServiceQuotas" => {
            if service != "ec2" {
                return Err(no_such());
            }
            let quotas: Vec<Value> = world
                .quota_codes(&who.account)
                .iter()
                .filter(|c| {
                    req.get("QuotaCode")
                        .and_then(Value::as_str)
                        .is_none_or(|q| q == c.as_str())
                })
                .map(|c| quota(world, who, region, c))
                .collect();
            Ok(json!({ "Quotas": quotas }).to_string())
        }
        other => Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("Unknown operation {other}"),
        )),
    }
}

fn quota(world: &World, who: &Identity, region: &str, code: &str) -> Value {
    json!({
        "ServiceCode": "ec2",
        "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
        "QuotaArn": format!("arn:aws:servicequotas:{region}:{}:ec2/{code}", who.account),
        "QuotaCode": code,
        "QuotaName": format!("EC2 vCPU quota {code}"),
        "Value": world.quota(&who.account, code),
        "Unit": "None",
        "Adjustable": true,
        "GlobalQuota": false,
    })
}
