//! The byte formats between a token and X.509: RSA public keys, EC points, ECDSA signatures.

use crate::KeysError;
use crate::policy::NamedCurve;

/// DER INTEGER of an unsigned big-endian value (minimal, with a leading zero when the high bit
/// is set).
pub(crate) fn der_unsigned_integer(value: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| w.write_bigint_bytes(value, true))
}

/// PKCS#1 `RSAPublicKey` DER from a token's `CKA_MODULUS` and `CKA_PUBLIC_EXPONENT`.
pub(crate) fn rsa_public_key_der(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(modulus, true);
            w.next().write_bigint_bytes(exponent, true);
        })
    })
}

fn field_bytes(curve: &NamedCurve) -> Option<usize> {
    match curve {
        NamedCurve::P256 => Some(32),
        NamedCurve::P384 => Some(48),
        NamedCurve::P521 => Some(66),
        NamedCurve::Other(_) => None,
    }
}

/// The uncompressed point `04 || X || Y` from a token's `CKA_EC_POINT`, which PKCS#11 says is a DER
/// OCTET STRING but some tokens return bare. Which one is decided by the length expected for the
/// curve, not by trying DER first (a bare point can look like DER).
///
/// # Errors
/// [`KeysError::TokenData`] when the value has neither length or is not an uncompressed point.
pub fn decode_ec_point(value: &[u8], curve: &NamedCurve) -> Result<Vec<u8>, KeysError> {
    let bad = KeysError::TokenData;
    let field = field_bytes(curve)
        .ok_or_else(|| bad(format!("CKA_EC_POINT on an unknown curve {}", curve.name())))?;
    let point_len = 2 * field + 1;
    let wrapped;
    let point = if value.len() == point_len {
        value
    } else {
        wrapped = yasna::parse_der(value, |r| r.read_bytes())
            .ok()
            .filter(|inner| inner.len() == point_len)
            .ok_or_else(|| {
                bad(format!(
                    "CKA_EC_POINT is {} bytes; a {} point is {point_len} bytes bare, or a DER OCTET STRING of that many",
                    value.len(),
                    curve.name(),
                ))
            })?;
        &wrapped
    };
    if point[0] != 0x04 {
        return Err(bad(
            "CKA_EC_POINT is not an uncompressed point (04 || X || Y)".to_string(),
        ));
    }
    Ok(point.to_vec())
}

/// DER `Ecdsa-Sig-Value` from a token's fixed-width `r || s`.
///
/// # Errors
/// [`KeysError::TokenData`] when the length is not twice the curve's field size or r/s are out
/// of range.
pub fn ecdsa_raw_to_der(raw: &[u8], curve: &NamedCurve) -> Result<Vec<u8>, KeysError> {
    let bad = |e: p256::ecdsa::Error| {
        KeysError::TokenData(format!("the token's ECDSA signature is malformed: {e}"))
    };
    match curve {
        NamedCurve::P256 => Ok(p256::ecdsa::Signature::from_slice(raw)
            .map_err(bad)?
            .to_der()
            .as_bytes()
            .to_vec()),
        NamedCurve::P384 => Ok(p384::ecdsa::Signature::from_slice(raw)
            .map_err(bad)?
            .to_der()
            .as_bytes()
            .to_vec()),
        other => Err(KeysError::TokenData(format!(
            "ECDSA on {} is not supported",
            other.name()
        ))),
    }
}

/// The DER `DigestInfo` prefix for SHA-256 (RFC 8017 section 9.2), for `CKM_RSA_PKCS` signing
/// with a locally computed hash.
pub(crate) const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(
            der_unsigned_integer(&[0x01, 0x00, 0x01]),
            [0x02, 0x03, 0x01, 0x00, 0x01]
        );
        assert_eq!(
            der_unsigned_integer(&[0x00, 0x00, 0x80]),
            [0x02, 0x02, 0x00, 0x80]
        );
        assert_eq!(der_unsigned_integer(&[]), [0x02, 0x01, 0x00]);
        let long = der_unsigned_integer(&[0xff; 384]);
        assert_eq!(&long[..4], &[0x02, 0x82, 0x01, 0x81]);
    }

    #[test]
    fn rsa_public_keys_match_the_rsa_crate() {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
        let public = key.to_public_key();
        let ours = rsa_public_key_der(&public.n_bytes(), &public.e_bytes());
        assert_eq!(ours, public.to_pkcs1_der().unwrap().as_bytes());
    }

    #[test]
    fn ec_points_are_accepted_bare_or_wrapped_by_length() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let point = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        assert_eq!(point.len(), 65);
        assert_eq!(decode_ec_point(&point, &NamedCurve::P256).unwrap(), point);
        let wrapped = [&[0x04, 0x41][..], &point].concat();
        assert_eq!(decode_ec_point(&wrapped, &NamedCurve::P256).unwrap(), point);
        // P-384 wrapping uses a one-byte length too (97 < 128).
        let key = p384::ecdsa::SigningKey::from_slice(&[9u8; 48]).unwrap();
        let point = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let wrapped = [&[0x04, 0x61][..], &point].concat();
        assert_eq!(decode_ec_point(&wrapped, &NamedCurve::P384).unwrap(), point);
        // Wrong lengths and compressed points are refused.
        assert!(decode_ec_point(&point[..60], &NamedCurve::P384).is_err());
        let mut compressed = vec![0x02];
        compressed.extend_from_slice(&[0u8; 64]);
        assert!(decode_ec_point(&compressed, &NamedCurve::P256).is_err());
        assert!(decode_ec_point(&[], &NamedCurve::P256).is_err());
    }

    #[test]
    fn raw_signatures_convert_to_der_and_back() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let sig: p256::ecdsa::Signature = key.sign(b"message");
        let raw = sig.to_bytes();
        let der = ecdsa_raw_to_der(&raw, &NamedCurve::P256).unwrap();
        assert_eq!(der, sig.to_der().as_bytes());
        assert!(ecdsa_raw_to_der(&raw[..63], &NamedCurve::P256).is_err());
        assert!(ecdsa_raw_to_der(&[0u8; 64], &NamedCurve::P256).is_err());
    }

    #[test]
    fn the_digest_info_prefix_is_sha256s() {
        // The prefix the rsa crate builds for SHA-256 PKCS#1 v1.5.
        let scheme = rsa::Pkcs1v15Sign::new::<sha2::Sha256>();
        assert_eq!(&*scheme.prefix, &SHA256_DIGEST_INFO_PREFIX[..]);
    }
}
