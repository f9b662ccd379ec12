//! Organizations: created (looking before any re-send, since a POST that creates is not safe to
//! repeat), submitted for validation, listed.

use reqwest::Method;
use serde_json::{Value, json};

use super::Client;
use super::transport::{Round, Wait, decode};
use crate::error::CertCentralError;
use crate::response::{OrganizationId, OrganizationValidations, Organizations};

impl Client {
    /// Creates an organization (`POST /organization`); `details` is the documented body.
    ///
    /// A POST that creates is not safe to repeat: when an attempt ends without a readable answer
    /// (no answer, a timeout, 5xx, 429), the account's organizations are listed before any re-send,
    /// and an organization of this name that was not there before the first attempt is taken as
    /// the one created (the listing shows no other detail to compare).
    ///
    /// # Errors
    /// As any call.
    pub async fn create_organization(
        &self,
        details: &Value,
    ) -> Result<OrganizationId, CertCentralError> {
        #[derive(serde::Deserialize)]
        struct Created {
            id: OrganizationId,
        }
        let operation = "creating an organization";
        let name = details
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let same_name = |list: Organizations| -> Vec<OrganizationId> {
            list.organizations
                .into_iter()
                .filter(|o| o.name == name)
                .map(|o| o.id)
                .collect()
        };
        let before = same_name(self.list_organizations().await?);
        let (same_name, before) = (&same_name, &before);
        let created_by_us = move || async move {
            Ok::<_, CertCentralError>(
                same_name(self.list_organizations().await?)
                    .into_iter()
                    .find(|id| !before.contains(id)),
            )
        };
        let created = self
            .retrying(operation, move |attempt| async move {
                if attempt > 1 {
                    match created_by_us().await {
                        Ok(Some(id)) => return Round::Done(id),
                        Ok(None) => {}
                        Err(e) => return Round::Fail(e),
                    }
                }
                match self
                    .attempt(
                        operation,
                        attempt,
                        Method::POST,
                        "/organization",
                        Some(details),
                    )
                    .await
                {
                    Round::Done((status, body)) => {
                        match decode::<Created>(operation, status, &body) {
                            Ok(created) => Round::Done(created.id),
                            // Created, but unreadable: the listing of the next round finds it.
                            Err(e) => Round::Retry(Wait::NONE, e),
                        }
                    }
                    Round::Retry(wait, failure) => Round::Retry(wait, failure),
                    Round::Fail(error) => Round::Fail(error),
                }
            })
            .await;
        match created {
            Err(gave_up @ CertCentralError::GaveUp { .. }) => created_by_us().await?.ok_or(gave_up),
            other => other,
        }
    }

    /// Submits an organization for validation (`cs`, `ev_cs`, ...) with its verified users.
    ///
    /// # Errors
    /// As any call.
    pub async fn submit_validation(
        &self,
        organization_id: OrganizationId,
        validation_types: &[&str],
        verified_users: &Value,
    ) -> Result<(), CertCentralError> {
        let validations: Vec<Value> = validation_types
            .iter()
            .map(|t| json!({ "type": t, "verified_users": verified_users }))
            .collect();
        self.call(
            &format!("submitting organization {organization_id} for validation"),
            Method::POST,
            &format!("/organization/{organization_id}/validation"),
            Some(&json!({ "validations": validations })),
        )
        .await
        .map(|_| ())
    }

    /// An organization's validations.
    ///
    /// # Errors
    /// As any call.
    pub async fn organization_validations(
        &self,
        organization_id: OrganizationId,
    ) -> Result<OrganizationValidations, CertCentralError> {
        self.get_json(
            &format!("reading the validations of organization {organization_id}"),
            &format!("/organization/{organization_id}/validation"),
        )
        .await
    }

    /// The account's organizations.
    ///
    /// # Errors
    /// As any call.
    pub async fn list_organizations(&self) -> Result<Organizations, CertCentralError> {
        self.get_json("listing organizations", "/organization")
            .await
    }
}
