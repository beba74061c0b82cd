//! The plaintext layout of each sealed category: a list of `(field tag, length, UTF-8 bytes)`.
//! Absent fields are left out; a category with no field present is not stored at all.
//! Buffers holding plaintext are zeroized when dropped.

use zeroize::Zeroizing;

use ringfence_core::call::{CallerIdentity, CallerLocation, InteractionContent, VisitorDetails};
use ringfence_core::personal::Personal;
use ringfence_core::phone::E164;
#[cfg(test)]
use ringfence_core::phone::parse_e164;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed payload is malformed")]
pub struct PayloadError;

struct Encoder(Zeroizing<Vec<u8>>);

impl Encoder {
    fn new() -> Self {
        Self(Zeroizing::new(Vec::with_capacity(128)))
    }
    fn put(&mut self, tag: u8, value: Option<&str>) {
        if let Some(v) = value {
            self.0.push(tag);
            self.0.extend_from_slice(&(v.len() as u32).to_le_bytes());
            self.0.extend_from_slice(v.as_bytes());
        }
    }
    fn finish(self) -> Option<Zeroizing<Vec<u8>>> {
        if self.0.is_empty() {
            None
        } else {
            Some(self.0)
        }
    }
}

fn fields(mut bytes: &[u8]) -> impl Iterator<Item = Result<(u8, &str), PayloadError>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        if bytes.len() < 5 {
            bytes = &[];
            return Some(Err(PayloadError));
        }
        let tag = bytes[0];
        let len = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        if bytes.len() < 5 + len {
            bytes = &[];
            return Some(Err(PayloadError));
        }
        let value = std::str::from_utf8(&bytes[5..5 + len]).map_err(|_| PayloadError);
        bytes = &bytes[5 + len..];
        Some(value.map(|v| (tag, v)))
    })
}

fn personal(v: &str) -> Option<Personal<String>> {
    Some(Personal::new(v.to_owned()))
}

fn number(v: &str) -> Result<Option<E164>, PayloadError> {
    // Stored numbers were validated on the way in.
    E164::from_stored(v).map(Some).ok_or(PayloadError)
}

pub fn encode_identity(c: &CallerIdentity) -> Option<Zeroizing<Vec<u8>>> {
    let mut e = Encoder::new();
    e.put(1, c.number.as_ref().map(E164::as_str));
    e.put(2, c.name.as_ref().map(|n| n.expose().as_str()));
    e.put(3, c.forwarded_from.as_ref().map(E164::as_str));
    e.finish()
}

pub fn decode_identity(bytes: &[u8]) -> Result<CallerIdentity, PayloadError> {
    let mut c = CallerIdentity::default();
    for f in fields(bytes) {
        match f? {
            (1, v) => c.number = number(v)?,
            (2, v) => c.name = personal(v),
            (3, v) => c.forwarded_from = number(v)?,
            _ => return Err(PayloadError),
        }
    }
    Ok(c)
}

pub fn encode_location(l: &CallerLocation) -> Option<Zeroizing<Vec<u8>>> {
    let mut e = Encoder::new();
    e.put(1, l.city.as_ref().map(|v| v.expose().as_str()));
    e.put(2, l.region.as_ref().map(|v| v.expose().as_str()));
    e.put(3, l.postal_code.as_ref().map(|v| v.expose().as_str()));
    e.put(4, l.country.as_ref().map(|v| v.expose().as_str()));
    e.finish()
}

pub fn decode_location(bytes: &[u8]) -> Result<CallerLocation, PayloadError> {
    let mut l = CallerLocation::default();
    for f in fields(bytes) {
        match f? {
            (1, v) => l.city = personal(v),
            (2, v) => l.region = personal(v),
            (3, v) => l.postal_code = personal(v),
            (4, v) => l.country = personal(v),
            _ => return Err(PayloadError),
        }
    }
    Ok(l)
}

pub fn encode_transcript(t: Option<&Personal<String>>) -> Option<Zeroizing<Vec<u8>>> {
    let mut e = Encoder::new();
    e.put(1, t.map(|v| v.expose().as_str()));
    e.finish()
}

pub fn decode_transcript(bytes: &[u8]) -> Result<Option<Personal<String>>, PayloadError> {
    let mut t = None;
    for f in fields(bytes) {
        match f? {
            (1, v) => t = personal(v),
            _ => return Err(PayloadError),
        }
    }
    Ok(t)
}

pub fn encode_interaction(i: &InteractionContent) -> Option<Zeroizing<Vec<u8>>> {
    let mut e = Encoder::new();
    e.put(1, i.notes.as_ref().map(|v| v.expose().as_str()));
    for tag in i.tags.expose() {
        e.put(2, Some(tag));
    }
    e.finish()
}

pub fn decode_interaction(bytes: &[u8]) -> Result<InteractionContent, PayloadError> {
    let mut notes = None;
    let mut tags = Vec::new();
    for f in fields(bytes) {
        match f? {
            (1, v) => notes = personal(v),
            (2, v) => tags.push(v.to_owned()),
            _ => return Err(PayloadError),
        }
    }
    Ok(InteractionContent {
        notes,
        tags: Personal::new(tags),
    })
}

pub fn encode_visitor(v: &VisitorDetails) -> Option<Zeroizing<Vec<u8>>> {
    let mut e = Encoder::new();
    let s = |f: &Option<Personal<String>>| f.as_ref().map(|v| v.expose().clone());
    let values = [
        s(&v.ip),
        s(&v.user_agent),
        s(&v.referrer),
        s(&v.landing_url),
        s(&v.gclid),
        s(&v.fbclid),
        s(&v.msclkid),
        s(&v.visitor_id),
        s(&v.country),
    ];
    for (i, value) in values.iter().enumerate() {
        e.put(i as u8 + 1, value.as_deref());
    }
    e.finish()
}

pub fn decode_visitor(bytes: &[u8]) -> Result<VisitorDetails, PayloadError> {
    let mut v = VisitorDetails::default();
    for f in fields(bytes) {
        let (tag, value) = f?;
        let slot = match tag {
            1 => &mut v.ip,
            2 => &mut v.user_agent,
            3 => &mut v.referrer,
            4 => &mut v.landing_url,
            5 => &mut v.gclid,
            6 => &mut v.fbclid,
            7 => &mut v.msclkid,
            8 => &mut v.visitor_id,
            9 => &mut v.country,
            _ => return Err(PayloadError),
        };
        *slot = personal(value);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_round_trips() {
        let identity = CallerIdentity {
            number: Some(parse_e164("+442079460123").unwrap()),
            name: personal("Erika Mustermann"),
            forwarded_from: None,
        };
        assert_eq!(
            decode_identity(&encode_identity(&identity).unwrap()).unwrap(),
            identity
        );
        let location = CallerLocation {
            city: personal("Berlin"),
            region: None,
            postal_code: personal("10115"),
            country: personal("DE"),
        };
        assert_eq!(
            decode_location(&encode_location(&location).unwrap()).unwrap(),
            location
        );
        let interaction = InteractionContent {
            notes: personal("called back"),
            tags: Personal::new(vec!["lead".into(), "vip".into()]),
        };
        assert_eq!(
            decode_interaction(&encode_interaction(&interaction).unwrap()).unwrap(),
            interaction
        );
        let visitor = VisitorDetails {
            ip: personal("203.0.113.7"),
            gclid: personal("abc"),
            visitor_id: personal("v1"),
            country: personal("IE"),
            ..Default::default()
        };
        assert_eq!(
            decode_visitor(&encode_visitor(&visitor).unwrap()).unwrap(),
            visitor
        );
        let t = personal("hello\nworld");
        assert_eq!(
            decode_transcript(&encode_transcript(t.as_ref()).unwrap()).unwrap(),
            t
        );
    }

    #[test]
    fn empty_categories_are_not_stored() {
        assert!(encode_identity(&CallerIdentity::default()).is_none());
        assert!(encode_visitor(&VisitorDetails::default()).is_none());
        assert!(encode_transcript(None).is_none());
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for bad in [
            &[1u8][..],
            &[1, 9, 0, 0, 0, b'a'],
            &[99, 1, 0, 0, 0, b'a'],
            &[2, 2, 0, 0, 0, 0xff, 0xfe],
        ] {
            assert!(decode_location(bad).is_err());
        }
    }
}
