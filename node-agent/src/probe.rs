//! The HTTP(S) GET probe, one client for the pools' active health checks and the VirtualIPs'
//! `track.httpGet`: a GET on an open connection, over TLS or not, answered by a status; and a
//! `track.httpGet`'s settings, resolved (run by [`crate::track`]).
//!
//! HTTPS probes do not verify the server's certificate (kubelet's HTTPS probes and HAProxy's
//! `check-ssl verify none` do not either): they ask whether a server is alive, not whether to
//! trust it, and their addresses are IP literals that no name lookup can redirect. The
//! handshake's signatures are still checked, with the crypto provider's algorithms, so a probe
//! only passes against a server that holds the key of the certificate it shows.

use std::{
    net::SocketAddr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use pingora_core::tls::TlsConnector;
use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

/// Where a GET goes and what it asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGet {
    /// Over TLS (`https://`).
    pub tls: bool,
    /// The `Host` header; also the TLS server name when it is a DNS name.
    pub host: String,
    /// The request target (`/livez`).
    pub path: String,
}

/// A client that accepts any certificate, built once: every probe shares its session cache.
static CONNECTOR: LazyLock<Option<TlsConnector>> = LazyLock::new(connector);

fn connector() -> Option<TlsConnector> {
    // The process default: aws-lc-rs, installed by the CLI before anything else
    // (`proxy::tls::install_provider`); ring where none is (unit tests).
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(TlsConnector::from(Arc::new(config)))
}

/// Accepts the server's certificate whatever it is (see the module), but checks the handshake
/// signatures made with its key (with the provider's algorithms). Public for the benchmarks'
/// TLS client.
#[derive(Debug)]
pub struct AnyCertificate(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Sends `get` on `stream`, a connection to `addr` (after any PROXY protocol header), and
/// returns the response's status; `None` when the connection, the handshake or the response
/// failed. The caller bounds the time.
pub(crate) async fn get(stream: TcpStream, addr: SocketAddr, get: &HttpGet) -> Option<u16> {
    if !get.tls {
        return exchange(stream, get).await;
    }
    let connector = CONNECTOR.as_ref()?;
    // A DNS name as SNI; an IP address sends none (what rustls does with an IP server name).
    let server_name = match ServerName::try_from(get.host.clone()) {
        Ok(name @ ServerName::DnsName(_)) => name,
        _ => ServerName::IpAddress(addr.ip().into()),
    };
    // tokio-rustls (pingora's TLS connector type): pingora's own `TlsStream::from_connector`
    // leaves the handshake to pingora's connector (its `connect` is crate-private).
    let tls = connector.connect(server_name, stream).await.ok()?;
    exchange(tls, get).await
}

/// The GET and the status line of its answer (the headers read up to 8 KiB, the body not at all).
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    get: &HttpGet,
) -> Option<u16> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: buoy-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        get.path, get.host
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    stream.flush().await.ok()?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while buf.len() < 8192 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(_) if response.code.is_some() => return response.code,
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// The URL of a `track.httpGet`, split: the address to connect to and the GET. Only IP
/// literals: a host name is refused (the probe must not depend on DNS).
pub fn parse_url(url: &str) -> Result<(SocketAddr, HttpGet), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url:?}: the scheme must be http or https")),
    };
    let authority = uri.authority().ok_or_else(|| format!("{url:?}: no host"))?;
    let host = authority.host();
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("{url:?}: the host must be an IP address, not a name (no DNS)"))?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let path = if path.is_empty() { "/".into() } else { path };
    Ok((
        SocketAddr::new(ip, port),
        HttpGet {
            tls,
            host: authority.as_str().to_string(),
            path,
        },
    ))
}

/// A VirtualIP's `track.httpGet`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGetTrack {
    /// The URL as written (for the log).
    pub url: String,
    /// The address the URL names.
    pub addr: SocketAddr,
    /// The request.
    pub get: HttpGet,
    /// Time between requests.
    pub interval: Duration,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Failures in a row that make the condition fail.
    pub failure_threshold: u32,
    /// Successes in a row that make it hold.
    pub success_threshold: u32,
    /// keepalived's weight (0: Fault while it fails).
    pub weight: i32,
}

impl HttpGetTrack {
    /// From the API's `track.httpGet`; an error names what is wrong with the URL.
    pub fn from_spec(spec: &buoy_crds::TrackHttpGet) -> Result<HttpGetTrack, String> {
        let (addr, get) = parse_url(&spec.url)?;
        Ok(HttpGetTrack {
            url: spec.url.clone(),
            addr,
            get,
            interval: spec.interval.as_std(),
            timeout: spec.timeout.as_std(),
            failure_threshold: spec.failure_threshold,
            success_threshold: spec.success_threshold,
            weight: spec.weight,
        })
    }

    /// Whether a response with this status passes (kubelet: 200-399).
    pub(crate) fn passes(status: u16) -> bool {
        (200..400).contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_address_and_request() {
        let (addr, get) = parse_url("https://127.0.0.1:6443/livez").unwrap();
        assert_eq!(addr, "127.0.0.1:6443".parse().unwrap());
        assert_eq!(
            get,
            HttpGet {
                tls: true,
                host: "127.0.0.1:6443".into(),
                path: "/livez".into()
            }
        );
        let (addr, get) = parse_url("http://[::1]/healthz?verbose").unwrap();
        assert_eq!(addr, "[::1]:80".parse().unwrap());
        assert!(!get.tls);
        assert_eq!(get.path, "/healthz?verbose");
        let (addr, get) = parse_url("https://10.0.0.1").unwrap();
        assert_eq!(addr, "10.0.0.1:443".parse().unwrap());
        assert_eq!(get.path, "/");
        assert!(
            parse_url("https://localhost:6443/livez")
                .unwrap_err()
                .contains("not a name")
        );
        assert!(parse_url("ftp://10.0.0.1/").unwrap_err().contains("scheme"));
        assert!(parse_url("not a url").is_err());
    }

    /// A self-signed certificate and its key (PEM), made by openssl as a test's server would
    /// have it.
    fn self_signed(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=probe-test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed");
        assert!(status.success());
        (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
    }

    #[tokio::test]
    async fn https_probes_accept_a_self_signed_certificate() {
        use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let certs = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = pingora_core::tls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let second = acceptor.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut request = vec![0u8; 1024];
            let n = tls.read(&mut request).await.unwrap();
            tls.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            tls.shutdown().await.unwrap();
            (
                String::from_utf8_lossy(&request[..n]).into_owned(),
                listener,
            )
        });
        let (target, get) = parse_url(&format!("https://{addr}/livez")).unwrap();
        let stream = TcpStream::connect(target).await.unwrap();
        assert_eq!(super::get(stream, target, &get).await, Some(204));
        let (request, listener) = server.await.unwrap();
        assert!(
            request.starts_with(&format!("GET /livez HTTP/1.1\r\nHost: {addr}\r\n")),
            "{request}"
        );
        // Plain HTTP to a TLS server gets no status.
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = second.accept(tcp).await;
        });
        let plain = HttpGet { tls: false, ..get };
        let stream = TcpStream::connect(target).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), super::get(stream, target, &plain))
                .await
                .ok()
                .flatten(),
            None
        );
    }
}
