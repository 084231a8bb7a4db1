//! The typed standby phase: the steps recorded in `running` transitions' details and the
//! [`Phase`] of a managed job rebuilt from them (pure).

use capsight_clickhouse::rows::LaunchEventRow;
use capsight_cloud::Market;
use capsight_proto::domain::LaunchState;

use crate::store::split_ids;

/// The standby steps are shared with the dashboard, which shows them as they happen.
pub use capsight_proto::domain::StandbyStep;

fn token(detail: &str, name: &str) -> Vec<String> {
    detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .map(split_ids)
        .unwrap_or_default()
}

/// The standby instance ids a transition's detail names (`standby=<ids>`), if it is one of
/// the standby phases.
pub fn detail_standby_ids(detail: &str) -> Vec<String> {
    if StandbyStep::of(detail).is_some() {
        token(detail, "standby=")
    } else {
        Vec::new()
    }
}

/// Where a managed job stands, rebuilt from its transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not a running spot job with a standby phase (or ended).
    Idle,
    /// The spot instance runs; no standby yet.
    NeedStandby,
    /// A stopped standby waits; `spot` serves.
    Armed {
        /// Standby ids.
        standby: Vec<String>,
        /// Serving spot ids.
        spot: Vec<String>,
    },
    /// The standby serves; a replacement is (being) launched.
    Active {
        /// Standby ids.
        standby: Vec<String>,
        /// The interrupted spot ids.
        interrupted: Vec<String>,
        /// Which switch this is (1, 2, ...): replacement token `<job_id>-r<n>`.
        switch: u32,
    },
    /// A replacement serves; the standby still runs until `since` + cooldown.
    Cooling {
        /// Standby ids.
        standby: Vec<String>,
        /// Serving replacement ids.
        serving: Vec<String>,
        /// When the replacement ran, seconds.
        since: u32,
        /// Switches so far.
        switch: u32,
    },
}

/// The phase of a job from its transitions (by seq); pure.
pub fn phase(events: &[LaunchEventRow]) -> Phase {
    let Some(last) = events.last() else {
        return Phase::Idle;
    };
    if last.state != LaunchState::Running {
        return Phase::Idle;
    }
    let mut phase = None;
    let mut switches = 0;
    for e in events.iter().filter(|e| e.state == LaunchState::Running) {
        let standby = token(&e.detail, "standby=");
        match StandbyStep::of(&e.detail) {
            Some(StandbyStep::Ready | StandbyStep::Stopped) => {
                phase = Some(Phase::Armed {
                    standby,
                    spot: split_ids(&e.instance_id),
                });
            }
            Some(StandbyStep::Active) => {
                switches += 1;
                phase = Some(Phase::Active {
                    standby,
                    interrupted: token(&e.detail, "interrupted="),
                    switch: switches,
                });
            }
            Some(StandbyStep::Replaced) => {
                phase = Some(Phase::Cooling {
                    standby,
                    serving: split_ids(&e.instance_id),
                    since: e.at,
                    switch: switches,
                });
            }
            None => {}
        }
    }
    match phase {
        Some(p) => p,
        None if last.market == Market::Spot.as_str() => Phase::NeedStandby,
        None => Phase::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u32, state: &str, market: &str, ids: &str, detail: &str) -> LaunchEventRow {
        LaunchEventRow {
            job_id: "j".into(),
            seq,
            tenant: "t".into(),
            at: 100 + seq,
            at_ms: 0,
            state: LaunchState::parse("state", state).unwrap(),
            provider: "aws".into(),
            region: "us-east-1".into(),
            zone_id: "use1-az1".into(),
            instance_type: "g5.xlarge".into(),
            market: market.into(),
            instance_id: ids.into(),
            attempt: 1,
            error_class: String::new(),
            error_code: String::new(),
            detail: detail.into(),
        }
    }

    #[test]
    fn standby_steps_are_read_back_from_their_details() {
        for step in StandbyStep::ALL {
            assert_eq!(StandbyStep::of(&format!("{step}: standby=i-1")), Some(step));
        }
        assert_eq!(StandbyStep::of("running"), None);
        assert_eq!(
            detail_standby_ids("running standby=i-9"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn phases_follow_the_recorded_details() {
        let mut ev = vec![
            row(0, "queued", "spot", "", ""),
            row(1, "running", "spot", "i-spot", "running"),
        ];
        assert_eq!(phase(&ev), Phase::NeedStandby);
        ev.push(row(
            2,
            "running",
            "spot",
            "i-spot",
            "standby ready: standby=i-sb stopped",
        ));
        assert_eq!(
            phase(&ev),
            Phase::Armed {
                standby: vec!["i-sb".into()],
                spot: vec!["i-spot".into()]
            }
        );
        ev.push(row(
            3,
            "running",
            "on_demand",
            "i-sb",
            "standby active: standby=i-sb interrupted=i-spot event=interruption_warning",
        ));
        assert_eq!(
            phase(&ev),
            Phase::Active {
                standby: vec!["i-sb".into()],
                interrupted: vec!["i-spot".into()],
                switch: 1
            }
        );
        ev.push(row(
            4,
            "running",
            "spot",
            "i-r1",
            "replacement running: standby=i-sb replacement=i-r1;",
        ));
        assert_eq!(
            phase(&ev),
            Phase::Cooling {
                standby: vec!["i-sb".into()],
                serving: vec!["i-r1".into()],
                since: 104,
                switch: 1
            }
        );
        ev.push(row(
            5,
            "running",
            "spot",
            "i-r1",
            "standby stopped: standby=i-sb after",
        ));
        assert_eq!(
            phase(&ev),
            Phase::Armed {
                standby: vec!["i-sb".into()],
                spot: vec!["i-r1".into()]
            }
        );
        ev.push(row(
            6,
            "running",
            "on_demand",
            "i-sb",
            "standby active: standby=i-sb interrupted=i-r1",
        ));
        assert!(matches!(phase(&ev), Phase::Active { switch: 2, .. }));
        ev.push(row(7, "terminated", "on_demand", "i-sb", "max lifetime"));
        assert_eq!(phase(&ev), Phase::Idle);
    }

    #[test]
    fn on_demand_jobs_need_no_standby_and_details_name_standbys() {
        let ev = vec![row(1, "running", "on_demand", "i-1", "running")];
        assert_eq!(phase(&ev), Phase::Idle);
        assert_eq!(
            detail_standby_ids("standby ready: standby=i-a,i-b stopped"),
            vec!["i-a", "i-b"]
        );
        assert!(detail_standby_ids("running: standby=i-x").is_empty());
    }
}
