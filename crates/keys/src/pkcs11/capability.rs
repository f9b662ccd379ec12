//! What a token can do for one algorithm, from its mechanism list: the one place that knows which
//! PKCS#11 mechanisms make and sign each kind of code signing key. `doctor` reports it; key
//! generation checks it first.

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Slot;

use crate::KeyAlgorithm;

/// Whether the token can make and sign with one algorithm.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlgorithmVerdict {
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// Key-pair generation is offered for this size or curve.
    pub can_generate: bool,
    /// A signing mechanism for it is offered.
    pub can_sign: bool,
    /// Why, in words.
    pub detail: String,
}

pub(crate) const MECHANISMS: [(MechanismType, &str); 8] = [
    (
        MechanismType::RSA_PKCS_KEY_PAIR_GEN,
        "CKM_RSA_PKCS_KEY_PAIR_GEN",
    ),
    (MechanismType::SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS"),
    (MechanismType::RSA_PKCS, "CKM_RSA_PKCS"),
    (MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
    (MechanismType::ECDSA, "CKM_ECDSA"),
    (MechanismType::ECDSA_SHA256, "CKM_ECDSA_SHA256"),
    (MechanismType::ECDSA_SHA384, "CKM_ECDSA_SHA384"),
    (MechanismType::SHA256, "CKM_SHA256"),
];

fn key_size_needed(algorithm: KeyAlgorithm) -> usize {
    algorithm.rsa_bits().unwrap_or(match algorithm {
        KeyAlgorithm::P256 => 256,
        _ => 384,
    })
}

/// The verdict for one algorithm on one slot.
pub(crate) fn verdict(
    context: &Pkcs11,
    slot: Slot,
    algorithm: KeyAlgorithm,
) -> Result<AlgorithmVerdict, cryptoki::error::Error> {
    let offered = context.get_mechanism_list(slot)?;
    let keygen = keygen_mechanism(algorithm);
    let needed = key_size_needed(algorithm);
    let (can_generate, gen_detail) = if offered.contains(&keygen) {
        let info = context.get_mechanism_info(slot, keygen)?;
        let (min, max) = (info.min_key_size(), info.max_key_size());
        if info.generate_key_pair() && min <= needed && needed <= max {
            (true, format!("key-pair generation {min}..{max} bits"))
        } else if !info.generate_key_pair() {
            (
                false,
                "its key-pair mechanism is not flagged for key-pair generation".to_string(),
            )
        } else {
            (
                false,
                format!("key-pair generation for {min}..{max} bits only"),
            )
        }
    } else {
        let name = match algorithm {
            KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => "CKM_RSA_PKCS_KEY_PAIR_GEN",
            _ => "CKM_EC_KEY_PAIR_GEN",
        };
        (false, format!("no {name}"))
    };
    let signers: &[MechanismType] = match algorithm {
        KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            &[MechanismType::SHA256_RSA_PKCS, MechanismType::RSA_PKCS]
        }
        KeyAlgorithm::P256 => &[MechanismType::ECDSA_SHA256, MechanismType::ECDSA],
        KeyAlgorithm::P384 => &[MechanismType::ECDSA_SHA384, MechanismType::ECDSA],
    };
    let signer = signers.iter().find(|m| offered.contains(m));
    let can_sign = signer.is_some();
    let sign_detail = match signer {
        Some(m) => format!("signs with {}", mechanism_name(*m)),
        None => format!(
            "no signing mechanism (needs {})",
            signers
                .iter()
                .map(|m| mechanism_name(*m))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    };
    Ok(AlgorithmVerdict {
        algorithm,
        can_generate,
        can_sign,
        detail: format!("{gen_detail}; {sign_detail}"),
    })
}

fn mechanism_name(m: MechanismType) -> &'static str {
    MECHANISMS
        .iter()
        .find(|(t, _)| *t == m)
        .map_or("an unnamed mechanism", |(_, n)| n)
}

/// The key-pair generation mechanism of an algorithm.
pub(crate) fn keygen_mechanism(algorithm: KeyAlgorithm) -> MechanismType {
    match algorithm {
        KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => MechanismType::RSA_PKCS_KEY_PAIR_GEN,
        KeyAlgorithm::P256 | KeyAlgorithm::P384 => MechanismType::ECC_KEY_PAIR_GEN,
    }
}
