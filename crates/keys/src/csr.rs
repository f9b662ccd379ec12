//! PKCS#10 certificate signing requests: building them with any [`KeySigner`], and inspecting them.
//!
//! ```
//! use codesign_keys::{csr, KeyAlgorithm, SoftwareKey, SubjectDn};
//!
//! let key = SoftwareKey::generate(KeyAlgorithm::P256)?;
//! let subject: SubjectDn = "CN=Example Corp,O=Example Corp,C=US".parse()?;
//! let request = csr::build(&key, &subject)?;
//! let report = csr::inspect(request.der())?;
//! assert!(report.is_acceptable());
//! assert_eq!(report.subject, "CN=Example Corp,O=Example Corp,C=US");
//! # Ok::<(), codesign_keys::KeysError>(())
//! ```

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::policy::{self, KeyDescription};
use crate::signer::RcgenSigner;
use crate::spki::{self, SignatureCheck};
use crate::{KeySigner, KeysError, SubjectDn};

/// A DER-encoded PKCS#10 CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    der: Vec<u8>,
}

impl Csr {
    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM encoding (`CERTIFICATE REQUEST`, LF line ends).
    pub fn pem(&self) -> String {
        pem_lf("CERTIFICATE REQUEST", &self.der)
    }
}

/// `der` as a PEM block of `tag` (`PUBLIC KEY`, `CERTIFICATE`), with LF line ends.
pub fn pem_lf(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Builds a CSR for `subject`, signed by `signer`, and checks it before returning it: the signature
/// must verify in software and the CSR's public key must be the signer's.
///
/// # Errors
/// [`KeysError::Signing`] with the signer's own reason, [`KeysError::CsrBuild`], or
/// [`KeysError::CsrSelfCheck`].
pub fn build(signer: &dyn KeySigner, subject: &SubjectDn) -> Result<Csr, KeysError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = subject.to_rcgen().map_err(KeysError::CsrBuild)?;
    let adapter = RcgenSigner::new(signer);
    let request = params.serialize_request(&adapter).map_err(|e| {
        adapter
            .take_error()
            .unwrap_or_else(|| KeysError::CsrBuild(e.to_string()))
    })?;
    let csr = Csr {
        der: request.der().to_vec(),
    };
    let report = inspect(csr.der()).map_err(|e| KeysError::CsrSelfCheck(e.to_string()))?;
    if report.signature != SignatureCheck::Valid {
        return Err(KeysError::CsrSelfCheck(
            "its signature does not verify with its public key".to_string(),
        ));
    }
    if report.subject_public_key_info != signer.subject_public_key_info() {
        return Err(KeysError::CsrSelfCheck(
            "its public key is not the signing key's".to_string(),
        ));
    }
    Ok(csr)
}

/// How a CSR was encoded in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CsrEncoding {
    /// PEM text.
    Pem,
    /// Binary DER.
    Der,
}

/// An extension requested in the CSR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestedExtension {
    /// Dotted OID.
    pub oid: String,
    /// Common name of the extension, when known.
    pub name: Option<String>,
    /// The critical flag.
    pub critical: bool,
    /// A readable rendering of the value, when known.
    pub value: Option<String>,
}

/// What [`inspect`] found in a CSR.
#[derive(Debug, Clone)]
pub struct CsrReport {
    /// PEM or DER.
    pub encoding: CsrEncoding,
    /// The subject, attributes in encoding order, RFC 4514 escaping.
    pub subject: String,
    /// The public key, as the policy sees it.
    pub key: KeyDescription,
    /// The signature algorithm's name.
    pub signature_algorithm: String,
    /// Whether the self-signature verifies.
    pub signature: SignatureCheck,
    /// Extensions requested (extensionRequest attribute).
    pub requested_extensions: Vec<RequestedExtension>,
    /// Every code signing key rule the key breaks; empty when it complies.
    pub policy_reasons: Vec<String>,
    /// The DER `SubjectPublicKeyInfo`, to compare with a key.
    pub subject_public_key_info: Vec<u8>,
}

impl CsrReport {
    /// True when the signature verifies and the key complies with the policy.
    pub fn is_acceptable(&self) -> bool {
        self.refusal_reasons().is_empty()
    }

    /// Every reason to refuse the CSR: policy first, then the signature.
    pub fn refusal_reasons(&self) -> Vec<String> {
        let mut reasons = self.policy_reasons.clone();
        match &self.signature {
            SignatureCheck::Valid => {}
            SignatureCheck::Invalid => reasons
                .push("the CSR's self-signature does not verify with its public key".to_string()),
            SignatureCheck::NotVerifiable { reason } => reasons.push(format!(
                "the CSR's self-signature could not be checked: {reason}"
            )),
        }
        reasons
    }

    /// `Ok(self)` when acceptable, else [`KeysError::CsrRefused`] with every reason.
    ///
    /// # Errors
    /// [`KeysError::CsrRefused`].
    pub fn ensure_acceptable(self) -> Result<CsrReport, KeysError> {
        let reasons = self.refusal_reasons();
        if reasons.is_empty() {
            Ok(self)
        } else {
            Err(KeysError::CsrRefused { reasons })
        }
    }

    /// The machine-readable form printed by `inspect --json`.
    pub fn to_json_view(&self) -> CsrReportJson<'_> {
        let (algorithm, key_bits, exponent, curve) = match &self.key {
            KeyDescription::Rsa { bits, exponent } => (
                "RSA".to_string(),
                Some(*bits),
                Some(exponent.to_string()),
                None,
            ),
            KeyDescription::Ec { curve } => ("EC".to_string(), None, None, Some(curve.name())),
            KeyDescription::Other { algorithm } => (algorithm.clone(), None, None, None),
        };
        let (signature_valid, signature_note) = match &self.signature {
            SignatureCheck::Valid => (Some(true), None),
            SignatureCheck::Invalid => (Some(false), None),
            SignatureCheck::NotVerifiable { reason } => (None, Some(reason.as_str())),
        };
        CsrReportJson {
            encoding: self.encoding,
            subject: &self.subject,
            algorithm,
            key_bits,
            exponent,
            curve,
            key: self.key.to_string(),
            signature_algorithm: &self.signature_algorithm,
            signature_valid,
            signature_note,
            requested_extensions: &self.requested_extensions,
            policy: PolicyJson {
                ok: self.policy_reasons.is_empty(),
                reasons: &self.policy_reasons,
            },
            acceptable: self.is_acceptable(),
        }
    }
}

/// The JSON document of `inspect --json`.
#[derive(Debug, serde::Serialize)]
pub struct CsrReportJson<'a> {
    encoding: CsrEncoding,
    subject: &'a str,
    algorithm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_bits: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exponent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    curve: Option<&'a str>,
    key: String,
    signature_algorithm: &'a str,
    signature_valid: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature_note: Option<&'a str>,
    requested_extensions: &'a [RequestedExtension],
    policy: PolicyJson<'a>,
    acceptable: bool,
}

#[derive(Debug, serde::Serialize)]
struct PolicyJson<'a> {
    ok: bool,
    reasons: &'a [String],
}

/// Reads a CSR from PEM or DER bytes, verifies its self-signature and judges its key.
///
/// A CSR that parses always gives a report, even when its signature is broken or its key is
/// refused: see [`CsrReport::is_acceptable`].
///
/// # Errors
/// [`KeysError::CsrParse`] when the input is not a readable CSR (never a panic).
pub fn inspect(input: &[u8]) -> Result<CsrReport, KeysError> {
    let (der, encoding) = decode(input)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| KeysError::CsrParse(format!("malformed DER: {e}")))?;
    if !rest.is_empty() {
        return Err(KeysError::CsrParse(format!(
            "{} bytes of trailing data after the CSR",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    let key = spki::describe(&info.subject_pki).map_err(KeysError::CsrParse)?;
    let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
    let signature = spki::verify(
        &info.subject_pki,
        &sig_oid,
        info.raw,
        csr.signature_value.data.as_ref(),
    );
    Ok(CsrReport {
        encoding,
        subject: crate::dn::format_x509_name(&info.subject),
        policy_reasons: policy::reasons(&key),
        key,
        signature_algorithm: spki::signature_algorithm_name(&sig_oid),
        signature,
        requested_extensions: requested_extensions(&csr),
        subject_public_key_info: info.subject_pki.raw.to_vec(),
    })
}

/// The DER of a CSR given as PEM or DER (no checks beyond the encoding).
///
/// # Errors
/// [`KeysError::CsrParse`].
pub fn to_der(input: &[u8]) -> Result<Vec<u8>, KeysError> {
    decode(input).map(|(der, _)| der)
}

fn decode(input: &[u8]) -> Result<(Vec<u8>, CsrEncoding), KeysError> {
    if input.is_empty() {
        return Err(KeysError::CsrParse("the input is empty".to_string()));
    }
    let looks_pem = input.windows(11).any(|w| w == b"-----BEGIN ");
    if !looks_pem {
        if input[0] != 0x30 {
            return Err(KeysError::CsrParse(
                "neither PEM ('-----BEGIN CERTIFICATE REQUEST-----') nor DER (a SEQUENCE)"
                    .to_string(),
            ));
        }
        return Ok((input.to_vec(), CsrEncoding::Der));
    }
    let block = pem::parse(input)
        .map_err(|e| KeysError::CsrParse(format!("the PEM is truncated or malformed: {e}")))?;
    match block.tag() {
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
            Ok((block.into_contents(), CsrEncoding::Pem))
        }
        other => Err(KeysError::CsrParse(format!(
            "found a PEM block labelled '{other}', expected 'CERTIFICATE REQUEST'"
        ))),
    }
}

fn requested_extensions(csr: &X509CertificationRequest<'_>) -> Vec<RequestedExtension> {
    let mut found = Vec::new();
    for attr in csr.certification_request_info.iter_attributes() {
        let ParsedCriAttribute::ExtensionRequest(request) = attr.parsed_attribute() else {
            continue;
        };
        for ext in &request.extensions {
            let oid = ext.oid.to_id_string();
            let name = crate::oid::name(&oid);
            let value = match ext.parsed_extension() {
                ParsedExtension::KeyUsage(ku) => Some(ku.to_string()),
                ParsedExtension::BasicConstraints(bc) => Some(format!(
                    "CA:{}{}",
                    if bc.ca { "TRUE" } else { "FALSE" },
                    bc.path_len_constraint
                        .map(|n| format!(", pathlen:{n}"))
                        .unwrap_or_default()
                )),
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let mut uses = Vec::new();
                    if eku.code_signing {
                        uses.push("codeSigning".to_string());
                    }
                    if eku.server_auth {
                        uses.push("serverAuth".to_string());
                    }
                    if eku.client_auth {
                        uses.push("clientAuth".to_string());
                    }
                    if eku.email_protection {
                        uses.push("emailProtection".to_string());
                    }
                    if eku.time_stamping {
                        uses.push("timeStamping".to_string());
                    }
                    uses.extend(eku.other.iter().map(|o| o.to_id_string()));
                    Some(uses.join(", "))
                }
                ParsedExtension::SubjectAlternativeName(san) => Some(
                    san.general_names
                        .iter()
                        .map(|n| match n {
                            GeneralName::DNSName(d) => format!("DNS:{d}"),
                            GeneralName::RFC822Name(e) => format!("email:{e}"),
                            GeneralName::URI(u) => format!("URI:{u}"),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                _ => None,
            };
            found.push(RequestedExtension {
                oid,
                name: name.map(str::to_string),
                critical: ext.critical,
                value,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyAlgorithm, SoftwareKey};

    fn subject() -> SubjectDn {
        "CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US"
            .parse()
            .unwrap()
    }

    #[test]
    fn builds_and_inspects_ec_csrs() {
        for alg in [KeyAlgorithm::P256, KeyAlgorithm::P384] {
            let key = SoftwareKey::generate(alg).unwrap();
            let csr = build(&key, &subject()).unwrap();
            let report = inspect(csr.pem().as_bytes()).unwrap();
            assert_eq!(report.encoding, CsrEncoding::Pem);
            assert_eq!(report.signature, SignatureCheck::Valid);
            assert_eq!(report.signature_algorithm, alg.signature_algorithm_name());
            assert_eq!(report.subject, subject().to_string());
            assert!(report.is_acceptable());
            assert!(report.requested_extensions.is_empty());
            assert!(!csr.pem().contains('\r'));
            let der_report = inspect(csr.der()).unwrap();
            assert_eq!(der_report.encoding, CsrEncoding::Der);
        }
    }

    #[test]
    fn a_flipped_signature_byte_is_reported_invalid() {
        let key = SoftwareKey::generate(KeyAlgorithm::P256).unwrap();
        let mut der = build(&key, &subject()).unwrap().der;
        let last = der.len() - 5;
        der[last] ^= 0x01;
        let report = inspect(&der).unwrap();
        assert_eq!(report.signature, SignatureCheck::Invalid);
        let err = report.ensure_acceptable().unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn the_signers_error_is_kept() {
        struct Broken(SoftwareKey);
        impl KeySigner for Broken {
            fn algorithm(&self) -> KeyAlgorithm {
                self.0.algorithm()
            }
            fn public_key_bits(&self) -> &[u8] {
                self.0.public_key_bits()
            }
            fn sign(&self, _: &[u8]) -> Result<Vec<u8>, KeysError> {
                Err(KeysError::Signing("CKR_PIN_EXPIRED".into()))
            }
        }
        let key = Broken(SoftwareKey::generate(KeyAlgorithm::P256).unwrap());
        let err = build(&key, &subject()).unwrap_err();
        assert_eq!(err.to_string(), "signing failed: CKR_PIN_EXPIRED");
    }

    #[test]
    fn a_signer_whose_signature_does_not_match_fails_the_self_check() {
        struct Liar(SoftwareKey, SoftwareKey);
        impl KeySigner for Liar {
            fn algorithm(&self) -> KeyAlgorithm {
                self.0.algorithm()
            }
            fn public_key_bits(&self) -> &[u8] {
                self.0.public_key_bits()
            }
            fn sign(&self, m: &[u8]) -> Result<Vec<u8>, KeysError> {
                self.1.sign(m)
            }
        }
        let liar = Liar(
            SoftwareKey::generate(KeyAlgorithm::P256).unwrap(),
            SoftwareKey::generate(KeyAlgorithm::P256).unwrap(),
        );
        let err = build(&liar, &subject()).unwrap_err();
        assert!(matches!(err, KeysError::CsrSelfCheck(_)), "{err}");
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let key = SoftwareKey::generate(KeyAlgorithm::P256).unwrap();
        let csr = build(&key, &subject()).unwrap();
        let pem = csr.pem();
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            b"hello world".to_vec(),
            pem.as_bytes()[..pem.len() / 2].to_vec(),
            csr.der()[..csr.der().len() - 10].to_vec(),
            [csr.der(), b"x"].concat(),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            (0..=255u8).cycle().take(4096).collect(),
        ];
        for case in cases {
            let err = inspect(&case).unwrap_err();
            assert!(matches!(err, KeysError::CsrParse(_)), "{err}");
        }
        // Every prefix of a valid DER CSR fails cleanly.
        for len in 0..csr.der().len() {
            assert!(inspect(&csr.der()[..len]).is_err());
        }
    }
}
