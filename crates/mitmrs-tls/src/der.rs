//! Tiny hand-written encoders: DER wrappers turning PKCS#1 (RSA) and SEC1
//! (EC) private keys into PKCS#8, which is all ring can load, and PEM
//! output for certificates.

/// OID 1.2.840.113549.1.1.1 (rsaEncryption), full TLV.
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// ASN.1 NULL, full TLV.
const NULL: &[u8] = &[0x05, 0x00];
/// OID 1.2.840.10045.2.1 (id-ecPublicKey), full TLV.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OID 1.2.840.10045.3.1.7 (prime256v1 / P-256), full TLV.
pub(crate) const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OID 1.3.132.0.34 (secp384r1 / P-384), full TLV.
pub(crate) const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OCTET_STRING: u8 = 0x04;
/// INTEGER 0, full TLV (PKCS#8 version v1).
const VERSION_0: &[u8] = &[0x02, 0x01, 0x00];

/// Encodes one DER tag-length-value with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    if len < 0x80 {
        // Short form: the cast is exact because len < 128.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        // At most size_of::<usize>() (8) bytes, so the cast is exact.
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// Wraps a PKCS#8 PrivateKeyInfo around an inner key:
/// `SEQUENCE { INTEGER 0, SEQUENCE { alg... }, OCTET STRING { key } }`.
fn pkcs8(alg_identifier_content: &[&[u8]], inner_key: &[u8]) -> Vec<u8> {
    let alg = tlv(TAG_SEQUENCE, &alg_identifier_content.concat());
    let key = tlv(TAG_OCTET_STRING, inner_key);
    tlv(TAG_SEQUENCE, &[VERSION_0, &alg, &key].concat())
}

/// PKCS#1 `RSAPrivateKey` DER ("BEGIN RSA PRIVATE KEY") to PKCS#8 DER.
pub(crate) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    pkcs8(&[OID_RSA_ENCRYPTION, NULL], pkcs1)
}

/// SEC1 `ECPrivateKey` DER ("BEGIN EC PRIVATE KEY") to PKCS#8 DER for the
/// curve given as a full OID TLV ([`OID_P256`] or [`OID_P384`]).
pub(crate) fn sec1_to_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    pkcs8(&[OID_EC_PUBLIC_KEY, curve_oid], sec1)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        // `chunks` never yields an empty slice, so `chunk[0]` exists.
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = |shift: u32| char::from(BASE64[((n >> shift) & 0x3f) as usize]);
        out.push(idx(18));
        out.push(idx(12));
        out.push(if chunk.len() > 1 { idx(6) } else { '=' });
        out.push(if chunk.len() > 2 { idx(0) } else { '=' });
    }
    out
}

/// PEM-encodes DER data under the given label, 64 columns, trailing newline.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // base64 output is pure ASCII, so every 64-byte chunk is valid UTF-8.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PEM-encodes a DER certificate ("BEGIN CERTIFICATE").
pub fn cert_to_pem(der: &[u8]) -> String {
    pem("CERTIFICATE", der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_lengths() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 0x02, 1, 2]);
        let long = vec![0u8; 300];
        let enc = tlv(0x04, &long);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(enc.len(), 304);
        let enc = tlv(0x04, &[0u8; 200]);
        assert_eq!(&enc[..3], &[0x04, 0x81, 200]);
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn pem_roundtrip() {
        let data: Vec<u8> = (0..=255u8).collect();
        let text = pem("CERTIFICATE", &data);
        let certs: Vec<_> = rustls_pemfile::certs(&mut text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].as_ref(), &data[..]);
    }
}
