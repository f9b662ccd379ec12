//! CSR subjects: distinguished names written as strings (`CN=..,O=..,C=..`), RFC 4514 style.
//!
//! Attributes are written in the order they are encoded in the CSR (as OpenSSL prints them), each
//! at most once. Values follow RFC 4514 escaping: `\,` `\+` `\"` `\\` `\<` `\>` `\;` `\=` `\#` `\ `
//! and `\XX` hex pairs (UTF-8 bytes). Unescaped spaces around names, `=` and `,` are ignored.
//!
//! ```
//! use codesign_keys::SubjectDn;
//!
//! let dn: SubjectDn = r"CN=Example\, Inc.,O=Example Corp,C=US".parse()?;
//! assert_eq!(dn.get("CN"), Some("Example, Inc."));
//! assert_eq!(dn.to_string(), r"CN=Example\, Inc.,O=Example Corp,C=US");
//! # Ok::<(), codesign_keys::KeysError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::KeysError;

/// An attribute this tool accepts in a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnAttribute {
    /// `CN`, commonName (2.5.4.3).
    CommonName,
    /// `O`, organizationName (2.5.4.10).
    Organization,
    /// `OU`, organizationalUnitName (2.5.4.11).
    OrganizationalUnit,
    /// `L`, localityName (2.5.4.7).
    Locality,
    /// `ST`, stateOrProvinceName (2.5.4.8).
    State,
    /// `C`, countryName (2.5.4.6): two-letter ISO 3166 code.
    Country,
    /// `STREET`, streetAddress (2.5.4.9).
    Street,
    /// `postalCode` (2.5.4.17).
    PostalCode,
    /// `serialNumber` (2.5.4.5).
    SerialNumber,
    /// `emailAddress` (1.2.840.113549.1.9.1), an IA5String.
    EmailAddress,
}

impl DnAttribute {
    /// Every attribute, in the order they are listed to users.
    pub const ALL: [DnAttribute; 10] = [
        DnAttribute::CommonName,
        DnAttribute::Organization,
        DnAttribute::OrganizationalUnit,
        DnAttribute::Locality,
        DnAttribute::State,
        DnAttribute::Country,
        DnAttribute::Street,
        DnAttribute::PostalCode,
        DnAttribute::SerialNumber,
        DnAttribute::EmailAddress,
    ];

    /// The name written in subject strings.
    pub fn short_name(self) -> &'static str {
        match self {
            DnAttribute::CommonName => "CN",
            DnAttribute::Organization => "O",
            DnAttribute::OrganizationalUnit => "OU",
            DnAttribute::Locality => "L",
            DnAttribute::State => "ST",
            DnAttribute::Country => "C",
            DnAttribute::Street => "STREET",
            DnAttribute::PostalCode => "postalCode",
            DnAttribute::SerialNumber => "serialNumber",
            DnAttribute::EmailAddress => "emailAddress",
        }
    }

    /// The attribute type's OID arcs.
    pub fn oid(self) -> &'static [u64] {
        match self {
            DnAttribute::CommonName => &[2, 5, 4, 3],
            DnAttribute::Organization => &[2, 5, 4, 10],
            DnAttribute::OrganizationalUnit => &[2, 5, 4, 11],
            DnAttribute::Locality => &[2, 5, 4, 7],
            DnAttribute::State => &[2, 5, 4, 8],
            DnAttribute::Country => &[2, 5, 4, 6],
            DnAttribute::Street => &[2, 5, 4, 9],
            DnAttribute::PostalCode => &[2, 5, 4, 17],
            DnAttribute::SerialNumber => &[2, 5, 4, 5],
            DnAttribute::EmailAddress => &[1, 2, 840, 113549, 1, 9, 1],
        }
    }

    /// The attribute with this OID (dotted form), if it is one of ours.
    pub fn from_oid(dotted: &str) -> Option<DnAttribute> {
        DnAttribute::ALL.into_iter().find(|a| {
            let arcs: Vec<String> = a.oid().iter().map(u64::to_string).collect();
            arcs.join(".") == dotted
        })
    }

    /// The attribute with this name (case-insensitive; `E` and `S` are accepted as OpenSSL does).
    pub fn from_name(name: &str) -> Option<DnAttribute> {
        let lower = name.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "commonname" => Some(DnAttribute::CommonName),
            "organizationname" => Some(DnAttribute::Organization),
            "organizationalunitname" => Some(DnAttribute::OrganizationalUnit),
            "localityname" => Some(DnAttribute::Locality),
            "stateorprovincename" | "s" => Some(DnAttribute::State),
            "countryname" => Some(DnAttribute::Country),
            "streetaddress" => Some(DnAttribute::Street),
            "e" | "email" => Some(DnAttribute::EmailAddress),
            _ => None,
        };
        alias.or_else(|| {
            DnAttribute::ALL
                .into_iter()
                .find(|a| a.short_name().eq_ignore_ascii_case(name))
        })
    }

    /// Upper bound on the value's length in characters (RFC 5280 appendix A and CA practice).
    pub fn max_len(self) -> usize {
        match self {
            DnAttribute::Country => 2,
            DnAttribute::CommonName
            | DnAttribute::Organization
            | DnAttribute::OrganizationalUnit
            | DnAttribute::SerialNumber => 64,
            DnAttribute::Locality | DnAttribute::State | DnAttribute::Street => 128,
            DnAttribute::PostalCode => 40,
            DnAttribute::EmailAddress => 255,
        }
    }

    fn check_value(self, value: &str) -> Result<(), String> {
        let name = self.short_name();
        if value.is_empty() {
            return Err(format!("{name} has an empty value"));
        }
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(format!(
                "{name} contains the control character U+{:04X}",
                c as u32
            ));
        }
        let len = value.chars().count();
        let kind = match self {
            DnAttribute::Country if !value.chars().all(|c| c.is_ascii_uppercase()) || len != 2 => {
                Err(format!(
                    "C must be a two-letter upper-case ISO 3166 country code such as US; found \"{value}\""
                ))
            }
            DnAttribute::SerialNumber if !value.chars().all(is_printable_string_char) => {
                Err(format!(
                    "serialNumber may hold only letters, digits, spaces and '()+,-./:=?; found \"{value}\""
                ))
            }
            DnAttribute::EmailAddress
                if !value.is_ascii()
                    || value.contains(' ')
                    || value.matches('@').count() != 1
                    || value.starts_with('@')
                    || value.ends_with('@') =>
            {
                Err(format!(
                    "emailAddress must be an ASCII address of the form name@domain; found \"{value}\""
                ))
            }
            _ => Ok(()),
        };
        kind?;
        if len > self.max_len() {
            return Err(format!(
                "{name} is {len} characters long; at most {} are allowed",
                self.max_len()
            ));
        }
        Ok(())
    }
}

fn is_printable_string_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

/// A CSR subject: attributes in encoding order, each at most once, values checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectDn {
    entries: Vec<(DnAttribute, String)>,
}

/// Written as its RFC 4514 text.
impl serde::Serialize for SubjectDn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read from its RFC 4514 text, with every rule checked.
impl<'de> serde::Deserialize<'de> for SubjectDn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl SubjectDn {
    /// The attributes in order.
    pub fn entries(&self) -> &[(DnAttribute, String)] {
        &self.entries
    }

    /// The value of the attribute named `name` (as in [`DnAttribute::from_name`]).
    pub fn get(&self, name: &str) -> Option<&str> {
        let attr = DnAttribute::from_name(name)?;
        self.entries
            .iter()
            .find(|(a, _)| *a == attr)
            .map(|(_, v)| v.as_str())
    }

    /// Builds a subject from attributes, checking each value and the whole.
    ///
    /// # Errors
    /// [`KeysError::Subject`] naming the rule broken.
    pub fn from_entries(entries: Vec<(DnAttribute, String)>) -> Result<SubjectDn, KeysError> {
        let dn = SubjectDn { entries };
        dn.check().map_err(|reason| KeysError::Subject {
            subject: dn.to_string(),
            reason,
        })?;
        Ok(dn)
    }

    fn check(&self) -> Result<(), String> {
        for (i, (attr, value)) in self.entries.iter().enumerate() {
            attr.check_value(value)?;
            if self.entries[..i].iter().any(|(a, _)| a == attr) {
                return Err(format!(
                    "{} appears more than once; each attribute may appear once",
                    attr.short_name()
                ));
            }
        }
        if !self
            .entries
            .iter()
            .any(|(a, _)| *a == DnAttribute::CommonName)
        {
            return Err("a code signing CSR subject needs a CN (common name)".to_string());
        }
        Ok(())
    }

    pub(crate) fn to_rcgen(&self) -> Result<rcgen::DistinguishedName, String> {
        use rcgen::{DnType, DnValue};
        let mut dn = rcgen::DistinguishedName::new();
        for (attr, value) in &self.entries {
            let ty = match attr {
                DnAttribute::CommonName => DnType::CommonName,
                DnAttribute::Organization => DnType::OrganizationName,
                DnAttribute::OrganizationalUnit => DnType::OrganizationalUnitName,
                DnAttribute::Locality => DnType::LocalityName,
                DnAttribute::State => DnType::StateOrProvinceName,
                DnAttribute::Country => DnType::CountryName,
                other => DnType::CustomDnType(other.oid().to_vec()),
            };
            let bad = |e: rcgen::Error| format!("{}: {e}", attr.short_name());
            let value = match attr {
                DnAttribute::Country | DnAttribute::SerialNumber => {
                    DnValue::PrintableString(value.clone().try_into().map_err(bad)?)
                }
                DnAttribute::EmailAddress => {
                    DnValue::Ia5String(value.clone().try_into().map_err(bad)?)
                }
                _ => DnValue::Utf8String(value.clone()),
            };
            dn.push(ty, value);
        }
        Ok(dn)
    }
}

impl FromStr for SubjectDn {
    type Err = KeysError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| KeysError::Subject {
            subject: input.to_string(),
            reason,
        };
        let entries = parse(input).map_err(error)?;
        let dn = SubjectDn { entries };
        dn.check().map_err(error)?;
        Ok(dn)
    }
}

fn parse(input: &str) -> Result<Vec<(DnAttribute, String)>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut entries = Vec::new();
    let mut pos = 0;
    if input.trim().is_empty() {
        return Err("the subject is empty; write it as CN=..,O=..,L=..,ST=..,C=..".to_string());
    }
    loop {
        while pos < chars.len() && chars[pos] == ' ' {
            pos += 1;
        }
        let name_start = pos;
        while pos < chars.len() && chars[pos] != '=' {
            if matches!(chars[pos], ',' | '+' | '\\') {
                return Err(format!(
                    "expected NAME=value at position {}, found '{}'",
                    pos + 1,
                    chars[pos]
                ));
            }
            pos += 1;
        }
        let name: String = chars[name_start..pos].iter().collect();
        let name = name.trim_end();
        if pos == chars.len() {
            return Err(format!(
                "expected NAME=value at position {}, found \"{name}\" with no '='",
                name_start + 1
            ));
        }
        if name.is_empty() {
            return Err(format!(
                "missing attribute name before '=' at position {}",
                pos + 1
            ));
        }
        let attr = DnAttribute::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = DnAttribute::ALL.iter().map(|a| a.short_name()).collect();
            format!(
                "unknown attribute \"{name}\"; allowed are {}",
                known.join(", ")
            )
        })?;
        pos += 1; // '='
        let (value, next) = parse_value(&chars, pos, attr)?;
        entries.push((attr, value));
        pos = next;
        if pos == chars.len() {
            return Ok(entries);
        }
        pos += 1; // ','
        if chars[pos..].iter().all(|c| *c == ' ') {
            return Err("the subject ends with a ',' and no attribute after it".to_string());
        }
    }
}

/// Parses one value starting at `pos`; returns it and the position of the ',' that ends it (or the
/// end of input).
fn parse_value(
    chars: &[char],
    mut pos: usize,
    attr: DnAttribute,
) -> Result<(String, usize), String> {
    let name = attr.short_name();
    while pos < chars.len() && chars[pos] == ' ' {
        pos += 1;
    }
    if chars.get(pos) == Some(&'#') {
        return Err(format!(
            "{name}: hex-encoded values ('#...') are not supported; write the value as text"
        ));
    }
    let mut bytes: Vec<u8> = Vec::new();
    // Length of `bytes` up to the last character that is not an unescaped space.
    let mut significant = 0;
    while pos < chars.len() {
        let c = chars[pos];
        match c {
            ',' => break,
            '+' => {
                return Err(format!(
                    "{name}: unescaped '+' at position {}: multi-valued RDNs are not supported (write \\+ for a literal plus)",
                    pos + 1
                ));
            }
            '"' | ';' | '<' | '>' => {
                return Err(format!(
                    "{name}: the character '{c}' at position {} must be escaped as \\{c}",
                    pos + 1
                ));
            }
            '\\' => {
                let Some(&next) = chars.get(pos + 1) else {
                    return Err(format!("{name}: the value ends with a lone '\\'"));
                };
                if " \"#+,;<=>\\".contains(next) {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(next.encode_utf8(&mut buf).as_bytes());
                    pos += 2;
                } else if let Some(byte) = chars.get(pos + 2).and_then(|low| hex_pair(next, *low)) {
                    bytes.push(byte);
                    pos += 3;
                } else {
                    return Err(format!(
                        "{name}: invalid escape at position {}: '\\' must be followed by one of  \"#+,;<=>\\ or two hex digits",
                        pos + 1
                    ));
                }
                significant = bytes.len();
                continue;
            }
            _ => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                if c != ' ' {
                    significant = bytes.len();
                }
            }
        }
        pos += 1;
    }
    bytes.truncate(significant);
    let value = String::from_utf8(bytes)
        .map_err(|_| format!("{name}: the escaped bytes do not form valid UTF-8"))?;
    Ok((value, pos))
}

fn hex_pair(high: char, low: char) -> Option<u8> {
    let h = high.to_digit(16)?;
    let l = low.to_digit(16)?;
    Some((h * 16 + l) as u8)
}

/// Formats a name in encoding order with RFC 4514 escaping; unknown attribute types by OID.
pub(crate) fn format_x509_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter_rdn().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            match DnAttribute::from_oid(&oid) {
                Some(a) => out.push_str(a.short_name()),
                None => out.push_str(&oid),
            }
            out.push('=');
            match attr.as_str() {
                Ok(value) => {
                    let _ = escape_value(value, &mut out);
                }
                Err(_) => {
                    out.push('#');
                    for b in attr.attr_value().data.iter() {
                        out.push_str(&format!("{b:02X}"));
                    }
                }
            }
        }
    }
    out
}

/// Writes a value with RFC 4514 escaping.
pub(crate) fn escape_value(value: &str, out: &mut impl fmt::Write) -> fmt::Result {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let needs_escape = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if c == '\0' {
            out.write_str("\\00")?;
        } else if needs_escape {
            out.write_char('\\')?;
            out.write_char(c)?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

impl fmt::Display for SubjectDn {
    /// Writes the subject in the same syntax it is parsed from, so that parsing the output gives
    /// back an equal subject.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (attr, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(attr.short_name())?;
            f.write_str("=")?;
            escape_value(value, f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(s: &str) -> SubjectDn {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn parse_err(s: &str) -> String {
        match s.parse::<SubjectDn>() {
            Ok(dn) => panic!("{s} parsed as {dn:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_the_usual_subject_in_order() {
        let dn = parse_ok("CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US");
        let names: Vec<&str> = dn.entries().iter().map(|(a, _)| a.short_name()).collect();
        assert_eq!(names, ["CN", "O", "L", "ST", "C"]);
        assert_eq!(dn.get("L"), Some("Richmond"));
        assert_eq!(dn.get("st"), Some("Virginia"));
    }

    #[test]
    fn tolerates_spaces_around_separators_but_keeps_inner_spaces() {
        let dn = parse_ok(" CN = Example  Corp , O=Example Corp ,C=US ");
        assert_eq!(dn.get("CN"), Some("Example  Corp"));
        assert_eq!(dn.to_string(), "CN=Example  Corp,O=Example Corp,C=US");
    }

    #[test]
    fn unescapes_specials_and_hex_pairs() {
        let dn = parse_ok(
            r#"CN=a\,b\+c\"d\\e\<f\>g\;h\=i,O=\#hash,OU=\ lead and trail\ ,L=M\C3\BCnchen"#,
        );
        assert_eq!(dn.get("CN"), Some(r#"a,b+c"d\e<f>g;h=i"#));
        assert_eq!(dn.get("O"), Some("#hash"));
        assert_eq!(dn.get("OU"), Some(" lead and trail "));
        assert_eq!(dn.get("L"), Some("München"));
    }

    #[test]
    fn formats_with_escapes_and_round_trips() {
        for s in [
            r#"CN=a\,b\+c\"d\\e\<f\>g\;h\=i,O=\#hash,OU=\ lead and trail\ ,L=München"#,
            "CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US,emailAddress=ops@example.com",
            "CN=x=y",
        ] {
            let dn = parse_ok(s);
            let again = parse_ok(&dn.to_string());
            assert_eq!(dn, again, "{s}");
        }
        assert_eq!(parse_ok(r"CN=\#x").to_string(), r"CN=\#x");
        assert_eq!(parse_ok(r"CN=x=y").to_string(), r"CN=x\=y");
    }

    #[test]
    fn accepts_openssl_aliases_case_insensitively() {
        let dn = parse_ok("cn=x,E=a@b.example,S=Virginia,countryName=US");
        assert_eq!(dn.get("emailAddress"), Some("a@b.example"));
        assert_eq!(dn.get("ST"), Some("Virginia"));
        assert_eq!(dn.get("C"), Some("US"));
    }

    #[test]
    fn refuses_unknown_attributes_naming_them() {
        let err = parse_err("CN=x,XX=y");
        assert!(err.contains("unknown attribute \"XX\""), "{err}");
        assert!(err.contains("CN, O, OU, L, ST, C"), "{err}");
    }

    #[test]
    fn refuses_bad_syntax_with_positions() {
        assert!(parse_err("").contains("empty"));
        assert!(parse_err("CN").contains("no '='"));
        assert!(parse_err("=x").contains("missing attribute name"));
        assert!(parse_err("CN=x,").contains("ends with a ','"));
        assert!(parse_err("CN=a+O=b").contains("multi-valued"));
        assert!(parse_err(r#"CN=a"b"#).contains("must be escaped as \\\""));
        assert!(parse_err("CN=a;O=b").contains("position 5"));
        assert!(parse_err(r"CN=a\").contains("lone '\\'"));
        assert!(parse_err(r"CN=a\zz").contains("invalid escape"));
        assert!(parse_err(r"CN=\C3").contains("UTF-8"));
        assert!(parse_err("CN=#0403").contains("hex-encoded"));
    }

    #[test]
    fn refuses_values_that_break_attribute_rules() {
        assert!(parse_err("CN=x,C=USA").contains("two-letter"));
        assert!(parse_err("CN=x,C=us").contains("two-letter"));
        assert!(parse_err("CN=").contains("CN has an empty value"));
        assert!(parse_err("CN=x,OU=a,OU=b").contains("OU appears more than once"));
        assert!(parse_err("O=Example").contains("needs a CN"));
        assert!(parse_err(&format!("CN={}", "x".repeat(65))).contains("at most 64"));
        assert!(parse_err("CN=x,emailAddress=not-an-address").contains("emailAddress"));
        assert!(parse_err("CN=x,serialNumber=a_b").contains("serialNumber"));
        assert!(parse_err("CN=a\u{7}b").contains("control character"));
    }
}
