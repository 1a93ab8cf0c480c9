//! When to fetch the signing keys: the key cache's policy, as pure functions of time.
//!
//! Entra ID's guidance: refresh on a schedule (hourly), refresh at once when a token names an
//! unknown key id but no more often than a floor (5 minutes), and keep the last good keys
//! when a fetch fails.

/// The refresh settings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// `aad_auth.jwks_refresh_interval`: scheduled refresh after a success.
    pub interval: i64,
    /// `aad_auth.jwks_min_refresh_interval`: least time between refreshes asked for by
    /// sign-ins with unknown key ids.
    pub min_interval: i64,
}

/// Seconds between scheduled retries after a failed fetch (capped by the interval).
pub const RETRY_AFTER_FAILURE: i64 = 60;

/// What the key cache remembers about its fetches (Unix seconds, 0 = never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshState {
    pub last_attempt: i64,
    pub last_success: i64,
    /// A sign-in asked for a refresh that has not been attempted yet.
    pub requested: bool,
}

impl RefreshPolicy {
    /// Whether the fetcher should fetch now. `source_changed`: the configured source is not the
    /// one the cached keys came from (a new address after a reload), which is fetched at once.
    pub fn fetch_due(&self, state: &RefreshState, now: i64, source_changed: bool) -> bool {
        if source_changed || state.last_attempt == 0 || state.requested {
            return true;
        }
        now >= self.next_scheduled(state)
    }

    /// When the next scheduled fetch is due.
    pub fn next_scheduled(&self, state: &RefreshState) -> i64 {
        let interval = self.interval.max(1);
        if state.last_success >= state.last_attempt && state.last_success > 0 {
            state.last_success.saturating_add(interval)
        } else {
            state
                .last_attempt
                .saturating_add(interval.min(RETRY_AFTER_FAILURE))
        }
    }

    /// Whether a sign-in with an unknown key id may ask for a refresh now, given when the
    /// last such request was granted: at most one per `min_interval`.
    pub fn may_force(&self, last_forced: i64, now: i64) -> bool {
        last_forced == 0 || now.saturating_sub(last_forced) >= self.min_interval.max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RefreshPolicy = RefreshPolicy {
        interval: 3600,
        min_interval: 300,
    };

    #[test]
    fn refresh_first_fetch_is_due_at_once() {
        assert!(P.fetch_due(&RefreshState::default(), 1000, false));
    }

    #[test]
    fn refresh_scheduled_after_interval_from_success() {
        let s = RefreshState {
            last_attempt: 1000,
            last_success: 1000,
            requested: false,
        };
        assert!(!P.fetch_due(&s, 4599, false));
        assert!(P.fetch_due(&s, 4600, false));
    }

    #[test]
    fn refresh_retries_a_failure_sooner_than_the_interval() {
        let s = RefreshState {
            last_attempt: 5000,
            last_success: 1000,
            requested: false,
        };
        assert!(!P.fetch_due(&s, 5059, false));
        assert!(P.fetch_due(&s, 5060, false));
        let short = RefreshPolicy {
            interval: 10,
            min_interval: 300,
        };
        assert_eq!(short.next_scheduled(&s), 5010);
    }

    #[test]
    fn refresh_request_and_source_change_fetch_at_once() {
        let s = RefreshState {
            last_attempt: 1000,
            last_success: 1000,
            requested: true,
        };
        assert!(P.fetch_due(&s, 1001, false));
        let s = RefreshState {
            requested: false,
            ..s
        };
        assert!(P.fetch_due(&s, 1001, true));
        assert!(!P.fetch_due(&s, 1001, false));
    }

    #[test]
    fn refresh_forced_at_most_once_per_min_interval() {
        assert!(P.may_force(0, 1000));
        assert!(!P.may_force(1000, 1299));
        assert!(P.may_force(1000, 1300));
    }
}
