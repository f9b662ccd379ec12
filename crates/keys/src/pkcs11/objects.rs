//! The objects on a token as a user names them: by `CKA_ID`, label and type, for listing and
//! deleting; and a key found by the public key a certificate carries.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};

use super::key::TokenKey;
use super::session::TokenSession;
use super::session::hex;
use super::uri::ObjectType;
use crate::{KeySigner, KeysError};

/// One object on a token, as [`TokenSession::objects_matching`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenObject {
    handle: ObjectHandle,
    /// Its type; `None` for a class a PKCS#11 URI has no name for.
    pub kind: Option<ObjectType>,
    /// `CKA_LABEL` (lossy UTF-8).
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
}

impl TokenObject {
    /// "private key \"cs-001\" (CKA_ID 01a2)".
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            Some(ObjectType::Private) => "private key",
            Some(ObjectType::Public) => "public key",
            Some(ObjectType::Cert) => "certificate",
            Some(ObjectType::SecretKey) => "secret key",
            Some(ObjectType::Data) => "data object",
            None => "object",
        };
        let label = crate::text::escape_unsafe(&self.label, false);
        if self.id.is_empty() {
            format!("{kind} \"{label}\" (no CKA_ID)")
        } else {
            format!("{kind} \"{label}\" (CKA_ID {})", hex(&self.id))
        }
    }
}

fn class_of(kind: ObjectType) -> ObjectClass {
    match kind {
        ObjectType::Private => ObjectClass::PRIVATE_KEY,
        ObjectType::Public => ObjectClass::PUBLIC_KEY,
        ObjectType::Cert => ObjectClass::CERTIFICATE,
        ObjectType::SecretKey => ObjectClass::SECRET_KEY,
        ObjectType::Data => ObjectClass::DATA,
    }
}

fn kind_of(class: ObjectClass) -> Option<ObjectType> {
    [
        ObjectType::Private,
        ObjectType::Public,
        ObjectType::Cert,
        ObjectType::SecretKey,
        ObjectType::Data,
    ]
    .into_iter()
    .find(|kind| class_of(*kind) == class)
}

impl TokenSession {
    /// The objects whose `CKA_ID` is `id`, whose label is `label` and whose type is `kind`, each
    /// when given. At least `id` or `label` must be: a URI naming neither would match every
    /// object of the token.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11Uri`] when neither is given, [`KeysError::Pkcs11`].
    pub fn objects_matching(
        &self,
        id: Option<&[u8]>,
        label: Option<&str>,
        kind: Option<ObjectType>,
    ) -> Result<Vec<TokenObject>, KeysError> {
        if id.is_none() && label.is_none() {
            return Err(KeysError::Pkcs11Uri {
                reason: "name the objects with id=... or object=...".to_string(),
            });
        }
        let mut template = Vec::new();
        if let Some(id) = id {
            template.push(Attribute::Id(id.to_vec()));
        }
        if let Some(label) = label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(kind) = kind {
            template.push(Attribute::Class(class_of(kind)));
        }
        let mut found = Vec::new();
        for handle in self.find(&template)? {
            let mut object = TokenObject {
                handle,
                kind: None,
                label: String::new(),
                id: Vec::new(),
            };
            let wanted = [
                AttributeType::Class,
                AttributeType::Label,
                AttributeType::Id,
            ];
            for attr in self.attributes(handle, &wanted)? {
                match attr {
                    Attribute::Class(class) => object.kind = kind_of(class),
                    Attribute::Label(v) => object.label = String::from_utf8_lossy(&v).into_owned(),
                    Attribute::Id(v) => object.id = v,
                    _ => {}
                }
            }
            found.push(object);
        }
        Ok(found)
    }

    /// Destroys `objects`, all of them or, when one cannot be destroyed, as many as can be
    /// (the error names the first that could not).
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] from `C_DestroyObject`.
    pub fn destroy_objects(&self, objects: &[TokenObject]) -> Result<(), KeysError> {
        let handles: Vec<ObjectHandle> = objects.iter().map(|o| o.handle).collect();
        self.destroy(&handles)
    }

    /// The private key whose public key is `spki` (a DER SubjectPublicKeyInfo, e.g. a
    /// certificate's), if the token holds one. Keys the code signing rules do not allow, or that
    /// cannot be read, are passed over.
    ///
    /// # Errors
    /// [`KeysError::KeyAmbiguous`] when two keys carry that public key, [`KeysError::Pkcs11`].
    pub fn find_key_by_public_key(&self, spki: &[u8]) -> Result<Option<TokenKey<'_>>, KeysError> {
        let mut matching = Vec::new();
        for private in self.find_private_keys(None, None)? {
            match self.key_from_private(private) {
                Ok(key) if key.subject_public_key_info() == spki => matching.push(key),
                Ok(_) => {}
                Err(e) => tracing::debug!("a key passed over in the public key search: {e}"),
            }
        }
        match matching.len() {
            0 | 1 => Ok(matching.pop()),
            count => Err(KeysError::KeyAmbiguous {
                token: self.token().description(),
                what: format!(
                    "the public key of SHA-256 {}",
                    crate::spki::sha256_hex(spki)
                ),
                count,
            }),
        }
    }
}
