//! Orders: placed exactly once (looked up by alternative order ID before any re-send), followed
//! to issuance, approved or cancelled, and their certificates downloaded.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::transport::{Round, Wait, decode};
use super::{Client, OrderProgress, PlacedOrder, RequestDecision};
use crate::chain::{Chain, DownloadFormat};
use crate::error::CertCentralError;
use crate::response::{
    AlternateOrder, AlternateOrders, CertificateId, OrderCreated, OrderId, OrderInfo, OrderStatus,
    RequestId,
};
use crate::validate::ValidatedOrder;

impl Client {
    /// Places the order, exactly once.
    ///
    /// The order carries its alternative order ID. Before the first send, and before any re-send
    /// after an uncertain outcome (no answer, a timeout, a dropped connection, 5xx, an unreadable
    /// answer), `GET /order/alternate/{id}` is asked whether the order exists; if it does, that
    /// order is returned (`recovered`) instead of ordering again. Ordering twice buys a second
    /// certificate. 429 waits for `Retry-After` (or backs off) and tries again; other 4xx are final.
    ///
    /// # Errors
    /// [`CertCentralError::Api`] for a refusal (every code kept), [`CertCentralError::GaveUp`].
    pub async fn place_order(
        &self,
        order: &ValidatedOrder,
    ) -> Result<PlacedOrder, CertCentralError> {
        self.place(order, true).await
    }

    /// Places an order that has certainly never been sent, exactly once: as
    /// [`Client::place_order`], but the first send goes without asking whether the order exists.
    /// Every re-send after an uncertain outcome is still preceded by the lookup.
    ///
    /// Only the caller can know that no earlier run sent the order: the pipeline knows it when its
    /// journal holds no begin of this order's submission (that begin is on disk before any send).
    /// It saves one round trip per order.
    ///
    /// # Errors
    /// As [`Client::place_order`].
    pub async fn place_new_order(
        &self,
        order: &ValidatedOrder,
    ) -> Result<PlacedOrder, CertCentralError> {
        self.place(order, false).await
    }

    async fn place(
        &self,
        order: &ValidatedOrder,
        may_exist: bool,
    ) -> Result<PlacedOrder, CertCentralError> {
        let alternative_order_id = order.alternative_order_id().to_string();
        let operation = format!("placing order {alternative_order_id}");
        let path = format!("/order/certificate/{}", order.product().as_str());
        let body = order.request().to_json();
        let placed = self
            .retrying(&operation, async |attempt| {
                if may_exist || attempt > 1 {
                    match self.recover(order).await {
                        Ok(Some(existing)) => return Round::Done(existing),
                        Ok(None) => {}
                        Err(e) => return Round::Fail(e),
                    }
                }
                match self
                    .attempt(&operation, attempt, Method::POST, &path, Some(&body))
                    .await
                {
                    Round::Done((status, body)) => {
                        match decode::<OrderCreated>(&operation, status, &body) {
                            Ok(created) => Round::Done(PlacedOrder {
                                order_id: created.id,
                                certificate_id: created.certificate_id,
                                requests: created.requests,
                                alternative_order_id: alternative_order_id.clone(),
                                recovered: false,
                            }),
                            // Committed, but unreadable: the lookup of the next round finds it.
                            Err(e) => Round::Retry(Wait::NONE, e),
                        }
                    }
                    Round::Retry(wait, failure) => Round::Retry(wait, failure),
                    Round::Fail(error) => Round::Fail(error),
                }
            })
            .await;
        match placed {
            // One last look: the final attempt may have committed.
            Err(gave_up @ CertCentralError::GaveUp { .. }) => {
                self.recover(order).await?.ok_or(gave_up)
            }
            other => other,
        }
    }

    /// The order already placed under the order's alternative ID, as a recovered
    /// [`PlacedOrder`], once its details show it is this order: the same product, organization
    /// and CSR. An order that differs means the ID is taken by another order, which is refused
    /// ([`CertCentralError::AlternativeIdTaken`]) rather than taken for this one.
    async fn recover(
        &self,
        order: &ValidatedOrder,
    ) -> Result<Option<PlacedOrder>, CertCentralError> {
        let alternative_order_id = order.alternative_order_id();
        let Some(existing) = self
            .find_order_by_alternative_id(alternative_order_id)
            .await?
        else {
            return Ok(None);
        };
        let info = self.order_info(existing.order_id).await?;
        let differences = differences(order, &info);
        if !differences.is_empty() {
            return Err(CertCentralError::AlternativeIdTaken {
                alternative_order_id: alternative_order_id.to_string(),
                order_id: existing.order_id.0,
                differences,
            });
        }
        Ok(Some(PlacedOrder {
            order_id: existing.order_id,
            certificate_id: existing.certificate_id,
            requests: Vec::new(),
            alternative_order_id: alternative_order_id.to_string(),
            recovered: true,
        }))
    }

    /// The order carrying `alternative_order_id`, if any (the oldest, should there be several).
    ///
    /// # Errors
    /// As any call.
    pub async fn find_order_by_alternative_id(
        &self,
        alternative_order_id: &str,
    ) -> Result<Option<AlternateOrder>, CertCentralError> {
        let found: AlternateOrders = self
            .get_json(
                &format!("looking up order {alternative_order_id}"),
                &format!("/order/alternate/{alternative_order_id}"),
            )
            .await?;
        Ok(found.orders.into_iter().min_by_key(|o| o.order_id))
    }

    /// `GET /order/certificate/{order_id}`.
    ///
    /// # Errors
    /// As any call; [`CertCentralError::Api`] with `not_found|order` for an unknown order.
    pub async fn order_info(&self, order_id: OrderId) -> Result<OrderInfo, CertCentralError> {
        self.get_json(
            &format!("reading order {order_id}"),
            &format!("/order/certificate/{order_id}"),
        )
        .await
    }

    /// Where the order stands, from one call: the resumable polling step.
    ///
    /// # Errors
    /// As [`Client::order_info`].
    pub async fn check_order(&self, order_id: OrderId) -> Result<OrderProgress, CertCentralError> {
        let info = self.order_info(order_id).await?;
        Ok(match (&info.status, info.certificate_id()) {
            (OrderStatus::Issued, Some(cert)) => OrderProgress::Issued(cert),
            (status, _) if status.is_final() => OrderProgress::Failed(status.clone()),
            (status, _) => OrderProgress::Pending(status.clone()),
        })
    }

    /// Polls with backoff until the order is issued or `deadline` has passed.
    ///
    /// # Errors
    /// [`CertCentralError::OrderFailed`], [`CertCentralError::StillPending`], or a call's error.
    pub async fn wait_for_issuance(
        &self,
        order_id: OrderId,
        deadline: Duration,
    ) -> Result<CertificateId, CertCentralError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match self.check_order(order_id).await? {
                OrderProgress::Issued(cert) => return Ok(cert),
                OrderProgress::Failed(status) => {
                    return Err(CertCentralError::OrderFailed {
                        order_id: order_id.0,
                        status: status.to_string(),
                    });
                }
                OrderProgress::Pending(status) => {
                    let waited = started.elapsed();
                    if waited >= deadline {
                        return Err(CertCentralError::StillPending {
                            order_id: order_id.0,
                            status: status.to_string(),
                            waited_secs: waited.as_secs(),
                        });
                    }
                    attempt += 1;
                    let wait = self.config.retry.backoff(attempt).min(deadline - waited);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Approves or rejects a request (`PUT /request/{id}/status`).
    ///
    /// # Errors
    /// As any call.
    pub async fn update_request_status(
        &self,
        request_id: RequestId,
        decision: RequestDecision,
        comment: &str,
    ) -> Result<(), CertCentralError> {
        let status = match decision {
            RequestDecision::Approve => "approved",
            RequestDecision::Reject => "rejected",
        };
        self.call(
            &format!("setting request {request_id} to {status}"),
            Method::PUT,
            &format!("/request/{request_id}/status"),
            Some(&json!({ "status": status, "processor_comment": comment })),
        )
        .await
        .map(|_| ())
    }

    /// Cancels a pending order (`PUT /order/certificate/{id}/status`).
    ///
    /// # Errors
    /// As any call.
    pub async fn cancel_order(
        &self,
        order_id: OrderId,
        note: &str,
    ) -> Result<(), CertCentralError> {
        self.call(
            &format!("canceling order {order_id}"),
            Method::PUT,
            &format!("/order/certificate/{order_id}/status"),
            Some(&json!({ "status": "canceled", "note": note })),
        )
        .await
        .map(|_| ())
    }

    /// Downloads the certificate in `format`, as CertCentral sends it.
    ///
    /// # Errors
    /// As any call.
    pub async fn download(
        &self,
        certificate_id: CertificateId,
        format: DownloadFormat,
    ) -> Result<Vec<u8>, CertCentralError> {
        self.download_from(Download::Certificate(certificate_id), format)
            .await
    }

    /// Downloads the active certificate of an order in `format` (not its duplicates nor earlier
    /// reissues).
    ///
    /// # Errors
    /// As any call.
    pub async fn download_by_order(
        &self,
        order_id: OrderId,
        format: DownloadFormat,
    ) -> Result<Vec<u8>, CertCentralError> {
        self.download_from(Download::ActiveOf(order_id), format)
            .await
    }

    async fn download_from(
        &self,
        source: Download,
        format: DownloadFormat,
    ) -> Result<Vec<u8>, CertCentralError> {
        let format = format.as_str();
        let (operation, path) = match source {
            Download::Certificate(id) => (
                format!("downloading certificate {id}"),
                format!("/certificate/{id}/download/format/{format}"),
            ),
            Download::ActiveOf(order) => (
                format!("downloading the certificate of order {order}"),
                format!("/certificate/download/order/{order}/format/{format}"),
            ),
        };
        self.get_bytes(&operation, &path).await
    }

    /// Downloads `pem_all` and splits it: the leaf found by basicConstraints, not by position.
    ///
    /// # Errors
    /// As any call; [`CertCentralError::Chain`] when the bundle has no single leaf.
    pub async fn download_chain(
        &self,
        certificate_id: CertificateId,
    ) -> Result<Chain, CertCentralError> {
        let pem = self
            .download(certificate_id, DownloadFormat::PemAll)
            .await?;
        Chain::from_pem(&pem)
    }
}

/// How the order found by an alternative ID differs from `order` (empty: it is this order). A
/// field CertCentral does not return is not compared.
fn differences(order: &ValidatedOrder, info: &OrderInfo) -> Vec<String> {
    let mut found = Vec::new();
    let asked = order.request();
    if let Some(product) = info.product.as_ref().filter(|p| !p.name_id.is_empty())
        && product.name_id != order.product().as_str()
    {
        found.push(format!(
            "it is a {} order, not {}",
            product.name_id,
            order.product().as_str()
        ));
    }
    if let (Some(theirs), Some(ours)) = (
        info.organization.as_ref().map(|o| o.id),
        asked.organization.as_ref().and_then(|o| o.id),
    ) && i64::try_from(theirs.0).ok() != Some(ours)
    {
        found.push(format!("its organization is {theirs}, not {ours}"));
    }
    let compact = |pem: &str| -> String { pem.chars().filter(|c| !c.is_whitespace()).collect() };
    if let (Some(theirs), Some(ours)) = (
        info.certificate.as_ref().and_then(|c| c.csr.as_deref()),
        asked.certificate.as_ref().and_then(|c| c.csr.as_deref()),
    ) && compact(theirs) != compact(ours)
    {
        found.push("it was ordered with another CSR".to_string());
    }
    found
}

/// What a download names: a certificate, or the active certificate of an order.
#[derive(Debug, Clone, Copy)]
enum Download {
    Certificate(CertificateId),
    ActiveOf(OrderId),
}
