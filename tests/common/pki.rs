//! Test certificates: a CA (with a name of its own, as a verifier picks the
//! issuer by name) and a server certificate it signed, made with rcgen for
//! each test.

use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT_CA: AtomicUsize = AtomicUsize::new(0);

/// A CA and a server certificate it signed.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA and a server certificate it signed for `names`.
pub fn pki_for(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("psrt test CA {}", NEXT_CA.fetch_add(1, Ordering::Relaxed)),
    );
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// For localhost and 127.0.0.1 (an IP SAN).
pub fn pki() -> Pki {
    pki_for(&["localhost", "127.0.0.1"])
}
