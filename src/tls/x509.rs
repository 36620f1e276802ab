//! Just enough DER to read a certificate's subject and print it as RFC 2253 text, as nginx's
//! `$ssl_client_s_dn` (OpenSSL's `XN_FLAG_RFC2253`): the RDNs last first, joined by `,`
//! (`+` inside one), short names for the usual attributes, dotted numbers for the others, and
//! `,+"\<>;` (and a leading `#` or space, a trailing space, bytes beyond ASCII) escaped.

/// One DER element: (tag, contents, what follows).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject of a DER certificate, as RFC 2253 text; `None` if the DER does not parse.
pub(crate) fn subject_dn(cert: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = element(cert)? else { return None };
    let (SEQUENCE, tbs, _) = element(cert)? else { return None };
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    let (tag, _, after) = element(rest)?;
    if tag == 0xA0 {
        rest = after;
    }
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, name, _) = element(rest)? else { return None };
    let mut rdns = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let (SET, set, after) = element(rest)? else { return None };
        rest = after;
        let mut parts = Vec::new();
        let mut inner = set;
        while !inner.is_empty() {
            let (SEQUENCE, atv, after) = element(inner)? else { return None };
            inner = after;
            let (OID, oid, value) = element(atv)? else { return None };
            let (vtag, value, _) = element(value)?;
            parts.push(format!("{}={}", attribute_name(oid), escape(&decode(vtag, value))));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn attribute_name(oid: &[u8]) -> String {
    const NAMES: &[(&[u8], &str)] = &[
        (&[0x55, 0x04, 0x03], "CN"),
        (&[0x55, 0x04, 0x06], "C"),
        (&[0x55, 0x04, 0x07], "L"),
        (&[0x55, 0x04, 0x08], "ST"),
        (&[0x55, 0x04, 0x09], "street"),
        (&[0x55, 0x04, 0x0A], "O"),
        (&[0x55, 0x04, 0x0B], "OU"),
        (&[0x55, 0x04, 0x05], "serialNumber"),
        (&[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x19], "DC"),
        (&[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x01], "UID"),
        (&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01], "emailAddress"),
    ];
    if let Some((_, n)) = NAMES.iter().find(|(o, _)| *o == oid) {
        return n.to_string();
    }
    // Dotted form: the first byte holds two arcs, the rest base 128.
    let mut arcs: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        v = (v << 7) | (b & 0x7F) as u64;
        if b & 0x80 == 0 {
            if arcs.is_empty() && i < 9 {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// The value's bytes as UTF-8 (BMPString is UTF-16, UniversalString UTF-32; the others are
/// taken as they are).
fn decode(tag: u8, v: &[u8]) -> Vec<u8> {
    match tag {
        0x1E => String::from_utf16_lossy(&v.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect::<Vec<_>>()).into_bytes(),
        0x1C => v.chunks_exact(4).map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('?')).collect::<String>().into_bytes(),
        _ => v.to_vec(),
    }
}

fn escape(v: &[u8]) -> String {
    let mut out = String::new();
    for (i, &c) in v.iter().enumerate() {
        let edge = (i == 0 && (c == b'#' || c == b' ')) || (i + 1 == v.len() && c == b' ');
        if edge || matches!(c, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';') {
            out.push('\\');
            out.push(c as char);
        } else if !(0x20..0x7F).contains(&c) {
            out.push_str(&format!("\\{:02X}", c));
        } else {
            out.push(c as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal certificate: version, serial, algorithm, issuer, validity, subject.
    fn cert_with_subject(subject: &[u8]) -> Vec<u8> {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if body.len() < 128 {
                v.push(body.len() as u8);
            } else {
                v.push(0x82);
                v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            }
            v.extend_from_slice(body);
            v
        }
        let mut tbs = tlv(0xA0, &tlv(0x02, &[2]));
        tbs.extend(tlv(0x02, &[1]));
        tbs.extend(tlv(0x30, &tlv(0x06, &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02])));
        tbs.extend(tlv(0x30, &[]));
        tbs.extend(tlv(0x30, &[]));
        tbs.extend_from_slice(subject);
        tlv(0x30, &tlv(0x30, &tbs))
    }

    fn atv(oid: &[u8], tag: u8, v: &str) -> Vec<u8> {
        let mut seq = vec![0x06, oid.len() as u8];
        seq.extend_from_slice(oid);
        seq.push(tag);
        seq.push(v.len() as u8);
        seq.extend_from_slice(v.as_bytes());
        let mut out = vec![0x30, seq.len() as u8];
        out.extend(seq);
        out
    }

    fn name(rdns: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut body = Vec::new();
        for rdn in rdns {
            let inner: Vec<u8> = rdn.concat();
            body.push(0x31);
            body.push(inner.len() as u8);
            body.extend(inner);
        }
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    }

    #[test]
    fn rfc2253_order_names_and_escapes() {
        let subject = name(&[
            vec![atv(&[0x55, 0x04, 0x06], 0x13, "DE")],
            vec![atv(&[0x55, 0x04, 0x0A], 0x0C, "Pounce, Inc.")],
            vec![atv(&[0x55, 0x04, 0x03], 0x0C, "alice"), atv(&[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x01], 0x0C, "a1")],
            vec![atv(&[0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37], 0x0C, " x#")],
        ]);
        let dn = subject_dn(&cert_with_subject(&subject)).expect("parses");
        assert_eq!(dn, "1.3.6.1.4.1.311=\\ x#,CN=alice+UID=a1,O=Pounce\\, Inc.,C=DE");
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(subject_dn(&[]), None);
        assert_eq!(subject_dn(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(subject_dn(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
        let c = cert_with_subject(&name(&[vec![atv(&[0x55, 0x04, 0x03], 0x0C, "é")]]));
        assert_eq!(subject_dn(&c).expect("parses"), "CN=\\C3\\A9");
    }
}
