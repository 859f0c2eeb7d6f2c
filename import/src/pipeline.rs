//! The import from end to end: read every keepalived file and merge the hosts, read the nginx
//! files, attach the listeners, build the objects; translate MetalLB's and kube-vip's
//! configuration; and check the whole with the API's own validation.

use std::{collections::BTreeSet, path::Path};

use crate::{
    certificates::PemSecrets,
    diagnostics::{ImportError, Warnings},
    draft::VipDraft,
    keepalived, kubevip, listeners, metallb, nginx,
    objects::{self, Import},
    options::Options,
};

/// Runs the import: reads the files, translates, validates.
pub fn import(options: &Options) -> Result<Import, ImportError> {
    let keepalived_or_nginx = !(options.keepalived.is_empty() && options.nginx.is_empty());
    if !keepalived_or_nginx && options.metallb.is_empty() && options.kube_vip.is_empty() {
        return Err(ImportError::Usage(
            "nothing to import: give --keepalived FILE… and/or --nginx FILE…, --metallb FILE… or \
             --kube-vip FILE…"
                .into(),
        ));
    }
    let mut warnings = Warnings::default();
    let mut import = Import::default();
    if keepalived_or_nginx {
        let mut vips = read_keepalived(options, &mut warnings)?;
        let web = read_nginx(options, &mut warnings)?;
        let have_keepalived = !options.keepalived.is_empty();
        let mut pem = PemSecrets::new(&[objects::SECRET_NAME]);
        let listeners =
            listeners::attach(&mut vips, &web, have_keepalived, &mut pem, &mut warnings);
        listeners::set_tracking(&mut vips, &listeners, &mut warnings);
        listeners::name_vips(&mut vips, &listeners);
        import = objects::build(options, &vips, &listeners, &web, &mut pem, &mut warnings);
    }
    if !options.metallb.is_empty() {
        add(
            &mut import,
            metallb::import(&options.metallb, &options.namespace, &mut warnings)?,
        )?;
    }
    if !options.kube_vip.is_empty() {
        add(
            &mut import,
            kubevip::import(&options.kube_vip, &mut warnings)?,
        )?;
    }
    import.warnings = warnings.sorted();
    validate(&import)?;
    Ok(import)
}

/// Adds the AddressPools, BGPPeers, Secrets and Services of one translation to the import: each
/// name once.
fn add(import: &mut Import, more: Import) -> Result<(), ImportError> {
    let pools: BTreeSet<Option<String>> = import
        .address_pools
        .iter()
        .map(|d| d.object.metadata.name.clone())
        .collect();
    if let Some(d) = more
        .address_pools
        .iter()
        .find(|d| pools.contains(&d.object.metadata.name))
    {
        return Err(ImportError::Usage(format!(
            "two AddressPools named {}: import the inputs that make them one at a time",
            d.object.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    let key = |v: &serde_json::Value| {
        (
            v["metadata"]["namespace"].as_str().map(String::from),
            v["metadata"]["name"].as_str().map(String::from),
        )
    };
    let services: BTreeSet<_> = import.services.iter().map(|d| key(&d.object)).collect();
    if let Some(d) = more
        .services
        .iter()
        .find(|d| services.contains(&key(&d.object)))
    {
        return Err(ImportError::Usage(format!(
            "Service {}/{} is in the input twice (given with --metallb and with --kube-vip?)",
            d.object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default"),
            d.object["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    let secrets: BTreeSet<_> = import
        .secrets
        .iter()
        .map(|d| (&d.object.metadata.namespace, &d.object.metadata.name))
        .collect();
    if let Some(d) = more
        .secrets
        .iter()
        .find(|d| secrets.contains(&(&d.object.metadata.namespace, &d.object.metadata.name)))
    {
        return Err(ImportError::Usage(format!(
            "two Secrets named {}: import the inputs that make them one at a time",
            d.object.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    import.address_pools.extend(more.address_pools);
    import.bgp_peers.extend(more.bgp_peers);
    import.secrets.extend(more.secrets);
    import.services.extend(more.services);
    Ok(())
}

/// The VirtualIP drafts of the keepalived files, one file per host.
fn read_keepalived(
    options: &Options,
    warnings: &mut Warnings,
) -> Result<Vec<VipDraft>, ImportError> {
    let mut files = Vec::new();
    for path in &options.keepalived {
        files.push(keepalived::parse_file(path, warnings)?);
    }
    keepalived::merge(&files, options.node_name_from, warnings)
}

/// The pools and servers of the nginx files, merged.
fn read_nginx(options: &Options, warnings: &mut Warnings) -> Result<nginx::Config, ImportError> {
    let mut web = nginx::Config::default();
    for path in &options.nginx {
        let one = nginx::parse_file(path, warnings)?;
        web.merge(one, warnings);
    }
    Ok(web)
}

/// The API's own validation: what `buoy-agent check` and the API server would say.
fn validate(import: &Import) -> Result<(), ImportError> {
    let yaml = import.to_yaml()?;
    buoy_crds::manifest::parse(Path::new("<import>"), &yaml).map_err(|errors| {
        ImportError::Invalid(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    Ok(())
}
