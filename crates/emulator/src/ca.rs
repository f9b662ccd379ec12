//! The emulator's certificate authority: a root and an intermediate (ECDSA P-384) that issue real
//! X.509 code signing certificates for the public key of an order's CSR.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

use crate::EmulatorError;
use crate::state::{CaMaterial, Organization};

fn ca_error(e: rcgen::Error) -> EmulatorError {
    EmulatorError::Ca(e.to_string())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(
        DnType::OrganizationName,
        "CertCentral Emulator (not a real CA)",
    );
    dn.push(DnType::CommonName, cn);
    dn
}

/// Makes a fresh root and intermediate.
pub fn generate() -> Result<CaMaterial, EmulatorError> {
    let now = OffsetDateTime::now_utc();
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(ca_error)?;
    let mut root = CertificateParams::default();
    root.distinguished_name = dn("CertCentral Emulator Root CA");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Valid well before now: the emulator's clock may be set back to issue aged certificates.
    root.not_before = now - time::Duration::days(1000);
    root.not_after = now + time::Duration::days(3650);
    let root_cert = root.self_signed(&root_key).map_err(ca_error)?;

    let intermediate_key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(ca_error)?;
    let mut intermediate = CertificateParams::default();
    intermediate.distinguished_name = dn("CertCentral Emulator Code Signing CA");
    intermediate.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    intermediate.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    intermediate.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    intermediate.not_before = now - time::Duration::days(1000);
    intermediate.not_after = now + time::Duration::days(3000);
    intermediate.use_authority_key_identifier_extension = true;
    let root_issuer = Issuer::new(root, &root_key);
    let intermediate_cert = intermediate
        .signed_by(&intermediate_key, &root_issuer)
        .map_err(ca_error)?;
    Ok(CaMaterial {
        root_cert_pem: root_cert.pem(),
        root_key_pem: root_key.serialize_pem(),
        intermediate_cert_pem: intermediate_cert.pem(),
        intermediate_key_pem: intermediate_key.serialize_pem(),
    })
}

/// The intermediate CA, read once: its key parsed (which for P-384 costs a scalar multiplication,
/// as much as a signature) and its name and key identifier taken from its certificate.
pub struct IntermediateCa {
    issuer: Issuer<'static, P384Key>,
}

/// The intermediate's P-384 key, signing with RustCrypto: on x86-64 it signs in about half the
/// time of ring's P-384 (whose field arithmetic runs generic Montgomery code), and the emulator
/// shares the machine with the tool it serves in tests and benchmarks. (The keys crate has a
/// P-384 signer too, but the emulator does not depend on it: crates are joined only at the root.)
struct P384Key {
    signing: p384::ecdsa::SigningKey,
    /// The uncompressed public point, as it goes in a SubjectPublicKeyInfo.
    public_point: Vec<u8>,
}

impl P384Key {
    fn from_pkcs8_pem(pem: &str) -> Result<P384Key, EmulatorError> {
        use p384::pkcs8::DecodePrivateKey;
        let signing = p384::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| EmulatorError::Ca(format!("the intermediate key: {e}")))?;
        let public_point = signing
            .verifying_key()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec();
        Ok(P384Key {
            signing,
            public_point,
        })
    }
}

impl rcgen::PublicKeyData for P384Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public_point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}

impl rcgen::SigningKey for P384Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        use p384::ecdsa::signature::Signer;
        let signature: p384::ecdsa::Signature = self
            .signing
            .try_sign(message)
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(signature.to_der().as_bytes().to_vec())
    }
}

impl IntermediateCa {
    /// Reads the intermediate's key and certificate from `ca`.
    ///
    /// # Errors
    /// [`EmulatorError::Ca`] when either does not parse.
    pub fn load(ca: &CaMaterial) -> Result<IntermediateCa, EmulatorError> {
        let key = P384Key::from_pkcs8_pem(&ca.intermediate_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca.intermediate_cert_pem, key).map_err(ca_error)?;
        Ok(IntermediateCa { issuer })
    }

    /// Issues a code signing certificate for the public key `spki_der`, for `organization`,
    /// valid until `not_after`, with `serial`.
    ///
    /// # Errors
    /// [`EmulatorError::Ca`] when the public key does not parse or signing fails.
    pub fn issue(
        &self,
        spki_der: &[u8],
        organization: &Organization,
        now: OffsetDateTime,
        not_after: OffsetDateTime,
        serial: Vec<u8>,
    ) -> Result<String, EmulatorError> {
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der).map_err(ca_error)?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CountryName, organization.country.clone());
        subject.push(DnType::StateOrProvinceName, organization.state.clone());
        subject.push(DnType::LocalityName, organization.city.clone());
        subject.push(DnType::OrganizationName, organization.name.clone());
        subject.push(DnType::CommonName, organization.name.clone());
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.not_before = now - time::Duration::minutes(5);
        // Never longer than DigiCert issues, whatever the order asked or when it is issued.
        params.not_after =
            not_after.min(params.not_before + time::Duration::days(crate::validate::MAX_CERT_DAYS));
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(ca_error)?;
        Ok(cert.pem())
    }

    /// The intermediate's CRL (PEM) listing `revoked` (serial in hex, revocation time in Unix
    /// seconds), issued at `now` and valid for 7 days.
    ///
    /// # Errors
    /// [`EmulatorError::Ca`] when a serial is not hex or the CRL cannot be signed.
    pub fn crl(
        &self,
        revoked: &[(String, i64)],
        now: OffsetDateTime,
    ) -> Result<String, EmulatorError> {
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for (serial_hex, at) in revoked {
            let serial = base16ct::mixed::decode_vec(serial_hex)
                .map_err(|e| EmulatorError::Ca(format!("serial {serial_hex}: {e}")))?;
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: OffsetDateTime::from_unix_timestamp(*at)
                    .map_err(|e| EmulatorError::Ca(e.to_string()))?,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(now.unix_timestamp().max(1) as u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(ca_error)?;
        crl.pem().map_err(ca_error)
    }
}
