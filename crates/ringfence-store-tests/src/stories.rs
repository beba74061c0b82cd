//! What a user of the store may rely on, on every backend. Each story takes an [`Env`] and
//! is run by [`crate::store_stories!`] once per backend. Synthetic data only.

use std::collections::BTreeMap;

use ringfence_core::access::{Role, Scope};
use ringfence_core::call::RedactionReason;
use ringfence_core::collection::{CollectionSettings, IpPolicy, RecordingMode};
use ringfence_core::recipients::EventKind;
use ringfence_core::retention::{RetentionPolicy, RetentionScope};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{
    AccountId, AgencyId, CallId, DataCategory, RecipientId, SessionId, TokenId, UserId,
};
use ringfence_crypto::{KeyPurpose, MasterKey, Vault};
use ringfence_store::journal::verify_journal;
use ringfence_store::records::*;
use ringfence_store::{StoreError, UserChange, UserRecord, WebSessionRecord};

use crate::Env;

fn at(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn event(action: &str, account: Option<AccountId>) -> AuditEvent {
    AuditEvent {
        actor: "cli".into(),
        action: action.into(),
        account_id: account,
        details: "{}".into(),
        ..AuditEvent::default()
    }
}

async fn agency(env: &Env, name: &str) -> AgencyRecord {
    let agency = AgencyRecord {
        id: AgencyId::generate(),
        name: name.into(),
        redaction_enabled: true,
        max_retention_days: Some(365),
        created_at: Timestamp::now(),
    };
    env.store
        .create_agency(agency.clone())
        .await
        .expect("an agency is created");
    agency
}

async fn account(env: &Env, agency: AgencyId, name: &str) -> AccountRecord {
    let account = AccountRecord {
        id: AccountId::generate(),
        agency_id: agency,
        name: name.into(),
        collection: CollectionSettings::default(),
        twilio_auth_token: None,
        twilio_delete_recordings: false,
        twilio_account_sid: None,
        retention: RetentionPolicy::default(),
        created_at: Timestamp::now(),
    };
    env.store
        .create_account(account.clone())
        .await
        .expect("an account is created");
    account
}

pub async fn agencies_and_accounts_keep_every_field_they_were_given(env: Env) {
    let first = agency(&env, "Agency One").await;
    let second = agency(&env, "Agency Two").await;
    assert_eq!(
        env.store.agency(first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(env.store.agency(AgencyId::generate()).await.unwrap(), None);

    let mut changed = first.clone();
    changed.name = "Agency One renamed".into();
    changed.redaction_enabled = false;
    changed.max_retention_days = None;
    env.store.update_agency(changed.clone()).await.unwrap();
    assert_eq!(env.store.agency(first.id).await.unwrap(), Some(changed));
    let missing = AgencyRecord {
        id: AgencyId::generate(),
        ..first.clone()
    };
    assert!(matches!(
        env.store.update_agency(missing).await,
        Err(StoreError::NotFound("agency"))
    ));
    let agencies: Vec<AgencyId> = env
        .store
        .list_agencies()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(agencies.len(), 2);
    assert!(agencies.contains(&first.id) && agencies.contains(&second.id));

    // Every setting an account has survives the round trip, none left at its default.
    let full = AccountRecord {
        id: AccountId::generate(),
        agency_id: first.id,
        name: "Business".into(),
        collection: CollectionSettings {
            caller_name: true,
            caller_location: true,
            recording_gdpr: RecordingMode::Off,
            recording_other: RecordingMode::OptIn,
            transcription: true,
            visitor_ip: IpPolicy::Full,
            visitor_details: false,
        },
        twilio_auth_token: Some(vec![1, 2, 3, 4]),
        twilio_delete_recordings: true,
        twilio_account_sid: Some(format!("AC{}", "0".repeat(32))),
        retention: RetentionPolicy {
            after_days: Some(30),
            scope: RetentionScope::Gdpr,
            categories: BTreeMap::from([(DataCategory::Recording, 7), (DataCategory::Visitor, 1)]),
        },
        created_at: at(1_700_000_000_000),
    };
    env.store.create_account(full.clone()).await.unwrap();
    assert_eq!(
        env.store.account(full.id).await.unwrap(),
        Some(full.clone())
    );

    let mut back_to_defaults = full.clone();
    back_to_defaults.collection = CollectionSettings::default();
    back_to_defaults.retention = RetentionPolicy::default();
    back_to_defaults.twilio_auth_token = None;
    back_to_defaults.twilio_account_sid = None;
    env.store
        .update_account(back_to_defaults.clone())
        .await
        .unwrap();
    assert_eq!(
        env.store.account(full.id).await.unwrap(),
        Some(back_to_defaults)
    );

    let other = account(&env, second.id, "Other business").await;
    let of_first: Vec<AccountId> = env
        .store
        .list_accounts(Some(first.id))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(of_first, vec![full.id]);
    assert_eq!(env.store.list_accounts(None).await.unwrap().len(), 2);
    assert_eq!(env.store.account(other.id).await.unwrap(), Some(other));

    // An account belongs to an agency that exists, and nothing is stored otherwise.
    let orphan = AccountRecord {
        id: AccountId::generate(),
        agency_id: AgencyId::generate(),
        ..full.clone()
    };
    assert!(matches!(
        env.store.create_account(orphan.clone()).await,
        Err(StoreError::NotFound("agency"))
    ));
    assert_eq!(env.store.account(orphan.id).await.unwrap(), None);
    assert!(matches!(
        env.store.update_account(orphan).await,
        Err(StoreError::NotFound("account"))
    ));
}

fn token(scope: Scope, role: Role, seed: u8) -> TokenRecord {
    TokenRecord {
        id: TokenId::generate(),
        hash: [seed; 32],
        role,
        scope,
        personal_data: seed.is_multiple_of(2),
        label: Some(format!("token {seed}")),
        created_at: at(1_700_000_000_000 + i64::from(seed)),
        expires_at: Some(at(1_800_000_000_000)),
        revoked_at: None,
        last_used_at: None,
    }
}

pub async fn a_token_is_found_by_its_hash_and_revoked_once_with_one_journal_entry(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await;
    let tokens = [
        token(Scope::Installation, Role::Admin, 1),
        token(Scope::Agency(agency.id), Role::AgencyAdmin, 2),
        token(
            Scope::Account {
                agency: agency.id,
                account: account.id,
            },
            Role::Ingest,
            3,
        ),
    ];
    for t in &tokens {
        env.store.create_token(t.clone()).await.unwrap();
    }
    assert_eq!(env.store.token_count().await.unwrap(), 3);
    for t in &tokens {
        assert_eq!(
            env.store.token_by_hash(t.hash).await.unwrap().as_ref(),
            Some(t)
        );
        assert_eq!(env.store.token(t.id).await.unwrap().as_ref(), Some(t));
    }
    assert_eq!(env.store.token_by_hash([9; 32]).await.unwrap(), None);
    assert_eq!(env.store.list_tokens().await.unwrap(), tokens.to_vec());

    // The last use only moves forward.
    let ingest = &tokens[2];
    env.store.touch_token(ingest.id, at(2_000)).await.unwrap();
    env.store.touch_token(ingest.id, at(1_000)).await.unwrap();
    let touched = env.store.token(ingest.id).await.unwrap().unwrap();
    assert_eq!(touched.last_used_at, Some(at(2_000)));

    let before = env.store.last_audit().await.unwrap().map_or(0, |e| e.seq);
    let revoke = event("token.revoked", Some(account.id));
    assert!(
        env.store
            .revoke_token(ingest.id, at(3_000), revoke.clone())
            .await
            .unwrap()
    );
    assert!(
        !env.store
            .revoke_token(ingest.id, at(4_000), revoke.clone())
            .await
            .unwrap(),
        "a revoked token is not revoked again"
    );
    let revoked = env.store.token(ingest.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(3_000)));
    let journaled = env
        .store
        .audit(AuditQuery {
            agency_id: None,
            account_id: None,
            after_seq: Some(before),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(journaled.len(), 1, "one entry for one revocation");
    assert_eq!(journaled[0].event, revoke);

    // Eight clients revoking one token at once: one revocation, one journal entry.
    let agency_token = tokens[1].id;
    let before = journaled[0].seq;
    let racers = (0..8).map(|i| {
        let store = env.store.clone();
        let revoke = revoke.clone();
        tokio::spawn(async move {
            store
                .revoke_token(agency_token, at(10_000 + i), revoke)
                .await
                .expect("a revocation")
        })
    });
    let won = futures::future::join_all(racers)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().expect("a racer"))
        .count();
    assert_eq!(won, 1, "exactly one client revoked it");
    let journaled = env
        .store
        .audit(AuditQuery {
            agency_id: None,
            account_id: None,
            after_seq: Some(before),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(journaled.len(), 1);
}

pub async fn concurrent_writers_extend_one_journal_chain(env: Env) {
    let agency = agency(&env, "Agency").await;
    let accounts = [
        account(&env, agency.id, "One").await,
        account(&env, agency.id, "Two").await,
    ];
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let writers = (0..WRITERS).map(|w| {
        let store = env.store.clone();
        let account = accounts[w % 2].id;
        tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let mut e = event("test.appended", Some(account));
                e.subject = Some(format!("writer-{w}-{i}"));
                e.count = Some(i as u64);
                seqs.push(store.append_audit(e).await.expect("an append"));
            }
            seqs
        })
    });
    let mut seqs: Vec<i64> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flat_map(|r| r.expect("a writer"))
        .collect();
    seqs.sort_unstable();
    let before = seqs[0] - 1;
    let expected: Vec<i64> = (before + 1..=before + (WRITERS * EACH) as i64).collect();
    assert_eq!(
        seqs, expected,
        "every append got its own place in one chain"
    );

    let verified = verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
    assert_eq!(verified.entries, before as u64 + (WRITERS * EACH) as u64);
    let last = env.store.last_audit().await.unwrap().expect("a last entry");
    assert_eq!(last.seq, verified.last_seq);
    assert_eq!(last.hash, verified.head);
    // The vault's anchor of the head makes a truncated or rewritten journal fail.
    env.vault.anchor_journal(last.seq, last.hash).await.unwrap();
    let anchor = env.vault.journal_anchor().await.unwrap();
    assert_eq!(anchor, Some((last.seq, last.hash)));
    assert!(
        verify_journal(env.store.as_ref(), anchor)
            .await
            .unwrap()
            .is_ok()
    );

    // Entries of one account are found by it, in order.
    let of_one = env
        .store
        .audit(AuditQuery {
            agency_id: None,
            account_id: Some(accounts[0].id),
            after_seq: None,
            limit: 1000,
        })
        .await
        .unwrap();
    assert_eq!(of_one.len(), WRITERS / 2 * EACH);
    assert!(of_one.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        of_one
            .iter()
            .all(|e| e.event.account_id == Some(accounts[0].id))
    );
    // Times never go backwards along the chain.
    let all = env
        .store
        .audit(AuditQuery {
            agency_id: None,
            account_id: None,
            after_seq: None,
            limit: 1000,
        })
        .await
        .unwrap();
    assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
}

fn user(scope: Scope, index: u8) -> UserRecord {
    UserRecord {
        id: UserId::generate(),
        email_index: [index; 16],
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c3ludGhldGlj$c3ludGhldGlj".into(),
        role: Role::AccountAdmin,
        scope,
        personal_data: false,
        failed_logins: 0,
        locked_until: None,
        created_at: at(1_700_000_000_000),
        disabled_at: None,
        last_sign_in_at: None,
    }
}

fn web_session(user: UserId, seed: u8, now: i64) -> WebSessionRecord {
    WebSessionRecord {
        hash: [seed; 32],
        user_id: user,
        csrf_token: format!("csrf-{seed}"),
        created_at: at(now),
        last_seen_at: at(now),
    }
}

pub async fn a_users_sessions_end_when_it_is_disabled_given_a_new_password_or_removed(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await;
    let scope = Scope::Account {
        agency: agency.id,
        account: account.id,
    };
    let ada = user(scope, 1);
    env.store
        .create_user(ada.clone(), event("user.created", Some(account.id)))
        .await
        .unwrap();
    // One e-mail address, one user.
    let twin = user(scope, 1);
    assert!(matches!(
        env.store
            .create_user(twin.clone(), event("user.created", Some(account.id)))
            .await,
        Err(StoreError::AlreadyExists("user"))
    ));
    assert_eq!(env.store.user(twin.id).await.unwrap(), None);
    assert_eq!(
        env.store.user_by_email_index([1; 16]).await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(env.store.list_users().await.unwrap(), vec![ada.clone()]);

    // Signing in records the time and replaces the session the browser came with.
    env.store
        .start_web_session(web_session(ada.id, 10, 1_000), None)
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(ada.id, 11, 2_000), Some([10; 32]))
        .await
        .unwrap();
    assert_eq!(env.store.web_session([10; 32]).await.unwrap(), None);
    let (session, signed_in) = env.store.web_session([11; 32]).await.unwrap().unwrap();
    assert_eq!(session, web_session(ada.id, 11, 2_000));
    assert_eq!(signed_in.last_sign_in_at, Some(at(2_000)));

    // Activity only moves a session's last sight forward.
    env.store
        .touch_web_session([11; 32], at(5_000))
        .await
        .unwrap();
    env.store
        .touch_web_session([11; 32], at(4_000))
        .await
        .unwrap();
    let (session, _) = env.store.web_session([11; 32]).await.unwrap().unwrap();
    assert_eq!(session.last_seen_at, at(5_000));

    // A role change keeps the session; disabling ends it in the same transaction.
    let analyst = env
        .store
        .update_user(
            ada.id,
            UserChange {
                role: Some(Role::Analyst),
                ..UserChange::default()
            },
            vec![event("user.role_changed", Some(account.id))],
        )
        .await
        .unwrap();
    assert_eq!(analyst.role, Role::Analyst);
    assert!(env.store.web_session([11; 32]).await.unwrap().is_some());
    let disabled = env
        .store
        .update_user(
            ada.id,
            UserChange {
                disabled: Some(Some(at(6_000))),
                ..UserChange::default()
            },
            vec![event("user.disabled", Some(account.id))],
        )
        .await
        .unwrap();
    assert_eq!(disabled.disabled_at, Some(at(6_000)));
    assert_eq!(env.store.web_session([11; 32]).await.unwrap(), None);

    // Enabled again and signed in: a new password ends the session too.
    env.store
        .update_user(
            ada.id,
            UserChange {
                disabled: Some(None),
                ..UserChange::default()
            },
            vec![event("user.enabled", Some(account.id))],
        )
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(ada.id, 12, 7_000), None)
        .await
        .unwrap();
    env.store
        .update_user(
            ada.id,
            UserChange {
                password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$b3RoZXI$b3RoZXI".into()),
                ..UserChange::default()
            },
            vec![event("user.password_reset", Some(account.id))],
        )
        .await
        .unwrap();
    assert_eq!(env.store.web_session([12; 32]).await.unwrap(), None);

    // Housekeeping ends sessions idle or too old, whoever's they are.
    let bob = user(scope, 2);
    env.store
        .create_user(bob.clone(), event("user.created", Some(account.id)))
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(bob.id, 20, 10_000), None)
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(bob.id, 21, 30_000), None)
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(ada.id, 13, 30_000), None)
        .await
        .unwrap();
    env.store
        .end_web_session([13; 32], at(20_000), at(0))
        .await
        .unwrap();
    assert_eq!(env.store.web_session([13; 32]).await.unwrap(), None);
    assert_eq!(env.store.web_session([20; 32]).await.unwrap(), None);
    assert!(env.store.web_session([21; 32]).await.unwrap().is_some());

    // Removing a user ends every session of theirs.
    env.store
        .remove_user(bob.id, event("user.removed", Some(account.id)))
        .await
        .unwrap();
    assert_eq!(env.store.user(bob.id).await.unwrap(), None);
    assert_eq!(env.store.web_session([21; 32]).await.unwrap(), None);
    assert!(matches!(
        env.store
            .remove_user(bob.id, event("user.removed", Some(account.id)))
            .await,
        Err(StoreError::NotFound("user"))
    ));
    // Every change above was journaled, and the chain holds.
    let verified = verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
    assert_eq!(verified.entries, 7);
}

fn download(account: AccountId, sid: &str, due: i64) -> DownloadJob {
    DownloadJob {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account,
        call_sid: format!("CA{}", "1".repeat(32)),
        recording_sid: sid.into(),
        url: format!("https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/{sid}"),
        provider_account: format!("AC{}", "0".repeat(32)),
        state: "pending".into(),
        attempts: 0,
        next_attempt_at: at(due),
        outcome: None,
        created_at: at(due),
    }
}

pub async fn a_recording_download_is_queued_once_and_comes_due_in_order(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await;
    let later = download(account.id, "RE2", 2_000);
    let sooner = download(account.id, "RE1", 1_000);
    assert!(env.store.enqueue_download(later.clone()).await.unwrap());
    assert!(env.store.enqueue_download(sooner.clone()).await.unwrap());
    // The same recording again (a repeated callback) is not queued twice.
    assert!(
        !env.store
            .enqueue_download(download(account.id, "RE1", 500))
            .await
            .unwrap()
    );
    let due = env.store.due_downloads(at(1_500), 10).await.unwrap();
    assert_eq!(due, vec![sooner.clone()]);
    let due = env.store.due_downloads(at(5_000), 10).await.unwrap();
    assert_eq!(due, vec![sooner.clone(), later.clone()]);
    assert_eq!(
        env.store.due_downloads(at(5_000), 1).await.unwrap().len(),
        1
    );

    // A retry moves it back; a finished one is no longer due, and the journal says so.
    let mut retried = sooner.clone();
    retried.attempts = 1;
    retried.next_attempt_at = at(9_000);
    retried.outcome = Some("http_503".into());
    env.store
        .update_download(retried.clone(), None)
        .await
        .unwrap();
    let mut done = later.clone();
    done.state = "done".into();
    done.attempts = 1;
    done.outcome = Some("stored".into());
    let journal = event("recording.downloaded", Some(account.id));
    env.store
        .update_download(done.clone(), Some(journal.clone()))
        .await
        .unwrap();
    assert!(
        env.store
            .due_downloads(at(5_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        env.store.due_downloads(at(9_000), 10).await.unwrap(),
        vec![retried.clone()]
    );
    assert_eq!(
        env.store.downloads(account.id).await.unwrap(),
        vec![retried, done],
        "in the order they were created"
    );
    let last = env.store.last_audit().await.unwrap().expect("journaled");
    assert_eq!(last.event, journal);
}

pub async fn a_jobs_last_run_only_moves_forward(env: Env) {
    assert!(env.store.job_runs().await.unwrap().is_empty());
    env.store
        .record_job_run("sweep".into(), at(2_000))
        .await
        .unwrap();
    env.store
        .record_job_run("outbox".into(), at(1_000))
        .await
        .unwrap();
    env.store
        .record_job_run("sweep".into(), at(1_500))
        .await
        .unwrap();
    assert_eq!(
        env.store.job_runs().await.unwrap(),
        vec![("outbox".into(), at(1_000)), ("sweep".into(), at(2_000))]
    );
    env.store
        .record_job_run("sweep".into(), at(3_000))
        .await
        .unwrap();
    assert_eq!(
        env.store.job_runs().await.unwrap()[1],
        ("sweep".into(), at(3_000))
    );
    env.store.ping().await.expect("the store answers");
}

pub async fn the_vault_keeps_each_key_until_it_is_destroyed(env: Env) {
    let (master, _file) = MasterKey::generate();
    let vault = Vault::new(master, env.vault.clone());
    let account = AccountId::generate().to_string();
    let mut records = Vec::new();
    let mut keys = Vec::new();
    for i in 0..5 {
        let (key, record) = vault.issue(format!("call:{i:02}"), account.clone(), KeyPurpose::Call);
        keys.push(key);
        records.push(record);
    }
    let (session_key, session_record) =
        vault.issue("session:00".into(), account.clone(), KeyPurpose::Session);
    records.push(session_record);
    vault.insert(records.clone()).await.unwrap();
    // A second insert of an id keeps the first key.
    let (_, replacement) = vault.issue("call:00".into(), account.clone(), KeyPurpose::Call);
    vault.insert(vec![replacement]).await.unwrap();
    assert!(vault.open_key("call:00").await.unwrap() == Some(keys[0].clone()));
    assert!(vault.open_key("session:00").await.unwrap() == Some(session_key));
    let opened = vault
        .open_keys(vec!["call:03".into(), "missing".into(), "call:01".into()])
        .await
        .unwrap();
    assert_eq!(opened.len(), 2);
    assert!(opened["call:01"] == keys[1] && opened["call:03"] == keys[3]);

    // Listed by purpose and age, page by page in id order.
    let future = Timestamp::now().millis() + 60_000;
    let first = vault.list(KeyPurpose::Call, future, None, 3).await.unwrap();
    assert_eq!(first, vec!["call:00", "call:01", "call:02"]);
    let rest = vault
        .list(KeyPurpose::Call, future, Some("call:02".into()), 3)
        .await
        .unwrap();
    assert_eq!(rest, vec!["call:03", "call:04"]);
    assert!(
        vault
            .list(KeyPurpose::Call, 0, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Destroyed keys are gone for good; destroying again counts nothing.
    assert_eq!(
        vault
            .destroy(vec!["call:01".into(), "call:02".into(), "missing".into()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(vault.destroy(vec!["call:01".into()]).await.unwrap(), 0);
    vault.compact().await.unwrap();
    assert_eq!(vault.open_key("call:01").await.unwrap(), None);
    assert_eq!(
        vault
            .list(KeyPurpose::Call, future, None, 10)
            .await
            .unwrap(),
        vec!["call:00", "call:03", "call:04"]
    );

    // The journal's anchor only moves forward.
    assert_eq!(vault.journal_anchor().await.unwrap(), None);
    vault.anchor_journal(5, [5; 32]).await.unwrap();
    vault.anchor_journal(4, [4; 32]).await.unwrap();
    assert_eq!(vault.journal_anchor().await.unwrap(), Some((5, [5; 32])));
    vault.ping().await.unwrap();
}

fn recipient(account: AccountId, name: &str, events: Vec<EventKind>, created: i64) -> RecipientRow {
    RecipientRow {
        id: RecipientId::generate(),
        account_id: account,
        name: name.into(),
        url: "https://crm.example.com/hooks/ringfence".into(),
        secret: vec![0x5e; 48],
        events,
        personal_data: false,
        created_at: at(created),
        updated_at: at(created),
        disabled_at: None,
    }
}

pub async fn a_recipient_is_registered_with_its_events_and_journaled(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await;
    let other = account_of(&env, agency.id).await;
    let crm = recipient(account.id, "CRM", EventKind::ALL.to_vec(), 1_000);
    let ads = recipient(account.id, "Ads", vec![EventKind::CallCreated], 2_000);
    for r in [&crm, &ads] {
        env.store
            .create_recipient(r.clone(), event("recipient.created", Some(account.id)))
            .await
            .unwrap();
    }
    assert_eq!(
        env.store.recipients(account.id).await.unwrap(),
        vec![crm.clone(), ads.clone()]
    );
    assert_eq!(
        env.store.recipient(account.id, ads.id).await.unwrap(),
        Some(ads.clone())
    );
    // Another tenant's recipient is not found through this account, nor listed.
    assert_eq!(env.store.recipient(other, ads.id).await.unwrap(), None);
    assert!(env.store.recipients(other).await.unwrap().is_empty());
    // Nothing was sent yet.
    let page = env
        .store
        .deliveries(DeliveryQuery {
            account_id: account.id,
            recipient_id: crm.id,
            state: None,
            event: None,
            before: None,
            limit: 50,
        })
        .await
        .unwrap();
    assert!(page.is_empty());
    assert!(
        env.store
            .due_deliveries(Timestamp::now(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        env.store
            .delivered_to(vec![ringfence_core::CallId::generate()])
            .await
            .unwrap()
            .is_empty()
    );
    let verified = verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
    assert_eq!(verified.entries, 2, "one entry per registration");
}

async fn account_of(env: &Env, agency: AgencyId) -> AccountId {
    account(env, agency, "Other business").await.id
}

fn job(id: &str, created: i64, reason: RedactionReason, account: AccountId) -> RedactionJob {
    RedactionJob {
        id: id.into(),
        created_at: at(created),
        reason,
        call_ids: vec![CallId::generate(), CallId::generate()],
        session_ids: vec![SessionId::generate()],
        objects: vec![format!("recordings/{account}/{id}.wav")],
        forget: vec![(account, [3; 16])],
        subjects: vec![(account, [4; 16]), (account, [5; 16])],
        audit: AuditEvent {
            actor: "cli".into(),
            action: "caller.redacted".into(),
            account_id: Some(account),
            subject: Some(id.into()),
            reason: Some("request".into()),
            details: "{}".into(),
            ..AuditEvent::default()
        },
        categories: vec![],
    }
}

pub async fn a_recorded_redaction_survives_until_it_ends_and_keeps_its_recordings_referenced(
    env: Env,
) {
    let account = AccountId::generate();
    let caller = job("job-a", 1_000, RedactionReason::Caller, account);
    let mut partial = job("job-b", 2_000, RedactionReason::Retention, account);
    partial.forget.clear();
    partial.categories = vec![DataCategory::Recording, DataCategory::Transcript];
    // Recorded out of order: they come back oldest first, as they were given.
    env.store.begin_redaction(partial.clone()).await.unwrap();
    env.store.begin_redaction(caller.clone()).await.unwrap();
    assert_eq!(
        env.store.pending_redactions().await.unwrap(),
        vec![caller.clone(), partial.clone()]
    );
    // A recording a job still has to delete is referenced (the orphan sweep leaves it).
    let unknown = format!("recordings/{account}/unknown.wav");
    let asked = vec![caller.objects[0].clone(), unknown.clone()];
    assert_eq!(
        env.store
            .referenced_recordings(asked.clone())
            .await
            .unwrap(),
        vec![caller.objects[0].clone()]
    );
    env.store.end_redaction(caller.id.clone()).await.unwrap();
    assert_eq!(env.store.pending_redactions().await.unwrap(), vec![partial]);
    assert!(
        env.store
            .referenced_recordings(asked)
            .await
            .unwrap()
            .is_empty()
    );
    // Ending it again changes nothing.
    env.store.end_redaction(caller.id).await.unwrap();
}

pub async fn clients_inserting_one_key_id_at_once_all_succeed_and_the_first_key_stays(env: Env) {
    let (master, _file) = MasterKey::generate();
    let vault = Vault::new(master, env.vault.clone());
    let account = AccountId::generate().to_string();
    let racers = (0..8).map(|_| {
        let vault = vault.clone();
        let account = account.clone();
        tokio::spawn(async move {
            let (key, record) = vault.issue("call:raced".into(), account, KeyPurpose::Call);
            vault.insert(vec![record]).await.expect("an insert");
            key
        })
    });
    let issued: Vec<_> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.expect("a racer"))
        .collect();
    let kept = vault
        .open_key("call:raced")
        .await
        .unwrap()
        .expect("one key is stored");
    assert!(
        issued.contains(&kept),
        "the stored key is one of those issued"
    );
    // It stays the same key on every read.
    for _ in 0..3 {
        assert!(vault.open_key("call:raced").await.unwrap() == Some(kept.clone()));
    }
    assert_eq!(vault.destroy(vec!["call:raced".into()]).await.unwrap(), 1);
}
