//! `buoy-agent check`: validates manifests as the API server would, like `nginx -t`.

use std::{path::PathBuf, process::ExitCode};

pub(super) fn check(configs: &[PathBuf]) -> ExitCode {
    match buoy_crds::manifest::load(configs) {
        Ok(objects) => {
            use buoy_crds::manifest::Object;
            let count = |f: fn(&Object) -> bool| objects.iter().filter(|o| f(&o.object)).count();
            println!(
                "configuration OK: {} VirtualIP(s), {} UpstreamPool(s), {} AddressPool(s), {} Secret(s){}",
                count(|o| matches!(o, Object::VirtualIP(_))),
                count(|o| matches!(o, Object::UpstreamPool(_))),
                count(|o| matches!(o, Object::AddressPool(_))),
                count(|o| matches!(o, Object::Secret(_))),
                // Said only when there are some: the standalone agent's configurations have none.
                match count(|o| matches!(o, Object::Service(_))) {
                    0 => String::new(),
                    n => format!(", {n} Service(s)"),
                },
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("configuration invalid: {} error(s)", errors.len());
            ExitCode::FAILURE
        }
    }
}
