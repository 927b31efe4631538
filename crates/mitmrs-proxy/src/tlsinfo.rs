//! Copies TLS facts from the TLS crate's record into the flow model's.

use bytes::Bytes;
use mitmrs_core::connection::TlsFacts;
use mitmrs_core::now;
use mitmrs_tls::TlsInfo;

pub fn apply_tls_info(facts: &mut TlsFacts, info: TlsInfo) {
    facts.tls = true;
    if info.sni.is_some() {
        facts.sni = info.sni;
    }
    facts.alpn = info.alpn.map(Bytes::from);
    facts.tls_version = info.tls_version;
    facts.cipher = info.cipher;
    facts.certificate_list = info
        .certificate_list
        .iter()
        .map(|c| Bytes::copy_from_slice(c.as_ref()))
        .collect::<Vec<_>>()
        .into();
    facts.timestamp_tls_setup = Some(now());
}
