//! The import from end to end: read every keepalived file and merge the hosts, read the nginx
//! files, attach the listeners, build the objects, and check them with the API's own validation.

use std::path::Path;

use crate::{
    diagnostics::{ImportError, Warnings},
    draft::VipDraft,
    keepalived, listeners, nginx,
    objects::{self, Import},
    options::Options,
};

/// Runs the import: reads the files, translates, validates.
pub fn import(options: &Options) -> Result<Import, ImportError> {
    if options.keepalived.is_empty() && options.nginx.is_empty() {
        return Err(ImportError::Usage(
            "nothing to import: give --keepalived FILE… and/or --nginx FILE…".into(),
        ));
    }
    let mut warnings = Warnings::default();
    let mut vips = read_keepalived(options, &mut warnings)?;
    let web = read_nginx(options, &mut warnings)?;
    let have_keepalived = !options.keepalived.is_empty();
    let listeners = listeners::attach(&mut vips, &web, have_keepalived, &mut warnings);
    listeners::set_tracking(&mut vips, &listeners, &mut warnings);
    listeners::name_vips(&mut vips, &listeners);
    let mut import = objects::build(&options.namespace, &vips, &listeners, &web);
    import.warnings = warnings.sorted();
    validate(&import)?;
    Ok(import)
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
