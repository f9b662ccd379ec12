//! RFC 7512 PKCS#11 URIs: `pkcs11:token=Code%20Signing;object=cs-001;id=%01%02;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin`.
//!
//! Path attributes (`;`-separated): `token`, `manufacturer`, `serial`, `model`, `object`, `id`,
//! `type`, `library-manufacturer`, `library-description`, `library-version`, `slot-description`,
//! `slot-manufacturer`, `slot-id`; query attributes (`&`-separated): `module-path`, `module-name`,
//! `pin-source`, `pin-value`. Values are percent-decoded; `id` is raw bytes. Vendor attributes
//! (`x-...`) are kept; other unknown attributes are refused, since silently ignoring a selector
//! could pick the wrong token.
//!
//! `Display` and `Debug` never show `pin-value`; [`Pkcs11Uri::to_uri_string`] writes the URI in
//! full (for round trips) with the PIN replaced by nothing unless asked.
//!
//! ```
//! use codesign_keys::pkcs11::Pkcs11Uri;
//!
//! let uri: Pkcs11Uri = "pkcs11:token=Code%20Signing;id=%01%a2?pin-value=1234".parse()?;
//! assert_eq!(uri.token.as_deref(), Some("Code Signing"));
//! assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xa2][..]));
//! assert_eq!(uri.to_string(), "pkcs11:token=Code%20Signing;id=%01%A2?pin-value=<redacted>");
//! # Ok::<(), codesign_keys::KeysError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use crate::KeysError;

/// The `type=` path attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// `private`: a private key.
    Private,
    /// `public`: a public key.
    Public,
    /// `cert`: a certificate.
    Cert,
    /// `secret-key`: a secret key.
    SecretKey,
    /// `data`: a data object.
    Data,
}

impl ObjectType {
    /// Its name in a URI's `type=`: private, public, cert, secret-key, data.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Private => "private",
            ObjectType::Public => "public",
            ObjectType::Cert => "cert",
            ObjectType::SecretKey => "secret-key",
            ObjectType::Data => "data",
        }
    }
}

/// A parsed PKCS#11 URI. Fields are public: build one directly, or parse one.
#[derive(Clone, Default)]
pub struct Pkcs11Uri {
    /// `token`: the token label.
    pub token: Option<String>,
    /// `manufacturer`: the token manufacturer.
    pub manufacturer: Option<String>,
    /// `serial`: the token serial number.
    pub serial: Option<String>,
    /// `model`: the token model.
    pub model: Option<String>,
    /// `object`: the object label (CKA_LABEL).
    pub object: Option<String>,
    /// `id`: the object ID (CKA_ID), raw bytes.
    pub id: Option<Vec<u8>>,
    /// `type`: the object class.
    pub object_type: Option<ObjectType>,
    /// `library-manufacturer`.
    pub library_manufacturer: Option<String>,
    /// `library-description`.
    pub library_description: Option<String>,
    /// `library-version`.
    pub library_version: Option<String>,
    /// `slot-description`.
    pub slot_description: Option<String>,
    /// `slot-manufacturer`.
    pub slot_manufacturer: Option<String>,
    /// `slot-id`: a slot number. Only a hint: tokens are always matched by their attributes too.
    pub slot_id: Option<u64>,
    /// Vendor attributes (`x-...`) of the path, in order.
    pub vendor: Vec<(String, String)>,
    /// `module-path`: the PKCS#11 module's file.
    pub module_path: Option<String>,
    /// `module-name`: the module's name (resolved by the caller).
    pub module_name: Option<String>,
    /// `pin-source`: where to read the PIN (`file:/path` or a plain path).
    pub pin_source: Option<String>,
    /// `pin-value`: the PIN itself (discouraged by RFC 7512; kept secret here).
    pub pin_value: Option<SecretString>,
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({self})")
    }
}

impl PartialEq for Pkcs11Uri {
    fn eq(&self, other: &Self) -> bool {
        self.to_uri_string(true) == other.to_uri_string(true)
    }
}

impl Eq for Pkcs11Uri {}

/// Written as its RFC 7512 text. A URI that holds a `pin-value` is refused: a PIN is never
/// written out (plans refuse one; use `pin-source`).
impl serde::Serialize for Pkcs11Uri {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.pin_value.is_some() {
            return Err(serde::ser::Error::custom(
                "a PKCS#11 URI holding a pin-value is not written out",
            ));
        }
        serializer.serialize_str(&self.to_uri_string(false))
    }
}

/// Read from its RFC 7512 text.
impl<'de> serde::Deserialize<'de> for Pkcs11Uri {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Pkcs11Uri {
    /// Writes the URI in RFC 7512 syntax. With `with_pin` false, a `pin-value` is written as
    /// `<redacted>` (the form used in messages); with true, it is written out (for round trips).
    pub fn to_uri_string(&self, with_pin: bool) -> String {
        let mut path: Vec<String> = Vec::new();
        let mut push = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                path.push(format!("{name}={}", encode(v.as_bytes(), false)));
            }
        };
        push("library-manufacturer", &self.library_manufacturer);
        push("library-description", &self.library_description);
        push("library-version", &self.library_version);
        push("slot-manufacturer", &self.slot_manufacturer);
        push("slot-description", &self.slot_description);
        push("manufacturer", &self.manufacturer);
        push("model", &self.model);
        push("serial", &self.serial);
        push("token", &self.token);
        push("object", &self.object);
        if let Some(slot) = self.slot_id {
            path.push(format!("slot-id={slot}"));
        }
        if let Some(id) = &self.id {
            let hex: String = id.iter().map(|b| format!("%{b:02X}")).collect();
            path.push(format!("id={hex}"));
        }
        if let Some(t) = self.object_type {
            path.push(format!("type={}", t.as_str()));
        }
        for (name, value) in &self.vendor {
            path.push(format!("{name}={}", encode(value.as_bytes(), false)));
        }
        let mut query: Vec<String> = Vec::new();
        if let Some(v) = &self.module_path {
            query.push(format!("module-path={}", encode(v.as_bytes(), true)));
        }
        if let Some(v) = &self.module_name {
            query.push(format!("module-name={}", encode(v.as_bytes(), true)));
        }
        if let Some(v) = &self.pin_source {
            query.push(format!("pin-source={}", encode(v.as_bytes(), true)));
        }
        if let Some(v) = &self.pin_value {
            if with_pin {
                query.push(format!(
                    "pin-value={}",
                    encode(v.expose_secret().as_bytes(), true)
                ));
            } else {
                query.push("pin-value=<redacted>".to_string());
            }
        }
        let mut out = format!("pkcs11:{}", path.join(";"));
        if !query.is_empty() {
            out.push('?');
            out.push_str(&query.join("&"));
        }
        out
    }

    /// What this URI asks of a token, for messages: `label "x", serial "y"` (`any token` when it
    /// asks nothing).
    pub fn token_description(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.token {
            parts.push(format!("label \"{t}\""));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial \"{s}\""));
        }
        if let Some(m) = &self.model {
            parts.push(format!("model \"{m}\""));
        }
        if let Some(m) = &self.manufacturer {
            parts.push(format!("manufacturer \"{m}\""));
        }
        if parts.is_empty() {
            "any token".to_string()
        } else {
            parts.join(", ")
        }
    }
}

impl fmt::Display for Pkcs11Uri {
    /// The URI with any `pin-value` redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri_string(false))
    }
}

/// Unreserved characters and those RFC 7512 lets stand unescaped in path (`pk11-pchar`) or query
/// (`pk11-qchar`) values.
fn is_plain(b: u8, query: bool) -> bool {
    b.is_ascii_alphanumeric()
        || b"-._~:[]@!$'()*+,=".contains(&b)
        || (!query && b == b'&')
        || (query && (b == b'/' || b == b'?' || b == b'|'))
}

fn encode(bytes: &[u8], query: bool) -> String {
    let mut out = String::new();
    for &b in bytes {
        if is_plain(b, query) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(value: &str, attr: &str) -> Result<Vec<u8>, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes
                .get(i + 1..i + 3)
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("{attr}: '%' must be followed by two hex digits"))?;
            out.push(pair);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn decode_text(value: &str, attr: &str) -> Result<String, String> {
    String::from_utf8(decode(value, attr)?)
        .map_err(|_| format!("{attr}: the decoded value is not valid UTF-8"))
}

fn set<T>(slot: &mut Option<T>, value: T, attr: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{attr} is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

impl FromStr for Pkcs11Uri {
    type Err = KeysError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse(input).map_err(|reason| KeysError::Pkcs11Uri { reason })
    }
}

fn parse(input: &str) -> Result<Pkcs11Uri, String> {
    let rest = input
        .strip_prefix("pkcs11:")
        .ok_or_else(|| "a PKCS#11 URI starts with 'pkcs11:'".to_string())?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let mut uri = Pkcs11Uri::default();
    for part in path.split(';').filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("path attribute \"{part}\" has no '='"))?;
        match name {
            "token" => set(&mut uri.token, decode_text(value, name)?, name)?,
            "manufacturer" => set(&mut uri.manufacturer, decode_text(value, name)?, name)?,
            "serial" => set(&mut uri.serial, decode_text(value, name)?, name)?,
            "model" => set(&mut uri.model, decode_text(value, name)?, name)?,
            "object" => set(&mut uri.object, decode_text(value, name)?, name)?,
            "id" => set(&mut uri.id, decode(value, name)?, name)?,
            "type" => {
                let t = match decode_text(value, name)?.as_str() {
                    "private" => ObjectType::Private,
                    "public" => ObjectType::Public,
                    "cert" => ObjectType::Cert,
                    "secret-key" => ObjectType::SecretKey,
                    "data" => ObjectType::Data,
                    other => {
                        return Err(format!(
                            "type=\"{other}\" is not one of private, public, cert, secret-key, data"
                        ));
                    }
                };
                set(&mut uri.object_type, t, name)?
            }
            "library-manufacturer" => set(
                &mut uri.library_manufacturer,
                decode_text(value, name)?,
                name,
            )?,
            "library-description" => set(
                &mut uri.library_description,
                decode_text(value, name)?,
                name,
            )?,
            "library-version" => set(&mut uri.library_version, decode_text(value, name)?, name)?,
            "slot-manufacturer" => {
                set(&mut uri.slot_manufacturer, decode_text(value, name)?, name)?
            }
            "slot-description" => set(&mut uri.slot_description, decode_text(value, name)?, name)?,
            "slot-id" => {
                let n = decode_text(value, name)?
                    .parse::<u64>()
                    .map_err(|_| format!("slot-id=\"{value}\" is not a number"))?;
                set(&mut uri.slot_id, n, name)?
            }
            vendor if vendor.starts_with("x-") => uri
                .vendor
                .push((vendor.to_string(), decode_text(value, name)?)),
            other => return Err(format!("unknown path attribute \"{other}\"")),
        }
    }
    for part in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| "a query attribute has no '='".to_string())?;
        match name {
            "module-path" => set(&mut uri.module_path, decode_text(value, name)?, name)?,
            "module-name" => set(&mut uri.module_name, decode_text(value, name)?, name)?,
            "pin-source" => set(&mut uri.pin_source, decode_text(value, name)?, name)?,
            "pin-value" => {
                // Never echo the value in an error.
                let pin = decode_text(value, name).map_err(|_| {
                    "pin-value: the value is not validly percent-encoded UTF-8".to_string()
                })?;
                set(&mut uri.pin_value, SecretString::from(pin), name)?
            }
            vendor if vendor.starts_with("x-") => {}
            other => return Err(format!("unknown query attribute \"{other}\"")),
        }
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(s: &str) -> Pkcs11Uri {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_rfc_examples() {
        let uri = parse_ok(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BE%2D%FF%0A%77%5A%BA%7A%C2%36%25%DE%6F%0A%E7",
        );
        assert_eq!(uri.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(uri.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(uri.object_type, Some(ObjectType::Cert));
        assert_eq!(uri.id.as_ref().unwrap().len(), 20);
        let uri = parse_ok("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
        assert_eq!(uri.module_name.as_deref(), Some("mypkcs11"));
        let uri = parse_ok(
            "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin",
        );
        assert_eq!(uri.pin_value.as_ref().unwrap().expose_secret(), "the-pin");
        let uri = parse_ok("pkcs11:slot-description=Sun%20Metaslot");
        assert_eq!(uri.slot_description.as_deref(), Some("Sun Metaslot"));
        let uri = parse_ok(
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
        );
        assert_eq!(uri.token.as_deref(), Some("A name with a substring %;"));
        let uri = parse_ok(
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert",
        );
        assert!(uri.token.unwrap().ends_with('á'));
        let uri = parse_ok(
            "pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1&pin-source=file:/etc/token_pin",
        );
        assert_eq!(uri.module_path.as_deref(), Some("/mnt/libmypkcs11.so.1"));
        assert_eq!(uri.pin_source.as_deref(), Some("file:/etc/token_pin"));
        assert_eq!(parse_ok("pkcs11:").token, None);
    }

    #[test]
    fn round_trips_through_its_own_format() {
        for s in [
            "pkcs11:token=Code%20Signing;object=cs-001;id=%01%02;type=private",
            "pkcs11:serial=ab12;token=x%3By%25z;x-vendor=v?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
            "pkcs11:token=t?pin-value=12%2634",
            "pkcs11:slot-id=3;type=cert",
        ] {
            let uri = parse_ok(s);
            let again = parse_ok(&uri.to_uri_string(true));
            assert_eq!(uri, again, "{s}");
        }
        let uri = parse_ok("pkcs11:token=t?pin-value=12%2634");
        assert_eq!(uri.pin_value.unwrap().expose_secret(), "12&34");
    }

    #[test]
    fn never_shows_the_pin() {
        let uri = parse_ok("pkcs11:token=t?pin-value=s3cr3t-pin");
        assert!(!uri.to_string().contains("s3cr3t"));
        assert!(!format!("{uri:?}").contains("s3cr3t"));
        let err = "pkcs11:token=t?pin-value=%zz-s3cr3t"
            .parse::<Pkcs11Uri>()
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn refuses_malformed_uris() {
        for (s, says) in [
            ("token=x", "starts with 'pkcs11:'"),
            ("pkcs11:token", "has no '='"),
            ("pkcs11:token=%4", "two hex digits"),
            ("pkcs11:token=%G1", "two hex digits"),
            ("pkcs11:token=%C3", "not valid UTF-8"),
            ("pkcs11:label=x", "unknown path attribute \"label\""),
            ("pkcs11:type=key", "type=\"key\""),
            ("pkcs11:token=a;token=b", "token is given twice"),
            ("pkcs11:slot-id=x", "not a number"),
            ("pkcs11:?module=x", "unknown query attribute"),
        ] {
            let err = s.parse::<Pkcs11Uri>().unwrap_err().to_string();
            assert!(err.contains(says), "{s}: {err}");
        }
    }
}
