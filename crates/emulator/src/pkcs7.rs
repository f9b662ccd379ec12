//! A certs-only PKCS#7 bundle (`p7b`): a degenerate SignedData holding the chain, no signers.

use yasna::Tag;
use yasna::models::ObjectIdentifier;

use crate::oid::{DATA, SIGNED_DATA};

/// DER of a certs-only SignedData ContentInfo: version 1, no digest algorithms, empty `id-data`
/// content, the certificates in the order given, no signers.
pub fn certs_only_der(certificates: &[Vec<u8>]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_oid(&ObjectIdentifier::from_slice(&SIGNED_DATA));
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_u8(1);
                    w.next().write_set(|_| {});
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&ObjectIdentifier::from_slice(&DATA));
                    });
                    // [0] IMPLICIT certificates, kept in the chain's order.
                    w.next().write_tagged_implicit(Tag::context(0), |w| {
                        w.write_sequence(|w| {
                            for certificate in certificates {
                                w.next().write_der(certificate);
                            }
                        });
                    });
                    w.next().write_set(|_| {});
                });
            });
        });
    })
}

/// PEM (`PKCS7`) of a certs-only SignedData.
pub fn certs_only_pem(certificates: &[Vec<u8>]) -> String {
    pem::encode_config(
        &pem::Pem::new("PKCS7", certs_only_der(certificates)),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
