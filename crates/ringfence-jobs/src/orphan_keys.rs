//! Destroys data keys that open nothing.
//!
//! Ingest writes a record's key to the vault before the record itself, so a crash (or a
//! failed insert whose clean-up did not run, or keys a crash left in the `KeyPool`, issued
//! ahead of need) can leave keys without records. Such a key is
//! harmless but is key material kept without purpose, so it is destroyed once it is older
//! than a grace period much longer than any ingest can take.

use std::time::Duration;

use ringfence_core::timestamp::Timestamp;
use ringfence_core::{CallId, SessionId};
use ringfence_crypto::KeyPurpose;
use ringfence_store::{CallLog, LogError};

/// Keys younger than this are never collected: their record may still be on its way.
pub const GRACE: Duration = Duration::from_secs(24 * 3600);
const PAGE: u32 = 500;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OrphanKeyReport {
    pub examined: u64,
    pub destroyed: u64,
}

/// One pass over the vault's call and session keys older than `grace`.
pub async fn collect_orphan_keys(
    log: &CallLog,
    grace: Duration,
    now: Timestamp,
) -> Result<OrphanKeyReport, LogError> {
    let cutoff = now.millis() - grace.as_millis() as i64;
    let mut report = OrphanKeyReport::default();
    for purpose in [KeyPurpose::Call, KeyPurpose::Session, KeyPurpose::Subject] {
        let mut after: Option<String> = None;
        loop {
            let ids = log
                .vault()
                .list(purpose, cutoff, after.clone(), PAGE)
                .await?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            report.examined += ids.len() as u64;
            let orphans: Vec<String> = match purpose {
                KeyPurpose::Call => {
                    let parsed: Vec<CallId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
                    let existing = log.store().live_calls(parsed).await?;
                    ids.iter()
                        .filter(|id| !existing.iter().any(|e| &e.to_string() == *id))
                        .cloned()
                        .collect()
                }
                KeyPurpose::Subject => {
                    // A subject key seals the subject's consent events: without any, it
                    // seals nothing (the subject was redacted, or the event never landed).
                    let mut orphans = Vec::new();
                    for id in &ids {
                        let Some((account, bidx)) =
                            ringfence_store::calllog::parse_subject_key_id(id)
                        else {
                            continue;
                        };
                        if log
                            .store()
                            .consents(account, Some(bidx), None, 1)
                            .await?
                            .is_empty()
                        {
                            orphans.push(id.clone());
                        }
                    }
                    orphans
                }
                _ => {
                    let parsed: Vec<SessionId> =
                        ids.iter().filter_map(|id| id.parse().ok()).collect();
                    let existing = log.store().live_sessions(parsed).await?;
                    ids.iter()
                        .filter(|id| !existing.iter().any(|e| &e.to_string() == *id))
                        .cloned()
                        .collect()
                }
            };
            if !orphans.is_empty() {
                report.destroyed += log.vault().destroy(orphans).await?;
            }
            after = Some(last);
        }
    }
    if report.destroyed > 0 {
        tracing::info!(
            examined = report.examined,
            destroyed = report.destroyed,
            "destroyed data keys without records"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use ringfence_core::call::NewCall;
    use ringfence_core::phone::parse_e164;
    use ringfence_crypto::{MasterKey, Vault};
    use ringfence_store::{AccountRecord, AgencyRecord, Blobs, Store};
    use ringfence_store_sqlite::{SqliteStore, SqliteVault};

    #[test]
    fn the_sweep_never_reaches_a_key_the_pool_may_still_hand_out() {
        // A pooled key is used only while younger than MAX_AGE; the sweep only looks at keys
        // older than GRACE. With a wide margin, a slow ingest cannot bridge the two.
        assert!(ringfence_store::keypool::MAX_AGE * 100 <= GRACE);
    }

    #[tokio::test]
    async fn keys_without_records_are_destroyed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("log.db")).unwrap();
        let vault_store = SqliteVault::open(&dir.path().join("vault.db")).unwrap();
        let (master, _) = MasterKey::generate();
        let log = Arc::new(CallLog::new(
            Arc::new(store.clone()),
            Vault::new(master, Arc::new(vault_store)),
            Blobs::local(&dir.path().join("rec")).unwrap(),
        ));
        let agency = AgencyRecord {
            id: ringfence_core::AgencyId::generate(),
            name: "a".into(),
            redaction_enabled: true,
            max_retention_days: None,
            created_at: Timestamp::now(),
        };
        store.create_agency(agency.clone()).await.unwrap();
        let account = AccountRecord {
            twilio_auth_token: None,
            twilio_delete_recordings: false,
            twilio_account_sid: None,
            id: ringfence_core::AccountId::generate(),
            agency_id: agency.id,
            name: "b".into(),
            collection: Default::default(),
            created_at: Timestamp::now(),
            retention: Default::default(),
        };
        store.create_account(account.clone()).await.unwrap();
        let call = NewCall {
            external_id: None,
            started_at: Timestamp::now(),
            duration_s: None,
            direction: None,
            status: None,
            tracking_number: parse_e164("+14155550100").unwrap(),
            source: None,
            campaign: None,
            utm: Default::default(),
            caller: Default::default(),
            location: Default::default(),
            transcript: None,
            interaction: Default::default(),
            session_id: None,
            visitor: None,
            consents: Vec::new(),
        };
        let stored = log
            .ingest_calls(
                account.id,
                vec![call],
                &ringfence_store::IngestPolicy::collect_all("test"),
            )
            .await
            .unwrap()[0]
            .outcome
            .id();
        // A key whose record never arrived, as after a crash between the two writes.
        let (_, orphan) = log.vault().issue(
            CallId::generate().to_string(),
            account.id.to_string(),
            KeyPurpose::Call,
        );
        let orphan_id = orphan.id.clone();
        log.vault().insert(vec![orphan]).await.unwrap();
        // A consent subject with events keeps its key; one whose events never landed does not.
        log.record_consent(
            account.id,
            None,
            ringfence_store::NewConsent {
                subject: ringfence_store::ConsentSubject::Caller(
                    parse_e164("+442079460123").unwrap(),
                ),
                category: ringfence_core::DataCategory::Recording,
                status: ringfence_core::consent::ConsentStatus::Granted,
                notice_version: None,
                method: ringfence_core::consent::ConsentMethod::Api,
                call_id: None,
            },
            "test".into(),
        )
        .await
        .unwrap();
        let (_, lonely) = log.vault().issue(
            format!("subject:{}:{}", account.id, "ab".repeat(16)),
            account.id.to_string(),
            KeyPurpose::Subject,
        );
        let lonely_id = lonely.id.clone();
        log.vault().insert(vec![lonely]).await.unwrap();

        let young = collect_orphan_keys(&log, GRACE, Timestamp::now())
            .await
            .unwrap();
        assert_eq!(
            young.destroyed, 0,
            "keys within the grace period are left alone"
        );
        let report = collect_orphan_keys(
            &log,
            Duration::ZERO,
            Timestamp::from_millis(Timestamp::now().millis() + 1000),
        )
        .await
        .unwrap();
        assert_eq!(
            report,
            OrphanKeyReport {
                examined: 4,
                destroyed: 2
            }
        );
        assert!(log.vault().open_key(&orphan_id).await.unwrap().is_none());
        assert!(log.vault().open_key(&lonely_id).await.unwrap().is_none());
        let ledger = log.consents(account.id, None, None, 10).await.unwrap();
        assert!(
            ledger[0].subject.is_some(),
            "the subject with events still opens"
        );
        assert!(
            log.vault()
                .open_key(&stored.to_string())
                .await
                .unwrap()
                .is_some(),
            "the stored call's key is kept"
        );
        assert!(log.call(stored).await.unwrap().is_some());
        let again = collect_orphan_keys(
            &log,
            Duration::ZERO,
            Timestamp::from_millis(Timestamp::now().millis() + 1000),
        )
        .await
        .unwrap();
        assert_eq!(again.destroyed, 0, "idempotent");
    }
}
