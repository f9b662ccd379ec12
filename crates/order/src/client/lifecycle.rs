//! After issuance: reissue an order for a new key (exactly once: the order's reissue list is
//! looked at before any re-send), and revoke a certificate or a whole order.

use reqwest::Method;
use serde_json::{Value, json};

use super::Client;
use super::transport::{Round, Wait, decode};
use crate::error::{ApiErrorKind, CertCentralError};
use crate::response::{
    CertificateId, OrderCreated, OrderId, ReissueList, RequestRef, RevokeRequest,
};

/// What a reissue gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReissuePlaced {
    /// The order.
    pub order_id: OrderId,
    /// The new certificate, when the reissue was approved at once.
    pub certificate_id: Option<CertificateId>,
    /// Its request (empty when found again in the reissue list).
    pub requests: Vec<RequestRef>,
    /// True when an earlier attempt had made it: found in the order's reissue list by its CSR.
    pub recovered: bool,
}

/// How a revoke ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked (`204`: the approval was skipped).
    Revoked,
    /// A revocation request waits for an administrator (`201`).
    Requested(RevokeRequest),
    /// It was revoked already (an earlier attempt, or someone else).
    AlreadyRevoked,
}

/// What to revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeTarget {
    /// One certificate (`PUT /certificate/{id}/revoke`).
    Certificate(CertificateId),
    /// Every certificate of an order (`PUT /order/certificate/{id}/revoke`).
    Order(OrderId),
}

impl std::fmt::Display for RevokeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokeTarget::Certificate(id) => write!(f, "certificate {id}"),
            RevokeTarget::Order(id) => write!(f, "order {id}"),
        }
    }
}

impl Client {
    /// The order's reissues (`GET /order/certificate/{id}/reissue`).
    ///
    /// # Errors
    /// As any call.
    pub async fn list_reissues(&self, order_id: OrderId) -> Result<ReissueList, CertCentralError> {
        self.get_json(
            &format!("listing the reissues of order {order_id}"),
            &format!("/order/certificate/{order_id}/reissue"),
        )
        .await
    }

    /// Reissues the order for the key of `csr_pem` (`POST /order/certificate/{id}/reissue`),
    /// exactly once: before any re-send after an uncertain outcome, the order's reissue list is
    /// asked whether a reissue with this CSR exists, and that one is returned (`recovered`).
    /// `body` may add `skip_approval`, `comments`, `cs_provisioning_method`; the CSR and
    /// `signature_hash` are set here. `may_exist` says an earlier run may have sent it: then the
    /// list is looked at before the first send too.
    ///
    /// # Errors
    /// [`CertCentralError::Api`] for a refusal, [`CertCentralError::GaveUp`].
    pub async fn reissue(
        &self,
        order_id: OrderId,
        csr_pem: &str,
        mut body: Value,
        may_exist: bool,
    ) -> Result<ReissuePlaced, CertCentralError> {
        if !body.is_object() {
            body = json!({});
        }
        body["certificate"] = json!({ "csr": csr_pem, "signature_hash": "sha256" });
        let operation = format!("reissuing order {order_id}");
        let path = format!("/order/certificate/{order_id}/reissue");
        let (operation_ref, path, body) = (&operation, &path, &body);
        let reissued = self
            .retrying(&operation, move |attempt| async move {
                if may_exist || attempt > 1 {
                    match self.find_reissue(order_id, csr_pem).await {
                        Ok(Some(found)) => return Round::Done(found),
                        Ok(None) => {}
                        Err(e) => return Round::Fail(e),
                    }
                }
                match self
                    .attempt(operation_ref, attempt, Method::POST, path, Some(body))
                    .await
                {
                    Round::Done((status, answer)) => {
                        match decode::<OrderCreated>(operation_ref, status, &answer) {
                            Ok(created) => Round::Done(ReissuePlaced {
                                order_id,
                                certificate_id: created.certificate_id,
                                requests: created.requests,
                                recovered: false,
                            }),
                            // Made, but unreadable: the next round's look finds it.
                            Err(e) => Round::Retry(Wait::NONE, e),
                        }
                    }
                    Round::Retry(wait, failure) => Round::Retry(wait, failure),
                    Round::Fail(error) => Round::Fail(error),
                }
            })
            .await;
        match reissued {
            // One last look: the final attempt may have taken effect.
            Err(gave_up @ CertCentralError::GaveUp { .. }) => {
                self.find_reissue(order_id, csr_pem).await?.ok_or(gave_up)
            }
            other => other,
        }
    }

    /// A reissue of the order asked with this CSR, if any (compared without line breaks, as
    /// CertCentral may store it on one line).
    async fn find_reissue(
        &self,
        order_id: OrderId,
        csr_pem: &str,
    ) -> Result<Option<ReissuePlaced>, CertCentralError> {
        let flat = |pem: &str| pem.split_whitespace().collect::<String>();
        let wanted = flat(csr_pem);
        let list = self.list_reissues(order_id).await?;
        Ok(list
            .certificates
            .into_iter()
            .find(|c| {
                c.status != "rejected" && c.csr.as_deref().map(flat).as_deref() == Some(&wanted)
            })
            .map(|c| ReissuePlaced {
                order_id,
                certificate_id: c.id,
                requests: Vec::new(),
                recovered: true,
            }))
    }

    /// Revokes a certificate or every certificate of an order, with `comments`. With
    /// `skip_approval` (an administrator's API key) it is done at once; else a request waits for
    /// approval. Revoking is irreversible and ends every signature the certificate made.
    ///
    /// # Errors
    /// [`CertCentralError::Api`] for a refusal (a pending reissue, an unknown ID), as any call.
    pub async fn revoke(
        &self,
        target: RevokeTarget,
        comments: &str,
        skip_approval: bool,
    ) -> Result<Revocation, CertCentralError> {
        let path = match target {
            RevokeTarget::Certificate(id) => format!("/certificate/{id}/revoke"),
            RevokeTarget::Order(id) => format!("/order/certificate/{id}/revoke"),
        };
        let body = json!({ "comments": comments, "skip_approval": skip_approval });
        let operation = format!("revoking {target}");
        match self.call(&operation, Method::PUT, &path, Some(&body)).await {
            Ok((status, answer)) if status.as_u16() == 201 => {
                decode::<RevokeRequest>(&operation, status, &answer).map(Revocation::Requested)
            }
            Ok(_) => Ok(Revocation::Revoked),
            Err(CertCentralError::Api {
                kind: ApiErrorKind::Refused,
                errors,
                ..
            }) if errors.iter().any(|e| {
                [
                    "order_already_revoked",
                    "order_is_revoked",
                    "certificate_already_revoked",
                ]
                .contains(&e.code.as_str())
            }) =>
            {
                Ok(Revocation::AlreadyRevoked)
            }
            Err(e) => Err(e),
        }
    }
}
