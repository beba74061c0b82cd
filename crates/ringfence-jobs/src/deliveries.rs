//! Delivering the outbox to recipients: signed POSTs, retried with exponential backoff and
//! jitter up to a cap, then dead-lettered. At least once: a delivery is marked done only
//! after the recipient answered 2xx, so a crash in between sends it again, with the same
//! event id for the receiver to deduplicate by.
//!
//! A `call.created` is rendered from the sealed call when it is sent, never before: what the
//! collection settings dropped was never stored, what a redaction removed is gone, and a
//! call redacted before its turn is cancelled instead of sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use ringfence_core::call::Call;
use ringfence_core::recipients::{DeliveryState, EventKind, RetryPolicy};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, RecipientId};
use ringfence_crypto::webhook::{SIGNATURE_HEADER, sign_webhook};
use ringfence_store::{AuditEvent, CallLog, DeliveryAttempt, DeliveryRow, LogError, RecipientRow};

use crate::outbound::{self, AddressGuard};

/// The one error of a delivery that got no HTTP answer: connection refused, timed out or
/// broken off, a name that does not resolve, an address the guard refuses. One code, so the
/// deliveries list never tells an open port from a closed one.
pub const UNREACHABLE: &str = "unreachable";

/// Renders a call as a `call.created` event's data; the flag says whether the recipient may
/// receive its personal data (masked otherwise).
pub type RenderCall = Arc<dyn Fn(&Call, bool) -> serde_json::Value + Send + Sync>;

/// How deliveries are sent.
#[derive(Clone)]
pub struct Deliverer {
    pub client: reqwest::Client,
    /// The addresses the client may connect to; IP-literal URLs are checked against it
    /// before each attempt (the client's resolver checks names).
    pub guard: AddressGuard,
    pub policy: RetryPolicy,
    pub render: RenderCall,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Deliveries taken per pass.
    pub batch: u32,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("policy", &self.policy)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// A client with a whole-request timeout that follows no redirect (a receiver must
    /// answer at the URL it registered) and connects only to addresses `guard` permits
    /// (public ones; loopback too where the operator enables local relays).
    pub fn new(
        timeout: Duration,
        render: RenderCall,
        guard: AddressGuard,
    ) -> Result<Self, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Ringfence/", env!("CARGO_PKG_VERSION")));
        Ok(Self {
            client: outbound::guarded(builder, guard).build()?,
            guard,
            policy: RetryPolicy::default(),
            render,
            concurrency: 8,
            batch: 200,
        })
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: u64,
    pub retried: u64,
    pub dead: u64,
    pub cancelled: u64,
}

enum Outcome {
    Delivered(u16),
    Failed(Option<u16>, String),
    Cancelled(&'static str),
}

fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// The request body: the event envelope, the same for every recipient and attempt (a
/// `call.created` shows the call as it is at the time of sending).
fn body(row: &DeliveryRow, data: serde_json::Value) -> Vec<u8> {
    serde_json::json!({
        "id": row.event_id.to_string(),
        "type": row.event.as_str(),
        "created_at": row.created_at.to_rfc3339(),
        "account_id": row.account_id.to_string(),
        "data": data,
    })
    .to_string()
    .into_bytes()
}

async fn attempt(
    log: &CallLog,
    deliverer: &Deliverer,
    row: &DeliveryRow,
    recipient: Option<&RecipientRow>,
) -> Result<Outcome, LogError> {
    let Some(recipient) = recipient.filter(|r| r.disabled_at.is_none()) else {
        return Ok(Outcome::Cancelled("recipient_removed"));
    };
    let data = match (row.event, row.call_id, &row.payload) {
        (EventKind::CallCreated, Some(call), _) => match log.call(call).await? {
            None => return Ok(Outcome::Cancelled("call_missing")),
            Some(c) if c.redaction.is_some() => {
                // Redacted after it was queued (the redaction cancels it too; this covers a
                // delivery read just before that committed), or stored redacted because its
                // caller is on the forget list: nothing of it leaves.
                return Ok(Outcome::Cancelled("call_redacted"));
            }
            Some(c) => (deliverer.render)(&c, recipient.personal_data),
        },
        (_, _, Some(payload)) => serde_json::from_str(payload).map_err(|_| {
            LogError::Corrupt(format!("delivery {}", row.id), "payload is not JSON")
        })?,
        _ => {
            return Err(LogError::Corrupt(
                format!("delivery {}", row.id),
                "neither a call nor a payload",
            ));
        }
    };
    if !reqwest::Url::parse(&recipient.url).is_ok_and(|u| deliverer.guard.permits_url(&u)) {
        // Registered before the address rules, or loopback with local relays since turned off.
        return Ok(Outcome::Failed(None, UNREACHABLE.into()));
    }
    let body = body(row, data);
    let secret = log.recipient_secret(recipient).await?;
    let signature = sign_webhook(&secret, Timestamp::now().millis() / 1000, &body);
    let sent = deliverer
        .client
        .post(&recipient.url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header("Ringfence-Event-Id", row.event_id.to_string())
        .header("Ringfence-Event", row.event.as_str())
        .header("Ringfence-Delivery-Id", row.id.to_string())
        .header("Ringfence-Attempt", (row.attempts + 1).to_string())
        .body(body)
        .send()
        .await;
    Ok(match sent {
        Ok(response) if response.status().is_success() => {
            Outcome::Delivered(response.status().as_u16())
        }
        Ok(response) => {
            let status = response.status().as_u16();
            Outcome::Failed(Some(status), format!("http_{status}"))
        }
        // Never the error's kind or text (the text can hold the URL, the kind tells a
        // filtered port from a closed one from one that speaks something else).
        Err(_) => Outcome::Failed(None, UNREACHABLE.into()),
    })
}

/// Sends the deliveries due at `now` (`now` schedules retries; signatures carry the clock's
/// time).
pub async fn run_due(
    log: &Arc<CallLog>,
    deliverer: &Deliverer,
    now: Timestamp,
) -> Result<DeliveryReport, LogError> {
    let rows = log.store().due_deliveries(now, deliverer.batch).await?;
    let mut recipients: HashMap<(AccountId, RecipientId), Option<RecipientRow>> = HashMap::new();
    for row in &rows {
        let key = (row.account_id, row.recipient_id);
        if let std::collections::hash_map::Entry::Vacant(slot) = recipients.entry(key) {
            slot.insert(log.store().recipient(key.0, key.1).await?);
        }
    }
    let recipients = &recipients;
    let results: Vec<Result<Option<DeliveryState>, LogError>> = futures::stream::iter(rows)
        .map(|row| async move {
            let recipient = recipients
                .get(&(row.account_id, row.recipient_id))
                .and_then(Option::as_ref);
            let outcome = attempt(log, deliverer, &row, recipient).await?;
            settle(log, deliverer, &row, outcome, now).await
        })
        .buffer_unordered(deliverer.concurrency.max(1))
        .collect()
        .await;
    let mut report = DeliveryReport::default();
    for result in results {
        match result? {
            Some(DeliveryState::Delivered) => report.delivered += 1,
            Some(DeliveryState::Queued) => report.retried += 1,
            Some(DeliveryState::Dead) => report.dead += 1,
            Some(DeliveryState::Cancelled) | None => report.cancelled += 1,
        }
    }
    Ok(report)
}

/// Records the outcome; `None` when the delivery had been cancelled meanwhile.
async fn settle(
    log: &CallLog,
    deliverer: &Deliverer,
    row: &DeliveryRow,
    outcome: Outcome,
    now: Timestamp,
) -> Result<Option<DeliveryState>, LogError> {
    let at = Timestamp::now();
    let attempt = match outcome {
        Outcome::Cancelled(why) => {
            tracing::info!(delivery = %row.id, recipient = %row.recipient_id, why, "delivery cancelled");
            metrics::counter!("ringfence_deliveries_total", "outcome" => "cancelled").increment(1);
            log.store().cancel_delivery(row.id, why.into()).await?;
            return Ok(Some(DeliveryState::Cancelled));
        }
        Outcome::Delivered(status) => DeliveryAttempt {
            id: row.id,
            at,
            state: DeliveryState::Delivered,
            next_attempt_at: row.next_attempt_at,
            status: Some(status),
            error: None,
            audit: None,
        },
        Outcome::Failed(status, error) => {
            match deliverer.policy.next_delay(row.attempts + 1, jitter()) {
                Some(delay) => DeliveryAttempt {
                    id: row.id,
                    at,
                    state: DeliveryState::Queued,
                    next_attempt_at: Timestamp::from_millis(
                        now.millis() + delay.as_millis() as i64,
                    ),
                    status,
                    error: Some(error),
                    audit: None,
                },
                None => {
                    let agency = log
                        .store()
                        .account(row.account_id)
                        .await?
                        .map(|a| a.agency_id);
                    DeliveryAttempt {
                        id: row.id,
                        at,
                        state: DeliveryState::Dead,
                        next_attempt_at: row.next_attempt_at,
                        status,
                        error: Some(error.clone()),
                        audit: Some(AuditEvent {
                            actor: "outbox".into(),
                            action: "delivery.dead_lettered".into(),
                            agency_id: agency,
                            account_id: Some(row.account_id),
                            subject: Some(row.id.to_string()),
                            count: Some(u64::from(row.attempts + 1)),
                            reason: Some(error),
                            details: format!(
                                "{{\"recipient\":\"{}\",\"event\":\"{}\",\"event_id\":\"{}\"}}",
                                row.recipient_id,
                                row.event.as_str(),
                                row.event_id
                            ),
                        }),
                    }
                }
            }
        }
    };
    let state = attempt.state;
    let label = match state {
        DeliveryState::Delivered => "delivered",
        DeliveryState::Queued => "retry",
        _ => "dead",
    };
    tracing::info!(delivery = %row.id, recipient = %row.recipient_id, event = row.event.as_str(), outcome = label, error = attempt.error.as_deref().unwrap_or(""), "delivery attempt");
    metrics::counter!("ringfence_deliveries_total", "outcome" => label).increment(1);
    if log.store().finish_delivery(attempt).await? {
        Ok(Some(state))
    } else {
        Ok(None)
    }
}
