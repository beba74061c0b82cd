//! Fetching recordings from the telephony provider: the durable queue filled by the
//! recording status callback, worked through here with retries and backoff.
//!
//! Before a byte is fetched, the account's recording mode and the caller's consent are
//! checked: a recording that may not be kept is never downloaded at all. The audio streams
//! from the provider straight into the sealed recording writer, so it is never on disk in
//! the clear, and a limit stops oversized files mid-stream.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;

use ringfence_core::collection::RecordingMode;
use ringfence_core::timestamp::Timestamp;
use ringfence_store::{AuditEvent, CallLog, DownloadJob, LogError, RecordingConsent, StoreError};

use crate::outbound::{self, MediaHosts};

/// How the worker talks to the provider.
#[derive(Debug, Clone)]
pub struct Downloader {
    pub client: reqwest::Client,
    /// Where recordings may come from; checked before the request and on every redirect,
    /// and the address connected to is checked by the client's resolver.
    pub hosts: MediaHosts,
    /// Largest recording accepted, in bytes.
    pub max_bytes: u64,
    /// Attempts before a download is given up.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles, up to an hour.
    pub backoff: Duration,
}

impl Downloader {
    /// A client with a whole-request timeout (connect, headers and body) that connects only
    /// to addresses `hosts` permits and follows at most 3 redirects, each to a permitted URL.
    pub fn new(
        timeout: Duration,
        max_bytes: u64,
        hosts: MediaHosts,
    ) -> Result<Self, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(hosts.redirect_policy(3));
        Ok(Self {
            client: outbound::guarded(builder, hosts.guard()).build()?,
            hosts,
            max_bytes,
            max_attempts: 8,
            backoff: Duration::from_secs(5),
        })
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DownloadReport {
    pub downloaded: u64,
    pub skipped: u64,
    pub retried: u64,
    pub failed: u64,
}

enum Step {
    Done { bytes: u64, note: String },
    Skipped(&'static str),
    Retry(String),
    Failed(String),
}

/// Works through the downloads due at `now`, one at a time.
pub async fn run_due(
    log: &Arc<CallLog>,
    downloader: &Downloader,
    now: Timestamp,
) -> Result<DownloadReport, LogError> {
    let mut report = DownloadReport::default();
    for mut job in log.store().due_downloads(now, 50).await? {
        let step = attempt(log, downloader, &job).await?;
        job.attempts += 1;
        let (action, count, reason) = match step {
            Step::Done { bytes, note } => {
                report.downloaded += 1;
                job.state = "done".into();
                job.outcome = Some(note.clone());
                ("recording.downloaded", Some(bytes), note)
            }
            Step::Skipped(reason) => {
                report.skipped += 1;
                job.state = "skipped".into();
                job.outcome = Some(reason.into());
                ("recording.not_downloaded", None, reason.to_owned())
            }
            Step::Retry(reason) if job.attempts < downloader.max_attempts => {
                report.retried += 1;
                let delay = downloader
                    .backoff
                    .saturating_mul(1 << (job.attempts - 1).min(16))
                    .min(Duration::from_secs(3600));
                job.next_attempt_at =
                    Timestamp::from_millis(now.millis() + delay.as_millis() as i64);
                job.outcome = Some(reason);
                log.store().update_download(job, None).await?;
                continue;
            }
            Step::Retry(reason) | Step::Failed(reason) => {
                report.failed += 1;
                job.state = "failed".into();
                job.outcome = Some(reason.clone());
                ("recording.download_failed", None, reason)
            }
        };
        tracing::info!(download = %job.id, account = %job.account_id, outcome = %reason, "recording download");
        let agency = log
            .store()
            .account(job.account_id)
            .await?
            .map(|a| a.agency_id);
        let event = AuditEvent {
            actor: "twilio".into(),
            action: action.into(),
            agency_id: agency,
            account_id: Some(job.account_id),
            subject: Some(job.recording_sid.clone()),
            count,
            reason: Some(reason),
            details: format!(
                "{{\"download\":\"{}\",\"attempts\":{}}}",
                job.id, job.attempts
            ),
        };
        log.store().update_download(job, Some(event)).await?;
    }
    if report != DownloadReport::default() {
        log.anchor_journal().await?;
    }
    Ok(report)
}

async fn attempt(
    log: &Arc<CallLog>,
    downloader: &Downloader,
    job: &DownloadJob,
) -> Result<Step, LogError> {
    let Some(account) = log.store().account(job.account_id).await? else {
        return Ok(Step::Failed("the account no longer exists".into()));
    };
    // Nothing is sent anywhere, and no credential, unless the URL is on the media hosts and
    // the callback named the account's own Account SID (checked at the callback too; this
    // covers jobs queued before, and settings changed since).
    if !downloader.hosts.permits_text(&job.url) {
        return Ok(Step::Failed(
            "the recording URL is not on an allowed media host".into(),
        ));
    }
    match &account.twilio_account_sid {
        None => {
            return Ok(Step::Failed("the account has no Twilio Account SID".into()));
        }
        Some(sid) if *sid != job.provider_account => {
            return Ok(Step::Failed(
                "the callback's AccountSid is not the account's".into(),
            ));
        }
        Some(_) => {}
    }
    let Some(token) = log.twilio_auth_token(&account).await? else {
        return Ok(Step::Failed("the account has no Twilio auth token".into()));
    };
    let Some(call) = log
        .store()
        .call_by_external(job.account_id, job.call_sid.clone())
        .await?
    else {
        // The recording callback may overtake the call's own status callback.
        return Ok(Step::Retry("the call has not arrived yet".into()));
    };
    if call.redacted_at.is_some() {
        return Ok(Step::Skipped("the call is redacted"));
    }
    let check = match account.collection.recording_mode(call.gdpr_scope) {
        RecordingMode::Off => return Ok(Step::Skipped("the account does not record such calls")),
        RecordingMode::Announce => RecordingConsent::UnlessWithdrawn,
        RecordingMode::OptIn => RecordingConsent::Granted,
    };
    if !log.recording_allowed(&call, check).await? {
        return Ok(Step::Skipped("the caller has not consented to recording"));
    }
    let password = String::from_utf8_lossy(&token).into_owned();
    let response = match downloader
        .client
        .get(&job.url)
        .basic_auth(&job.provider_account, Some(&password))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_redirect() => {
            return Ok(Step::Failed(
                "the provider redirected off the allowed media hosts".into(),
            ));
        }
        Err(e) if e.is_timeout() => return Ok(Step::Retry("the provider timed out".into())),
        // Connection refused, a name that does not resolve, or resolves to no permitted
        // address: one answer, so the outcome tells nothing about what listens where.
        Err(_) => return Ok(Step::Retry("the provider could not be reached".into())),
    };
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Ok(Step::Failed(format!(
            "the provider refused the credentials ({status})"
        )));
    }
    if !status.is_success() {
        // 404 too: the provider may not serve a recording the moment it reports it.
        return Ok(Step::Retry(format!("the provider answered {status}")));
    }
    if response
        .content_length()
        .is_some_and(|len| len > downloader.max_bytes)
    {
        return Ok(Step::Failed(format!(
            "the recording is larger than {} bytes",
            downloader.max_bytes
        )));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| v.starts_with("audio/") && v.len() <= 64)
        .unwrap_or_else(|| "audio/wav".into());
    let body = response.bytes_stream().map_err(std::io::Error::other);
    match log
        .put_recording(
            &call,
            content_type,
            Box::pin(body),
            downloader.max_bytes,
            Some(check),
        )
        .await
    {
        Ok(meta) => {
            let note = if account.twilio_delete_recordings {
                match downloader
                    .client
                    .delete(&job.url)
                    .basic_auth(&job.provider_account, Some(&password))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        "stored; the provider's copy deleted".to_owned()
                    }
                    Ok(r) => format!(
                        "stored; deleting the provider's copy answered {}",
                        r.status()
                    ),
                    Err(_) => {
                        "stored; the provider could not be reached to delete its copy".to_owned()
                    }
                }
            } else {
                "stored".to_owned()
            };
            Ok(Step::Done {
                bytes: meta.bytes,
                note,
            })
        }
        Err(LogError::RecordingTooLarge { limit }) => Ok(Step::Failed(format!(
            "the recording is larger than {limit} bytes"
        ))),
        Err(LogError::EmptyRecording) => Ok(Step::Retry("the provider sent no audio".into())),
        Err(LogError::BodyRead) => Ok(Step::Retry("the download broke off".into())),
        Err(LogError::Redacted) => Ok(Step::Skipped("the call is redacted")),
        Err(LogError::Store(StoreError::ConsentRequired { .. })) => {
            Ok(Step::Skipped("the caller has not consented to recording"))
        }
        Err(other) => Err(other),
    }
}
