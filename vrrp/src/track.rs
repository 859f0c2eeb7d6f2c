//! Tracked conditions and the effective priority, with keepalived's weight semantics exactly:
//! a positive weight is added while the condition holds, a negative weight is added (subtracted)
//! while it fails, and a failing condition with weight 0 puts the instance in Fault. The result
//! stays within 1..254 (255 is reserved for the address owner, 0 for resignation).

/// One tracked condition and whether it holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// What is tracked (reported when it forces Fault).
    pub name: String,
    /// keepalived's weight (see the module).
    pub weight: i32,
    /// Whether the condition holds now.
    pub ok: bool,
}

/// The effective priority, or the name of the condition that forces Fault.
pub fn effective_priority(base: u8, conditions: &[Condition]) -> Result<u8, String> {
    if base == 255 {
        // The address owner's priority is not adjusted (keepalived does the same).
        return conditions
            .iter()
            .find(|c| !c.ok && c.weight == 0)
            .map_or(Ok(255), |c| Err(c.name.clone()));
    }
    let mut p = i32::from(base);
    for c in conditions {
        match (c.ok, c.weight) {
            (false, 0) => return Err(c.name.clone()),
            (true, w) if w > 0 => p += w,
            (false, w) if w < 0 => p += w,
            _ => {}
        }
    }
    Ok(p.clamp(1, 254) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(weight: i32, ok: bool) -> Condition {
        Condition {
            name: format!("w{weight}"),
            weight,
            ok,
        }
    }

    #[test]
    fn keepalived_weight_semantics() {
        // The reference setup: chk_nginx weight 2 on priorities 100 and 99.
        assert_eq!(effective_priority(100, &[c(2, true)]), Ok(102));
        assert_eq!(effective_priority(100, &[c(2, false)]), Ok(100));
        assert_eq!(effective_priority(99, &[c(2, true)]), Ok(101));
        // So a master whose nginx died (100) loses to a healthy backup (101).
        assert!(
            effective_priority(100, &[c(2, false)]).unwrap()
                < effective_priority(99, &[c(2, true)]).unwrap()
        );
        assert_eq!(effective_priority(100, &[c(-50, false)]), Ok(50));
        assert_eq!(effective_priority(100, &[c(-50, true)]), Ok(100));
        assert_eq!(effective_priority(100, &[c(0, true)]), Ok(100));
        assert_eq!(effective_priority(100, &[c(0, false)]), Err("w0".into()));
        assert_eq!(effective_priority(250, &[c(100, true)]), Ok(254));
        assert_eq!(effective_priority(10, &[c(-100, false)]), Ok(1));
        assert_eq!(effective_priority(255, &[c(-100, false)]), Ok(255));
        assert_eq!(effective_priority(255, &[c(0, false)]), Err("w0".into()));
    }
}
