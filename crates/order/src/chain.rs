//! Downloaded certificates: the formats, and splitting a PEM bundle into leaf and CA certificates.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::CertCentralError;

/// A download format (`{format}` of the download endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFormat {
    /// Leaf, intermediate and root, PEM.
    PemAll,
    /// Leaf and intermediate, PEM.
    PemNoRoot,
    /// The leaf alone, PEM.
    PemNoIntermediate,
    /// A PKCS#7 bundle.
    P7b,
}

impl DownloadFormat {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            DownloadFormat::PemAll => "pem_all",
            DownloadFormat::PemNoRoot => "pem_noroot",
            DownloadFormat::PemNoIntermediate => "pem_nointermediate",
            DownloadFormat::P7b => "p7b",
        }
    }

    /// The format named `name`.
    pub fn from_name(name: &str) -> Option<DownloadFormat> {
        [
            DownloadFormat::PemAll,
            DownloadFormat::PemNoRoot,
            DownloadFormat::PemNoIntermediate,
            DownloadFormat::P7b,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }
}

/// A certificate chain: the leaf (found by basicConstraints, not by position) and the CA
/// certificates, in the order received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The end-entity certificate, DER.
    pub leaf: Vec<u8>,
    /// The CA certificates, DER.
    pub cas: Vec<Vec<u8>>,
    /// The bundle as received.
    pub pem: String,
}

impl Chain {
    /// Splits a PEM bundle.
    ///
    /// # Errors
    /// [`CertCentralError::Chain`] when it holds no certificate, an unreadable one, or not exactly
    /// one leaf.
    pub fn from_pem(bundle: &[u8]) -> Result<Chain, CertCentralError> {
        let blocks = pem::parse_many(bundle)
            .map_err(|e| CertCentralError::Chain(format!("not PEM: {e}")))?;
        let mut leaves = Vec::new();
        let mut cas = Vec::new();
        for (i, block) in blocks.into_iter().enumerate() {
            if block.tag() != "CERTIFICATE" {
                return Err(CertCentralError::Chain(format!(
                    "block {} is a {}, not a CERTIFICATE",
                    i + 1,
                    block.tag()
                )));
            }
            let der = block.into_contents();
            let (_, cert) = X509Certificate::from_der(&der).map_err(|e| {
                CertCentralError::Chain(format!("certificate {} cannot be read: {e}", i + 1))
            })?;
            let is_ca = cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca);
            if is_ca {
                cas.push(der)
            } else {
                leaves.push(der)
            }
        }
        match leaves.len() {
            1 => Ok(Chain {
                leaf: leaves.remove(0),
                cas,
                pem: String::from_utf8_lossy(bundle).into_owned(),
            }),
            0 => Err(CertCentralError::Chain(
                "it holds no end-entity certificate".to_string(),
            )),
            n => Err(CertCentralError::Chain(format!(
                "it holds {n} end-entity certificates"
            ))),
        }
    }

    /// Checks that the bundle is a path as CertCentral sends it: the leaf first, then each
    /// certificate's issuer (by name) right after it. A bundle in another order is not what
    /// CertCentral sends, and what installs and signs with it (osslsigncode, Windows) takes the
    /// order as given.
    ///
    /// # Errors
    /// [`CertCentralError::Chain`] naming the first certificate out of place.
    pub fn ensure_path_order(&self) -> Result<(), CertCentralError> {
        let blocks = pem::parse_many(self.pem.as_bytes())
            .map_err(|e| CertCentralError::Chain(format!("not PEM: {e}")))?;
        let ders: Vec<Vec<u8>> = blocks.into_iter().map(pem::Pem::into_contents).collect();
        if ders.first() != Some(&self.leaf) {
            return Err(CertCentralError::Chain(
                "the leaf is not the first certificate of the bundle".to_string(),
            ));
        }
        let parsed = ders
            .iter()
            .enumerate()
            .map(|(i, der)| {
                X509Certificate::from_der(der).map(|(_, c)| c).map_err(|e| {
                    CertCentralError::Chain(format!("certificate {} cannot be read: {e}", i + 1))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, pair) in parsed.windows(2).enumerate() {
            if pair[0].issuer().as_raw() != pair[1].subject().as_raw() {
                return Err(CertCentralError::Chain(format!(
                    "certificate {} is not the issuer of certificate {}: the bundle is out of order",
                    i + 2,
                    i + 1
                )));
            }
        }
        Ok(())
    }
}
