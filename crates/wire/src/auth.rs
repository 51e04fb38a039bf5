//! Shared-secret authentication of a handshake.
//!
//! Both sides send a [`crate::msg::Hello`] carrying a fresh nonce, then a
//! [`crate::msg::Proof`]: HMAC-SHA256 keyed with the secret over a label that
//! says which side is proving (so a proof cannot be reflected back) and both
//! hello payloads (so it cannot be replayed into another handshake). A peer
//! whose proof does not verify is refused before any entry is exchanged.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Which side of the handshake is proving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Initiator,
    Acceptor,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Initiator => b"understudy/v1 initiator proof",
            Side::Acceptor => b"understudy/v1 acceptor proof",
        }
    }
}

fn mac(secret: &[u8], side: Side, initiator_hello: &[u8], acceptor_hello: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(side.label());
    m.update(&(initiator_hello.len() as u64).to_le_bytes());
    m.update(initiator_hello);
    m.update(&(acceptor_hello.len() as u64).to_le_bytes());
    m.update(acceptor_hello);
    m
}

/// The proof `side` sends, given both hello payloads as they were on the wire.
pub fn prove(secret: &[u8], side: Side, initiator_hello: &[u8], acceptor_hello: &[u8]) -> [u8; 32] {
    mac(secret, side, initiator_hello, acceptor_hello).finalize().into_bytes().into()
}

/// Checks the peer's proof in constant time.
pub fn verify(secret: &[u8], side: Side, initiator_hello: &[u8], acceptor_hello: &[u8], proof: &[u8; 32]) -> bool {
    mac(secret, side, initiator_hello, acceptor_hello).verify_slice(proof).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_verifies_only_with_the_same_secret_side_and_transcript() {
        let p = prove(b"s3cret", Side::Initiator, b"hello-a", b"hello-b");
        assert!(verify(b"s3cret", Side::Initiator, b"hello-a", b"hello-b", &p));
        assert!(!verify(b"other", Side::Initiator, b"hello-a", b"hello-b", &p));
        assert!(!verify(b"s3cret", Side::Acceptor, b"hello-a", b"hello-b", &p), "reflection");
        assert!(!verify(b"s3cret", Side::Initiator, b"hello-a", b"hello-c", &p), "replay");
        // Length-prefixing keeps (ab, c) distinct from (a, bc).
        assert!(!verify(b"s3cret", Side::Initiator, b"hello-", b"ahello-b", &p));
    }
}
