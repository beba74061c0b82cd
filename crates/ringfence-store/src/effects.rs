//! What a redaction does besides clearing columns, decided once for every backend: which
//! event tells the recipients, what that event says (ids only), and what the journal entry
//! records so that a restore can re-apply it. A backend runs these inside the transaction
//! that clears the rows, and stores what they return.

use ringfence_core::call::RedactionReason;
use ringfence_core::datamap::DataCategory;
use ringfence_core::recipients::{EventKind, MAX_CALLS_PER_EVENT};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, SessionId};
use ringfence_crypto::{BlindIndex, blind_index_from_hex, blind_index_to_hex};
use serde_json::{Map, Value, json};

use crate::records::{AuditEvent, ConsentRow, RedactionJob};

/// The event that tells recipients of a whole redaction: `caller.erased` for a caller's
/// erasure (Art. 17 on request), `call.redacted` otherwise.
pub fn erasure_kind(reason: RedactionReason) -> EventKind {
    if reason == RedactionReason::Caller {
        EventKind::CallerErased
    } else {
        EventKind::CallRedacted
    }
}

/// The payloads of the erasure events about `calls` (`(call id, external id)`, in the order
/// they are to be listed): ids, external ids, the reason and the time — never a number —
/// plus `extra` (categories, a consent id). At most `MAX_CALLS_PER_EVENT` calls per event, a
/// large erasure told in numbered parts; an erasure that touched no stored call (a consent
/// withdrawal before any call) is still told, once.
pub fn erasure_payloads(
    reason: &str,
    at: Timestamp,
    calls: &[(String, Option<String>)],
    extra: &Map<String, Value>,
) -> Vec<String> {
    let chunks: Vec<&[(String, Option<String>)]> = if calls.is_empty() {
        vec![&[]]
    } else {
        calls.chunks(MAX_CALLS_PER_EVENT).collect()
    };
    let parts = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(part, chunk)| {
            let listed: Vec<Value> = chunk
                .iter()
                .map(|(id, external)| json!({"id": id, "external_id": external}))
                .collect();
            let mut data = Map::new();
            data.insert("reason".into(), json!(reason));
            data.insert("at".into(), json!(at.to_rfc3339()));
            data.insert("calls".into(), Value::Array(listed));
            if parts > 1 {
                data.insert("part".into(), json!(part + 1));
                data.insert("parts".into(), json!(parts));
            }
            for (k, v) in extra {
                data.insert(k.clone(), v.clone());
            }
            Value::Object(data).to_string()
        })
        .collect()
}

/// The extra fields of the event about a removal of some categories.
pub fn categories_extra(categories: &[DataCategory]) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert(
        "categories".into(),
        Value::Array(
            categories
                .iter()
                .map(|c| Value::String(c.as_str().into()))
                .collect(),
        ),
    );
    extra
}

/// The extra fields of the event about a consent withdrawal: the consent event's id, the
/// category and the kind of subject (never the subject).
pub fn withdrawal_extra(consent: &ConsentRow) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("consent_id".into(), json!(consent.id));
    extra.insert("category".into(), json!(consent.category.as_str()));
    extra.insert("subject_kind".into(), json!(consent.subject_kind.as_str()));
    extra
}

/// Which calls the recipients are told lost some categories: those whose columns changed,
/// or — when visits were redacted — every call of the job (a visit's removal touches every
/// call that links to one).
pub fn told_of_removal(job: &RedactionJob, changed: &[String], sessions: u64) -> Vec<String> {
    if sessions > 0 {
        job.call_ids.iter().map(|c| c.to_string()).collect()
    } else {
        changed.to_vec()
    }
}

/// A journal entry's `details` that restore reads back, typed: what a redaction removed
/// beyond the call ids its `subject` lists. Written with serde_json, read back strictly (a
/// malformed entry is an error, never skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedactionDetails {
    /// Whole calls (and their sessions) redacted.
    Whole {
        /// The fields the requester added (a note, the role), kept as they were.
        request: Map<String, Value>,
        redacted_calls: u64,
        redacted_sessions: u64,
        consents_removed: u64,
        job: String,
        /// Forget-list entries added (blind indexes: useless without the vault's key).
        forget: Vec<(AccountId, BlindIndex)>,
        /// Consent subjects whose records went with the redaction.
        subjects: Vec<(AccountId, BlindIndex)>,
    },
    /// Some categories removed from calls that stay otherwise intact.
    Categories {
        categories: Vec<DataCategory>,
        calls: u64,
        sessions: u64,
        session_ids: Vec<SessionId>,
        job: String,
    },
}

/// A journal entry's details did not read as a redaction's.
#[derive(Debug, thiserror::Error)]
#[error("journal entry details: {0}")]
pub struct DetailsError(&'static str);

fn pairs(items: &[(AccountId, BlindIndex)]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|(a, b)| json!({"account": a.to_string(), "blind_index": blind_index_to_hex(b)}))
            .collect(),
    )
}

fn read_pairs(value: Option<&Value>) -> Result<Vec<(AccountId, BlindIndex)>, DetailsError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let items = value
        .as_array()
        .ok_or(DetailsError("a list of pairs is not a list"))?;
    items
        .iter()
        .map(|f| {
            let account = f["account"]
                .as_str()
                .and_then(|a| a.parse::<AccountId>().ok())
                .ok_or(DetailsError("a pair's account is not an account id"))?;
            let bidx = f["blind_index"]
                .as_str()
                .and_then(blind_index_from_hex)
                .ok_or(DetailsError("a pair's blind_index is not 32 hex digits"))?;
            Ok((account, bidx))
        })
        .collect()
}

fn read_u64(map: &Map<String, Value>, key: &'static str) -> Result<u64, DetailsError> {
    map.get(key)
        .and_then(Value::as_u64)
        .ok_or(DetailsError(key))
}

fn read_job(map: &Map<String, Value>) -> Result<String, DetailsError> {
    map.get("job")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(DetailsError("job"))
}

impl RedactionDetails {
    /// The JSON text the journal stores (and its hash covers).
    pub fn to_json(&self) -> String {
        match self {
            RedactionDetails::Whole {
                request,
                redacted_calls,
                redacted_sessions,
                consents_removed,
                job,
                forget,
                subjects,
            } => {
                let mut map = request.clone();
                map.insert("redacted_calls".into(), json!(redacted_calls));
                map.insert("redacted_sessions".into(), json!(redacted_sessions));
                map.insert("consents_removed".into(), json!(consents_removed));
                map.insert("job".into(), json!(job));
                if !forget.is_empty() {
                    map.insert("forget".into(), pairs(forget));
                }
                if !subjects.is_empty() {
                    map.insert("subjects".into(), pairs(subjects));
                }
                Value::Object(map).to_string()
            }
            RedactionDetails::Categories {
                categories,
                calls,
                sessions,
                session_ids,
                job,
            } => json!({
                "categories": categories.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "calls": calls,
                "sessions": sessions,
                "session_ids": session_ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "job": job,
            })
            .to_string(),
        }
    }

    /// Reads the details of a redaction's journal entry back, strictly.
    pub fn parse(text: &str) -> Result<Self, DetailsError> {
        let value: Value =
            serde_json::from_str(text).map_err(|_| DetailsError("not a JSON document"))?;
        let Value::Object(mut map) = value else {
            return Err(DetailsError("not a JSON object"));
        };
        if let Some(categories) = map.get("categories") {
            let categories = categories
                .as_array()
                .ok_or(DetailsError("categories"))?
                .iter()
                .map(|c| {
                    c.as_str()
                        .and_then(DataCategory::parse)
                        .ok_or(DetailsError("an unknown category"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let session_ids = map
                .get("session_ids")
                .and_then(Value::as_array)
                .ok_or(DetailsError("session_ids"))?
                .iter()
                .map(|s| {
                    s.as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or(DetailsError("a session id"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(RedactionDetails::Categories {
                categories,
                calls: read_u64(&map, "calls")?,
                sessions: read_u64(&map, "sessions")?,
                session_ids,
                job: read_job(&map)?,
            });
        }
        let redacted_calls = read_u64(&map, "redacted_calls")?;
        let redacted_sessions = read_u64(&map, "redacted_sessions")?;
        let consents_removed = read_u64(&map, "consents_removed")?;
        let job = read_job(&map)?;
        // Entries written before the details were typed may carry the request's own
        // `"forget": true|false` flag under the same key: a flag is the request's, a list
        // the entries.
        let forget = match map.get("forget") {
            Some(Value::Bool(_)) => Vec::new(),
            other => {
                let pairs = read_pairs(other)?;
                map.remove("forget");
                pairs
            }
        };
        let subjects = read_pairs(map.get("subjects"))?;
        for key in [
            "redacted_calls",
            "redacted_sessions",
            "consents_removed",
            "job",
            "subjects",
        ] {
            map.remove(key);
        }
        Ok(RedactionDetails::Whole {
            request: map,
            redacted_calls,
            redacted_sessions,
            consents_removed,
            job,
            forget,
            subjects,
        })
    }
}

/// The journal entry of a whole redaction: the job's entry with the ids of the calls
/// redacted (never the caller) and what a restore needs to re-apply it.
pub fn whole_redaction_event(
    job: &RedactionJob,
    redacted_ids: &[String],
    sessions: u64,
    consents: u64,
) -> AuditEvent {
    let request = match serde_json::from_str::<Value>(&job.audit.details) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut event = job.audit.clone();
    event.count = Some(redacted_ids.len() as u64);
    event.subject = Some(redacted_ids.join(","));
    event.details = RedactionDetails::Whole {
        request,
        redacted_calls: redacted_ids.len() as u64,
        redacted_sessions: sessions,
        consents_removed: consents,
        job: job.id.clone(),
        forget: job.forget.clone(),
        subjects: job.subjects.clone(),
    }
    .to_json();
    event
}

/// The journal entry of a removal of some categories; `None` when nothing was removed
/// (another sweep was first): nothing to journal.
pub fn category_removal_event(
    job: &RedactionJob,
    changed: &[String],
    sessions: u64,
) -> Option<AuditEvent> {
    if changed.is_empty() && sessions == 0 {
        return None;
    }
    let mut event = job.audit.clone();
    event.count = Some(changed.len() as u64);
    event.subject = Some(changed.join(","));
    event.details = RedactionDetails::Categories {
        categories: job.categories.clone(),
        calls: changed.len() as u64,
        sessions,
        session_ids: job.session_ids.clone(),
        job: job.id.clone(),
    }
    .to_json();
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_erasure_is_told_in_numbered_parts_and_an_empty_one_once() {
        let calls: Vec<(String, Option<String>)> = (0..2_500)
            .map(|i| (format!("call-{i}"), Some(format!("CA{i}"))))
            .collect();
        let at = Timestamp::from_millis(1_700_000_000_000);
        let payloads = erasure_payloads("caller", at, &calls, &Map::new());
        assert_eq!(payloads.len(), 3);
        let last: Value = serde_json::from_str(&payloads[2]).unwrap();
        assert_eq!(last["part"], 3);
        assert_eq!(last["parts"], 3);
        assert_eq!(last["calls"].as_array().unwrap().len(), 500);
        assert_eq!(last["calls"][0]["external_id"], "CA2000");
        let none = erasure_payloads(
            "consent_withdrawn",
            at,
            &[],
            &categories_extra(&[DataCategory::Visitor]),
        );
        assert_eq!(none.len(), 1);
        let only: Value = serde_json::from_str(&none[0]).unwrap();
        assert_eq!(only["calls"], json!([]));
        assert_eq!(only["categories"], json!(["visitor"]));
        assert!(only.get("part").is_none());
    }

    #[test]
    fn redaction_details_read_back_as_written_and_malformed_ones_are_errors() {
        let account = AccountId::generate();
        let whole = RedactionDetails::Whole {
            request: serde_json::from_str(r#"{"role":"account_admin","note":"ticket 12"}"#)
                .unwrap(),
            redacted_calls: 3,
            redacted_sessions: 1,
            consents_removed: 2,
            job: "job-1".into(),
            forget: vec![(account, [0xab; 16])],
            subjects: vec![(account, [0x01; 16])],
        };
        assert_eq!(RedactionDetails::parse(&whole.to_json()).unwrap(), whole);
        // An entry from before the details were typed: the request's flag, no entries.
        let legacy = r#"{"role":"account_admin","forget":false,"redacted_calls":1,"redacted_sessions":0,"consents_removed":0,"job":"j"}"#;
        let RedactionDetails::Whole {
            forget, request, ..
        } = RedactionDetails::parse(legacy).unwrap()
        else {
            panic!("a whole redaction")
        };
        assert!(forget.is_empty());
        assert_eq!(request["forget"], json!(false));
        let categories = RedactionDetails::Categories {
            categories: vec![DataCategory::Recording, DataCategory::Visitor],
            calls: 4,
            sessions: 1,
            session_ids: vec![SessionId::generate()],
            job: "job-2".into(),
        };
        assert_eq!(
            RedactionDetails::parse(&categories.to_json()).unwrap(),
            categories
        );
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"redacted_calls":1,"redacted_sessions":0,"consents_removed":0}"#,
            r#"{"redacted_calls":1,"redacted_sessions":0,"consents_removed":0,"job":"j","forget":[{"account":"x","blind_index":"ab"}]}"#,
            r#"{"categories":["no_such_category"],"calls":1,"sessions":0,"session_ids":[],"job":"j"}"#,
            r#"{"categories":["recording"],"calls":1,"sessions":0,"job":"j"}"#,
        ] {
            assert!(RedactionDetails::parse(bad).is_err(), "{bad} was read");
        }
    }
}
