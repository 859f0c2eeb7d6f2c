//! The API client, chosen as kubectl chooses it: `--kubeconfig FILE`, else `$KUBECONFIG` (its
//! files merged), else `~/.kube/config`, else the in-cluster service account; `--context NAME`
//! instead of the current context; the context's namespace unless `-n` names one.

use std::{path::PathBuf, time::Duration};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

/// Where to connect, from kubectl's global flags.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
}

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig could not be read, or lacks the context, cluster or user named.
    #[error("the kubeconfig")]
    Kubeconfig(#[from] KubeconfigError),
    /// Neither a kubeconfig nor an in-cluster service account.
    #[error("no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a cluster")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration (its TLS settings).
    #[error("cannot build the client")]
    Client(#[from] kube::Error),
}

/// A client, and the namespace: `namespace` (`-n`), else the context's (`default` when it names
/// none).
pub async fn client(
    connection: &Connection,
    namespace: Option<String>,
) -> Result<(kube::Client, String), ConnectError> {
    let options = KubeConfigOptions {
        context: connection.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = match (&connection.kubeconfig, &connection.context) {
        (Some(file), _) => {
            kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(file)?, &options).await?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await?,
        (None, None) => kube::Config::infer().await?,
    };
    // A command, not a watch: an API server that does not answer fails it in seconds.
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(30));
    let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
    Ok((kube::Client::try_from(config)?, namespace))
}
