//! The access and portability export (GDPR Art. 15 and 20): one ZIP per caller and account,
//! written as a stream.
//!
//! `data.json` follows `schemas/export-v1.schema.json` (shipped in the repository and
//! validated in tests); recordings are added as audio files; `README.txt` explains the rest.
//! The archive is produced in bounded memory: calls are opened in pages, recordings copied
//! chunk by chunk, and the ZIP written in stream mode (sizes in data descriptors, ZIP64 where
//! needed) to any `Write` — an HTTP response body or a file. Nothing is staged on disk.

use std::collections::BTreeSet;
use std::io::Write;

use futures::StreamExt;
use serde::Serialize;
use tokio::runtime::Handle;
use zip::write::SimpleFileOptions;

use ringfence_core::datamap::DataCategory;
use ringfence_core::phone::E164;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, SessionId};
use ringfence_store::{AccountRecord, AuditEvent, CallLog, ConsentSubject, LogError};

use crate::dto::{CallOutput, reveal};
use crate::routes::consents::{ConsentOutput, output as consent_output};

/// The version of `data.json`'s schema.
pub const SCHEMA_VERSION: u32 = 1;
/// Calls opened at a time.
const PAGE: usize = 200;

/// What an export held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub calls: u64,
    pub sessions: u64,
    pub consents: u64,
    pub recordings: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("writing the archive: {0}")]
    Write(String),
}

impl From<ringfence_store::StoreError> for ExportError {
    fn from(e: ringfence_store::StoreError) -> Self {
        ExportError::Log(e.into())
    }
}

impl From<zip::result::ZipError> for ExportError {
    fn from(e: zip::result::ZipError) -> Self {
        ExportError::Write(e.to_string())
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Write(e.to_string())
    }
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, ExportError> {
    serde_json::to_vec(value).map_err(|e| ExportError::Write(e.to_string()))
}

#[derive(Serialize)]
struct Category {
    name: &'static str,
    on_redaction: &'static str,
    fields: Vec<&'static str>,
}

fn categories() -> Vec<Category> {
    DataCategory::ALL
        .into_iter()
        .map(|c| Category {
            name: c.as_str(),
            on_redaction: match c.on_redaction() {
                ringfence_core::RedactionEffect::Kept => "kept",
                ringfence_core::RedactionEffect::Removed => "removed",
                ringfence_core::RedactionEffect::FileDestroyed => "file_destroyed",
            },
            fields: ringfence_core::datamap::DATA_MAP
                .iter()
                .filter(|f| f.category == c)
                .map(|f| f.name)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        })
        .collect()
}

#[derive(Serialize)]
struct SessionExport {
    id: String,
    external_id: Option<String>,
    started_at: String,
    utm: crate::dto::UtmOutput,
    ip: Option<String>,
    country: Option<String>,
    user_agent: Option<String>,
    referrer: Option<String>,
    landing_url: Option<String>,
    gclid: Option<String>,
    fbclid: Option<String>,
    msclkid: Option<String>,
    visitor_id: Option<String>,
    redacted: bool,
}

const README: &str = "Ringfence: the personal data held about one caller\n\
\n\
This archive answers an access or portability request (GDPR Articles 15 and 20) for one\n\
phone number in one account.\n\
\n\
data.json     Everything held about the caller, as JSON (schema: export-v1.schema.json,\n\
              version in \"schema_version\"):\n\
              - calls: every call from the number, with its facts, the caller's identity and\n\
                location, transcript, notes and tags, and the web visit linked to it.\n\
                A call whose data was partly removed (automatic redaction of a category,\n\
                a withdrawn consent) shows that part empty. A call redacted whole is no\n\
                longer linked to the number at all, so it is not listed.\n\
              - visitor_sessions: the web visits linked to those calls.\n\
              - consents: every consent choice recorded for the number, with the text of the\n\
                notice shown (notices).\n\
              - recipients: the systems each call was forwarded to.\n\
              - retention: when the account redacts calls automatically.\n\
              - data_categories: what each kind of data is and what redaction does to it.\n\
recordings/   The call recordings, one audio file per call, named by call id.\n";

/// Writes the export of `number` in `account` to `out` (blocking: run it on a blocking
/// thread; `handle` runs the store's async calls). Journals the export (who, when, how many
/// items; never the number) once it is complete.
pub fn write_export<W: Write>(
    log: &CallLog,
    handle: &Handle,
    account: &AccountRecord,
    agency_max: Option<u32>,
    number: &E164,
    actor: &str,
    out: W,
) -> Result<ExportSummary, ExportError> {
    let mut summary = ExportSummary::default();
    let bidx = handle.block_on(log.blind_index(account.id, number))?;
    let rows = handle.block_on(log.store().calls_by_caller(account.id, bidx))?;
    let mut zip = zip::ZipWriter::new_stream(out);
    let stored = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    zip.start_file("README.txt", stored)?;
    zip.write_all(README.as_bytes())?;

    zip.start_file("data.json", stored)?;
    let now = Timestamp::now();
    let p = &account.retention;
    let head = serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "generated_at": now.to_rfc3339(),
        "account_id": account.id.to_string(),
        "subject": {"caller_number": number.as_str()},
        "retention": {
            "after_days": p.after_days,
            "effective_after_days": p.effective_after_days(agency_max),
            "scope": p.scope.as_str(),
            "categories": p.categories.iter().map(|(c, d)| (c.as_str().to_owned(), *d)).collect::<std::collections::BTreeMap<_, _>>(),
        },
        "data_categories": categories(),
    });
    // The head object without its closing brace, then the lists, streamed.
    let mut head = json(&head)?;
    head.pop();
    zip.write_all(&head)?;
    zip.write_all(b",\"calls\":[")?;
    let mut sessions: Vec<SessionId> = Vec::new();
    let mut recordings = Vec::new();
    let mut first = true;
    for page in rows.chunks(PAGE) {
        let calls = handle.block_on(log.open_calls(page.to_vec()))?;
        // The recipients each call was delivered to (Art. 15(1)(c)).
        let mut sent: std::collections::HashMap<ringfence_core::CallId, Vec<serde_json::Value>> =
            std::collections::HashMap::new();
        for (call, recipient, name) in handle.block_on(
            log.store()
                .delivered_to(page.iter().map(|r| r.id).collect()),
        )? {
            sent.entry(call)
                .or_default()
                .push(serde_json::json!({"id": recipient.to_string(), "name": name}));
        }
        for (call, row) in calls.iter().zip(page) {
            let mut value = serde_json::to_value(CallOutput::from_call(call, true))
                .map_err(|e| ExportError::Write(e.to_string()))?;
            let file = call.recording.as_ref().map(|r| {
                let ext = r
                    .content_type
                    .strip_prefix("audio/")
                    .map(|s| s.trim_start_matches("x-"))
                    .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric()) && !s.is_empty())
                    .unwrap_or("audio");
                format!("recordings/{}.{ext}", call.id)
            });
            if let Some(obj) = value.as_object_mut() {
                obj.insert("recording_file".into(), serde_json::json!(file));
                obj.insert(
                    "recipients".into(),
                    serde_json::Value::Array(sent.remove(&call.id).unwrap_or_default()),
                );
                if let Some(rec) = obj.get_mut("recording").and_then(|r| r.as_object_mut()) {
                    rec.remove("url");
                }
            }
            if !first {
                zip.write_all(b",")?;
            }
            first = false;
            zip.write_all(&json(&value)?)?;
            summary.calls += 1;
            if let Some((session, _)) = &call.visitor {
                sessions.push(*session);
            } else if let Some(session) = row.session_id.filter(|_| call.redaction.is_none()) {
                sessions.push(session);
            }
            if let Some(file) = file {
                recordings.push((row.clone(), file));
            }
        }
    }
    zip.write_all(b"],\"visitor_sessions\":[")?;
    sessions.sort();
    sessions.dedup();
    let mut first = true;
    for page in sessions.chunks(PAGE) {
        for s in handle.block_on(log.sessions(page.to_vec()))? {
            let v = s.visitor.clone().unwrap_or_default();
            let export = SessionExport {
                id: s.id.to_string(),
                external_id: s.external_id.clone(),
                started_at: s.started_at.to_rfc3339(),
                utm: crate::dto::UtmOutput {
                    source: s.utm.source.clone(),
                    medium: s.utm.medium.clone(),
                    campaign: s.utm.campaign.clone(),
                },
                ip: reveal(&v.ip),
                country: reveal(&v.country),
                user_agent: reveal(&v.user_agent),
                referrer: reveal(&v.referrer),
                landing_url: reveal(&v.landing_url),
                gclid: reveal(&v.gclid),
                fbclid: reveal(&v.fbclid),
                msclkid: reveal(&v.msclkid),
                visitor_id: reveal(&v.visitor_id),
                redacted: s.redaction.is_some(),
            };
            if !first {
                zip.write_all(b",")?;
            }
            first = false;
            zip.write_all(&json(&export)?)?;
            summary.sessions += 1;
        }
    }
    zip.write_all(b"],\"consents\":[")?;
    let subject = ConsentSubject::Caller(number.clone());
    let consents = handle.block_on(log.consents(account.id, Some(&subject), None, u32::MAX))?;
    let mut cited: BTreeSet<(DataCategory, u32)> = BTreeSet::new();
    for (i, c) in consents.iter().enumerate() {
        if i > 0 {
            zip.write_all(b",")?;
        }
        let out: ConsentOutput = consent_output(c, true);
        zip.write_all(&json(&out)?)?;
        summary.consents += 1;
        if let Some(v) = c.row.notice_version {
            cited.insert((c.row.category, v));
        }
    }
    zip.write_all(b"],\"notices\":[")?;
    let notices = handle.block_on(log.store().notices(account.id))?;
    let mut first = true;
    for n in notices
        .iter()
        .filter(|n| cited.contains(&(n.category, n.version)))
    {
        if !first {
            zip.write_all(b",")?;
        }
        first = false;
        zip.write_all(&json(&serde_json::json!({
            "category": n.category.as_str(), "version": n.version, "text": n.text,
            "created_at": n.created_at.to_rfc3339(),
        }))?)?;
    }
    zip.write_all(b"]}")?;

    for (row, file) in recordings {
        let Some(rec) = handle.block_on(log.recording(&row))? else {
            continue;
        };
        let bytes = rec.meta.bytes;
        let Some(stream) = handle.block_on(log.read_recording(rec, 0, bytes))? else {
            continue;
        };
        zip.start_file(file.as_str(), stored)?;
        let mut stream = Box::pin(stream);
        while let Some(piece) = handle.block_on(stream.next()) {
            zip.write_all(&piece?)?;
        }
        summary.recordings += 1;
    }
    zip.finish()?;
    let summary_json = json(&summary)?;
    handle.block_on(log.store().append_audit(AuditEvent {
        actor: actor.to_owned(),
        action: "caller.exported".into(),
        agency_id: Some(account.agency_id),
        account_id: Some(account.id),
        subject: None,
        count: Some(summary.calls),
        reason: None,
        details: String::from_utf8_lossy(&summary_json).into_owned(),
    }))?;
    handle.block_on(log.anchor_journal())?;
    Ok(summary)
}

/// Account ids print in logs; the caller never does.
pub fn describe(account: AccountId, summary: &ExportSummary) -> String {
    format!(
        "account {account}: {} calls, {} sessions, {} consents, {} recordings",
        summary.calls, summary.sessions, summary.consents, summary.recordings
    )
}
