//! What every handler shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;

use ringfence_core::access::Tenant;
use ringfence_core::{AccountId, AgencyId};
use ringfence_store::{CallLog, TokenRecord};

use crate::error::{ApiError, ApiResult};

/// Limits on request sizes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_json_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_batch_calls: usize,
    pub max_recording_bytes: u64,
    /// A settings change that would redact more calls than this at once needs `confirm`.
    pub confirm_threshold: u64,
}

impl Limits {
    pub const STANDARD: Limits = Limits {
        max_json_bytes: 2 << 20,
        max_batch_bytes: 32 << 20,
        max_batch_calls: 5_000,
        max_recording_bytes: 256 << 20,
        confirm_threshold: 100,
    };
}

/// How long a token lookup is trusted before the store is asked again (revocation lag).
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);

pub struct Inner {
    pub log: Arc<CallLog>,
    pub limits: Limits,
    pub metrics: Option<PrometheusHandle>,
    tokens: Mutex<HashMap<[u8; 32], (TokenRecord, Instant)>>,
    /// An account's agency never changes: cached for good.
    agencies: Mutex<HashMap<AccountId, AgencyId>>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(log: Arc<CallLog>, limits: Limits, metrics: Option<PrometheusHandle>) -> Self {
        Self(Arc::new(Inner {
            log,
            limits,
            metrics,
            tokens: Mutex::new(HashMap::new()),
            agencies: Mutex::new(HashMap::new()),
        }))
    }

    pub(crate) async fn token(&self, hash: [u8; 32]) -> ApiResult<Option<TokenRecord>> {
        if let Some((record, at)) = self.tokens.lock().ok().and_then(|m| m.get(&hash).cloned())
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(Some(record));
        }
        let record = self.log.store().token_by_hash(hash).await?;
        if let (Some(r), Ok(mut m)) = (&record, self.tokens.lock()) {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(hash, (r.clone(), Instant::now()));
        }
        Ok(record)
    }

    /// The tenant of an account, or 404 when it does not exist.
    pub async fn tenant(&self, account: AccountId) -> ApiResult<Tenant> {
        if let Some(agency) = self
            .agencies
            .lock()
            .ok()
            .and_then(|m| m.get(&account).copied())
        {
            return Ok(Tenant { agency, account });
        }
        let record = self
            .log
            .store()
            .account(account)
            .await?
            .ok_or_else(|| ApiError::not_found("account"))?;
        if let Ok(mut m) = self.agencies.lock() {
            m.insert(account, record.agency_id);
        }
        Ok(Tenant {
            agency: record.agency_id,
            account,
        })
    }
}
