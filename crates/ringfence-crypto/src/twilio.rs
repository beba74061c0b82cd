//! Twilio's webhook signature: base64 of HMAC-SHA1, keyed with the account's auth token, over
//! the full URL Twilio requested followed by every POST parameter as `name` + `value`, sorted
//! by name (then value).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

fn mac(auth_token: &[u8], url: &str, params: &[(String, String)]) -> HmacSha1 {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    // HMAC accepts keys of any length.
    let mut mac = HmacSha1::new_from_slice(auth_token).unwrap_or_else(|_| unreachable!());
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature Twilio sends in `X-Twilio-Signature` for this request.
pub fn twilio_signature(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `header` is the signature of this request, compared in constant time.
pub fn verify_twilio_signature(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: &str,
) -> bool {
    let Ok(claimed) = STANDARD.decode(header.trim()) else {
        return false;
    };
    mac(auth_token, url, params).verify_slice(&claimed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Vectors computed independently with Python's `hmac` and `hashlib.sha1`; the first is
    /// also the example of Twilio's documentation.
    #[test]
    fn known_vectors() {
        let doc = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            twilio_signature(b"12345", url, &doc),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify_twilio_signature(
            b"12345",
            url,
            &doc,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        let ours = params(&[
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("From", "+442079460123"),
            ("To", "+14155550100"),
            ("CallStatus", "completed"),
            ("Direction", "inbound"),
            ("CallDuration", "95"),
            ("FromCity", "London"),
            ("CallerName", "Test Caller"),
        ]);
        assert_eq!(
            twilio_signature(
                b"rf-test-auth-token-0001",
                "https://calls.example/webhooks/twilio/acct/voice",
                &ours
            ),
            "zqqKcg5l7y9sVfQfi8dwJCbL73w="
        );
    }

    #[test]
    fn tampering_fails() {
        let p = params(&[("CallSid", "CA1"), ("From", "+442079460123")]);
        let url = "https://calls.example/hook";
        let good = twilio_signature(b"token", url, &p);
        assert!(verify_twilio_signature(b"token", url, &p, &good));
        assert!(!verify_twilio_signature(b"other", url, &p, &good));
        assert!(!verify_twilio_signature(
            b"token",
            "https://calls.example/hook2",
            &p,
            &good
        ));
        let tampered = params(&[("CallSid", "CA1"), ("From", "+442079460124")]);
        assert!(!verify_twilio_signature(b"token", url, &tampered, &good));
        assert!(!verify_twilio_signature(b"token", url, &p, ""));
        assert!(!verify_twilio_signature(b"token", url, &p, "not base64!"));
    }
}
