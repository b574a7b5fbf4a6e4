//! `gen-certs DIR`: a throwaway CA and a server certificate for the TLS
//! checks, written as PEM files for psrtd (`server.crt`, `server.key`) and
//! for the clients (`ca.pem`, and `other-ca.pem`, a CA that signed nothing).
//! EC P-256 keys, valid for two days, the server certificate for localhost
//! and 127.0.0.1 with the extensions strict verifiers want.

use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509};

fn key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn name(common_name: &str) -> Result<X509Name, ErrorStack> {
    let mut n = X509Name::builder()?;
    n.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(n.build())
}

/// Subject, key, serial and validity; the extensions are the caller's.
fn builder(subject: &X509Name, key: &PKey<Private>) -> Result<X509Builder, ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(subject)?;
    b.set_pubkey(key)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let start = i64::try_from(now.saturating_sub(3600)).unwrap_or(i64::MAX);
    let not_before = Asn1Time::from_unix(start as _)?;
    let not_after = Asn1Time::days_from_now(2)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    Ok(b)
}

fn ca(common_name: &str) -> Result<(X509, PKey<Private>), ErrorStack> {
    let key = key()?;
    let subject = name(common_name)?;
    let mut b = builder(&subject, &key)?;
    b.set_issuer_name(&subject)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .digital_signature()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

fn server(ca: &X509, ca_key: &PKey<Private>) -> Result<(X509, PKey<Private>), ErrorStack> {
    let key = key()?;
    let mut b = builder(&name("localhost")?, &key)?;
    b.set_issuer_name(ca.subject_name())?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let ctx = b.x509v3_context(Some(ca), None);
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&ctx)?;
    let ski = SubjectKeyIdentifier::new().build(&ctx)?;
    let aki = AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?;
    b.append_extension(san)?;
    b.append_extension(ski)?;
    b.append_extension(aki)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

/// Writes ca.pem, server.crt, server.key and other-ca.pem into `dir`.
pub fn generate(dir: &Path) -> Result<(), String> {
    let openssl = |e: ErrorStack| format!("openssl: {e}");
    let (ca_cert, ca_key) = ca("psrt interop test CA").map_err(openssl)?;
    let (cert, key) = server(&ca_cert, &ca_key).map_err(openssl)?;
    let (other, _) = ca("psrt interop other CA").map_err(openssl)?;
    let files = [
        ("ca.pem", ca_cert.to_pem().map_err(openssl)?),
        ("server.crt", cert.to_pem().map_err(openssl)?),
        (
            "server.key",
            key.private_key_to_pem_pkcs8().map_err(openssl)?,
        ),
        ("other-ca.pem", other.to_pem().map_err(openssl)?),
    ];
    for (file, pem) in files {
        let path = dir.join(file);
        std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
