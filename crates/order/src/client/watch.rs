//! Waiting for issuance with few requests. One waiting order is asked about on its own
//! (`GET /order/certificate/{id}`, with backoff). When several orders of one client wait at once,
//! one `GET /order/certificate/status-changes` a round tells the status of those that changed
//! lately, and only an order listed with another status than its waiter last saw is asked about: a batch of many pending orders then costs about one request a round, not one
//! per order. An order that shows no change is still asked about on its own now and then
//! ([`INDIVIDUAL_CHECK_EVERY`]), so that a change the listing missed (clock skew, an endpoint
//! that is not there) delays it, and never loses it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Client;
use crate::error::CertCentralError;
use crate::response::{OrderId, OrderStatus, StatusChanges};

/// Waiting orders from which one status-changes request a round costs less than asking each.
const MANY: usize = 2;

/// How often a waiting order is asked about on its own when no listing names it.
pub const INDIVIDUAL_CHECK_EVERY: Duration = Duration::from_secs(300);

/// Added to each status-changes window, so that windows overlap and clocks that differ a little
/// lose nothing.
const WINDOW_MARGIN: Duration = Duration::from_secs(5);

/// The longest window the endpoint takes (7 days).
const LONGEST_WINDOW: Duration = Duration::from_secs(604_800);

#[derive(Default)]
struct WatchState {
    /// Waiters per order.
    waiting: HashMap<OrderId, usize>,
    /// When the oldest waiter began to wait, while any does.
    waiting_since: Option<Instant>,
    /// The status each waiting order last had in a status-changes answer.
    listed: HashMap<OrderId, OrderStatus>,
    /// When the last status-changes request went out.
    asked_at: Option<Instant>,
    /// CertCentral did not give status changes (an error other than a transport one): every
    /// waiter asks on its own.
    unavailable: bool,
}

/// The orders a client waits for, shared by its clones.
#[derive(Default)]
pub(super) struct Watch {
    state: Mutex<WatchState>,
    /// One status-changes request at a time.
    asking: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Watch")
            .field("waiting", &state.waiting.len())
            .field("unavailable", &state.unavailable)
            .finish_non_exhaustive()
    }
}

/// An order's place among the waiting, given up when dropped.
pub(super) struct Waiting<'w> {
    watch: &'w Watch,
    order_id: OrderId,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.watch.lock();
        if let Some(count) = state.waiting.get_mut(&self.order_id) {
            *count -= 1;
            if *count == 0 {
                state.waiting.remove(&self.order_id);
                state.listed.remove(&self.order_id);
            }
        }
        if state.waiting.is_empty() {
            state.waiting_since = None;
        }
    }
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `order_id` among the waiting until the guard is dropped.
    pub(super) fn wait_for(&self, order_id: OrderId) -> Waiting<'_> {
        let mut state = self.lock();
        *state.waiting.entry(order_id).or_insert(0) += 1;
        state.waiting_since.get_or_insert_with(Instant::now);
        Waiting {
            watch: self,
            order_id,
        }
    }

    /// Whether the order should be asked about now, after a waiter's pause: always when it
    /// waits alone (or the listing is unavailable), else when a status-changes answer lists it
    /// with another status than `last_status` (what its waiter saw at `last_checked`), or when
    /// it was last asked about [`INDIVIDUAL_CHECK_EVERY`] ago. Asks for the status changes first
    /// when the last request is older than `round`.
    pub(super) async fn should_check(
        &self,
        client: &Client,
        order_id: OrderId,
        (last_status, last_checked): (&OrderStatus, Instant),
        round: Duration,
    ) -> Result<bool, CertCentralError> {
        {
            let state = self.lock();
            if state.unavailable || state.waiting.len() < MANY {
                return Ok(true);
            }
        }
        if last_checked.elapsed() >= INDIVIDUAL_CHECK_EVERY {
            return Ok(true);
        }
        self.refresh(client, round).await?;
        let state = self.lock();
        if state.unavailable {
            return Ok(true);
        }
        Ok(state
            .listed
            .get(&order_id)
            .is_some_and(|listed| listed != last_status))
    }

    /// One status-changes request for every waiter, unless one went out less than `round` ago.
    async fn refresh(&self, client: &Client, round: Duration) -> Result<(), CertCentralError> {
        let _asking = self.asking.lock().await;
        let since = {
            let state = self.lock();
            if state.asked_at.is_some_and(|at| at.elapsed() < round) {
                return Ok(());
            }
            match (state.asked_at, state.waiting_since) {
                (Some(asked), Some(since)) => asked.max(since),
                (None, Some(since)) => since,
                (Some(asked), None) => asked,
                (None, None) => return Ok(()),
            }
        };
        let sent = Instant::now();
        let window = (sent - since + WINDOW_MARGIN).min(LONGEST_WINDOW);
        match client.status_changes(window).await {
            Ok(changes) => {
                let mut state = self.lock();
                state.asked_at = Some(sent);
                for order in changes.orders {
                    if state.waiting.contains_key(&order.order_id) {
                        state.listed.insert(order.order_id, order.status);
                    }
                }
                Ok(())
            }
            // Rate limits, timeouts and server errors pass; a refusal means this account or instance does not
            // give the listing: each waiter asks on its own from now on.
            Err(CertCentralError::Api { status, .. }) if (400..500).contains(&status) => {
                tracing::info!(
                    "CertCentral did not list status changes; pending orders are polled one by one"
                );
                self.lock().unavailable = true;
                Ok(())
            }
            Err(other) => Err(other),
        }
    }
}

impl Client {
    /// The orders whose status changed in the last `window` (whole seconds, rounded up; at
    /// most 7 days): `GET /order/certificate/status-changes?seconds=N`.
    ///
    /// # Errors
    /// As any call.
    pub async fn status_changes(
        &self,
        window: Duration,
    ) -> Result<StatusChanges, CertCentralError> {
        let seconds = window
            .as_secs()
            .saturating_add(u64::from(window.subsec_nanos() > 0))
            .clamp(1, LONGEST_WINDOW.as_secs());
        self.get_json(
            "listing status changes",
            &format!("/order/certificate/status-changes?seconds={seconds}"),
        )
        .await
    }
}
