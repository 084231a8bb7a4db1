//! `ReportService`: a tenant's report, validated and normalised, published as a signal.

use std::sync::Arc;

use capsight_proto::{
    domain::Market,
    v1::{self, report_service_server::ReportService},
};
use capsight_report_schema::{Report, ReportOutcome, Reporter};
use chrono::Utc;
use tonic::{Request, Response};

use super::{Answer, Api, Result, Rpc, from_ts, rpcs};
use crate::{Core, GatewayError, auth::Caller, validate::bounded};

/// A wire report as the schema's [`Report`], its bounded fields checked.
fn report_from_wire(r: v1::SubmitReportRequest) -> Answer<Report> {
    let outcome = match v1::ReportOutcome::try_from(r.outcome) {
        Ok(v1::ReportOutcome::LaunchFailed) => ReportOutcome::LaunchFailed,
        Ok(v1::ReportOutcome::LaunchSucceeded) => ReportOutcome::LaunchSucceeded,
        Ok(v1::ReportOutcome::Available) => ReportOutcome::Available,
        Ok(v1::ReportOutcome::Unavailable) => ReportOutcome::Unavailable,
        Ok(v1::ReportOutcome::Interrupted) => ReportOutcome::Interrupted,
        Ok(v1::ReportOutcome::Unspecified) => {
            return Err(GatewayError::invalid("outcome", "must be set"));
        }
        Err(_) => return Err(GatewayError::invalid("outcome", "unknown enum value")),
    };
    let market = match r.market {
        0 => None,
        m => Some(
            Market::from_wire("market", m)
                .map_err(GatewayError::from)?
                .as_str()
                .to_owned(),
        ),
    };
    let observed_at = match &r.observed_at {
        Some(t) => Some(from_ts("observed_at", t).map_err(GatewayError::from)?),
        None => None,
    };
    for (field, v, max) in [
        ("id", &r.id, 128),
        ("zone_name", &r.zone_name, 64),
        ("error_code", &r.error_code, 256),
        ("error_message", &r.error_message, 4096),
        ("note", &r.note, 1024),
    ] {
        bounded(field, v, max).map_err(GatewayError::from)?;
    }
    let some = |s: String| (!s.is_empty()).then_some(s);
    Ok(Report {
        id: some(r.id),
        observed_at,
        provider: r.provider,
        region: r.region,
        zone_id: some(r.zone_id),
        zone_name: some(r.zone_name),
        instance_type: r.instance_type,
        market,
        outcome,
        error_code: some(r.error_code),
        error_message: some(r.error_message),
        provisioning_ms: (r.provisioning_ms > 0).then_some(r.provisioning_ms),
        count: (r.count > 0).then_some(r.count),
        note: some(r.note),
    })
}

rpcs!(ReportService {
    submit_report(v1::SubmitReportRequest) -> v1::SubmitReportResponse;
});

impl Rpc for v1::SubmitReportRequest {
    type Reply = v1::SubmitReportResponse;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let report = report_from_wire(self)?;
        let reporter = Reporter {
            hash: caller.hash.clone(),
            zone_map: caller.tenant.zone_map.clone(),
            catalog: Arc::clone(&core.catalog),
        };
        let signal = report
            .normalize(&reporter, 0, Utc::now())
            .map_err(|e| GatewayError::invalid(e.field, e.reason))?;
        match tokio::time::timeout(core.settings.publish_timeout, core.signals.publish(&signal))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GatewayError::unavailable("kafka", e)),
            Err(_) => return Err(GatewayError::unavailable("kafka", "publish timed out")),
        }
        Ok(v1::SubmitReportResponse {
            signal_id: signal.id.as_str().to_owned(),
            source: v1::SignalSource::Report.into(),
        })
    }
}
