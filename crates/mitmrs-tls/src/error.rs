//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or creating the CA, issuing
/// leaf certificates or building TLS configurations.
///
/// Each variant carries the context a user needs to act on it: the file
/// path, the host name, or the option name involved, plus the reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file or directory operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What we were doing, e.g. "read", "create directory".
        action: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The CA file is not valid PEM, or lacks a key or a certificate.
    #[error("invalid CA file {}: {reason}", path.display())]
    CaFile {
        /// The CA file (`mitmproxy-ca.pem`).
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },

    /// The CA private key could not be used (unsupported type, too small
    /// for ring, or not matching the certificate).
    #[error("unusable CA private key in {}: {reason}", path.display())]
    CaKey {
        /// The CA file.
        path: PathBuf,
        /// Why the key was rejected.
        reason: String,
    },

    /// The CA certificate could not be used as an issuer.
    #[error("unusable CA certificate in {}: {reason}", path.display())]
    CaCert {
        /// The CA file.
        path: PathBuf,
        /// Why the certificate was rejected.
        reason: String,
    },

    /// Generating a new CA certificate failed.
    #[error("cannot generate a new CA in {}: {source}", confdir.display())]
    GenerateCa {
        /// The configuration directory.
        confdir: PathBuf,
        /// The underlying rcgen error.
        #[source]
        source: rcgen::Error,
    },

    /// A host name (from SNI, a CONNECT line or an upstream certificate) is
    /// not usable in a certificate.
    #[error("invalid name {name:?} for a certificate: {reason}")]
    InvalidName {
        /// The offending name, as received.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A leaf certificate could not be issued.
    #[error("cannot issue a certificate for {name:?}: {reason}")]
    IssueLeaf {
        /// The leaf's main name (CN or first SAN).
        name: String,
        /// Why issuing failed.
        reason: String,
    },

    /// The upstream server's certificate could not be parsed.
    #[error("cannot parse the certificate of upstream server {host:?}: {reason}")]
    UpstreamCert {
        /// The host we connected to.
        host: String,
        /// Why parsing failed.
        reason: String,
    },

    /// The file given with `ssl_verify_upstream_trusted_ca` is unusable.
    #[error("ssl_verify_upstream_trusted_ca: cannot use {}: {reason}", path.display())]
    ExtraCaFile {
        /// The file named by the option.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },

    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}
