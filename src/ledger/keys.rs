//! Owner keys: a mnemonic phrase → BIP-39 seed → SLIP-0010 Ed25519 master key → owner
//! address (`protocol-spec/ledger.md`, sections 3 and 4).
//!
//! Every step is a published standard computed by a vetted crate (`pbkdf2`, `hmac`,
//! `sha2`, `ed25519-dalek`); nothing here is home-made cryptography. The same phrase always
//! gives the same key, so an owner needs nothing but the phrase to register again later.

use std::fmt;

use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

/// Longest accepted mnemonic phrase, in bytes after normalisation. A 24-word BIP-39 phrase
/// is under 250 bytes; the bound keeps key derivation cheap whatever a client sends.
pub const MAX_MNEMONIC_BYTES: usize = 1024;
/// PBKDF2 iterations fixed by BIP-39.
const BIP39_ROUNDS: u32 = 2048;
/// BIP-39 salt: "mnemonic" followed by the (here always empty) passphrase.
const BIP39_SALT: &[u8] = b"mnemonic";
/// SLIP-0010's HMAC key for the Ed25519 curve.
const SLIP10_ED25519_KEY: &[u8] = b"ed25519 seed";
/// Every owner address starts with this.
pub const ADDRESS_PREFIX: &str = "ps";
/// Domain tag hashed in front of the public key to make the address checksum.
pub const ADDRESS_CHECKSUM_TAG: &[u8] = b"peershare-address";
/// Bytes of checksum at the end of an address.
const CHECKSUM_BYTES: usize = 4;
/// Length of an address in characters: the prefix, then 36 bytes in hex.
pub const ADDRESS_LEN: usize = ADDRESS_PREFIX.len() + 2 * (32 + CHECKSUM_BYTES);

/// Why a mnemonic was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Nothing but whitespace.
    EmptyMnemonic,
    /// Longer than [`MAX_MNEMONIC_BYTES`].
    MnemonicTooLong {
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::EmptyMnemonic => {
                f.write_str("the mnemonic is empty (it must be the owner's secret phrase)")
            }
            KeyError::MnemonicTooLong { len } => write!(
                f,
                "the mnemonic is {len} bytes long; at most {MAX_MNEMONIC_BYTES} are accepted"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// A secret mnemonic phrase, normalised: Unicode NFKD (as BIP-39 requires), then every run
/// of whitespace collapsed to one space and none at either end (so a phrase read from a file
/// with a trailing newline, or typed with double spaces, gives the same key). Any phrase is
/// accepted: like BIP-39's seed function, this does not require words from the BIP-39 list.
///
/// Wiped from memory when dropped; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Mnemonic(Zeroizing<String>);

impl Mnemonic {
    /// Normalises and checks a phrase.
    pub fn new(phrase: &str) -> Result<Mnemonic, KeyError> {
        // Bound the work before normalising (NFKD can grow a string a few times over).
        if phrase.len() > MAX_MNEMONIC_BYTES.saturating_mul(4) {
            return Err(KeyError::MnemonicTooLong { len: phrase.len() });
        }
        let nfkd = Zeroizing::new(phrase.nfkd().collect::<String>());
        let mut out = Zeroizing::new(String::with_capacity(nfkd.len()));
        for word in nfkd.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
        if out.is_empty() {
            return Err(KeyError::EmptyMnemonic);
        }
        if out.len() > MAX_MNEMONIC_BYTES {
            return Err(KeyError::MnemonicTooLong { len: out.len() });
        }
        Ok(Mnemonic(out))
    }

    /// The normalised phrase (the exact bytes fed to PBKDF2).
    pub fn normalized(&self) -> &str {
        &self.0
    }

    /// The BIP-39 seed: PBKDF2-HMAC-SHA512(phrase, "mnemonic", 2048 rounds), 64 bytes.
    pub fn seed(&self) -> Zeroizing<[u8; 64]> {
        bip39_seed(self.normalized(), "")
    }

    /// The owner key this phrase stands for (about 2048 SHA-512 rounds of work).
    pub fn derive(&self) -> OwnerKey {
        OwnerKey::from_seed(&*self.seed())
    }
}

impl fmt::Debug for Mnemonic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Mnemonic(<redacted>)")
    }
}

fn bip39_seed(phrase: &str, passphrase: &str) -> Zeroizing<[u8; 64]> {
    let mut salt = Zeroizing::new(BIP39_SALT.to_vec());
    salt.extend(passphrase.nfkd().collect::<String>().as_bytes());
    let mut seed = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<Sha512>(phrase.as_bytes(), &salt, BIP39_ROUNDS, &mut *seed);
    seed
}

/// The SLIP-0010 Ed25519 master secret key of a seed: the first 32 bytes of
/// HMAC-SHA512(key = "ed25519 seed", data = seed). (The last 32 are the chain code, which
/// only child derivation needs; the ledger uses the master key itself, path `m`.)
pub fn slip10_master_secret(seed: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(SLIP10_ED25519_KEY)
        .expect("HMAC accepts keys of any length");
    mac.update(seed);
    let i = Zeroizing::new(<[u8; 64]>::from(mac.finalize().into_bytes()));
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(i.get(..32).unwrap_or(&[0u8; 32]));
    secret
}

/// An owner's signing key and the address it is known by.
#[derive(Clone)]
pub struct OwnerKey {
    signing: SigningKey,
    address: Address,
}

impl OwnerKey {
    /// The key of a BIP-39 seed (SLIP-0010 master key).
    pub fn from_seed(seed: &[u8]) -> OwnerKey {
        let secret = slip10_master_secret(seed);
        let signing = SigningKey::from_bytes(&secret);
        let address = Address::from_public_key(&signing.verifying_key().to_bytes());
        OwnerKey { signing, address }
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The owner address.
    pub fn address(&self) -> &Address {
        &self.address
    }
}

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerKey({}, <secret redacted>)", self.address)
    }
}

/// Why an owner address was refused. Each message says what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// It does not start with `ps`.
    WrongPrefix,
    /// It is not [`ADDRESS_LEN`] characters long.
    WrongLength {
        /// Its length in characters.
        got: usize,
    },
    /// A character after the prefix is not a hex digit.
    NotHex,
    /// The checksum does not match the public key: a typo, most likely.
    BadChecksum,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::WrongPrefix => write!(
                f,
                "an owner address starts with \"{ADDRESS_PREFIX}\" followed by 72 hex digits"
            ),
            AddressError::WrongLength { got } => write!(
                f,
                "an owner address is {ADDRESS_LEN} characters (\"{ADDRESS_PREFIX}\" + 72 hex digits), got {got}"
            ),
            AddressError::NotHex => write!(
                f,
                "an owner address is \"{ADDRESS_PREFIX}\" followed by hex digits only (0-9, a-f)"
            ),
            AddressError::BadChecksum => f.write_str(
                "the owner address's checksum does not match: it has a typo (copy it again)",
            ),
        }
    }
}

impl std::error::Error for AddressError {}

/// An owner address: `"ps"` + hex(public key ‖ checksum), where the checksum is the first 4
/// bytes of SHA-256("peershare-address" ‖ public key). Always lower case.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(String);

impl Address {
    /// The address of an Ed25519 public key.
    pub fn from_public_key(public_key: &[u8; 32]) -> Address {
        let mut bytes = Vec::with_capacity(32 + CHECKSUM_BYTES);
        bytes.extend_from_slice(public_key);
        bytes.extend_from_slice(&checksum(public_key));
        Address(format!("{ADDRESS_PREFIX}{}", hex::encode(bytes)))
    }

    /// Parses an address (hex digits in either case), checking its checksum.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let s = s.trim();
        let rest = match s.get(..ADDRESS_PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(ADDRESS_PREFIX) => {
                s.get(ADDRESS_PREFIX.len()..).unwrap_or_default()
            }
            _ => return Err(AddressError::WrongPrefix),
        };
        if s.chars().count() != ADDRESS_LEN {
            return Err(AddressError::WrongLength {
                got: s.chars().count(),
            });
        }
        let bytes = hex::decode(rest).map_err(|_| AddressError::NotHex)?;
        let (key, sum) = bytes.split_at(32.min(bytes.len()));
        let key: [u8; 32] = key.try_into().map_err(|_| AddressError::NotHex)?;
        if sum != checksum(&key) {
            return Err(AddressError::BadChecksum);
        }
        Ok(Address::from_public_key(&key))
    }

    /// The address text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The public key the address carries.
    pub fn public_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        if let Some(h) = self.0.get(ADDRESS_PREFIX.len()..ADDRESS_PREFIX.len() + 64) {
            // Constructed only from a key or a checked parse, so this always decodes.
            let _ = hex::decode_to_slice(h, &mut key);
        }
        key
    }
}

fn checksum(public_key: &[u8; 32]) -> [u8; CHECKSUM_BYTES] {
    let digest = Sha256::new()
        .chain_update(ADDRESS_CHECKSUM_TAG)
        .chain_update(public_key)
        .finalize();
    let mut out = [0u8; CHECKSUM_BYTES];
    out.copy_from_slice(digest.get(..CHECKSUM_BYTES).unwrap_or(&[0; CHECKSUM_BYTES]));
    out
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABANDON: &str = "abandon abandon abandon abandon abandon abandon abandon abandon \
                           abandon abandon abandon about";

    #[test]
    fn bip39_seed_matches_the_published_vectors() {
        // BIP-39 test vector 1 (passphrase "TREZOR").
        assert_eq!(
            hex::encode(*bip39_seed(ABANDON, "TREZOR")),
            "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
        );
        // The same phrase with no passphrase, as the ledger uses it.
        assert_eq!(
            hex::encode(*Mnemonic::new(ABANDON).unwrap().seed()),
            "5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc19a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4"
        );
    }

    #[test]
    fn slip10_master_key_matches_the_published_vector() {
        // SLIP-0010 test vector 1 for ed25519, chain m.
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(
            hex::encode(*slip10_master_secret(&seed)),
            "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7"
        );
        assert_eq!(
            hex::encode(OwnerKey::from_seed(&seed).public_key()),
            "a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed"
        );
    }

    #[test]
    fn mnemonic_normalisation() {
        let a = Mnemonic::new(ABANDON).unwrap();
        let b = Mnemonic::new(&format!("  {}\n", ABANDON.replace(' ', " \t "))).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.normalized(), ABANDON);
        // NFKD: a precomposed "é" and "e" + combining accent are the same phrase.
        assert_eq!(
            Mnemonic::new("caf\u{e9} x").unwrap(),
            Mnemonic::new("cafe\u{301} x").unwrap()
        );
        // The ideographic space separates words like any other whitespace.
        assert_eq!(Mnemonic::new("a\u{3000}b").unwrap().normalized(), "a b");
        assert_eq!(Mnemonic::new(" \n\t "), Err(KeyError::EmptyMnemonic));
        assert_eq!(Mnemonic::new(""), Err(KeyError::EmptyMnemonic));
        assert!(matches!(
            Mnemonic::new(&"w ".repeat(600)),
            Err(KeyError::MnemonicTooLong { .. })
        ));
        assert!(matches!(
            Mnemonic::new(&"w".repeat(100_000)),
            Err(KeyError::MnemonicTooLong { .. })
        ));
        assert_eq!(format!("{a:?}"), "Mnemonic(<redacted>)");
    }

    #[test]
    fn different_phrases_give_different_owners() {
        let a = Mnemonic::new("one two three").unwrap().derive();
        let b = Mnemonic::new("one two four").unwrap().derive();
        assert_ne!(a.address(), b.address());
        assert_eq!(
            a.address(),
            Mnemonic::new("one  two three").unwrap().derive().address()
        );
        assert!(!format!("{a:?}").contains(&hex::encode(a.signing_key().to_bytes())));
    }

    #[test]
    fn address_round_trip_and_errors() {
        let key = Mnemonic::new(ABANDON).unwrap().derive();
        let addr = key.address().clone();
        assert_eq!(addr.as_str().len(), ADDRESS_LEN);
        assert!(addr.as_str().starts_with("ps"));
        assert_eq!(addr.public_key(), key.public_key());
        assert_eq!(Address::parse(addr.as_str()), Ok(addr.clone()));
        assert_eq!(
            Address::parse(&addr.as_str().to_uppercase()),
            Ok(addr.clone())
        );
        assert_eq!(Address::parse(&format!(" {addr}\n")), Ok(addr.clone()));

        assert_eq!(Address::parse("xx"), Err(AddressError::WrongPrefix));
        assert_eq!(Address::parse(""), Err(AddressError::WrongPrefix));
        assert_eq!(
            Address::parse("ps1234"),
            Err(AddressError::WrongLength { got: 6 })
        );
        let mut bad = addr.as_str().to_owned();
        bad.replace_range(10..11, "g");
        assert_eq!(Address::parse(&bad), Err(AddressError::NotHex));
        // Multi-byte characters with the right byte length are not hex.
        let mb = format!("ps{}", "é".repeat(36));
        assert!(Address::parse(&mb).is_err());
        // Every single-digit typo is caught by the checksum.
        let s = addr.as_str();
        for i in 2..s.len() {
            let mut t = s.to_owned();
            let c = if &s[i..=i] == "0" { "1" } else { "0" };
            t.replace_range(i..=i, c);
            assert_eq!(Address::parse(&t), Err(AddressError::BadChecksum), "{t}");
        }
    }
}
