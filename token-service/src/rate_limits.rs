//! Request rates: per client at `/token`, per API at `/introspect` (`limits.client_rate_limit`,
//! `limits.api_rate_limit`, or the client's or API's own `rate_limit`). Counted in this
//! instance's memory (GCRA), so a limit holds per instance: with N instances behind a balancer
//! a client gets up to N times its rate. A shared count would cost a store write on every
//! request of the hot path; the attempt limits, which must hold across instances, are in the
//! store instead (see `throttle`).

use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::config::RateLimit;
use crate::telemetry::metrics;

/// One limiter per client or API that made a request, at the rate it had then.
#[derive(Clone)]
pub struct RateLimits {
    limiters: moka::sync::Cache<String, Arc<Limiter>>,
    clock: DefaultClock,
}

struct Limiter {
    rate: RateLimit,
    limiter: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RateLimits")
            .field("counted", &self.limiters.entry_count())
            .finish_non_exhaustive()
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            // Keys are ids of clients and APIs that authenticated: bounded by what is
            // registered, not by what anonymous callers send.
            limiters: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            clock: DefaultClock::default(),
        }
    }
}

fn quota(rate: RateLimit) -> Quota {
    match rate.per.as_secs() {
        1 => Quota::per_second(rate.requests),
        60 => Quota::per_minute(rate.requests),
        _ => Quota::per_hour(rate.requests),
    }
}

impl RateLimits {
    /// Counts a request of `who` (`client:…`, `api:…`) at `rate`: `Err` with how long until
    /// the next one is allowed when it is over.
    ///
    /// # Errors
    ///
    /// The wait until the next request would be within the rate.
    pub fn check(&self, who: &str, rate: RateLimit) -> Result<(), Duration> {
        let mut limiter = self.limiters.get_with_by_ref(who, || new_limiter(rate));
        if limiter.rate != rate {
            // Registered again with another rate: count afresh.
            limiter = new_limiter(rate);
            self.limiters.insert(who.to_owned(), Arc::clone(&limiter));
        }
        limiter.limiter.check().map_err(|not_until| {
            let (party, id) = who.split_once(':').unwrap_or(("", who));
            let party = match party {
                "client" => "client",
                "api" => "api",
                _ => "other",
            };
            metrics::rate_limited(party, id);
            not_until.wait_time_from(self.clock.now())
        })
    }
}

fn new_limiter(rate: RateLimit) -> Arc<Limiter> {
    Arc::new(Limiter {
        rate,
        limiter: governor::RateLimiter::direct(quota(rate)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_up_to_the_rate_passes_and_the_next_is_told_how_long_to_wait() {
        let limits = RateLimits::default();
        let rate: RateLimit = "3/min".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limits.check("client:a", rate), Ok(()));
        }
        let wait = limits.check("client:a", rate).unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Others are counted apart; a new rate counts afresh.
        assert_eq!(limits.check("client:b", rate), Ok(()));
        assert_eq!(limits.check("client:a", "10/min".parse().unwrap()), Ok(()));
    }
}
