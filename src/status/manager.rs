//! Runtime changes from the manager page: a POST with `upstream`, `server` (its address or
//! index) and `weight` and/or `state` (`active`, `disabled` = drain, `stopped`), once `guard`
//! has let it through. The change is an atomic store, so every worker sees it on its next
//! request; it is kept across reloads, and logged with who made it and what it changed.

use super::query_param;
use crate::runtime::Runtime;
use crate::upstream::activation;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

/// Applies a form from `client`; returns a JSON description of the server after the change,
/// or the status and message to answer with.
pub(crate) fn apply(rt: &Runtime, form: &str, client: SocketAddr) -> Result<String, (u16, String)> {
    let up_name = query_param(form, "upstream").ok_or((400, "missing \"upstream\"".to_string()))?;
    let server = query_param(form, "server").ok_or((400, "missing \"server\"".to_string()))?;
    let weight = match query_param(form, "weight").filter(|w| !w.is_empty()) {
        None => None,
        Some(w) => match w.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Some(n),
            _ => return Err((400, format!("invalid weight \"{}\" (1..1000)", w))),
        },
    };
    let state = match query_param(form, "state").filter(|s| !s.is_empty()).as_deref() {
        None => None,
        Some("active") => Some(activation::ACTIVE),
        Some("disabled") | Some("drain") => Some(activation::DISABLED),
        Some("stopped") => Some(activation::STOPPED),
        Some(s) => return Err((400, format!("invalid state \"{}\" (active, disabled, stopped)", s))),
    };
    if weight.is_none() && state.is_none() {
        return Err((400, "nothing to change: give \"weight\" and/or \"state\"".to_string()));
    }
    let up = rt.upstreams.iter().find(|u| u.conf.name == up_name).ok_or((404, format!("no upstream \"{}\"", up_name)))?;
    let idx = up
        .conf
        .servers
        .iter()
        .position(|p| p.addr.to_string() == server || p.name == server)
        .or_else(|| server.parse::<usize>().ok().filter(|&i| i < up.conf.servers.len()))
        .ok_or((404, format!("no server \"{}\" in upstream \"{}\"", server, up_name)))?;
    let s = &up.peers[idx];
    let before = (s.weight.load(Relaxed), s.activation.load(Relaxed));
    if let Some(w) = weight {
        s.weight.store(w, Relaxed);
    }
    if let Some(a) = state {
        s.activation.store(a, Relaxed);
    }
    s.overridden.store(true, Relaxed);
    let addr = up.conf.servers[idx].addr;
    let after = (s.weight.load(Relaxed), s.activation.load(Relaxed));
    log::warn!(
        "manager: client {} changed server {} in upstream \"{}\": weight {} -> {}, state {} -> {}",
        client,
        addr,
        up.conf.name,
        before.0,
        after.0,
        activation::name(before.1),
        activation::name(after.1)
    );
    Ok(format!(
        "{{\"upstream\":{},\"server\":\"{}\",\"weight\":{},\"state\":\"{}\"}}\n",
        super::text::json_str(&up.conf.name),
        addr,
        s.weight.load(Relaxed),
        activation::name(s.activation.load(Relaxed))
    ))
}
