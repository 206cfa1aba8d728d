//! Keys and ciphers. Every player has a random 256-bit data key; it is stored only wrapped
//! (AES-256-GCM) by the master key, and personal fields are sealed with it (AES-256-GCM,
//! random 96-bit nonce, the event's game, pseudonym and id as associated data so a sealed
//! value cannot be moved to another event). Destroying the wrapped key shreds every copy.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use gm_schemas::events::PersonalFields;
use gm_schemas::{GameId, PlayerId, SealedPersonal};
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;
use std::fmt;

pub const ALG: &str = "A256GCM";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes, given as 64 hex characters or base64 ({0})")]
    BadMasterKey(String),
    #[error("a wrapped key or sealed value is malformed")]
    Malformed,
    #[error("decryption failed: wrong key or tampered data")]
    Decrypt,
    #[error("unsupported cipher {0}")]
    UnsupportedAlg(String),
    #[error("the system random generator failed")]
    Random,
}

fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

fn seal_with(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::Malformed)?);
    let nonce = random::<NONCE_LEN>()?;
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Malformed)?;
    Ok((nonce, buf))
}

fn open_with(key: &[u8; 32], aad: &[u8], nonce: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::Malformed)?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed)?;
    let mut buf = sealed.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| CryptoError::Decrypt)?;
    Ok(plain.to_vec())
}

/// The key that wraps every data key, and from which the subject-hash and receipt keys are
/// derived. From configuration or a secret file; never logged (Debug is redacted).
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(redacted)")
    }
}

impl MasterKey {
    /// 64 hex characters or the base64 of 32 bytes (surrounding whitespace ignored, so a
    /// secret file with a trailing newline works).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .filter(|b| b.len() == 32)
            .or_else(|| B64.decode(text).ok().filter(|b| b.len() == 32))
            .ok_or_else(|| CryptoError::BadMasterKey(format!("{} characters given", text.len())))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(Self(key))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A purpose-specific key: HMAC-SHA256(master, purpose).
    fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Wraps a data key: nonce ‖ AES-256-GCM(master, key).
    pub fn wrap(&self, key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        let (nonce, sealed) = seal_with(&self.0, b"gamemetrics data key", &key.0)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        if wrapped.len() <= NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let plain = open_with(&self.0, b"gamemetrics data key", &wrapped[..NONCE_LEN], &wrapped[NONCE_LEN..])?;
        let bytes: [u8; 32] = plain.try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(DataKey(bytes))
    }

    pub fn subject_hasher(&self) -> SubjectHasher {
        SubjectHasher(keyed(&self.derive("gamemetrics subject hash")))
    }

    pub fn receipt_signer(&self) -> ReceiptSigner {
        ReceiptSigner(self.derive("gamemetrics erasure receipt"))
    }

    pub fn pseudonymizer(&self) -> Pseudonymizer {
        Pseudonymizer(keyed(&self.derive("gamemetrics pseudonym")))
    }
}

/// One player's data key, in memory only while in use.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(redacted)")
    }
}

fn personal_aad(game: &GameId, pseudonym: &PlayerId, event_id: &uuid::Uuid) -> Vec<u8> {
    format!("{game}:{pseudonym}:{event_id}").into_bytes()
}

impl DataKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(random::<32>()?))
    }

    /// Seals an event's personal fields, bound to the event (game, pseudonym, event id).
    pub fn seal(
        &self,
        game: &GameId,
        pseudonym: &PlayerId,
        event_id: &uuid::Uuid,
        fields: &PersonalFields,
    ) -> Result<SealedPersonal, CryptoError> {
        let plain = serde_json::to_vec(fields).map_err(|_| CryptoError::Malformed)?;
        let (nonce, sealed) = seal_with(&self.0, &personal_aad(game, pseudonym, event_id), &plain)?;
        Ok(SealedPersonal { alg: ALG.to_string(), nonce: B64.encode(nonce), sealed: B64.encode(sealed) })
    }

    pub fn open(
        &self,
        game: &GameId,
        pseudonym: &PlayerId,
        event_id: &uuid::Uuid,
        sealed: &SealedPersonal,
    ) -> Result<PersonalFields, CryptoError> {
        if sealed.alg != ALG {
            return Err(CryptoError::UnsupportedAlg(sealed.alg.clone()));
        }
        let nonce = B64.decode(&sealed.nonce).map_err(|_| CryptoError::Malformed)?;
        let data = B64.decode(&sealed.sealed).map_err(|_| CryptoError::Malformed)?;
        let plain = open_with(&self.0, &personal_aad(game, pseudonym, event_id), &nonce, &data)?;
        serde_json::from_slice(&plain).map_err(|_| CryptoError::Malformed)
    }
}

/// A stable, keyed, one-way id for a (game, player) pair: what privacy tables store instead
/// of the player's id, so they hold nothing personal once the player is erased.
/// HMAC-SHA256 with its key already absorbed: each use clones the state instead of hashing
/// the key again (half the work of hashing a short `game:player`; one per event at ingest).
fn keyed(key: &[u8; 32]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

#[derive(Clone)]
pub struct SubjectHasher(Hmac<Sha256>);

impl SubjectHasher {
    pub fn subject(&self, game: &GameId, player: &PlayerId) -> Subject {
        let mut mac = self.0.clone();
        mac.update(game.as_str().as_bytes());
        mac.update(b":");
        mac.update(player.as_str().as_bytes());
        Subject(mac.finalize().into_bytes().into())
    }
}

/// See [`SubjectHasher`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(pub [u8; 32]);

impl Subject {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({})", &self.to_hex()[..12])
    }
}

/// Signs erasure receipts: HMAC-SHA256 over the receipt's canonical JSON.
#[derive(Clone)]
pub struct ReceiptSigner([u8; 32]);

impl ReceiptSigner {
    pub fn sign(&self, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(payload);
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn verify(&self, payload: &[u8], signature_hex: &str) -> bool {
        let Ok(sig) = hex::decode(signature_hex) else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(payload);
        mac.verify_slice(&sig).is_ok()
    }
}

/// Makes the pseudonym under which the log, the actors and the snapshots know a player:
/// `pz_` + 128 bits of HMAC-SHA256(key derived from the master key, `game:player`).
///
/// Keyed and deterministic rather than random (ADR 0004): a PostgreSQL point-in-time restore
/// can lose the newest `player_keys` rows, and the player must come back under the same
/// pseudonym, or their actor state and read-model rows would split in two. The price: whoever
/// holds the master key can still find an erased player's non-personal events in the log
/// (until its retention) by recomputing the pseudonym; their personal fields stay shredded.
#[derive(Clone)]
pub struct Pseudonymizer(Hmac<Sha256>);

impl Pseudonymizer {
    pub fn pseudonym(&self, game: &GameId, player: &PlayerId) -> PlayerId {
        let mut mac = self.0.clone();
        mac.update(game.as_str().as_bytes());
        mac.update(b":");
        mac.update(player.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        PlayerId::parse(format!("pz_{}", hex::encode(&digest[..16]))).expect("a valid player id")
    }
}

/// Whether `id` has the form of a pseudonym made by a [`Pseudonymizer`].
pub fn is_pseudonym(id: &str) -> bool {
    id.len() == 35 && id.starts_with("pz_") && id[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes([7; 32])
    }
    fn fields() -> PersonalFields {
        PersonalFields { email: Some("a@example.com".into()), ip: Some("10.0.0.1".into()), ..Default::default() }
    }
    fn ids() -> (GameId, PlayerId, uuid::Uuid) {
        let g = GameId::parse("g").unwrap();
        let p = master().pseudonymizer().pseudonym(&g, &PlayerId::parse("p").unwrap());
        (g, p, uuid::Uuid::now_v7())
    }

    #[test]
    fn master_key_parses_hex_and_base64_and_refuses_other_lengths() {
        let hex_text = "11".repeat(32);
        assert!(MasterKey::parse(&format!("{hex_text}\n")).is_ok());
        assert!(MasterKey::parse(&B64.encode([1u8; 32])).is_ok());
        assert!(matches!(MasterKey::parse("short"), Err(CryptoError::BadMasterKey(_))));
        assert!(MasterKey::parse(&B64.encode([1u8; 31])).is_err());
        assert_eq!(format!("{:?}", master()), "MasterKey(redacted)");
    }

    #[test]
    fn wrapped_keys_open_only_with_their_master_key() {
        let key = DataKey::generate().unwrap();
        let wrapped = master().wrap(&key).unwrap();
        assert_eq!(master().unwrap(&wrapped).unwrap(), key);
        assert_eq!(MasterKey::from_bytes([8; 32]).unwrap(&wrapped), Err(CryptoError::Decrypt));
        assert_eq!(master().unwrap(&wrapped[..5]), Err(CryptoError::Malformed));
        assert_ne!(master().wrap(&key).unwrap(), wrapped, "a fresh nonce each time");
    }

    #[test]
    fn sealed_personal_fields_hide_the_values_and_open_with_the_same_key_and_event() {
        let (g, p, e) = ids();
        let key = DataKey::generate().unwrap();
        let sealed = key.seal(&g, &p, &e, &fields()).unwrap();
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(!text.contains("example.com") && !text.contains("10.0.0.1"), "{text}");
        assert_eq!(key.open(&g, &p, &e, &sealed).unwrap(), fields());
        // Another key (a shredded player's data is gone for good) or another event fails.
        assert_eq!(DataKey::generate().unwrap().open(&g, &p, &e, &sealed), Err(CryptoError::Decrypt));
        assert_eq!(key.open(&g, &p, &uuid::Uuid::now_v7(), &sealed), Err(CryptoError::Decrypt));
        let other = SealedPersonal { alg: "none".into(), ..sealed };
        assert_eq!(key.open(&g, &p, &e, &other), Err(CryptoError::UnsupportedAlg("none".into())));
    }

    #[test]
    fn subjects_are_stable_per_player_and_differ_across_players_games_and_keys() {
        let h = master().subject_hasher();
        let (g, p) = (GameId::parse("g").unwrap(), PlayerId::parse("p1").unwrap());
        assert_eq!(h.subject(&g, &p), h.subject(&g, &p));
        assert_ne!(h.subject(&g, &p), h.subject(&g, &PlayerId::parse("p2").unwrap()));
        assert_ne!(h.subject(&g, &p), h.subject(&GameId::parse("g2").unwrap(), &p));
        assert_ne!(h.subject(&g, &p), MasterKey::from_bytes([9; 32]).subject_hasher().subject(&g, &p));
        assert!(!h.subject(&g, &p).to_hex().contains("p1"));
    }

    #[test]
    fn receipts_verify_only_unchanged_and_with_the_same_key() {
        let s = master().receipt_signer();
        let sig = s.sign(b"{\"a\":1}");
        assert!(s.verify(b"{\"a\":1}", &sig));
        assert!(!s.verify(b"{\"a\":2}", &sig));
        assert!(!MasterKey::from_bytes([1; 32]).receipt_signer().verify(b"{\"a\":1}", &sig));
        assert!(!s.verify(b"{\"a\":1}", "zz"));
    }

    #[test]
    fn pseudonyms_are_valid_player_ids_stable_per_player_and_keyed() {
        let (g, p1, p2) = (GameId::parse("g").unwrap(), PlayerId::parse("p1").unwrap(), PlayerId::parse("p2").unwrap());
        let make = master().pseudonymizer();
        let p = make.pseudonym(&g, &p1);
        assert!(is_pseudonym(p.as_str()), "{p}");
        assert_eq!(p, make.pseudonym(&g, &p1), "the same player gets the same pseudonym, e.g. after a restore");
        assert_ne!(p, make.pseudonym(&g, &p2));
        assert_ne!(p, make.pseudonym(&GameId::parse("g2").unwrap(), &p1));
        assert_ne!(p, MasterKey::from_bytes([8; 32]).pseudonymizer().pseudonym(&g, &p1));
        assert!(!is_pseudonym("player-1"));
        // The prepared HMAC state gives what keying each time gave: pseudonyms and subjects
        // already stored stay valid.
        let mut mac = Hmac::<Sha256>::new_from_slice(&master().derive("gamemetrics pseudonym")).unwrap();
        mac.update(b"g:p1");
        assert_eq!(p.as_str(), format!("pz_{}", hex::encode(&mac.finalize().into_bytes()[..16])));
        let mut mac = Hmac::<Sha256>::new_from_slice(&master().derive("gamemetrics subject hash")).unwrap();
        mac.update(b"g:p1");
        assert_eq!(master().subject_hasher().subject(&g, &p1).0, <[u8; 32]>::from(mac.finalize().into_bytes()));
    }
}
