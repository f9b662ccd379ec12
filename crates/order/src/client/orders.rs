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
    AlternateOrder, AlternateOrders, CertificateId, ExpiringReport, ListedOrder, OrderCreated,
    OrderId, OrderInfo, OrderList, OrderStatus, RequestId,
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
        let (operation_ref, path, body, alternative_order_id) =
            (&operation, &path, &body, &alternative_order_id);
        let placed = self
            .retrying(&operation, move |attempt| async move {
                let operation = operation_ref;
                if may_exist || attempt > 1 {
                    match self.recover(order).await {
                        Ok(Some(existing)) => return Round::Done(existing),
                        Ok(None) => {}
                        Err(e) => return Round::Fail(e),
                    }
                }
                match self
                    .attempt(operation, attempt, Method::POST, path, Some(body))
                    .await
                {
                    Round::Done((status, body)) => {
                        match decode::<OrderCreated>(operation, status, &body) {
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

    /// Waits until the order is issued or `deadline` has passed, asking with backoff. While
    /// several orders of this client (or its clones) wait at once, one status-changes request a
    /// round tells which to ask about (see [`INDIVIDUAL_CHECK_EVERY`](super::INDIVIDUAL_CHECK_EVERY)
    /// for the exception): many pending orders cost about one request a round.
    ///
    /// # Errors
    /// [`CertCentralError::OrderFailed`], [`CertCentralError::StillPending`], or a call's error.
    pub async fn wait_for_issuance(
        &self,
        order_id: OrderId,
        deadline: Duration,
    ) -> Result<CertificateId, CertCentralError> {
        let started = Instant::now();
        let _waiting = self.watch.wait_for(order_id);
        let mut attempt = 0;
        loop {
            let checked = Instant::now();
            match self.check_order(order_id).await? {
                OrderProgress::Issued(cert) => return Ok(cert),
                OrderProgress::Failed(status) => {
                    return Err(CertCentralError::OrderFailed {
                        order_id: order_id.0,
                        status: status.to_string(),
                    });
                }
                OrderProgress::Pending(status) => loop {
                    let waited = started.elapsed();
                    if waited >= deadline {
                        return Err(CertCentralError::StillPending {
                            order_id: order_id.0,
                            status: status.to_string(),
                            waited_secs: waited.as_secs(),
                        });
                    }
                    attempt += 1;
                    let pause = self.config.retry.backoff(attempt);
                    tokio::time::sleep(pause.min(deadline - waited)).await;
                    // The last pause ends with a check of its own.
                    if started.elapsed() >= deadline
                        || self
                            .watch
                            .should_check(self, order_id, (&status, checked), pause)
                            .await?
                    {
                        break;
                    }
                },
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

/// What `GET /order/certificate` lists: filters, sort and page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderQuery {
    /// `filters[status]`: `pending`, `issued`, `rejected`, `revoked`, `waiting_pickup`,
    /// `reissue_pending`, `canceled` (`issued` also matches expired orders).
    pub status: Option<String>,
    /// `filters[product_name_id]`, e.g. `code_signing_ev`.
    pub product: Option<String>,
    /// `filters[organization_id]`.
    pub organization_id: Option<u64>,
    /// `filters[certificate_id]`.
    pub certificate_id: Option<u64>,
    /// `sort`: fields, `-` first for descending, commas between.
    pub sort: Option<String>,
    /// `offset`.
    pub offset: u64,
    /// `limit` (CertCentral's maximum and default: 1000).
    pub limit: Option<u64>,
}

impl OrderQuery {
    fn path(&self) -> String {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut add = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((name.to_string(), value));
            }
        };
        add("filters[status]", self.status.clone());
        add("filters[product_name_id]", self.product.clone());
        add(
            "filters[organization_id]",
            self.organization_id.map(|v| v.to_string()),
        );
        add(
            "filters[certificate_id]",
            self.certificate_id.map(|v| v.to_string()),
        );
        add("sort", self.sort.clone());
        add("offset", (self.offset > 0).then(|| self.offset.to_string()));
        add("limit", self.limit.map(|v| v.to_string()));
        if pairs.is_empty() {
            return "/order/certificate".to_string();
        }
        let query = reqwest::Url::parse_with_params("http://query.invalid/", &pairs)
            .ok()
            .and_then(|url| url.query().map(str::to_string))
            .unwrap_or_default();
        format!("/order/certificate?{query}")
    }
}

impl Client {
    /// One page of the account's orders (`GET /order/certificate`).
    ///
    /// # Errors
    /// As any call.
    pub async fn list_orders(&self, query: &OrderQuery) -> Result<OrderList, CertCentralError> {
        self.get_json("listing orders", &query.path()).await
    }

    /// Every order the query matches, page after page (at most `limit` per page, 1000 by
    /// default), stopping at the total CertCentral states or an empty page.
    ///
    /// # Errors
    /// As any call.
    pub async fn list_all_orders(
        &self,
        query: &OrderQuery,
    ) -> Result<Vec<ListedOrder>, CertCentralError> {
        let mut query = query.clone();
        let mut all = Vec::new();
        loop {
            let page = self.list_orders(&query).await?;
            let got = page.orders.len() as u64;
            all.extend(page.orders);
            if got == 0 || query.offset + got >= page.page.total {
                return Ok(all);
            }
            query.offset += got;
        }
    }

    /// The expiring-orders report (`GET /report/order/expiring`): orders expiring in 60-90,
    /// 30-60 and 0-30 days, and expired in the last 7.
    ///
    /// # Errors
    /// As any call.
    pub async fn expiring_orders(
        &self,
        include_certificates: bool,
    ) -> Result<ExpiringReport, CertCentralError> {
        let path = if include_certificates {
            "/report/order/expiring?include_expiring_certs=true"
        } else {
            "/report/order/expiring"
        };
        self.get_json("reading the expiring-orders report", path)
            .await
    }
}

#[cfg(test)]
mod query_tests {
    use super::*;

    #[test]
    fn queries_are_encoded() {
        assert_eq!(OrderQuery::default().path(), "/order/certificate");
        let q = OrderQuery {
            status: Some("issued".into()),
            product: Some("code_signing_ev".into()),
            sort: Some("-date_created,id".into()),
            offset: 2000,
            limit: Some(1000),
            ..OrderQuery::default()
        };
        assert_eq!(
            q.path(),
            "/order/certificate?filters%5Bstatus%5D=issued&filters%5Bproduct_name_id%5D=code_signing_ev&sort=-date_created%2Cid&offset=2000&limit=1000"
        );
    }
}
