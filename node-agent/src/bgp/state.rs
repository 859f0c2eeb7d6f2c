//! What FRR says about the BGP sessions (pure): `show bgp neighbors json` and `show bfd peers
//! json` read into one state per session, with a reason a human can act on when a session is
//! not up.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use buoy_crds::BgpSessionState;
use serde_json::Value;

/// FRR's name of a session's state (RFC 4271, 8.2.2) as the API's; FRR's own passing states
/// (`Clearing`, `Deleted`) are Idle.
fn from_frr(name: &str) -> Option<BgpSessionState> {
    Some(match name {
        "Idle" | "Clearing" | "Deleted" => BgpSessionState::Idle,
        "Connect" => BgpSessionState::Connect,
        "Active" => BgpSessionState::Active,
        "OpenSent" => BgpSessionState::OpenSent,
        "OpenConfirm" => BgpSessionState::OpenConfirm,
        "Established" => BgpSessionState::Established,
        _ => return None,
    })
}

/// One session as FRR sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionState {
    /// The peer's address.
    pub address: IpAddr,
    /// Where the session is.
    pub state: BgpSessionState,
    /// How long it has been up, when it is.
    pub established_for: Option<Duration>,
    /// Why it is not up (or went down last), in words for a condition or an Event.
    pub reason: Option<String>,
    /// Whether BFD says the peer is reachable; None without BFD on the session.
    pub bfd: Option<bool>,
    /// Routes announced to the peer now.
    pub prefixes_sent: u32,
}

/// FRR's JSON was not what we read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// What a peer that never answers looks like: with TCP-MD5 the kernel drops segments with a
/// wrong signature silently, so a wrong password never gets further than a peer that does
/// not listen.
pub const NO_ANSWER: &str = "no answer from the peer (wrong password, or it does not peer with us)";

/// The sessions of `show bgp neighbors json`, in address order.
pub fn parse_neighbors(json: &str) -> Result<Vec<SessionState>, ParseError> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| ParseError(format!("show bgp neighbors json: {e}")))?;
    let Value::Object(neighbors) = value else {
        return Err(ParseError(format!(
            "show bgp neighbors json printed {json:.200}, not an object"
        )));
    };
    let mut out = Vec::new();
    for (key, n) in &neighbors {
        // Peer groups, listen ranges and interface neighbors are not sessions of an address.
        let Ok(address) = key.parse::<IpAddr>() else {
            continue;
        };
        out.push(session(address, n)?);
    }
    out.sort_by_key(|s| s.address);
    Ok(out)
}

fn session(address: IpAddr, n: &Value) -> Result<SessionState, ParseError> {
    let name = n.get("bgpState").and_then(Value::as_str).unwrap_or("");
    let state = from_frr(name)
        .ok_or_else(|| ParseError(format!("{address}: unknown bgpState {name:?}")))?;
    let up = state == BgpSessionState::Established;
    let established_for = up
        .then(|| n.get("bgpTimerUpMsec").and_then(Value::as_u64))
        .flatten()
        .map(Duration::from_millis);
    let prefixes_sent = n
        .get("addressFamilyInfo")
        .and_then(Value::as_object)
        .map(|families| {
            families
                .values()
                .filter_map(|f| f.get("sentPrefixCounter").and_then(Value::as_u64))
                .sum::<u64>()
        })
        .unwrap_or(0);
    let bfd = n
        .get("peerBfdInfo")
        .map(|b| b.get("status").and_then(Value::as_str) == Some("Up"));
    Ok(SessionState {
        address,
        state,
        established_for,
        reason: (!up).then(|| reason(state, n)),
        bfd,
        prefixes_sent: u32::try_from(prefixes_sent).unwrap_or(u32::MAX),
    })
}

/// Why a session is not up: the NOTIFICATION last sent or received (bad peer AS, hold timer
/// expired…), else what FRR last reset it for, else what its state says.
fn reason(state: BgpSessionState, n: &Value) -> String {
    let text = |key: &str| {
        n.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let due_to = text("lastResetDueTo");
    if let Some(notification) = text("lastNotificationReason") {
        let mut r = match due_to {
            Some("BGP Notification send") => format!("we sent a NOTIFICATION: {notification}"),
            Some("BGP Notification received") => {
                format!("the peer sent a NOTIFICATION: {notification}")
            }
            Some(d) => format!("{d}: {notification}"),
            None => notification.to_string(),
        };
        if let Some(why) = text("lastShutdownDescription") {
            r.push_str(&format!(" ({why})"));
        }
        return r;
    }
    let established_before = n
        .get("connectionsEstablished")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        > 0;
    match (state, due_to) {
        (BgpSessionState::Connect | BgpSessionState::Active, Some(d)) if established_before => {
            format!("{NO_ANSWER}; last down: {d}")
        }
        (BgpSessionState::Connect | BgpSessionState::Active, _) => NO_ANSWER.to_string(),
        (BgpSessionState::OpenSent | BgpSessionState::OpenConfirm, _) => {
            format!("opening the session ({})", state.as_str())
        }
        (_, Some(d)) => format!("idle: {d}"),
        _ => "idle".to_string(),
    }
}

/// Whether each BFD peer of `show bfd peers json` is up.
pub fn parse_bfd_peers(json: &str) -> Result<BTreeMap<IpAddr, bool>, ParseError> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| ParseError(format!("show bfd peers json: {e}")))?;
    let Value::Array(peers) = value else {
        return Err(ParseError(format!(
            "show bfd peers json printed {json:.200}, not a list"
        )));
    };
    let mut out = BTreeMap::new();
    for p in &peers {
        let Some(address) = p
            .get("peer")
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<IpAddr>().ok())
        else {
            continue;
        };
        let up = p.get("status").and_then(Value::as_str) == Some("up");
        *out.entry(address).or_insert(false) |= up;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from FRR 8.4.4 (Debian 12) in the lab: n1 peering with a tor over IPv4 (up,
    // BFD up) and over IPv6 with a password the tor does not share; then the tor expecting
    // another AS; then the tor's packets dropped until the hold timer expired.
    const UP_AND_WRONG_PASSWORD: &str =
        include_str!("testdata/neighbors_up_and_wrong_password.json");
    const BAD_PEER_AS: &str = include_str!("testdata/neighbor_bad_peer_as.json");
    const HOLD_TIMER_EXPIRED: &str = include_str!("testdata/neighbor_hold_timer_expired.json");
    const BFD_PEERS: &str = include_str!("testdata/bfd_peers.json");

    fn one(json: &str) -> SessionState {
        let mut sessions = parse_neighbors(json).unwrap();
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        sessions.remove(0)
    }

    #[test]
    fn an_established_session_and_one_that_gets_no_answer() {
        let sessions = parse_neighbors(UP_AND_WRONG_PASSWORD).unwrap();
        assert_eq!(
            sessions,
            [
                SessionState {
                    address: "10.77.0.1".parse().unwrap(),
                    state: BgpSessionState::Established,
                    established_for: Some(Duration::from_secs(13)),
                    reason: None,
                    bfd: Some(true),
                    prefixes_sent: 2,
                },
                SessionState {
                    address: "fd77::1".parse().unwrap(),
                    state: BgpSessionState::Connect,
                    established_for: None,
                    reason: Some(NO_ANSWER.to_string()),
                    bfd: None,
                    prefixes_sent: 0,
                },
            ]
        );
    }

    #[test]
    fn a_notification_is_the_reason() {
        let bad_as = one(BAD_PEER_AS);
        assert_eq!(bad_as.state, BgpSessionState::Idle);
        assert_eq!(
            bad_as.reason.as_deref(),
            Some("the peer sent a NOTIFICATION: OPEN Message Error/Bad Peer AS")
        );
        let hold = one(HOLD_TIMER_EXPIRED);
        assert_eq!(hold.state, BgpSessionState::Connect);
        assert_eq!(hold.established_for, None);
        assert_eq!(
            hold.reason.as_deref(),
            Some("we sent a NOTIFICATION: Hold Timer Expired")
        );
    }

    #[test]
    fn a_session_that_was_up_says_why_it_went_down() {
        let json = r#"{"10.0.0.1":{"bgpState":"Active","connectionsEstablished":1,"lastResetDueTo":"BFD down received"}}"#;
        assert_eq!(
            one(json).reason,
            Some(format!("{NO_ANSWER}; last down: BFD down received"))
        );
        let json = r#"{"10.0.0.1":{"bgpState":"Idle","lastResetDueTo":"Admin. shutdown"}}"#;
        assert_eq!(one(json).reason.as_deref(), Some("idle: Admin. shutdown"));
        let json = r#"{"10.0.0.1":{"bgpState":"OpenSent"}}"#;
        assert_eq!(
            one(json).reason.as_deref(),
            Some("opening the session (OpenSent)")
        );
    }

    #[test]
    fn bfd_peers_are_read_by_address() {
        let peers = parse_bfd_peers(BFD_PEERS).unwrap();
        assert_eq!(
            peers,
            BTreeMap::from([("10.77.0.1".parse().unwrap(), true)])
        );
        let down = r#"[{"peer":"fd77::1","status":"down"},{"peer":"not an address"}]"#;
        assert_eq!(
            parse_bfd_peers(down).unwrap(),
            BTreeMap::from([("fd77::1".parse().unwrap(), false)])
        );
    }

    #[test]
    fn no_neighbors_and_what_is_not_frr_json() {
        assert_eq!(parse_neighbors("{}").unwrap(), []);
        // Peer groups and listen ranges are keyed by name: not sessions.
        assert_eq!(
            parse_neighbors(r#"{"nodes":{"bgpState":"Idle"}}"#).unwrap(),
            []
        );
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"10.0.0.1":{"bgpState":"Dancing"}}"#,
        ] {
            assert!(parse_neighbors(bad).is_err(), "{bad:?}");
        }
        assert!(parse_bfd_peers("{}").is_err());
    }
}
