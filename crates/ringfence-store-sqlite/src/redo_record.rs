//! The redo record of an ingest: the rows `insert_call_rows` stored, in a compact binary
//! form, so that replaying it runs the same inserts with the same checks (see `redo`). Only
//! what the database stores goes in: not a re-delivered call, not a category the subject
//! withdrew consent for, nothing of a forgotten caller but the blind index that makes the
//! replay forget them again. Its personal fields are sealed blobs and blind indexes; nothing
//! in it is in the clear that the database holds sealed.
//!
//! Every field is written in declaration order: integers little-endian, strings and blobs
//! with a u32 length, options with a 0/1 tag, enums by their stored names. A record starts
//! with a version byte.

use ringfence_core::call::{CallStatus, Direction, LegalHold, RedactionReason};
use ringfence_core::consent::{ConsentMethod, ConsentStatus, SubjectKind};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{AccountId, CallId, DataCategory, SessionId};
use uuid::Uuid;

use ringfence_store::StoreError;
use ringfence_store::records::{CallRow, ConsentRow, NewCallRow, RecordingRow, SessionRow};

const VERSION: u8 = 1;

/// Builds the record of one ingest, row by row, as the writer stores them.
pub(super) struct Encoder {
    w: Writer,
    rows: u32,
}

impl Encoder {
    pub(super) fn new(capacity: usize) -> Self {
        let mut w = Writer(Vec::with_capacity(capacity * 2048));
        w.0.push(VERSION);
        w.u32(0);
        Self { w, rows: 0 }
    }

    /// Adds a row: the parts of a [`NewCallRow`].
    pub(super) fn push(
        &mut self,
        c: &CallRow,
        inline_session: Option<&SessionRow>,
        consents: &[ConsentRow],
        transcript_needs_consent: bool,
    ) {
        let w = &mut self.w;
        call(w, c);
        w.opt(&inline_session, |w, s| session(w, s));
        w.u32(consents.len() as u32);
        for c in consents {
            consent(w, c);
        }
        w.bool(transcript_needs_consent);
        self.rows += 1;
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        self.w.0[1..5].copy_from_slice(&self.rows.to_le_bytes());
        self.w.0
    }
}

/// Encodes whole rows (what [`Encoder`] does row by row).
#[cfg(test)]
pub(super) fn encode(rows: &[NewCallRow]) -> Vec<u8> {
    let mut e = Encoder::new(rows.len());
    for r in rows {
        e.push(
            &r.call,
            r.inline_session.as_ref(),
            &r.consents,
            r.transcript_needs_consent,
        );
    }
    e.finish()
}

/// Decodes what [`encode`] made.
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<NewCallRow>, StoreError> {
    let mut r = Reader { bytes, at: 0 };
    if r.u8()? != VERSION {
        return Err(malformed());
    }
    let n = r.u32()? as usize;
    let mut rows = Vec::with_capacity(n.min(100_000));
    for _ in 0..n {
        let call = read_call(&mut r)?;
        let inline_session = r.opt(read_session)?;
        let consents = (0..r.u32()?)
            .map(|_| read_consent(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(NewCallRow {
            call,
            inline_session,
            consents,
            transcript_needs_consent: r.bool()?,
        });
    }
    if r.at != bytes.len() {
        return Err(malformed());
    }
    Ok(rows)
}

fn malformed() -> StoreError {
    StoreError::Backend("redo log: malformed ingest record".into())
}

fn call(w: &mut Writer, c: &CallRow) {
    w.uuid(c.id.as_uuid());
    w.uuid(c.account_id.as_uuid());
    w.opt_str(&c.external_id);
    w.time(c.started_at);
    w.time(c.created_at);
    w.opt(&c.duration_s, |w, d| w.u32(*d));
    w.opt(&c.direction, |w, d| w.str(d.as_str()));
    w.opt(&c.status, |w, s| w.str(s.as_str()));
    w.str(&c.tracking_number);
    w.opt_str(&c.source);
    w.opt_str(&c.campaign);
    w.opt_str(&c.utm_source);
    w.opt_str(&c.utm_medium);
    w.opt_str(&c.utm_campaign);
    w.opt(&c.gdpr_scope, |w, b| w.bool(*b));
    w.opt(&c.caller_bidx, |w, b| w.bytes(b));
    w.opt(&c.session_id, |w, s| w.uuid(s.as_uuid()));
    w.opt_bytes(&c.caller_identity);
    w.opt_bytes(&c.caller_location);
    w.opt_bytes(&c.transcript);
    w.opt_bytes(&c.interaction);
    w.opt(&c.recording, |w, r| {
        w.str(&r.object);
        w.str(&r.content_type);
        w.u64(r.bytes);
    });
    w.opt(&c.redacted_at, |w, t| w.time(*t));
    w.opt(&c.redaction_reason, |w, r| w.str(r.as_str()));
    w.opt_str(&c.redacted_by);
    w.opt(&c.legal_hold, |w, h| {
        w.time(h.at);
        w.str(&h.reason);
        w.str(&h.by);
    });
}

fn read_call(r: &mut Reader) -> Result<CallRow, StoreError> {
    Ok(CallRow {
        id: CallId::from_uuid(r.uuid()?),
        account_id: AccountId::from_uuid(r.uuid()?),
        external_id: r.opt_string()?,
        started_at: r.time()?,
        created_at: r.time()?,
        duration_s: r.opt(|r| r.u32())?,
        direction: r.opt(|r| r.parsed(Direction::parse))?,
        status: r.opt(|r| r.parsed(CallStatus::parse))?,
        tracking_number: r.string()?,
        source: r.opt_string()?,
        campaign: r.opt_string()?,
        utm_source: r.opt_string()?,
        utm_medium: r.opt_string()?,
        utm_campaign: r.opt_string()?,
        gdpr_scope: r.opt(|r| r.bool())?,
        caller_bidx: r.opt(|r| r.bidx())?,
        session_id: r.opt(|r| r.uuid().map(SessionId::from_uuid))?,
        caller_identity: r.opt_blob()?,
        caller_location: r.opt_blob()?,
        transcript: r.opt_blob()?,
        interaction: r.opt_blob()?,
        recording: r.opt(|r| {
            Ok(RecordingRow {
                object: r.string()?,
                content_type: r.string()?,
                bytes: r.u64()?,
            })
        })?,
        redacted_at: r.opt(|r| r.time())?,
        redaction_reason: r.opt(|r| r.parsed(RedactionReason::parse))?,
        redacted_by: r.opt_string()?,
        legal_hold: r.opt(|r| {
            Ok(LegalHold {
                at: r.time()?,
                reason: r.string()?,
                by: r.string()?,
            })
        })?,
    })
}

fn session(w: &mut Writer, s: &SessionRow) {
    w.uuid(s.id.as_uuid());
    w.uuid(s.account_id.as_uuid());
    w.opt_str(&s.external_id);
    w.time(s.started_at);
    w.time(s.created_at);
    w.opt_str(&s.utm_source);
    w.opt_str(&s.utm_medium);
    w.opt_str(&s.utm_campaign);
    w.opt_bytes(&s.visitor);
    w.opt(&s.gdpr_scope, |w, b| w.bool(*b));
    w.opt(&s.visitor_bidx, |w, b| w.bytes(b));
    w.opt(&s.redacted_at, |w, t| w.time(*t));
    w.opt(&s.redaction_reason, |w, r| w.str(r.as_str()));
}

fn read_session(r: &mut Reader) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: SessionId::from_uuid(r.uuid()?),
        account_id: AccountId::from_uuid(r.uuid()?),
        external_id: r.opt_string()?,
        started_at: r.time()?,
        created_at: r.time()?,
        utm_source: r.opt_string()?,
        utm_medium: r.opt_string()?,
        utm_campaign: r.opt_string()?,
        visitor: r.opt_blob()?,
        gdpr_scope: r.opt(|r| r.bool())?,
        visitor_bidx: r.opt(|r| r.bidx())?,
        redacted_at: r.opt(|r| r.time())?,
        redaction_reason: r.opt(|r| r.parsed(RedactionReason::parse))?,
    })
}

fn consent(w: &mut Writer, c: &ConsentRow) {
    w.u64(c.seq as u64);
    w.str(&c.id);
    w.uuid(c.account_id.as_uuid());
    w.str(c.subject_kind.as_str());
    w.bytes(&c.subject_bidx);
    w.bytes(&c.subject);
    w.str(c.category.as_str());
    w.str(c.status.as_str());
    w.opt(&c.notice_version, |w, v| w.u32(*v));
    w.str(c.method.as_str());
    w.time(c.at);
    w.opt(&c.call_id, |w, id| w.uuid(id.as_uuid()));
    w.str(&c.recorded_by);
}

fn read_consent(r: &mut Reader) -> Result<ConsentRow, StoreError> {
    Ok(ConsentRow {
        seq: r.u64()? as i64,
        id: r.string()?,
        account_id: AccountId::from_uuid(r.uuid()?),
        subject_kind: r.parsed(SubjectKind::parse)?,
        subject_bidx: r.bidx()?,
        subject: r.blob()?,
        category: r.parsed(DataCategory::parse)?,
        status: r.parsed(ConsentStatus::parse)?,
        notice_version: r.opt(|r| r.u32())?,
        method: r.parsed(ConsentMethod::parse)?,
        at: r.time()?,
        call_id: r.opt(|r| r.uuid().map(CallId::from_uuid))?,
        recorded_by: r.string()?,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn uuid(&mut self, v: Uuid) {
        self.0.extend_from_slice(v.as_bytes());
    }
    fn time(&mut self, t: Timestamp) {
        self.u64(t.millis() as u64);
    }
    fn opt<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            Some(v) => {
                self.0.push(1);
                f(self, v);
            }
            None => self.0.push(0),
        }
    }
    fn opt_str(&mut self, v: &Option<String>) {
        self.opt(v, |w, s| w.str(s));
    }
    fn opt_bytes(&mut self, v: &Option<Vec<u8>>) {
        self.opt(v, |w, b| w.bytes(b));
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
        let out = self
            .bytes
            .get(self.at..self.at.checked_add(n).ok_or_else(malformed)?)
            .ok_or_else(malformed)?;
        self.at += n;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        self.take(N)?.try_into().map_err(|_| malformed())
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn bool(&mut self) -> Result<bool, StoreError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed()),
        }
    }
    fn blob(&mut self) -> Result<Vec<u8>, StoreError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, StoreError> {
        String::from_utf8(self.blob()?).map_err(|_| malformed())
    }
    fn parsed<T>(&mut self, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, StoreError> {
        parse(&self.string()?).ok_or_else(malformed)
    }
    fn uuid(&mut self) -> Result<Uuid, StoreError> {
        Ok(Uuid::from_bytes(self.array()?))
    }
    fn bidx(&mut self) -> Result<[u8; 16], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)?.try_into().map_err(|_| malformed())
    }
    fn time(&mut self) -> Result<Timestamp, StoreError> {
        Ok(Timestamp::from_millis(self.u64()? as i64))
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(malformed()),
        }
    }
    fn opt_string(&mut self) -> Result<Option<String>, StoreError> {
        self.opt(|r| r.string())
    }
    fn opt_blob(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        self.opt(|r| r.blob())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_row() -> NewCallRow {
        let account = AccountId::generate();
        let call_id = CallId::generate();
        NewCallRow {
            call: CallRow {
                id: call_id,
                account_id: account,
                external_id: Some("CA0123".into()),
                started_at: Timestamp::from_millis(1_700_000_000_123),
                created_at: Timestamp::from_millis(1_700_000_000_999),
                duration_s: Some(61),
                direction: Some(Direction::parse("inbound").unwrap()),
                status: Some(CallStatus::Queued),
                tracking_number: "+14155550100".into(),
                source: Some("google".into()),
                campaign: Some("spring".into()),
                utm_source: Some("g".into()),
                utm_medium: Some("cpc".into()),
                utm_campaign: Some("s".into()),
                gdpr_scope: Some(true),
                caller_bidx: Some([7; 16]),
                session_id: Some(SessionId::generate()),
                caller_identity: Some(vec![1, 2, 3]),
                caller_location: Some(vec![]),
                transcript: Some(vec![9; 300]),
                interaction: None,
                recording: Some(RecordingRow {
                    object: "recordings/x".into(),
                    content_type: "audio/wav".into(),
                    bytes: 44,
                }),
                redacted_at: Some(Timestamp::from_millis(5)),
                redaction_reason: Some(RedactionReason::ForgetList),
                redacted_by: Some("forget_list".into()),
                legal_hold: Some(LegalHold {
                    at: Timestamp::from_millis(6),
                    reason: "case 1".into(),
                    by: "tok".into(),
                }),
            },
            inline_session: Some(SessionRow {
                id: SessionId::generate(),
                account_id: account,
                external_id: None,
                started_at: Timestamp::from_millis(1),
                created_at: Timestamp::from_millis(2),
                utm_source: None,
                utm_medium: Some("m".into()),
                utm_campaign: None,
                visitor: Some(vec![4; 40]),
                gdpr_scope: Some(false),
                visitor_bidx: Some([3; 16]),
                redacted_at: None,
                redaction_reason: None,
            }),
            consents: vec![ConsentRow {
                seq: 0,
                id: "c1".into(),
                account_id: account,
                subject_kind: SubjectKind::Caller,
                subject_bidx: [5; 16],
                subject: vec![8; 50],
                category: DataCategory::Transcript,
                status: ConsentStatus::Granted,
                notice_version: Some(2),
                method: ConsentMethod::IvrKeypress,
                at: Timestamp::from_millis(3),
                call_id: Some(call_id),
                recorded_by: "tok".into(),
            }],
            transcript_needs_consent: true,
        }
    }

    #[test]
    fn rows_come_back_as_they_went_in() {
        let full = full_row();
        let mut bare = full_row();
        bare.call.external_id = None;
        bare.call.direction = None;
        bare.call.caller_bidx = None;
        bare.call.recording = None;
        bare.call.legal_hold = None;
        bare.inline_session = None;
        bare.consents.clear();
        bare.transcript_needs_consent = false;
        let rows = vec![full, bare];
        assert_eq!(decode(&encode(&rows)).unwrap(), rows);
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::<NewCallRow>::new());
    }

    #[test]
    fn a_cut_or_altered_record_is_refused_not_misread() {
        let bytes = encode(&[full_row()]);
        for cut in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut version = bytes;
        version[0] = 2;
        assert!(decode(&version).is_err());
    }
}
