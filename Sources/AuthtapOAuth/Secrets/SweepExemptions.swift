/// Readable fields the high-entropy sweep leaves alone: they look random by design, carry no
/// credential, and the analyzer needs them as they are (state and nonce comparisons, PKCE S256, key ids).
enum SweepExemptions {
    /// Whole names, as words joined with `_`.
    static let names: Set<String> = [
        // RFC 6749 §4.1.1 state, OIDC Core §3.1.2.1 nonce, RFC 7636 §4.3 code_challenge (S256; a plain
        // challenge equals the verifier and is masked by name instead), RFC 6749 §2.2 client_id.
        "state", "nonce", "code_challenge", "client_id", "session_state", "relay_state",
        // RFC 7517 §4 JWK public members and key ids; RFC 7519 §4.1 registered claims that name, not prove.
        "kid", "x5t", "x5t_s256", "x5c", "x5u", "n", "e", "x", "y", "crv", "jti", "sub", "iss", "aud", "azp",
        "oid", "tid", "at_hash", "c_hash", "s_hash", "sid_hash",
        // RFC 9110 §8.8.3 ETag, W3C Trace Context, common request-id and tracing headers.
        "etag", "e_tag", "if_none_match", "if_match", "traceparent", "tracestate", "cf_ray", "x_cloud_trace_context",
        "x_amz_id_2", "x_amz_cf_id", "x_amzn_trace_id", "x_b3_traceid", "x_b3_spanid", "x_b3_parentspanid", "b3",
        // W3C Subresource Integrity and CSP nonces are digests and one-shot values, not credentials.
        "integrity", "content_security_policy", "content_security_policy_report_only", "digest",
        "content_digest", "sec_websocket_key", "sec_websocket_accept",
        // CDN and cache bookkeeping headers (Via from CloudFront and Fastly, X-Served-By): node and request ids.
        // A multipart boundary is random by design (python-requests sends 32 hex digits) and must stay
        // readable, or the body can no longer be split into its parts.
        "content_type",
        "via", "x_served_by", "x_cache", "x_cache_hits", "x_timer", "server_timing", "x_amz_cf_pop",
    ]
    /// A name ending with one of these names a digest or a revision: random by construction, not a credential.
    static let digestWords: Set<String> = [
        "sha", "sha1", "sha256", "sha512", "hash", "checksum", "digest", "commit", "revision", "rev", "fingerprint",
        "integrity", "etag",
    ]
    /// A name whose last word is `id`/`ids` after one of these words names a request or trace, not a secret.
    static let idOwners: Set<String> = [
        "request", "trace", "correlation", "span", "transaction", "client", "operation", "activity", "ray", "amz",
        "amzn", "event", "message", "error", "tenant", "user", "object", "resource", "app", "application", "key",
        "node", "commit", "build", "version", "asset", "file", "image", "content",
    ]

    static func exempt(_ name: String?) -> Bool {
        guard let name else { return false }
        return cache.value(for: name, compute: classify)
    }

    private static let cache = NameCache<String, Bool>()

    private static func classify(_ name: String) -> Bool {
        let words = SecretNames.words(of: name)
        if names.contains(words.joined(separator: "_")) { return true }
        if words.count >= 2, let last = words.last, last == "id" || last == "ids" || last == "requestid",
            idOwners.contains(words[words.count - 2])
        {
            return true
        }
        if let last = words.last, ["requestid", "traceid", "correlationid", "spanid"].contains(last) { return true }
        if let last = words.last, digestWords.contains(last) { return true }
        return false
    }
}
