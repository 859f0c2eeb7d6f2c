//! An in-memory Kubernetes API server for tests: the REST and watch protocol that kube-rs and
//! kubectl speak, faithfully enough that controllers, watchers, finalizers and server-side apply
//! behave as against a real cluster. Test infrastructure, never shipped.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let api = buoy_tests::testapi::TestApi::start().await?;
//! let client = api.client()?;
//! # Ok(()) }
//! ```

pub mod apply;
pub mod daemonset;
pub mod discovery;
pub mod error;
pub mod fault;
pub mod gc;
pub mod kubeconfig;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

pub use fault::FailWith;
pub use server::Shared;
pub use store::Store;

/// Buoy's generated CustomResourceDefinitions (`crds/*.yaml`), as shipped.
pub fn buoy_crds() -> Result<Vec<serde_json::Value>, TestApiError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut out = Vec::new();
    for file in [
        "virtualips.buoy.io.yaml",
        "upstreampools.buoy.io.yaml",
        "addresspools.buoy.io.yaml",
        "bgppeers.buoy.io.yaml",
    ] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| TestApiError::Crds(path.clone(), e.to_string()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = <serde_json::Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| TestApiError::Crds(path.clone(), e.to_string()))?;
            if !v.is_null() {
                out.push(v);
            }
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum TestApiError {
    #[error("cannot load {0}: {1}")]
    Crds(PathBuf, String),
    #[error("cannot install Buoy's CRDs: {0}")]
    Install(String),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("cannot write the kubeconfig {0}: {1}")]
    Kubeconfig(PathBuf, std::io::Error),
    #[error("cannot start the server thread: {0}")]
    Thread(std::io::Error),
    #[error("the server thread stopped before it was ready")]
    NotReady,
    #[error("kube client: {0}")]
    Client(String),
    #[error("cannot load the TLS certificate and key: {0}")]
    Tls(String),
}

/// A certificate chain and its key, PEM files: the server speaks HTTPS with them.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// A TLS acceptor that offers HTTP/1.1 (all the server speaks).
    fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TestApiError> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let bad = |e: &dyn std::fmt::Display| TestApiError::Tls(e.to_string());
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| bad(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| bad(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad(&e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// Settings of a test server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where to write the kubeconfig; None: a fresh temporary file, removed on drop.
    pub kubeconfig: Option<PathBuf>,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// How many events the history keeps for watches that resume (older: 410 Gone).
    pub history_limit: usize,
    /// Serve HTTPS with this certificate (the kubeconfig then skips verification).
    pub tls: Option<TlsFiles>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
            tls: None,
        }
    }
}

/// A running test server on its own thread and runtime (so it serves whatever the test's own
/// runtime does, even blocking calls). Stopped on drop; [`TestApi::stop`] and
/// [`TestApi::resume`] take it away and bring it back on the same address with the same objects.
pub struct TestApi {
    shared: Arc<Shared>,
    /// HTTPS: every connection's handshake.
    tls: Option<tokio_rustls::TlsAcceptor>,
    kubeconfig: PathBuf,
    temporary: Option<PathBuf>,
    runtime: tokio::runtime::Handle,
    /// While serving: ends the serving, and tells when it ended.
    serving: Option<(oneshot::Sender<()>, std::sync::mpsc::Receiver<()>)>,
    /// Ends the server thread and its runtime.
    exit: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestApi {
    pub async fn start() -> Result<TestApi, TestApiError> {
        Self::start_with(Options::default())
    }

    /// Starts the server (blocking only until it listens).
    pub fn start_with(opts: Options) -> Result<TestApi, TestApiError> {
        let std_listener =
            std::net::TcpListener::bind(opts.listen).map_err(TestApiError::Listen)?;
        let addr = std_listener.local_addr().map_err(TestApiError::Listen)?;
        let (kubeconfig, temporary) = match opts.kubeconfig {
            Some(p) => (p, None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "buoy-testapi-{}-{}",
                    std::process::id(),
                    addr.port()
                ));
                (dir.join("kubeconfig"), Some(dir))
            }
        };
        let tls = opts.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
        kubeconfig::write(&kubeconfig, addr, tls.is_some())
            .map_err(|e| TestApiError::Kubeconfig(kubeconfig.clone(), e))?;
        let shared = Arc::new(Shared::new(
            addr,
            opts.bookmark_interval,
            opts.history_limit,
        ));
        let (exit, exit_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // The runtime's threads are made by this thread: they share the caller's network
        // namespace, so a resumed listener binds where the first one did.
        let thread = std::thread::Builder::new()
            .name("buoy-testapi".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let _ = ready_tx.send(rt.handle().clone());
                let _ = rt.block_on(exit_rx);
                // Open watches end with the runtime.
                rt.shutdown_background();
            })
            .map_err(TestApiError::Thread)?;
        let runtime = ready_rx.recv().map_err(|_| TestApiError::NotReady)?;
        let mut api = TestApi {
            shared,
            tls,
            kubeconfig,
            temporary,
            runtime,
            serving: None,
            exit: Some(exit),
            thread: Some(thread),
        };
        api.serve(move || Ok(std_listener))?;
        Ok(api)
    }

    /// Serves on the listener `bind` makes (called on the server's runtime).
    fn serve(
        &mut self,
        bind: impl FnOnce() -> std::io::Result<std::net::TcpListener> + Send + 'static,
    ) -> Result<(), TestApiError> {
        let (stop, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        self.runtime.spawn(async move {
            let listener = bind().and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            });
            match listener {
                Ok(listener) => {
                    let _ = ready_tx.send(Ok(()));
                    server::serve(listener, shared, tls, stop_rx).await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
            let _ = done_tx.send(());
        });
        ready_rx
            .recv()
            .map_err(|_| TestApiError::NotReady)?
            .map_err(TestApiError::Listen)?;
        self.serving = Some((stop, done));
        Ok(())
    }

    /// Stops serving, as when the API server's process dies: new connections are refused and
    /// open ones (watches included) are cut. The objects and the event history stay.
    pub fn stop(&mut self) {
        if let Some((stop, done)) = self.serving.take() {
            let _ = stop.send(());
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Serves again on the same address, from the same objects and history (clients resume
    /// their watches from the resourceVersion they last saw). Serving already: nothing to do.
    pub fn resume(&mut self) -> Result<(), TestApiError> {
        if self.serving.is_some() {
            return Ok(());
        }
        let addr = self.shared.addr;
        self.serve(move || std::net::TcpListener::bind(addr))
    }

    /// Whether it serves (not stopped).
    pub fn serving(&self) -> bool {
        self.serving.is_some()
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kube-rs client for this server (default namespace `default`).
    pub fn client(&self) -> Result<kube::Client, TestApiError> {
        kube::Client::try_from(self.config()?).map_err(|e| TestApiError::Client(e.to_string()))
    }

    /// A kube-rs client that names itself `agent` in its user agent, so that its requests are
    /// told apart in [`TestApi::requests`].
    pub fn client_as(&self, agent: &str) -> Result<kube::Client, TestApiError> {
        let mut config = self.config()?;
        let value = http::HeaderValue::from_str(agent)
            .map_err(|e| TestApiError::Client(format!("user agent {agent:?}: {e}")))?;
        config.headers.push((http::header::USER_AGENT, value));
        kube::Client::try_from(config).map_err(|e| TestApiError::Client(e.to_string()))
    }

    fn config(&self) -> Result<kube::Config, TestApiError> {
        crate::install_crypto_provider();
        let url = format!("http://{}", self.addr())
            .parse()
            .map_err(|e: http::uri::InvalidUri| TestApiError::Client(e.to_string()))?;
        Ok(kube::Config::new(url))
    }

    /// Direct access to the objects (for assertions and for simulating events).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.shared.lock())
    }

    /// Installs Buoy's CustomResourceDefinitions (VirtualIP, UpstreamPool, AddressPool, BGPPeer).
    pub fn install_buoy_crds(&self) -> Result<(), TestApiError> {
        let crds = buoy_crds()?;
        self.with_store(|store| {
            let rt = store
                .type_of("apiextensions.k8s.io", "customresourcedefinitions")
                .ok_or_else(|| TestApiError::Install("no CustomResourceDefinition kind".into()))?;
            for crd in crds {
                store
                    .create(&rt, "", crd, &store::WriteCtx::internal("buoy-testapi"))
                    .map_err(|e| TestApiError::Install(e.message))?;
            }
            Ok(())
        })
    }

    /// Forgets the event history: watches from any earlier resourceVersion get 410 Gone.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// From now on, answers the requests `fail` matches with its status and a `Status` body
    /// (429 with `Retry-After: 1`), until its `until` or [`TestApi::clear_failures`]; the open
    /// watches it matches end at once. Replaces the failure in force, if any.
    pub fn fail_requests(&self, fail: FailWith) {
        self.shared.failure.send_replace(Some(fail));
    }

    /// Serves every request again.
    pub fn clear_failures(&self) {
        self.shared.failure.send_replace(None);
    }

    /// Requests received so far, by the program of the client's user agent (`unknown` for a
    /// client that sends none, as kube-rs by default).
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Requests to paths the server does not serve, as `METHOD URI`.
    pub fn unknown_paths(&self) -> Vec<String> {
        self.shared
            .unknown_paths
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.stop();
        if let Some(tx) = self.exit.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(dir) = &self.temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
