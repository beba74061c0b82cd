//! What every handler shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;

use ringfence_core::access::Tenant;
use ringfence_core::call::VisitorDetails;
use ringfence_core::collection::CollectionSettings;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId};
use ringfence_geo::CountryDb;
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
    /// The sign-in throttle's first delay (`ringfence_core::throttle`).
    pub sign_in_first_delay_ms: i64,
}

impl Limits {
    pub const STANDARD: Limits = Limits {
        max_json_bytes: 2 << 20,
        max_batch_bytes: 32 << 20,
        max_batch_calls: 5_000,
        max_recording_bytes: 256 << 20,
        confirm_threshold: 100,
        sign_in_first_delay_ms: 1_000,
    };
}

/// How long a token lookup is trusted before the store is asked again: the revocation lag
/// of a revocation made by another process (one made through this process applies at once).
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
/// A token's `last_used_at` is written at most this often.
const TOKEN_TOUCH_MS: i64 = 60_000;

/// Token lookups by hash. `generation` counts revocations made through this process: a
/// lookup that started before one is not cached, so a copy read just before a revocation
/// cannot be cached after the revocation dropped the entries.
#[derive(Default)]
struct TokenCache {
    entries: HashMap<[u8; 32], (TokenRecord, Instant)>,
    generation: u64,
}
/// How long an account's collection settings are trusted; a change made through this
/// process applies at once (the entry is dropped), one made elsewhere within this time.
const COLLECTION_CACHE_TTL: Duration = Duration::from_secs(5);

pub struct Inner {
    pub log: Arc<CallLog>,
    pub limits: Limits,
    pub metrics: Option<PrometheusHandle>,
    tokens: Mutex<TokenCache>,
    /// An account's agency never changes: cached for good.
    agencies: Mutex<HashMap<AccountId, AgencyId>>,
    collections: Mutex<HashMap<AccountId, (CollectionSettings, Instant)>>,
    /// Offline IP-to-country data; without it the scope comes from the number alone.
    pub geo: Option<Arc<CountryDb>>,
    /// The base URL the outside world reaches this server at (`https://calls.example.com`),
    /// for webhook signatures behind a reverse proxy.
    pub public_url: Option<String>,
    /// The data folder and master key file on this machine, for the checklist's permission
    /// check; unset, that item is left out.
    data_paths: OnceLock<ringfence_jobs::checklist::DataPaths>,
    /// Failed sign-ins, for the growing delays of `web::throttle`.
    pub sign_in_throttle: crate::web::throttle::SignInThrottle,
    /// Where outbound requests named by others may go; unset, the safe defaults.
    outbound: OnceLock<Outbound>,
}

/// The operator's rules for URLs others name: recording downloads and webhook recipients.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// Hosts Twilio recordings may come from, and whether loopback is open to them.
    pub twilio_media: ringfence_jobs::outbound::MediaHosts,
    /// Whether recipients may be loopback addresses (local relays).
    pub allow_local_relays: bool,
}

impl Outbound {
    /// The address rules for webhook recipients.
    pub fn recipient_guard(&self) -> ringfence_jobs::outbound::AddressGuard {
        ringfence_jobs::outbound::AddressGuard {
            allow_loopback: self.allow_local_relays,
        }
    }
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
        Self::with_options(log, limits, metrics, None, None)
    }

    pub fn with_options(
        log: Arc<CallLog>,
        limits: Limits,
        metrics: Option<PrometheusHandle>,
        geo: Option<Arc<CountryDb>>,
        public_url: Option<String>,
    ) -> Self {
        Self(Arc::new(Inner {
            log,
            limits,
            metrics,
            tokens: Mutex::new(TokenCache::default()),
            agencies: Mutex::new(HashMap::new()),
            collections: Mutex::new(HashMap::new()),
            geo,
            public_url,
            data_paths: OnceLock::new(),
            sign_in_throttle: crate::web::throttle::SignInThrottle::new(
                limits.sign_in_first_delay_ms,
            ),
            outbound: OnceLock::new(),
        }))
    }

    /// Tells the checklist where the data folder and master key file are (once, at startup).
    pub fn with_data_paths(self, paths: ringfence_jobs::checklist::DataPaths) -> Self {
        let _ = self.data_paths.set(paths);
        self
    }

    /// Sets the rules for outbound URLs (once, at startup).
    pub fn with_outbound(self, outbound: Outbound) -> Self {
        let _ = self.outbound.set(outbound);
        self
    }

    pub fn outbound(&self) -> &Outbound {
        self.outbound.get_or_init(Outbound::default)
    }

    pub fn data_paths(&self) -> Option<&ringfence_jobs::checklist::DataPaths> {
        self.data_paths.get()
    }

    /// What the account collects.
    pub async fn collection(&self, account: AccountId) -> ApiResult<CollectionSettings> {
        if let Some((settings, at)) = self
            .collections
            .lock()
            .ok()
            .and_then(|m| m.get(&account).copied())
            && at.elapsed() < COLLECTION_CACHE_TTL
        {
            return Ok(settings);
        }
        let record = self
            .log
            .store()
            .account(account)
            .await?
            .ok_or_else(|| ApiError::not_found("account"))?;
        if let Ok(mut m) = self.collections.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(account, (record.collection, Instant::now()));
        }
        Ok(record.collection)
    }

    /// Forgets the cached settings of an account (after this process changed them).
    pub fn collection_changed(&self, account: AccountId) {
        if let Ok(mut m) = self.collections.lock() {
            m.remove(&account);
        }
    }

    /// Sets the visit's country from its IP address (before the address is minimised).
    pub fn locate(&self, visitor: &mut VisitorDetails) {
        let (Some(geo), Some(ip)) = (&self.geo, &visitor.ip) else {
            return;
        };
        if let Ok(addr) = ip.expose().parse::<std::net::IpAddr>() {
            visitor.country = geo
                .country(addr)
                .map(|c| ringfence_core::Personal::new(c.as_str().to_owned()));
        }
    }

    pub(crate) async fn token(&self, hash: [u8; 32]) -> ApiResult<Option<TokenRecord>> {
        let generation = match self.tokens.lock() {
            Ok(cache) => {
                if let Some((record, at)) = cache.entries.get(&hash)
                    && at.elapsed() < TOKEN_CACHE_TTL
                {
                    return Ok(Some(record.clone()));
                }
                Some(cache.generation)
            }
            Err(_) => None,
        };
        let record = self.log.store().token_by_hash(hash).await?;
        if let (Some(r), Ok(mut cache)) = (&record, self.tokens.lock())
            && Some(cache.generation) == generation
        {
            if cache.entries.len() > 10_000 {
                cache.entries.clear();
            }
            cache.entries.insert(hash, (r.clone(), Instant::now()));
        }
        Ok(record)
    }

    /// Drops every cached copy of a token just revoked, so the next request is refused.
    pub fn token_revoked(&self, id: ringfence_core::TokenId) {
        if let Ok(mut cache) = self.tokens.lock() {
            cache.generation += 1;
            cache.entries.retain(|_, (record, _)| record.id != id);
        }
    }

    /// Records that a token authenticated a request: written at most once a minute per
    /// token (the cached copy carries the time written).
    pub(crate) async fn token_used(&self, hash: [u8; 32], record: &TokenRecord, now: Timestamp) {
        if record
            .last_used_at
            .is_some_and(|at| now.millis() - at.millis() < TOKEN_TOUCH_MS)
        {
            return;
        }
        if let Ok(mut cache) = self.tokens.lock()
            && let Some((cached, _)) = cache.entries.get_mut(&hash)
        {
            cached.last_used_at = Some(now);
        }
        if let Err(e) = self.log.store().touch_token(record.id, now).await {
            tracing::warn!(token_id = %record.id, cause = %e, "could not record the token's use");
        }
    }

    /// The call a path names, with its tenant, if `principal` may act on it with `permission`.
    /// Every handler of one call goes through here, so none can forget the tenant check: a call
    /// of another tenant answers exactly as a call that does not exist (404 `not_found`), and a
    /// permission the role lacks within the tenant answers 403.
    pub async fn call_for(
        &self,
        principal: &ringfence_core::access::Principal,
        call: &str,
        permission: ringfence_core::access::Permission,
    ) -> ApiResult<(ringfence_store::CallRow, Tenant)> {
        let id: ringfence_core::CallId = crate::routes::path_id(call, "call")?;
        let row = self
            .log
            .call_row(id)
            .await?
            .ok_or_else(|| ApiError::not_found("call"))?;
        let tenant = self.tenant(row.account_id).await?;
        principal
            .check(permission, &tenant)
            .map_err(|denied| match denied {
                ringfence_core::access::Denied::NotFound => ApiError::not_found("call"),
                other => other.into(),
            })?;
        Ok((row, tenant))
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
