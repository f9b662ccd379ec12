//! CertCentral's request limits, kept by the client itself: 1000 requests per 3 minutes and 100 per
//! 5 seconds per API key, on rolling windows
//! (<https://dev.digicert.com/en/certcentral-apis/services-api/rate-limits.html>). Beyond them
//! CertCentral answers 429 `request_limit_exceeded`, with no `Retry-After`.
//!
//! Every request of a [`super::Client`] and of its clones (a run's workers, polls, downloads,
//! lookups) takes a slot from one [`Limiter`] before it is sent. The limiter keeps the send times
//! of the latest requests and gives each new request the earliest time at which every window has
//! room: a rolling window is exact only as a log of times. (A token bucket such as governor's GCRA
//! lets through its burst plus a window's worth of refills in one window, up to twice the limit,
//! unless the burst and the rate are cut so far that a long batch runs well below what the windows
//! allow.) Slots are handed out in order, so no worker starves.
//!
//! A 429 that comes anyway (another process using the same key) pauses every request of the
//! client, doubling from the shortest window up to the longest, and says so.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// One rolling window: at most `requests` in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    /// Requests allowed in the window.
    pub requests: usize,
    /// The window's length.
    pub per: Duration,
}

/// The windows a client keeps to, and a margin added to each (requests sent a margin apart may
/// arrive closer together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// The windows; empty for no limit.
    pub windows: Vec<RateWindow>,
    /// Added to every window's length.
    pub margin: Duration,
}

impl RateLimits {
    /// CertCentral's documented limits: 100 per 5 s and 1000 per 3 min, with a 250 ms margin.
    pub fn certcentral() -> RateLimits {
        RateLimits {
            windows: vec![
                RateWindow {
                    requests: 100,
                    per: Duration::from_secs(5),
                },
                RateWindow {
                    requests: 1000,
                    per: Duration::from_secs(180),
                },
            ],
            margin: Duration::from_millis(250),
        }
    }

    /// No limit (a test server without one).
    pub fn none() -> RateLimits {
        RateLimits {
            windows: Vec::new(),
            margin: Duration::ZERO,
        }
    }

    /// The longest window with its margin: the longest a 429 ever makes the client wait at once.
    pub fn longest(&self) -> Duration {
        self.windows
            .iter()
            .map(|w| w.per)
            .max()
            .unwrap_or(Duration::from_secs(5))
            + self.margin
    }

    fn shortest(&self) -> Duration {
        self.windows
            .iter()
            .map(|w| w.per)
            .min()
            .unwrap_or(Duration::from_secs(5))
            + self.margin
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::certcentral()
    }
}

#[derive(Debug, Default)]
struct Log {
    /// Send times of the latest requests, oldest first, at most the largest window's count.
    sent: VecDeque<Instant>,
    /// No request before this (after a 429).
    paused_until: Option<Instant>,
    /// 429s in a row, for the pause's doubling.
    refusals_in_a_row: u32,
}

/// The slots of one client and its clones.
#[derive(Debug)]
pub(crate) struct Limiter {
    limits: RateLimits,
    log: Mutex<Log>,
}

impl Limiter {
    pub(crate) fn new(limits: RateLimits) -> Limiter {
        Limiter {
            limits,
            log: Mutex::new(Log::default()),
        }
    }

    pub(crate) fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Reserves the earliest send time at or after `now` that keeps every window, and records it.
    fn reserve(&self, now: Instant) -> Instant {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let mut at = now;
        if let Some(until) = log.paused_until {
            at = at.max(until);
        }
        // In order: never before the latest slot handed out.
        if let Some(last) = log.sent.back() {
            at = at.max(*last);
        }
        for window in &self.limits.windows {
            if window.requests == 0 {
                continue;
            }
            if log.sent.len() >= window.requests {
                let nth_newest = log.sent[log.sent.len() - window.requests];
                at = at.max(nth_newest + window.per + self.limits.margin);
            }
        }
        let keep = self
            .limits
            .windows
            .iter()
            .map(|w| w.requests)
            .max()
            .unwrap_or(0);
        if keep > 0 {
            log.sent.push_back(at);
            while log.sent.len() > keep {
                log.sent.pop_front();
            }
        }
        at
    }

    /// Waits for this request's slot, saying so when the wait is long enough to notice.
    pub(crate) async fn acquire(&self, operation: &str) {
        let now = Instant::now();
        let at = self.reserve(now);
        let wait = at.saturating_duration_since(now);
        if wait >= Duration::from_secs(2) {
            tracing::info!(
                "{operation}: waiting {:.0} s to stay within CertCentral's request limits",
                wait.as_secs_f64()
            );
        }
        if !wait.is_zero() {
            tokio::time::sleep_until(at).await;
        }
    }

    /// A request was answered 429 at `now`: no request of this client goes out for a while,
    /// doubling from the shortest window to the longest while 429s keep coming. Returns the pause.
    pub(crate) fn refused(&self, now: Instant) -> Duration {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let doubling = 1u32 << log.refusals_in_a_row.min(8);
        log.refusals_in_a_row = log.refusals_in_a_row.saturating_add(1);
        let pause = self
            .limits
            .shortest()
            .saturating_mul(doubling)
            .min(self.limits.longest());
        let until = now + pause;
        log.paused_until = Some(log.paused_until.map_or(until, |u| u.max(until)));
        pause
    }

    /// No request of this client goes out before `now + pause` (CertCentral asked for it).
    pub(crate) fn pause(&self, now: Instant, pause: Duration) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let until = now + pause;
        log.paused_until = Some(log.paused_until.map_or(until, |u| u.max(until)));
    }

    /// A request was answered (not 429): the run of refusals is over.
    pub(crate) fn answered(&self) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.refusals_in_a_row = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(windows: &[(usize, u64)]) -> Limiter {
        Limiter::new(RateLimits {
            windows: windows
                .iter()
                .map(|(requests, ms)| RateWindow {
                    requests: *requests,
                    per: Duration::from_millis(*ms),
                })
                .collect(),
            margin: Duration::ZERO,
        })
    }

    /// The number of times in `times` within any window of `per` ending at one of them.
    fn most_in_any_window(times: &[Instant], per: Duration) -> usize {
        times
            .iter()
            .map(|end| {
                times
                    .iter()
                    .filter(|t| **t <= *end && end.duration_since(**t) < per)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn reservations_keep_every_window_and_use_it_fully() {
        let l = limiter(&[(10, 1_000), (25, 6_000)]);
        let start = Instant::now();
        let times: Vec<Instant> = (0..100).map(|_| l.reserve(start)).collect();
        assert!(most_in_any_window(&times, Duration::from_millis(1_000)) <= 10);
        assert!(most_in_any_window(&times, Duration::from_millis(6_000)) <= 25);
        // As fast as the windows allow: the first 10 at once, the next 10 a short window later,
        // and 25 per long window after that.
        assert_eq!(times[9], start);
        assert_eq!(times[10], start + Duration::from_millis(1_000));
        assert_eq!(times[25], start + Duration::from_millis(6_000));
        assert_eq!(times[99], start + Duration::from_millis(18_000 + 2_000));
    }

    #[test]
    fn a_refusal_pauses_everyone_doubling_up_to_the_longest_window() {
        let l = limiter(&[(100, 5_000), (1000, 180_000)]);
        let now = Instant::now();
        assert_eq!(l.refused(now), Duration::from_secs(5));
        assert!(l.reserve(now) >= now + Duration::from_secs(5));
        assert_eq!(l.refused(now), Duration::from_secs(10));
        for _ in 0..10 {
            l.refused(now);
        }
        assert_eq!(l.refused(now), Duration::from_secs(180));
        l.answered();
        assert_eq!(l.refused(now), Duration::from_secs(5));
    }

    #[test]
    fn no_windows_no_waiting() {
        let l = Limiter::new(RateLimits::none());
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(l.reserve(now), now);
        }
    }
}
