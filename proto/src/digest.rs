//! The digest that binds a keyed request's key to its words (DESIGN.md section 2: "the same
//! key with other words is another run, never a replay").
//!
//! SHA-256 (the RustCrypto `sha2` crate). A cryptographic hash because the words are
//! chosen by whoever can reach the socket: with a checksum (CRC, FNV) one could craft other
//! words with the digest of the scheduler's nightly backup and squat its key again.

/// The digest of a request's words, as the journal stores it: the first 128 bits of
/// SHA-256 over an unambiguous encoding (a version tag, then each field as its length and
/// its bytes; no user is not the empty user), in lowercase hex.
pub fn words(user: Option<&str>, action: &str, args: &[String]) -> String {
    let mut buf = Vec::with_capacity(64 + action.len());
    buf.extend_from_slice(b"bosun-request-v1\0");
    match user {
        None => buf.extend_from_slice(&u32::MAX.to_be_bytes()),
        Some(u) => field(&mut buf, u),
    }
    field(&mut buf, action);
    for a in args {
        field(&mut buf, a);
    }
    sha256(&buf)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn field(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fips_180_test_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(&sha256(&vec![b'a'; 1_000_000])),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn no_user_is_not_the_empty_user() {
        assert_ne!(words(None, "a", &[]), words(Some(""), "a", &[]));
        assert_eq!(words(None, "a", &[]).len(), 32);
    }
}
