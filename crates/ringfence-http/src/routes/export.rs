//! The access and portability export, streamed as a ZIP.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use ringfence_core::AccountId;
use ringfence_core::access::Permission;
use ringfence_core::call::FieldError;
use ringfence_core::phone::parse_e164;

use super::{check_account, path_id};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Code};
use crate::export::write_export;
use crate::state::AppState;

/// A `Write` that hands the archive to the response body in 64 KiB pieces; it blocks while
/// the client is slower than the export (bounded memory), and fails once the client left.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(64 << 10),
        ));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 << 10 {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// The archive's file name: one per caller and day, without the number (a download
/// folder, a browser's history and a proxy's log keep names): the account, the first
/// 8 hex digits of the number's blind index (a keyed hash, meaningless without the
/// vault) and the date.
async fn export_filename(
    state: &AppState,
    account: AccountId,
    number: &ringfence_core::E164,
) -> ApiResult<String> {
    let bidx = state.log.blind_index(account, number).await?;
    let tag: String = bidx[..4].iter().map(|b| format!("{b:02x}")).collect();
    let day: String = ringfence_core::timestamp::Timestamp::now()
        .to_rfc3339()
        .chars()
        .take(10)
        .filter(|c| *c != '-')
        .collect();
    Ok(format!("ringfence-export-{account}-{tag}-{day}.zip"))
}

/// Export everything held about a caller in the account (GDPR Art. 15 and 20): a ZIP with
/// `data.json` (schema `schemas/export-v1.schema.json`), the recordings and a README.
/// Streamed; journaled (who, when, how many items — never the number). Redacted calls appear
/// as their facts only.
#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/callers/{number}/export", tag = "redaction",
    params(("account_id" = String, Path, description = "account id"), ("number" = String, Path, pattern = r"^\+[1-9][0-9]{6,14}$", description = "E.164, URL-encoded (%2B for +)")),
    responses(
        (status = 200, description = "the archive", content_type = "application/zip"),
        (status = 403, description = "the role may not export, or the token may not see personal data", extensions(("x-error-codes" = json!([Code::Forbidden])))),
        (status = 404, description = "no such account in the token's scope", extensions(("x-error-codes" = json!([Code::NotFound])))),
        (status = 422, extensions(("x-error-codes" = json!([Code::InvalidPhoneNumber])))),
    ),
    security(("bearer" = [])))]
pub async fn export_caller(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((account, number)): Path<(String, String)>,
) -> ApiResult<Response> {
    let account: AccountId = path_id(&account, "account")?;
    let tenant = state.tenant(account).await?;
    check_account(&principal, Permission::ManageAccount, &tenant)?;
    if !principal.personal_data {
        return Err(ApiError::new(
            Code::Forbidden,
            "this token may not see personal data, so it may not export it",
        ));
    }
    let number = parse_e164(&number).map_err(|e| {
        ApiError::fields(vec![FieldError::new(
            "number",
            "invalid_phone_number",
            format!("not a valid E.164 number ({e})"),
        )])
    })?;
    let record = state
        .log
        .store()
        .account(account)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let agency_max = state
        .log
        .store()
        .agency(record.agency_id)
        .await?
        .and_then(|a| a.max_retention_days);
    let filename = export_filename(&state, account, &number).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let log = state.log.clone();
    let actor = principal.actor();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(64 << 10),
        };
        if let Err(e) = write_export(&log, &handle, &record, agency_max, &number, &actor, writer) {
            tracing::warn!(account = %record.id, error = %e, "export failed");
            // The client sees a broken download, never a truncated archive that looks whole.
            let _ = errors.blocking_send(Err(std::io::Error::other("export failed")));
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
