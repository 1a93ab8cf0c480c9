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

    /// What a sign-in with an unknown key id does, given when the last early refresh was
    /// granted and how long a sign-in may wait for one (`wait`, seconds): ask for one; or, when
    /// another sign-in asked within that wait, wait for that same refresh rather than fail at
    /// once (a key rotation meets many clients at the same moment, and all of them must see the
    /// one fetch it costs); or refuse without waiting.
    pub fn on_unknown_key(&self, last_forced: i64, now: i64, wait: i64) -> UnknownKey {
        if self.may_force(last_forced, now) {
            UnknownKey::Refresh
        } else if now.saturating_sub(last_forced) <= wait.max(0) {
            UnknownKey::JoinRefresh
        } else {
            UnknownKey::Refuse
        }
    }
}

/// See [`RefreshPolicy::on_unknown_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKey {
    /// Ask the fetcher for an early refresh and wait for it.
    Refresh,
    /// Another sign-in's refresh is under way: wait for it, asking for nothing.
    JoinRefresh,
    /// Refuse now: the last early refresh is older than a sign-in's wait, and the next one is
    /// not due yet.
    Refuse,
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
    fn refresh_an_unknown_key_joins_a_refresh_under_way_and_never_asks_twice() {
        // the first asks
        assert_eq!(P.on_unknown_key(0, 1000, 3), UnknownKey::Refresh);
        // those that come while it is under way wait for it
        assert_eq!(P.on_unknown_key(1000, 1000, 3), UnknownKey::JoinRefresh);
        assert_eq!(P.on_unknown_key(1000, 1003, 3), UnknownKey::JoinRefresh);
        // later ones, inside the floor, are refused at once
        assert_eq!(P.on_unknown_key(1000, 1004, 3), UnknownKey::Refuse);
        assert_eq!(P.on_unknown_key(1000, 1299, 3), UnknownKey::Refuse);
        // after the floor, a new refresh
        assert_eq!(P.on_unknown_key(1000, 1300, 3), UnknownKey::Refresh);
        // a clock that went back never joins a refresh from the future, nor asks again
        assert_eq!(P.on_unknown_key(2000, 1000, 3), UnknownKey::JoinRefresh);
    }

    #[test]
    fn refresh_forced_at_most_once_per_min_interval() {
        assert!(P.may_force(0, 1000));
        assert!(!P.may_force(1000, 1299));
        assert!(P.may_force(1000, 1300));
    }

    #[test]
    fn refresh_never_fetched_is_scheduled_on_the_retry_delay_not_the_interval() {
        assert_eq!(
            P.next_scheduled(&RefreshState::default()),
            RETRY_AFTER_FAILURE
        );
        let short = RefreshPolicy {
            interval: 10,
            min_interval: 1,
        };
        assert_eq!(short.next_scheduled(&RefreshState::default()), 10);
    }
}
