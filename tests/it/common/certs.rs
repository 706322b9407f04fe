//! Certificates made at run time for the TLS tests: a CA, a server
//! certificate it signs for `127.0.0.1` and `localhost`, and a second CA
//! that signed nothing here, to be refused.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// PEM files in a temp dir of their own, gone on drop.
pub struct TestCerts {
    dir: tempfile::TempDir,
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing the servers present.
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCerts {
    pub fn make() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let (ca, ca_key) = authority("meshi test CA");
        let (other_ca, _) = authority("an unrelated CA");

        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server certificate names");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_key = KeyPair::generate().expect("a server key");
        let server = params
            .signed_by(&server_key, &ca, &ca_key)
            .expect("sign the server certificate");

        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {name}: {e}"));
            path
        };
        TestCerts {
            ca: write("ca.pem", ca.pem()),
            other_ca: write("other-ca.pem", other_ca.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            dir,
        }
    }

    /// Where further files of the test may go.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn authority(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("a CA key");
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert, key)
}
