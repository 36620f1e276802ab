//! What to say about a directive name the table does not have: an nginx directive pounce
//! does not implement says so, a typo gets the nearest known name.

/// Common nginx directives pounce does not implement (`*` at the end: every name so
/// beginning), with a hint where pounce has another way.
const NGINX: &[(&str, &str)] = &[
    // core and events
    ("user", ""),
    ("daemon", ""),
    ("master_process", ""),
    ("load_module", ""),
    ("env", ""),
    ("lock_file", ""),
    ("pcre_jit", ""),
    ("thread_pool", ""),
    ("timer_resolution", ""),
    ("working_directory", ""),
    ("worker_rlimit_nofile", ""),
    ("worker_rlimit_core", ""),
    ("worker_cpu_affinity", ""),
    ("worker_priority", ""),
    ("debug_connection", ""),
    ("worker_aio_requests", ""),
    ("stream", ""),
    ("mail", ""),
    // http core
    ("sendfile", "static files always go out with sendfile(2)"),
    ("sendfile_max_chunk", ""),
    ("tcp_nopush", ""),
    ("tcp_nodelay", ""),
    ("aio", ""),
    ("directio", ""),
    ("output_buffers", ""),
    ("postpone_output", ""),
    ("server_tokens", ""),
    ("client_body_buffer_size", ""),
    ("client_body_temp_path", ""),
    ("client_body_in_file_only", ""),
    ("client_header_buffer_size", ""),
    ("large_client_header_buffers", ""),
    ("keepalive_time", ""),
    ("keepalive_disable", ""),
    ("lingering_close", ""),
    ("lingering_time", ""),
    ("lingering_timeout", ""),
    ("reset_timedout_connection", ""),
    ("server_names_hash_bucket_size", ""),
    ("server_names_hash_max_size", ""),
    ("types_hash_bucket_size", ""),
    ("types_hash_max_size", ""),
    ("variables_hash_bucket_size", ""),
    ("variables_hash_max_size", ""),
    ("underscores_in_headers", ""),
    ("ignore_invalid_headers", ""),
    ("merge_slashes", ""),
    ("absolute_redirect", ""),
    ("server_name_in_redirect", ""),
    ("port_in_redirect", ""),
    ("resolver", ""),
    ("resolver_timeout", ""),
    ("log_not_found", ""),
    ("log_subrequest", ""),
    ("open_file_cache*", ""),
    ("open_log_file_cache", ""),
    ("error_page", ""),
    ("recursive_error_pages", ""),
    ("try_files", ""),
    ("internal", ""),
    ("limit_except", ""),
    ("satisfy", ""),
    ("etag", ""),
    ("if_modified_since", ""),
    ("chunked_transfer_encoding", ""),
    ("charset", ""),
    ("source_charset", ""),
    ("autoindex*", ""),
    ("expires", ""),
    ("add_trailer", ""),
    ("http2", ""),
    ("http3", ""),
    ("quic*", ""),
    // rewrite, map and friends
    ("rewrite", ""),
    ("rewrite_log", ""),
    ("if", ""),
    ("set", ""),
    ("break", ""),
    ("map", ""),
    ("geo", ""),
    ("split_clients", ""),
    ("sub_filter*", ""),
    ("gzip_static", ""),
    ("gzip_buffers", "the deflate state is sized from the response's length"),
    ("gzip_disable", ""),
    ("gunzip", ""),
    ("ssi", ""),
    // limits and access
    ("limit_rate", ""),
    ("limit_rate_after", ""),
    ("auth_basic*", ""),
    ("auth_request*", ""),
    ("stub_status", "the \"status\" directive serves pounce's status page"),
    // TLS
    ("ssl", "use \"listen ... ssl\""),
    ("ssl_ciphers", "rustls offers its own fixed set of modern cipher suites (see TLS in README.md)"),
    ("ssl_ecdh_curve", "rustls chooses among X25519, P-256 and P-384"),
    ("ssl_dhparam", "rustls offers no finite-field Diffie-Hellman"),
    ("ssl_session_cache", "resumption uses session tickets shared by all workers: \"ssl_session_tickets\""),
    ("ssl_session_ticket_key", "ticket keys are generated, shared by all workers and rotated by pounce"),
    ("ssl_stapling*", ""),
    ("ssl_ocsp*", ""),
    ("ssl_trusted_certificate", ""),
    ("ssl_crl", ""),
    ("ssl_verify_depth", ""),
    ("ssl_password_file", "keys must not be encrypted"),
    ("ssl_early_data", ""),
    ("ssl_buffer_size", ""),
    ("ssl_conf_command", ""),
    ("ssl_reject_handshake", ""),
    ("ssl_certificate_cache", ""),
    ("ssl_preread", ""),
    ("proxy_ssl_*", "TLS to backends is not supported"),
    // proxy
    ("proxy_buffering", ""),
    ("proxy_buffers", ""),
    ("proxy_buffer_size", ""),
    ("proxy_busy_buffers_size", ""),
    ("proxy_request_buffering", ""),
    ("proxy_max_temp_file_size", ""),
    ("proxy_temp_file_write_size", ""),
    ("proxy_temp_path", ""),
    ("proxy_cache*", ""),
    ("proxy_no_cache", ""),
    ("proxy_store*", ""),
    ("proxy_hide_header", ""),
    ("proxy_pass_header", ""),
    ("proxy_ignore_headers", ""),
    ("proxy_pass_request_body", ""),
    ("proxy_pass_request_headers", ""),
    ("proxy_set_body", ""),
    ("proxy_method", ""),
    ("proxy_intercept_errors", ""),
    ("proxy_cookie_domain", ""),
    ("proxy_cookie_path", ""),
    ("proxy_cookie_flags", ""),
    ("proxy_bind", ""),
    ("proxy_socket_keepalive", ""),
    ("proxy_limit_rate", ""),
    ("proxy_headers_hash_bucket_size", ""),
    ("proxy_headers_hash_max_size", ""),
    ("proxy_next_upstream_timeout", ""),
    ("fastcgi_*", ""),
    ("uwsgi_*", ""),
    ("scgi_*", ""),
    ("grpc_*", ""),
    ("memcached_*", ""),
    // upstream
    ("least_conn", "use \"balance least_conn\""),
    ("ip_hash", "for sticky sessions use \"sticky_route\""),
    ("hash", ""),
    ("random", ""),
    ("sticky", "use \"sticky_route\""),
    ("zone", ""),
    ("queue", ""),
    ("ntlm", ""),
];

/// The error for `name`: an nginx directive pounce lacks, or an unknown one with the nearest
/// of `known` (name, allowed in the current block) when one is close.
pub(super) fn message<'a>(name: &str, known: impl Iterator<Item = (&'a str, bool)> + Clone) -> String {
    if let Some(hint) = nginx_only(name) {
        let msg = format!("\"{}\" is an nginx directive pounce does not support", name);
        return if hint.is_empty() { msg } else { format!("{}; {}", msg, hint) };
    }
    let here = nearest(name, known.clone().filter(|&(_, allowed)| allowed).map(|(n, _)| n));
    match here.or_else(|| nearest(name, known.map(|(n, _)| n))) {
        Some(known) => format!("unknown directive \"{}\", did you mean \"{}\"?", name, known),
        None => format!("unknown directive \"{}\"", name),
    }
}

/// The hint for an nginx directive pounce does not implement.
pub(super) fn nginx_only(name: &str) -> Option<&'static str> {
    NGINX.iter().find(|(n, _)| n.strip_suffix('*').map_or(*n == name, |p| name.starts_with(p))).map(|&(_, hint)| hint)
}

/// The known name closest to `name`, if close enough to be a typo of it: at most two edits,
/// and at most one per three characters.
fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let (d, best) = known.map(|k| (distance(name, k), k)).min_by_key(|&(d, _)| d)?;
    (d <= 2 && 3 * d <= name.chars().count()).then_some(best)
}

/// Edit distance with transpositions (optimal string alignment).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j]; three rows are enough.
    let mut prev2 = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(distance("proxy_pas", "proxy_pass"), 1);
        assert_eq!(distance("keepalive_timout", "keepalive_timeout"), 1);
        assert_eq!(distance("pdi", "pid"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestion_only_when_close() {
        let known = [("proxy_pass", false), ("proxy_via", true), ("keepalive_timeout", true), ("pid", false)];
        let msg = |n: &str| message(n, known.iter().copied());
        assert_eq!(msg("proxy_pas"), "unknown directive \"proxy_pas\", did you mean \"proxy_pass\"?");
        assert_eq!(msg("keepalive_timout"), "unknown directive \"keepalive_timout\", did you mean \"keepalive_timeout\"?");
        assert_eq!(msg("zzzz"), "unknown directive \"zzzz\"");
        assert_eq!(msg("pdi"), "unknown directive \"pdi\", did you mean \"pid\"?");
        // Two edits in a four-letter name are not a typo.
        assert_eq!(msg("pizz"), "unknown directive \"pizz\"");
    }

    #[test]
    fn names_allowed_here_come_first() {
        let known = [("listen", false), ("lisen", true)];
        assert_eq!(message("lisen_", known.iter().copied()), "unknown directive \"lisen_\", did you mean \"lisen\"?");
        let known = [("listen", true), ("lisen", false)];
        assert_eq!(message("lisen_", known.iter().copied()), "unknown directive \"lisen_\", did you mean \"listen\"?");
    }

    #[test]
    fn nginx_directives_say_so() {
        let none = std::iter::empty();
        assert_eq!(message("proxy_buffering", none.clone()), "\"proxy_buffering\" is an nginx directive pounce does not support");
        assert_eq!(message("gzip_static", none.clone()), "\"gzip_static\" is an nginx directive pounce does not support");
        assert_eq!(message("ssl_stapling", none.clone()), "\"ssl_stapling\" is an nginx directive pounce does not support");
        assert_eq!(message("least_conn", none), "\"least_conn\" is an nginx directive pounce does not support; use \"balance least_conn\"");
    }
}
