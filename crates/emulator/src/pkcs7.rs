//! A certs-only PKCS#7 bundle (`p7b`): a degenerate SignedData holding the chain, no signers.

fn length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    length(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

const OID_SIGNED_DATA: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];
const OID_DATA: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
];

/// DER of a certs-only SignedData ContentInfo.
pub fn certs_only_der(certificates: &[Vec<u8>]) -> Vec<u8> {
    let mut signed_data = Vec::new();
    signed_data.extend(tlv(0x02, &[0x01])); // version 1
    signed_data.extend(tlv(0x31, &[])); // digestAlgorithms
    signed_data.extend(tlv(0x30, &OID_DATA)); // encapContentInfo
    signed_data.extend(tlv(0xa0, &certificates.concat())); // [0] IMPLICIT certificates
    signed_data.extend(tlv(0x31, &[])); // signerInfos
    let mut content_info = OID_SIGNED_DATA.to_vec();
    content_info.extend(tlv(0xa0, &tlv(0x30, &signed_data)));
    tlv(0x30, &content_info)
}

/// PEM (`PKCS7`) of a certs-only SignedData.
pub fn certs_only_pem(certificates: &[Vec<u8>]) -> String {
    pem::encode_config(
        &pem::Pem::new("PKCS7", certs_only_der(certificates)),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
