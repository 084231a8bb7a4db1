//! What a launch transition means beyond its state: a fallback to another key, or a step of
//! the warm standby. The launcher records the standby steps as the prefix of a `running`
//! transition's detail ([`StandbyStep::prefix`]) and a fallback as a `provisioning`
//! transition of an attempt after the first; readers (the launcher's standby phase, the
//! dashboard) classify transitions with [`LaunchStep::of`] only.

use super::LaunchState;

/// A step of the warm standby, recorded as the prefix of a `running` transition's detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyStep {
    /// The stopped clone exists.
    Ready,
    /// The standby was started and serves.
    Active,
    /// A replacement spot instance runs; the standby stops after the cooldown.
    Replaced,
    /// The standby was stopped again (armed).
    Stopped,
}

impl StandbyStep {
    /// Every step.
    pub const ALL: [Self; 4] = [Self::Ready, Self::Active, Self::Replaced, Self::Stopped];

    /// The detail prefix that records this step.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Ready => "standby ready",
            Self::Active => "standby active",
            Self::Replaced => "replacement running",
            Self::Stopped => "standby stopped",
        }
    }

    /// The step a transition's detail records, if any.
    pub fn of(detail: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| detail.starts_with(s.prefix()))
    }

    /// A switch of what serves the job (to the standby, or back to spot).
    pub fn is_switch(self) -> bool {
        matches!(self, Self::Active | Self::Replaced)
    }
}

impl std::fmt::Display for StandbyStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.prefix())
    }
}

/// What a launch transition is, beyond its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchStep {
    /// The previous attempt failed and the launcher moved on to an alternative key.
    Fallback,
    /// A step of the warm standby.
    Standby(StandbyStep),
}

impl LaunchStep {
    /// The step a transition records, if any: a `provisioning` transition of attempt 2 or
    /// later is a fallback; a `running` transition whose detail starts with a standby step's
    /// prefix is that step.
    pub fn of(state: LaunchState, attempt: u32, detail: &str) -> Option<Self> {
        match state {
            LaunchState::Provisioning if attempt > 1 => Some(Self::Fallback),
            LaunchState::Running => StandbyStep::of(detail).map(Self::Standby),
            _ => None,
        }
    }

    /// A stable snake-case name (`fallback`, `standby_ready`, `standby_active`,
    /// `replacement_running`, `standby_stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fallback => "fallback",
            Self::Standby(StandbyStep::Ready) => "standby_ready",
            Self::Standby(StandbyStep::Active) => "standby_active",
            Self::Standby(StandbyStep::Replaced) => "replacement_running",
            Self::Standby(StandbyStep::Stopped) => "standby_stopped",
        }
    }
}

/// Why the lifecycle reaper ended a launch, recorded as the prefix of its `terminated`
/// transition's detail (readers such as the tenant notifier classify with [`ReapCause::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReapCause {
    /// The launch reached its maximum lifetime.
    MaxLifetime,
    /// No activity heartbeat within the idle TTL.
    Idle,
}

impl ReapCause {
    /// Every cause.
    pub const ALL: [Self; 2] = [Self::MaxLifetime, Self::Idle];

    /// The detail prefix that records this cause.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::MaxLifetime => "max lifetime reached",
            Self::Idle => "idle TTL reached",
        }
    }

    /// The cause a transition records, if it is a reaper's `terminated`.
    pub fn of(state: LaunchState, detail: &str) -> Option<Self> {
        if state != LaunchState::Terminated {
            return None;
        }
        Self::ALL
            .into_iter()
            .find(|c| detail.starts_with(c.prefix()))
    }

    /// `max_lifetime` or `idle`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxLifetime => "max_lifetime",
            Self::Idle => "idle",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_classified_by_state_attempt_and_detail() {
        for step in StandbyStep::ALL {
            assert_eq!(StandbyStep::of(&format!("{step}: standby=i-1")), Some(step));
            assert_eq!(
                LaunchStep::of(LaunchState::Running, 1, &format!("{step}: standby=i-1")),
                Some(LaunchStep::Standby(step))
            );
        }
        assert_eq!(StandbyStep::of("running"), None);
        assert_eq!(LaunchStep::of(LaunchState::Running, 1, "running"), None);
        assert_eq!(
            LaunchStep::of(LaunchState::Provisioning, 1, "launching (attempt 1)"),
            None
        );
        assert_eq!(
            LaunchStep::of(LaunchState::Provisioning, 2, "falling back to ..."),
            Some(LaunchStep::Fallback)
        );
        // a standby prefix on another state is no standby step
        assert_eq!(
            LaunchStep::of(LaunchState::Failed, 2, "standby ready"),
            None
        );
        assert!(StandbyStep::Active.is_switch() && !StandbyStep::Ready.is_switch());
        assert_eq!(LaunchStep::Fallback.as_str(), "fallback");
        assert_eq!(
            ReapCause::of(LaunchState::Terminated, "idle TTL reached: no activity"),
            Some(ReapCause::Idle)
        );
        assert_eq!(
            ReapCause::of(LaunchState::Running, "max lifetime reached (60s)"),
            None
        );
        assert_eq!(ReapCause::of(LaunchState::Terminated, "gone: i-1"), None);
    }
}
