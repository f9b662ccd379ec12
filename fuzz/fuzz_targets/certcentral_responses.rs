//! CertCentral response and error-body parsing.
#![no_main]
use codesign_kit::order::response::{
    AlternateOrders, ApiErrorBody, ExpiringReport, OrderCreated, OrderInfo, OrderList,
    OrganizationValidations, Organizations, ReissueList, RevokeRequest, StatusChanges,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<OrderCreated>(data);
    let _ = serde_json::from_slice::<OrderInfo>(data);
    let _ = serde_json::from_slice::<AlternateOrders>(data);
    let _ = serde_json::from_slice::<ApiErrorBody>(data);
    let _ = serde_json::from_slice::<Organizations>(data);
    let _ = serde_json::from_slice::<OrganizationValidations>(data);
    let _ = serde_json::from_slice::<OrderList>(data);
    let _ = serde_json::from_slice::<ExpiringReport>(data);
    let _ = serde_json::from_slice::<StatusChanges>(data);
    let _ = serde_json::from_slice::<ReissueList>(data);
    let _ = serde_json::from_slice::<RevokeRequest>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = codesign_kit::order::OrderRequest::from_json(text);
    }
});
