//! Fault injection and the documented rate limits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The routes faults can target, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `POST /order/certificate/{product}`
    CreateOrder,
    /// `GET /order/certificate/{order_id}`
    OrderInfo,
    /// `GET /order/certificate`
    ListOrders,
    /// `GET /order/certificate/status-changes`
    StatusChanges,
    /// `POST|GET /order/certificate/{id}/reissue`
    Reissue,
    /// `PUT /certificate/{id}/revoke`, `PUT /order/certificate/{id}/revoke`
    Revoke,
    /// `GET /order/alternate/{alt_id}`
    OrdersByAlternativeId,
    /// `PUT /request/{id}/status`
    UpdateRequestStatus,
    /// `PUT /order/certificate/{id}/status`
    UpdateOrderStatus,
    /// Both download routes.
    Download,
    /// `POST /organization`.
    CreateOrganization,
    /// The other organization routes.
    Organizations,
    /// `GET /report/order/expiring`.
    Reports,
    /// Every route.
    Any,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this HTTP status (500, 503, ...) and a DigiCert-style error body, without
    /// doing the work.
    Status {
        /// The status code.
        status: u16,
    },
    /// Answer 429 `request_limit_exceeded`, with `Retry-After` when given.
    RateLimited {
        /// Seconds for the `Retry-After` header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Wait this long, then handle the call normally.
    Delay {
        /// Milliseconds.
        millis: u64,
    },
    /// Do the work (an order is committed), then wait this long before answering: a client
    /// killed meanwhile has committed an order it never heard of.
    DelayAfterCommit {
        /// Milliseconds.
        millis: u64,
    },
    /// Do the work (an order is committed), then close the connection without answering.
    DropAfterCommit,
    /// Do the work, then answer with a body that is not valid JSON.
    MalformedJson,
    /// A download answered with a hostile chain bundle (a CA gone wrong, or a man in the middle).
    HostileChain {
        /// What is wrong with it.
        variant: HostileChain,
    },
}

/// How a hostile chain bundle is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostileChain {
    /// Root first, leaf last.
    Reordered,
    /// The leaf first, then the root before the intermediate.
    IssuersSwapped,
    /// The CA certificates alone.
    NoLeaf,
    /// Another order's leaf, which carries another key, in the leaf's place.
    OtherKey,
}

/// A fault for the next `count` calls of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The route.
    pub route: Route,
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
    /// How many calls it applies to.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// Takes the fault for a call of `route`, if any rule is left for it (first rule first).
pub fn take(rules: &mut Vec<FaultRule>, route: Route) -> Option<Fault> {
    let index = rules
        .iter()
        .position(|r| r.count > 0 && (r.route == route || r.route == Route::Any))?;
    let rule = &mut rules[index];
    rule.count -= 1;
    let fault = rule.fault.clone();
    if rule.count == 0 {
        rules.remove(index);
    }
    Some(fault)
}

/// One rolling window of the rate limits: at most `requests` in any `per_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateWindow {
    /// Requests allowed in the window.
    pub requests: usize,
    /// The window's length, in milliseconds.
    pub per_ms: u64,
}

/// CertCentral's documented limits: 100 requests per 5 seconds and 1000 per 3 minutes per key,
/// rolling windows.
pub fn documented_windows() -> Vec<RateWindow> {
    vec![
        RateWindow {
            requests: 100,
            per_ms: 5_000,
        },
        RateWindow {
            requests: 1000,
            per_ms: 180_000,
        },
    ]
}

/// The requests seen, against the rolling windows.
#[derive(Debug, Default)]
pub struct RateLimiter {
    seen: VecDeque<Instant>,
}

impl RateLimiter {
    /// Records a request at `now`; false when it exceeds a window (the request is then refused
    /// and not counted).
    pub fn admit(&mut self, now: Instant, windows: &[RateWindow]) -> bool {
        let longest = windows
            .iter()
            .map(|w| Duration::from_millis(w.per_ms))
            .max()
            .unwrap_or(Duration::ZERO);
        while self
            .seen
            .front()
            .is_some_and(|t| now.duration_since(*t) > longest)
        {
            self.seen.pop_front();
        }
        for window in windows {
            let per = Duration::from_millis(window.per_ms);
            let inside = self
                .seen
                .iter()
                .rev()
                .take_while(|t| now.duration_since(**t) <= per)
                .count();
            if inside >= window.requests {
                return false;
            }
        }
        self.seen.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_count_times_in_order() {
        let mut rules = vec![
            FaultRule {
                route: Route::CreateOrder,
                fault: Fault::Status { status: 503 },
                count: 2,
            },
            FaultRule {
                route: Route::Any,
                fault: Fault::Delay { millis: 1 },
                count: 1,
            },
        ];
        assert_eq!(
            take(&mut rules, Route::CreateOrder),
            Some(Fault::Status { status: 503 })
        );
        assert_eq!(
            take(&mut rules, Route::OrderInfo),
            Some(Fault::Delay { millis: 1 })
        );
        assert_eq!(
            take(&mut rules, Route::CreateOrder),
            Some(Fault::Status { status: 503 })
        );
        assert_eq!(take(&mut rules, Route::CreateOrder), None);
        assert!(rules.is_empty());
    }

    #[test]
    fn rules_read_from_json() {
        let rule: FaultRule = serde_json::from_str(
            r#"{"route":"create_order","kind":"rate_limited","retry_after":2,"count":3}"#,
        )
        .unwrap();
        assert_eq!(
            rule.fault,
            Fault::RateLimited {
                retry_after: Some(2)
            }
        );
        let rule: FaultRule =
            serde_json::from_str(r#"{"route":"any","kind":"drop_after_commit"}"#).unwrap();
        assert_eq!(rule.count, 1);
    }

    #[test]
    fn the_short_window_holds_100_requests_per_5_seconds() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        for _ in 0..100 {
            assert!(limiter.admit(start, &documented_windows()));
        }
        assert!(!limiter.admit(start + Duration::from_secs(1), &documented_windows()));
        assert!(limiter.admit(start + Duration::from_millis(5001), &documented_windows()));
    }

    #[test]
    fn the_long_window_holds_1000_requests_per_3_minutes() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        for i in 0..1000u64 {
            // 100 every 6 seconds stays under the short window.
            assert!(
                limiter.admit(
                    start + Duration::from_millis(i / 100 * 6000),
                    &documented_windows()
                ),
                "{i}"
            );
        }
        assert!(!limiter.admit(start + Duration::from_secs(61), &documented_windows()));
        assert!(limiter.admit(start + Duration::from_secs(181), &documented_windows()));
    }
}
