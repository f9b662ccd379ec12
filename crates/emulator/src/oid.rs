//! The object identifiers the emulator knows, in one table (it shares none with the client's
//! crates, by design). Dotted form for x509-parser's, arcs for yasna's.

/// `rsaEncryption` (RFC 8017).
pub(crate) const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// `id-ecPublicKey` (RFC 5480).
pub(crate) const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// `secp256r1` / P-256 (RFC 5480).
pub(crate) const P256: &str = "1.2.840.10045.3.1.7";
/// `secp384r1` / P-384 (RFC 5480).
pub(crate) const P384: &str = "1.3.132.0.34";
/// `secp521r1` / P-521 (RFC 5480).
pub(crate) const P521: &str = "1.3.132.0.35";
/// `id-signedData` (RFC 5652 section 5.1).
pub(crate) const SIGNED_DATA: [u64; 7] = [1, 2, 840, 113549, 1, 7, 2];
/// `id-data` (RFC 5652 section 4).
pub(crate) const DATA: [u64; 7] = [1, 2, 840, 113549, 1, 7, 1];
