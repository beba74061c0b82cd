//! What an arriving call may keep, and what a later status of a stored call changes: decided
//! here, once, for every backend.
//!
//! A backend reads the facts these rules need (is the caller on the forget list, the
//! subjects' consent state, the linked session's scope, the stored call) inside the same
//! transaction that writes the outcome — so a forget, a consent withdrawal and an ingest of
//! the same subject never pass each other — and stores exactly what the rule returns. It
//! decides nothing itself.

use std::borrow::Cow;

use ringfence_core::DataCategory;
use ringfence_core::call::{CallStatus, Direction, RedactionReason};
use ringfence_core::consent::ConsentState;
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, AgencyId, CallId};
use ringfence_crypto::BlindIndex;

use crate::StoreError;
use crate::records::{AuditEvent, CallRow, CallUpdate, NewCallRow, SessionRow};

/// The personal categories an arriving call can carry, in the order they are checked.
const ARRIVING: [DataCategory; 5] = [
    DataCategory::CallerIdentity,
    DataCategory::CallerLocation,
    DataCategory::Transcript,
    DataCategory::InteractionContent,
    DataCategory::Visitor,
];

/// A call of a caller on the account's forget list, as it is stored: the fact of the call,
/// nothing of the caller, redacted on arrival (reason `forget_list`). Its session is not
/// stored either.
pub fn forgotten_on_arrival(call: &CallRow) -> CallRow {
    CallRow {
        gdpr_scope: None,
        caller_bidx: None,
        session_id: None,
        caller_identity: None,
        caller_location: None,
        transcript: None,
        interaction: None,
        recording: None,
        redacted_at: Some(call.created_at),
        redaction_reason: Some(RedactionReason::ForgetList),
        redacted_by: Some("forget_list".to_owned()),
        ..call.clone()
    }
}

/// The journal entry for calls of one account stored redacted on arrival: ids only.
pub fn forgotten_on_arrival_event(
    account: AccountId,
    agency: Option<AgencyId>,
    calls: &[CallId],
) -> AuditEvent {
    AuditEvent {
        actor: "forget_list".into(),
        action: "call.redacted_on_arrival".into(),
        agency_id: agency,
        account_id: Some(account),
        subject: Some(
            calls
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        count: Some(calls.len() as u64),
        reason: Some(RedactionReason::ForgetList.as_str().into()),
        details: "{}".into(),
    }
}

/// Whose consent decides what an arriving call keeps: its caller, and the visitor of the
/// session sent with it.
pub fn consent_subjects(call: &CallRow, session: Option<&SessionRow>) -> Vec<BlindIndex> {
    call.caller_bidx
        .into_iter()
        .chain(session.and_then(|s| s.visitor_bidx))
        .collect()
}

/// What consent lets an arriving call keep.
#[derive(Debug)]
pub struct Consented<'a> {
    /// The call as it may be stored.
    pub call: Cow<'a, CallRow>,
    /// The session sent with it, as it may be stored.
    pub session: Option<Cow<'a, SessionRow>>,
    /// The categories left out because the subject withdrew consent to them (the answer's
    /// `dropped`).
    pub withheld: Vec<DataCategory>,
}

/// Applies the subjects' consent to an arriving call: `stored` is the state the ledger holds
/// for [`consent_subjects`] (read in the storing transaction), to which the events sent with
/// the call are added. Categories withdrawn are left out; a transcript that needs a granted
/// consent (opt-in recording) without one refuses the batch (`ConsentRequired` naming the
/// call's `index`).
pub fn apply_consent<'a>(
    new: &NewCallRow,
    call: &'a CallRow,
    session: Option<&'a SessionRow>,
    mut stored: ConsentState,
    index: usize,
) -> Result<Consented<'a>, StoreError> {
    for event in &new.consents {
        stored.apply(event.category, event.status);
    }
    let withheld: Vec<DataCategory> = ARRIVING
        .into_iter()
        .filter(|&category| carries(call, session, category) && stored.withdrawn(category))
        .collect();
    if new.transcript_needs_consent
        && call.transcript.is_some()
        && !withheld.contains(&DataCategory::Transcript)
        && !stored.granted(DataCategory::Transcript)
    {
        return Err(StoreError::ConsentRequired {
            index,
            category: DataCategory::Transcript,
        });
    }
    if withheld.is_empty() {
        return Ok(Consented {
            call: Cow::Borrowed(call),
            session: session.map(Cow::Borrowed),
            withheld,
        });
    }
    let mut kept = call.clone();
    for category in &withheld {
        match category {
            DataCategory::CallerIdentity => kept.caller_identity = None,
            DataCategory::CallerLocation => kept.caller_location = None,
            DataCategory::Transcript => kept.transcript = None,
            DataCategory::InteractionContent => kept.interaction = None,
            _ => {}
        }
    }
    let session = match session {
        Some(s) if withheld.contains(&DataCategory::Visitor) => Some(Cow::Owned(SessionRow {
            visitor: None,
            visitor_bidx: None,
            gdpr_scope: None,
            ..s.clone()
        })),
        other => other.map(Cow::Borrowed),
    };
    Ok(Consented {
        call: Cow::Owned(kept),
        session,
        withheld,
    })
}

/// Whether the arriving call (or its inline session) carries data of `category`.
fn carries(call: &CallRow, session: Option<&SessionRow>, category: DataCategory) -> bool {
    match category {
        DataCategory::CallerIdentity => call.caller_identity.is_some(),
        DataCategory::CallerLocation => call.caller_location.is_some(),
        DataCategory::Transcript => call.transcript.is_some(),
        DataCategory::InteractionContent => call.interaction.is_some(),
        DataCategory::Visitor => session.is_some_and(|s| s.visitor.is_some()),
        _ => false,
    }
}

/// A call linked to a stored session (by `session_id`): the visit's country counts toward the
/// call's scope. Returns the call to store when the scope changes (never for a call stored
/// redacted).
pub fn linked_to_session(call: &CallRow, session_scope: Option<bool>) -> Option<CallRow> {
    let combined = ringfence_core::jurisdiction::combine_scope(call.gdpr_scope, session_scope);
    (combined != call.gdpr_scope && call.redacted_at.is_none()).then(|| CallRow {
        gdpr_scope: combined,
        ..call.clone()
    })
}

/// What a stored call holds that a later status is merged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCall {
    pub account_id: AccountId,
    pub status: Option<CallStatus>,
    pub started_at: Timestamp,
    pub duration_s: Option<u32>,
    pub direction: Option<Direction>,
    pub redacted: bool,
    pub caller_bidx: Option<BlindIndex>,
    pub caller_identity: Option<Vec<u8>>,
    pub caller_location: Option<Vec<u8>>,
}

/// What a later status does to a stored call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusMerge {
    /// Nothing: the call is redacted, or the status arrived late (it is older).
    Unchanged,
    /// The caller categories changed since the update was merged from them: merge again.
    Stale,
    /// Write these values (the whole merged state of the columns a status touches).
    Apply(MergedStatus),
}

/// The merged columns of a call after a later status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedStatus {
    pub status: Option<CallStatus>,
    pub started_at: Timestamp,
    pub duration_s: Option<u32>,
    pub direction: Option<Direction>,
    pub caller_identity: Option<Vec<u8>>,
    pub caller_location: Option<Vec<u8>>,
}

/// Merges a later status into a stored call, so that any order of (repeated) deliveries
/// converges on the same call: the status only moves forward ([`CallStatus::progress`]), the
/// earliest start and the longest duration are kept, a field the update lacks keeps its
/// stored value, categories the caller withdrew consent to (`consent`, the caller's state
/// read in the same transaction) are not written, and the caller categories apply only while
/// the row still holds what the update was merged from (`CallUpdate::based_on`).
pub fn merge_status(
    stored: &StoredCall,
    update: &CallUpdate,
    consent: &ConsentState,
) -> StatusMerge {
    if stored.redacted {
        return StatusMerge::Unchanged;
    }
    if (&stored.caller_identity, &stored.caller_location)
        != (&update.based_on.0, &update.based_on.1)
    {
        return StatusMerge::Stale;
    }
    if CallStatus::progress(update.status) < CallStatus::progress(stored.status) {
        return StatusMerge::Unchanged;
    }
    let identity = update
        .caller_identity
        .clone()
        .filter(|_| !consent.withdrawn(DataCategory::CallerIdentity));
    let location = update
        .caller_location
        .clone()
        .filter(|_| !consent.withdrawn(DataCategory::CallerLocation));
    StatusMerge::Apply(MergedStatus {
        status: update.status.or(stored.status),
        started_at: stored.started_at.min(update.started_at),
        duration_s: match update.duration_s {
            None => stored.duration_s,
            Some(d) => Some(d.max(stored.duration_s.unwrap_or(0))),
        },
        direction: update.direction.or(stored.direction),
        caller_identity: identity.or_else(|| stored.caller_identity.clone()),
        caller_location: location.or_else(|| stored.caller_location.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_core::consent::ConsentStatus;

    fn stored() -> StoredCall {
        StoredCall {
            account_id: AccountId::generate(),
            status: Some(CallStatus::Ringing),
            started_at: Timestamp::from_millis(2_000),
            duration_s: Some(30),
            direction: None,
            redacted: false,
            caller_bidx: Some([7; 16]),
            caller_identity: Some(b"identity-v1".to_vec()),
            caller_location: None,
        }
    }

    fn update(status: CallStatus) -> CallUpdate {
        CallUpdate {
            id: CallId::generate(),
            started_at: Timestamp::from_millis(1_000),
            duration_s: Some(12),
            direction: Some(Direction::Inbound),
            status: Some(status),
            caller_identity: Some(b"identity-v2".to_vec()),
            caller_location: Some(b"location".to_vec()),
            based_on: (Some(b"identity-v1".to_vec()), None),
        }
    }

    #[test]
    fn a_later_status_keeps_the_earliest_start_the_longest_duration_and_fills_what_was_missing() {
        let StatusMerge::Apply(m) = merge_status(
            &stored(),
            &update(CallStatus::Completed),
            &ConsentState::default(),
        ) else {
            panic!("a later status applies")
        };
        assert_eq!(m.status, Some(CallStatus::Completed));
        assert_eq!(m.started_at, Timestamp::from_millis(1_000));
        assert_eq!(m.duration_s, Some(30));
        assert_eq!(m.direction, Some(Direction::Inbound));
        assert_eq!(m.caller_identity.as_deref(), Some(&b"identity-v2"[..]));
        assert_eq!(m.caller_location.as_deref(), Some(&b"location"[..]));
    }

    #[test]
    fn an_earlier_status_arriving_late_a_redacted_call_and_a_moved_row_change_nothing() {
        let none = ConsentState::default();
        assert_eq!(
            merge_status(&stored(), &update(CallStatus::Queued), &none),
            StatusMerge::Unchanged
        );
        let redacted = StoredCall {
            redacted: true,
            ..stored()
        };
        assert_eq!(
            merge_status(&redacted, &update(CallStatus::Completed), &none),
            StatusMerge::Unchanged
        );
        let moved = StoredCall {
            caller_identity: Some(b"identity-other".to_vec()),
            ..stored()
        };
        assert_eq!(
            merge_status(&moved, &update(CallStatus::Completed), &none),
            StatusMerge::Stale
        );
    }

    #[test]
    fn a_status_writes_no_category_the_caller_withdrew() {
        let withdrawn = ConsentState::from_events([
            (DataCategory::CallerIdentity, ConsentStatus::Withdrawn),
            (DataCategory::CallerLocation, ConsentStatus::Withdrawn),
        ]);
        let StatusMerge::Apply(m) =
            merge_status(&stored(), &update(CallStatus::Completed), &withdrawn)
        else {
            panic!("a later status applies")
        };
        // The stored identity stays as it was (the withdrawal's own job removes it).
        assert_eq!(m.caller_identity.as_deref(), Some(&b"identity-v1"[..]));
        assert_eq!(m.caller_location, None);
    }
}
